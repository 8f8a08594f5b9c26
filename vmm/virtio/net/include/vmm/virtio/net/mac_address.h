#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace vim::vmm::virtio::net {

using MacAddress = std::array<std::uint8_t, 6>;

// A MAC address that stays the same for as long as `seed` does (the tap's
// name, unique on its host): a guest keeps its DHCP lease and the bridge its
// forwarding entry across restarts. 52:54:00, the prefix QEMU's users know,
// is locally administered and unicast; the last three bytes hash the seed.
MacAddress stable_mac(std::string_view seed);

// "52:54:00:12:34:56".
std::string to_string(const MacAddress& mac);

}  // namespace vim::vmm::virtio::net
