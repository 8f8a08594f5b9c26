#include "vmm/virtio/balloon/guest_stats.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace vim::vmm::virtio::balloon {

nlohmann::json GuestStats::to_json() const {
    nlohmann::json figures = nlohmann::json::object();
    for (std::size_t tag = 0; tag < values.size(); ++tag) {
        if (values[tag]) {
            figures[std::string(kStatNames[tag])] = *values[tag];
        }
    }
    return figures;
}

GuestStats parse_guest_stats(std::span<const std::uint8_t> bytes) {
    if (bytes.size() % kStatEntryBytes != 0) {
        throw std::invalid_argument("stats buffer of " + std::to_string(bytes.size()) +
                                    " bytes is not a whole number of " + std::to_string(kStatEntryBytes) +
                                    "-byte entries");
    }
    GuestStats stats;
    for (std::size_t offset = 0; offset < bytes.size(); offset += kStatEntryBytes) {
        std::uint16_t tag;
        std::uint64_t value;
        std::memcpy(&tag, bytes.data() + offset, sizeof tag);
        std::memcpy(&value, bytes.data() + offset + sizeof tag, sizeof value);
        if (tag < stats.values.size()) {
            stats.values[tag] = value;
        } else {
            ++stats.unknown_tags;
        }
    }
    return stats;
}

}  // namespace vim::vmm::virtio::balloon
