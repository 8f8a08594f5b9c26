#pragma once

// What the ACPI tables and the MP table share: both are little-endian byte
// layouts that end up summing to zero, and both describe interrupts the MPS
// way (ACPI took over its flags).

#include <cstdint>
#include <numeric>
#include <span>
#include <string_view>
#include <vector>

#include "vmm/boot/layout.h"

namespace vim::vmm::acpi::detail {

// Interrupt flags: polarity in bits 1:0, trigger mode in bits 3:2.
inline constexpr std::uint16_t kIntiConforming = 0;  // to the bus: edge, active-high on ISA
inline constexpr std::uint16_t kIntiActiveHighLevel = 0b01 | (0b11 << 2);
inline constexpr std::uint16_t kIntiActiveLowLevel = 0b11 | (0b11 << 2);  // PCI's INTx# lines
inline constexpr std::uint8_t kAllLocalApics = 0xff;
inline constexpr std::uint8_t kLint0 = 0;
inline constexpr std::uint8_t kLint1 = 1;

// PCI interrupt routing, which the DSDT's _PRT and the MP table both state
// for every slot and pin, present device or not: the tables are written once
// at boot. Slot 0 is the host bridge, which raises none.
inline constexpr std::uint32_t kPciFirstDeviceSlot = 1;
inline constexpr std::uint32_t kPciIntxPins = 4;  // INTA# to INTD#, numbered 0-3
static_assert(boot::layout::kPciIntxFirstGsi + boot::layout::kPciIntxGsiCount <= boot::layout::kIoapicPins);

// The I/O APIC pin (the GSI) that `pin` of the device in `slot` drives: INTA#
// as layout.h wires it, each further pin one line on (the swizzle a PCI-PCI
// bridge applies), so a multi-function device's pins land on different lines.
constexpr std::uint32_t pci_intx_gsi(std::uint32_t slot, std::uint32_t pin) {
    return boot::layout::kPciIntxFirstGsi + (slot + pin) % boot::layout::kPciIntxGsiCount;
}

// Little-endian byte appender.
class Bytes {
public:
    void u8(std::uint8_t value) { data_.push_back(value); }
    void u16(std::uint16_t value) { put(value, 2); }
    void u32(std::uint32_t value) { put(value, 4); }
    void u64(std::uint64_t value) { put(value, 8); }
    void text(std::string_view text) {
        // Byte by byte: a range insert here trips GCC 12's false
        // -Wstringop-overflow at -O3.
        for (char c : text) {
            u8(static_cast<std::uint8_t>(c));
        }
    }
    void zeros(std::size_t count) { data_.insert(data_.end(), count, 0); }
    void append(std::span<const std::uint8_t> bytes) {
        data_.insert(data_.end(), bytes.begin(), bytes.end());
    }

    void set_u16(std::size_t offset, std::uint16_t value) { set(offset, value, 2); }
    void set_u32(std::size_t offset, std::uint32_t value) { set(offset, value, 4); }
    std::vector<std::uint8_t>& data() { return data_; }

private:
    void put(std::uint64_t value, std::size_t size) {
        for (std::size_t i = 0; i < size; ++i) {
            data_.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
        }
    }
    void set(std::size_t offset, std::uint64_t value, std::size_t size) {
        for (std::size_t i = 0; i < size; ++i) {
            data_.at(offset + i) = static_cast<std::uint8_t>(value >> (8 * i));
        }
    }

    std::vector<std::uint8_t> data_;
};

// The byte that makes all of `bytes` sum to zero (mod 256) when it replaces
// a zero byte among them.
inline std::uint8_t checksum(std::span<const std::uint8_t> bytes) {
    const unsigned sum = std::accumulate(bytes.begin(), bytes.end(), 0u);
    return static_cast<std::uint8_t>(0x100 - (sum & 0xff));
}

}  // namespace vim::vmm::acpi::detail
