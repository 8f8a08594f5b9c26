#include "vmm/pci/msix.h"

#include <algorithm>
#include <array>
#include <stdexcept>
#include <string>

#include "vmm/sys/hex.h"

namespace vim::vmm::pci {
namespace {

using sys::hex;

constexpr std::uint16_t kControlEnable = 1u << 15;
constexpr std::uint16_t kControlFunctionMask = 1u << 14;
constexpr std::uint32_t kEntryMasked = 1u << 0;

bool overlaps(std::uint64_t start, std::uint64_t length, std::uint64_t other_start,
              std::uint64_t other_length) {
    return start < other_start + other_length && other_start < start + length;
}

std::uint64_t load(std::span<const std::uint8_t> data) {
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < data.size(); ++i) {
        value |= std::uint64_t{data[i]} << (8 * i);
    }
    return value;
}

void store(std::span<std::uint8_t> data, std::uint64_t value) {
    for (std::size_t i = 0; i < data.size(); ++i) {
        data[i] = static_cast<std::uint8_t>(value >> (8 * i));
    }
}

// Where an access falls relative to an MSI-X structure.
enum class Reach { kOutside, kInvalid, kValid };

Reach reach(BarLocation location, std::uint64_t length, std::size_t bar, std::uint64_t offset,
            std::size_t size) {
    if (bar != location.bar || !overlaps(offset, size, location.offset, length)) {
        return Reach::kOutside;
    }
    const bool inside = offset >= location.offset && offset + size <= location.offset + length;
    const bool aligned = (size == 4 || size == 8) && offset % size == 0;
    return inside && aligned ? Reach::kValid : Reach::kInvalid;
}

}  // namespace

Msix::Msix(devices::MsiVectors& vectors) : vectors_(vectors) {
    const std::size_t count = vectors.size();
    if (count == 0 || count > kMaxVectors) {
        throw std::invalid_argument("MSI-X: " + std::to_string(count) + " vectors, not 1 to " +
                                    std::to_string(kMaxVectors));
    }
    table_.resize(count);
}

std::size_t Msix::add_capability(ConfigSpace& config, BarLocation table, BarLocation pba) {
    const auto check = [&config](const char* what, BarLocation location, std::uint64_t length) {
        const std::string where = config.describe() + ": MSI-X " + what + " at offset " +
                                  hex(location.offset) + " of BAR " + std::to_string(location.bar);
        const std::uint64_t bar_size = config.bar_size(location.bar);
        if (bar_size == 0) {
            throw std::invalid_argument(where + ": no such BAR");
        }
        if (location.offset % 8 != 0) {
            throw std::invalid_argument(where + ": not 8-byte aligned");
        }
        if (location.offset + length > bar_size) {
            throw std::invalid_argument(where + ": " + hex(length) + " bytes do not fit in the BAR's " +
                                        hex(bar_size));
        }
    };
    if (capability_offset_ != 0) {
        throw std::invalid_argument(config.describe() + ": MSI-X capability added twice");
    }
    check("table", table, table_size());
    check("PBA", pba, pba_size());
    if (table.bar == pba.bar && overlaps(table.offset, table_size(), pba.offset, pba_size())) {
        throw std::invalid_argument(config.describe() + ": MSI-X table and PBA overlap in BAR " +
                                    std::to_string(table.bar));
    }
    const std::uint16_t control = static_cast<std::uint16_t>(table_.size() - 1);  // N-1 encoded
    const std::uint32_t table_word = table.offset | static_cast<std::uint32_t>(table.bar);
    const std::uint32_t pba_word = pba.offset | static_cast<std::uint32_t>(pba.bar);
    const std::array<std::uint8_t, 10> body{
        static_cast<std::uint8_t>(control),          static_cast<std::uint8_t>(control >> 8),
        static_cast<std::uint8_t>(table_word),       static_cast<std::uint8_t>(table_word >> 8),
        static_cast<std::uint8_t>(table_word >> 16), static_cast<std::uint8_t>(table_word >> 24),
        static_cast<std::uint8_t>(pba_word),         static_cast<std::uint8_t>(pba_word >> 8),
        static_cast<std::uint8_t>(pba_word >> 16),   static_cast<std::uint8_t>(pba_word >> 24),
    };
    // Only enable and function mask are the guest's; the table size and
    // both locations are read-only.
    const std::array<std::uint8_t, 10> writable{0, (kControlEnable | kControlFunctionMask) >> 8};
    const std::size_t offset = config.add_capability(kCapabilityMsix, body, writable);
    std::lock_guard lock(mutex_);
    capability_offset_ = offset;
    table_location_ = table;
    pba_location_ = pba;
    return offset;
}

bool Msix::enabled() const {
    std::lock_guard lock(mutex_);
    return enabled_;
}

bool Msix::live(const Entry& entry) const {
    return enabled_ && !function_masked_ && !(entry.control & kEntryMasked);
}

void Msix::refresh(std::size_t vector) {
    Entry& entry = table_[vector];
    if (!live(entry)) {
        return;
    }
    if (entry.routed != entry.message) {
        vectors_.set_route(vector, entry.message);
        entry.routed = entry.message;
    }
    if (entry.pending) {
        entry.pending = false;
        vectors_.trigger(vector);
    }
}

void Msix::sync(const ConfigSpace& config) {
    std::lock_guard lock(mutex_);
    if (capability_offset_ == 0) {
        return;
    }
    const auto control = static_cast<std::uint16_t>(config.read(capability_offset_ / 4) >> 16);
    const bool enabled = control & kControlEnable;
    const bool function_masked = control & kControlFunctionMask;
    if (enabled == enabled_ && function_masked == function_masked_) {
        return;
    }
    enabled_ = enabled;
    function_masked_ = function_masked;
    for (std::size_t vector = 0; vector < table_.size(); ++vector) {
        refresh(vector);
    }
}

