#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "vmm/state/state.h"

namespace vim::vmm::pci {

// Conventional PCI's 256 bytes. Linux reaches a function through
// configuration mechanism #1 and looks no further unless it finds a PCI
// Express capability and ECAM, neither of which this bus offers.
inline constexpr std::size_t kConfigSpaceSize = 256;
inline constexpr std::size_t kConfigRegisterCount = kConfigSpaceSize / 4;

// Dword indices of the type-0 header registers the bus and devices share.
inline constexpr std::size_t kIdRegister = 0;             // vendor ID, device ID
inline constexpr std::size_t kCommandStatusRegister = 1;  // command (low half), status (high half)
inline constexpr std::size_t kHeaderTypeRegister = 3;     // cache line, latency, header type, BIST
inline constexpr std::size_t kFirstBarRegister = 4;
inline constexpr std::size_t kBarCount = 6;
inline constexpr std::size_t kCapabilityPointerRegister = 13;
inline constexpr std::size_t kInterruptRegister = 15;  // line, pin, min_gnt, max_lat

inline constexpr std::uint16_t kCommandMemorySpace = 1u << 1;
inline constexpr std::uint16_t kCommandBusMaster = 1u << 2;
inline constexpr std::uint16_t kCommandIntxDisable = 1u << 10;

inline constexpr std::uint16_t kStatusInterrupt = 1u << 3;
inline constexpr std::uint16_t kStatusCapabilityList = 1u << 4;
// The error bits: a device sets them, the guest clears them by writing 1s.
inline constexpr std::uint16_t kStatusErrors = 0xf900;

// The low bits of a memory BAR, which say what it is rather than where.
inline constexpr std::uint32_t kBarIoSpace = 1u << 0;
inline constexpr std::uint32_t kBarTypeMask = 3u << 1;
inline constexpr std::uint32_t kBarMemory64 = 2u << 1;
inline constexpr std::uint32_t kBarPrefetchable = 1u << 3;
inline constexpr std::uint32_t kBarFlagsMask = 0xf;

inline constexpr std::uint8_t kInterruptPinA = 1;

// Capability IDs this code builds.
inline constexpr std::uint8_t kCapabilityVendorSpecific = 0x09;
inline constexpr std::uint8_t kCapabilityMsix = 0x11;

// What identifies a function to the guest's drivers; all read-only.
struct DeviceIdentity {
    std::uint16_t vendor_id = 0;
    std::uint16_t device_id = 0;
    std::uint8_t revision = 0;
    std::uint8_t class_code = 0;
    std::uint8_t subclass = 0;
    std::uint8_t programming_interface = 0;
    std::uint16_t subsystem_vendor_id = 0;
    std::uint16_t subsystem_id = 0;
};

// A memory BAR as the device declares it. The guest (or the bus, playing
// firmware) chooses the address; the size is what the register's writable
// bits reveal when the guest writes all ones.
struct MemoryBar {
    std::uint64_t size = 0;  // a power of two, 16 bytes or more; up to 2 GiB for a 32-bit BAR
    bool is_64bit = false;   // takes this register and the next
    bool prefetchable = false;
};

// The configuration space of one type-0 (endpoint) function: its registers,
// which bits of them the guest may write, and the capability list. A plain
// value with no lock: the device that owns it serialises access, and saving
// it is a copy. I/O BARs and the expansion ROM are not offered (both read as
// zero: absent); virtio and the bus need neither.
class ConfigSpace {
public:
    explicit ConfigSpace(const DeviceIdentity& identity);

    // Register `index` as the guest reads it; all ones past the end.
    std::uint32_t read(std::size_t index) const;
    // A guest write of data.size() bytes at byte `offset` of register
    // `index`: each byte is a byte enable, bytes past the register are
    // dropped. Read-only bits keep their value; write-one-to-clear bits
    // clear where a 1 is written and ignore 0s.
    void write(std::size_t index, std::size_t offset, std::span<const std::uint8_t> data);

    // Declares BAR `index` (0-5; a 64-bit BAR also takes index + 1) at
    // address 0. Throws std::invalid_argument for a bad index or size, or a
    // register already taken.
    void add_bar(std::size_t index, const MemoryBar& bar);
    // The size of BAR `index`; 0 when there is none (or it is the upper half
    // of a 64-bit BAR).
    std::uint64_t bar_size(std::size_t index) const;

    // Appends a capability: `id`, the link to the next one (filled in
    // here), then `body`. `writable` is empty (all read-only) or as long as
    // `body`, with the bits the guest may write. Returns the capability's
    // offset, dword-aligned from 0x40. Throws std::invalid_argument when it
    // does not fit in the 256 bytes or `writable` has the wrong length.
    std::size_t add_capability(std::uint8_t id, std::span<const std::uint8_t> body,
                               std::span<const std::uint8_t> writable = {});

    // Declares which interrupt pin the function uses (kInterruptPinA), for
    // INTx; 0 (the default) means none.
    void set_interrupt_pin(std::uint8_t pin);
    // The interrupt-line register, which the firmware (here, the bus) fills
    // with the input the pin is wired to; the guest may rewrite it.
    void set_interrupt_line(std::uint8_t line);
    // The status register's interrupt bit: the device's INTx condition.
    void set_interrupt_status(bool pending);
    // A device records errors it signalled (kStatusErrors bits) for the
    // guest to read and clear; other bits are ignored.
    void report_status_errors(std::uint16_t bits);

    std::uint16_t command() const { return static_cast<std::uint16_t>(registers_[kCommandStatusRegister]); }
    std::uint16_t status() const {
        return static_cast<std::uint16_t>(registers_[kCommandStatusRegister] >> 16);
    }

    // "pci device 1af4:1042", for error messages.
    std::string describe() const;

    // The 64 registers. restore() takes them only where they differ from
    // this function's in bits the guest could write (or the device sets and
    // the guest clears): a state of another kind of device, or with a
    // read-only bit changed, is a StateError naming the register.
    state::State save() const;
    void restore(const state::State& state);

private:
    std::array<std::uint32_t, kConfigRegisterCount> registers_{};
    std::array<std::uint32_t, kConfigRegisterCount> writable_{};
    std::array<std::uint32_t, kConfigRegisterCount> write_one_to_clear_{};
    std::array<std::uint64_t, kBarCount> bar_sizes_{};
    std::array<bool, kBarCount> bar_taken_{};
    std::size_t capabilities_end_ = 0;  // the first free byte after the last capability; 0: none yet
    std::size_t last_capability_ = 0;
};

}  // namespace vim::vmm::pci
