#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>

#include "vmm/virtio/balloon/protocol.h"

namespace vim::vmm::virtio::balloon {

// The memory figures the guest's driver reported on the stats queue.
struct GuestStats {
    // By tag, named by kStatNames; empty for a figure the driver did not send.
    std::array<std::optional<std::uint64_t>, kStatNames.size()> values{};
    // Entries with a tag this device does not know (a newer driver's).
    std::uint64_t unknown_tags = 0;

    // {"free_memory": 123, ...}: the figures the driver sent, by name.
    nlohmann::json to_json() const;
    bool operator==(const GuestStats&) const = default;
};

// Parses a stats buffer: entries of a 16-bit tag and a 64-bit value, packed
// (kStatEntryBytes each); a tag sent twice keeps its last value. Throws
// std::invalid_argument when the length is not a whole number of entries.
GuestStats parse_guest_stats(std::span<const std::uint8_t> bytes);

}  // namespace vim::vmm::virtio::balloon