Msix::Delivery Msix::notify(std::size_t vector) {
    std::lock_guard lock(mutex_);
    if (!enabled_) {
        return Delivery::kDisabled;
    }
    if (vector >= table_.size()) {
        return Delivery::kNoSuchVector;
    }
    Entry& entry = table_[vector];
    if (!live(entry)) {
        entry.pending = true;
        return Delivery::kPending;
    }
    vectors_.trigger(vector);
    return Delivery::kSent;
}

state::State Msix::save() const {
    std::lock_guard lock(mutex_);
    state::State entries = state::State::array();
    for (const Entry& entry : table_) {
        entries.push_back({{"address", entry.message.address},
                           {"data", entry.message.data},
                           {"masked", (entry.control & kEntryMasked) != 0},
                           {"pending", entry.pending}});
    }
    return {{"entries", std::move(entries)}};
}

void Msix::restore(const state::State& state, const ConfigSpace& config) {
    state::restoring("msix", [&] {
        const state::State& entries = state::field(state, "entries");
        if (!entries.is_array() || entries.size() != table_.size()) {
            throw state::StateError("entries: not an array of " + std::to_string(table_.size()) + " entries");
        }
        std::vector<Entry> table(table_.size());
        for (std::size_t vector = 0; vector < table.size(); ++vector) {
            state::restoring("entry " + std::to_string(vector), [&] {
                const state::State& saved = entries[vector];
                table[vector].message.address = state::unsigned_field<std::uint64_t>(saved, "address");
                table[vector].message.data = state::unsigned_field<std::uint32_t>(saved, "data");
                table[vector].control = state::unsigned_field<bool>(saved, "masked") ? kEntryMasked : 0;
                table[vector].pending = state::unsigned_field<bool>(saved, "pending");
            });
        }
        std::lock_guard lock(mutex_);
        table_ = std::move(table);
        enabled_ = false;
        function_masked_ = false;
        if (capability_offset_ != 0) {
            const auto control = static_cast<std::uint16_t>(config.read(capability_offset_ / 4) >> 16);
            enabled_ = control & kControlEnable;
            function_masked_ = control & kControlFunctionMask;
        }
        // No entry has a route on this side yet: each live one gets its own.
        for (std::size_t vector = 0; vector < table_.size(); ++vector) {
            refresh(vector);
        }
    });
}

bool Msix::read(std::size_t bar, std::uint64_t offset, std::span<std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    if (capability_offset_ == 0) {
        return false;
    }
    const Reach table = reach(table_location_, table_size(), bar, offset, data.size());
    const Reach pba = reach(pba_location_, pba_size(), bar, offset, data.size());
    if (table == Reach::kValid) {
        store(data, read_table(offset - table_location_.offset, data.size()));
    } else if (pba == Reach::kValid) {
        store(data, read_pba(offset - pba_location_.offset, data.size()));
    } else if (table == Reach::kInvalid || pba == Reach::kInvalid) {
        std::ranges::fill(data, std::uint8_t{0xff});
    } else {
        return false;
    }
    return true;
}

bool Msix::write(std::size_t bar, std::uint64_t offset, std::span<const std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    if (capability_offset_ == 0) {
        return false;
    }
    const Reach table = reach(table_location_, table_size(), bar, offset, data.size());
    const Reach pba = reach(pba_location_, pba_size(), bar, offset, data.size());
    if (table == Reach::kValid) {
        write_table(offset - table_location_.offset, data.size(), load(data));
    }
    // The PBA is read-only; a write to it, or an invalid one, is dropped.
    return table != Reach::kOutside || pba != Reach::kOutside;
}

std::uint64_t Msix::read_table(std::uint64_t offset, std::size_t size) const {
    const Entry& entry = table_[offset / kTableEntrySize];
    const std::uint64_t data_and_control = entry.message.data | std::uint64_t{entry.control} << 32;
    switch (offset % kTableEntrySize) {
    case 0:
        return size == 8 ? entry.message.address : entry.message.address & 0xffffffff;
    case 4:
        return entry.message.address >> 32;
    case 8:
        return size == 8 ? data_and_control : entry.message.data;
    default:
        return entry.control;
    }
}

void Msix::write_table(std::uint64_t offset, std::size_t size, std::uint64_t value) {
    const std::size_t vector = offset / kTableEntrySize;
    Entry& entry = table_[vector];
    const auto low = static_cast<std::uint32_t>(value);
    const auto high = static_cast<std::uint32_t>(value >> 32);
    // Only the mask bit of vector control is writable; the rest is reserved.
    switch (offset % kTableEntrySize) {
    case 0:
        entry.message.address = size == 8 ? value : (entry.message.address & ~0xffffffffull) | low;
        break;
    case 4:
        entry.message.address = (entry.message.address & 0xffffffff) | std::uint64_t{low} << 32;
        break;
    case 8:
        entry.message.data = low;
        if (size == 8) {
            entry.control = high & kEntryMasked;
        }
        break;
    default:
        entry.control = low & kEntryMasked;
        break;
    }
    refresh(vector);
}

std::uint64_t Msix::read_pba(std::uint64_t offset, std::size_t size) const {
    std::uint64_t bits = 0;
    const std::size_t first = offset * 8;
    for (std::size_t i = 0; i < size * 8 && first + i < table_.size(); ++i) {
        bits |= std::uint64_t{table_[first + i].pending} << i;
    }
    return bits;
}

}  // namespace vim::vmm::pci
