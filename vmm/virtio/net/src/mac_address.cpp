#include "vmm/virtio/net/mac_address.h"

#include <cstdio>

namespace vim::vmm::virtio::net {

MacAddress stable_mac(std::string_view seed) {
    // FNV-1a: stable across builds and hosts, unlike std::hash.
    std::uint32_t hash = 2166136261u;
    for (const char character : seed) {
        hash = (hash ^ static_cast<std::uint8_t>(character)) * 16777619u;
    }
    return {0x52,
            0x54,
            0x00,
            static_cast<std::uint8_t>(hash >> 16),
            static_cast<std::uint8_t>(hash >> 8),
            static_cast<std::uint8_t>(hash)};
}

std::string to_string(const MacAddress& mac) {
    char text[18];
    std::snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
                  mac[5]);
    return text;
}

}  // namespace vim::vmm::virtio::net
