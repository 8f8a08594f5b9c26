#include "vmm/pci/config_space.h"

#include <bit>
#include <cstdio>
#include <stdexcept>

#include "vmm/sys/hex.h"

namespace vim::vmm::pci {
namespace {

using sys::hex;

// Parity error response, SERR# enable and the bits the bus and drivers use.
// I/O space stays 0: there are no I/O BARs to decode.
constexpr std::uint32_t kWritableCommand =
    kCommandMemorySpace | kCommandBusMaster | (1u << 6) | (1u << 8) | kCommandIntxDisable;
constexpr std::uint32_t kWritableCacheLineSize = 0xff;
constexpr std::uint32_t kWritableInterruptLine = 0xff;
constexpr std::size_t kFirstCapabilityOffset = 0x40;
constexpr std::uint64_t kMinimumBarSize = 16;
constexpr std::uint64_t kMaximum32BitBarSize = 1ull << 31;

}  // namespace

ConfigSpace::ConfigSpace(const DeviceIdentity& identity) {
    registers_[kIdRegister] = identity.vendor_id | std::uint32_t{identity.device_id} << 16;
    registers_[2] = identity.revision | std::uint32_t{identity.programming_interface} << 8 |
                    std::uint32_t{identity.subclass} << 16 | std::uint32_t{identity.class_code} << 24;
    registers_[11] = identity.subsystem_vendor_id | std::uint32_t{identity.subsystem_id} << 16;
    writable_[kCommandStatusRegister] = kWritableCommand;
    write_one_to_clear_[kCommandStatusRegister] = std::uint32_t{kStatusErrors} << 16;
    writable_[kHeaderTypeRegister] = kWritableCacheLineSize;
    writable_[kInterruptRegister] = kWritableInterruptLine;
}

std::string ConfigSpace::describe() const {
    char text[32];
    std::snprintf(text, sizeof text, "pci device %04x:%04x", registers_[kIdRegister] & 0xffff,
                  registers_[kIdRegister] >> 16);
    return text;
}

state::State ConfigSpace::save() const { return {{"registers", state::binary(registers_)}}; }

void ConfigSpace::restore(const state::State& state) {
    const auto saved =
        state::struct_field<std::array<std::uint32_t, kConfigRegisterCount>>(state, "registers");
    const auto identity = [](std::uint32_t id) {
        char text[16];
        std::snprintf(text, sizeof text, "%04x:%04x", id & 0xffff, id >> 16);
        return std::string(text);
    };
    if (saved[kIdRegister] != registers_[kIdRegister]) {
        throw state::StateError("registers: the state is of pci device " + identity(saved[kIdRegister]) +
                                ", this is " + describe());
    }
    // The status register's interrupt and error bits are the device's to set.
    const std::uint32_t device_set = std::uint32_t{kStatusInterrupt | kStatusErrors} << 16;
    for (std::size_t index = 0; index < kConfigRegisterCount; ++index) {
        const std::uint32_t fixed = ~(writable_[index] | write_one_to_clear_[index] |
                                      (index == kCommandStatusRegister ? device_set : 0));
        if ((saved[index] & fixed) != (registers_[index] & fixed)) {
            throw state::StateError("registers: register " + std::to_string(index) + " is " +
                                    hex(saved[index]) + " where its read-only bits make " +
                                    hex(registers_[index] & fixed) + " (" + describe() + ")");
        }
    }
    registers_ = saved;
}

std::uint32_t ConfigSpace::read(std::size_t index) const {
    return index < kConfigRegisterCount ? registers_[index] : 0xffffffff;
}

void ConfigSpace::write(std::size_t index, std::size_t offset, std::span<const std::uint8_t> data) {
    if (index >= kConfigRegisterCount) {
        return;
    }
    std::uint32_t value = 0;
    std::uint32_t enabled = 0;
    for (std::size_t i = 0; i < data.size() && offset + i < 4; ++i) {
        value |= std::uint32_t{data[i]} << (8 * (offset + i));
        enabled |= 0xffu << (8 * (offset + i));
    }
    std::uint32_t& reg = registers_[index];
    const std::uint32_t writable = writable_[index] & enabled;
    reg = (reg & ~writable) | (value & writable);
    reg &= ~(value & write_one_to_clear_[index] & enabled);
}

void ConfigSpace::add_bar(std::size_t index, const MemoryBar& bar) {
    const std::string what = describe() + ": BAR " + std::to_string(index);
    const std::size_t registers = bar.is_64bit ? 2 : 1;
    if (index + registers > kBarCount) {
        throw std::invalid_argument(
            what + (bar.is_64bit ? " cannot be 64-bit: BAR 5 is the last" : " does not exist (BARs 0-5)"));
    }
    if (!std::has_single_bit(bar.size) || bar.size < kMinimumBarSize) {
        throw std::invalid_argument(what + ": size " + hex(bar.size) +
                                    " is not a power of two of 16 bytes or more");
    }
    if (!bar.is_64bit && bar.size > kMaximum32BitBarSize) {
        throw std::invalid_argument(what + ": size " + hex(bar.size) + " does not fit a 32-bit BAR");
    }
    for (std::size_t i = index; i < index + registers; ++i) {
        if (bar_taken_[i]) {
            throw std::invalid_argument(what + ": register of BAR " + std::to_string(i) +
                                        " is already taken");
        }
    }
    // The writable bits are exactly the address bits above the size: writing
    // all ones reads back the size mask, as the guest's sizing expects.
    const std::uint64_t address_mask = ~(bar.size - 1) & ~std::uint64_t{kBarFlagsMask};
    const std::size_t reg = kFirstBarRegister + index;
    registers_[reg] = (bar.is_64bit ? kBarMemory64 : 0) | (bar.prefetchable ? kBarPrefetchable : 0);
    writable_[reg] = static_cast<std::uint32_t>(address_mask);
    if (bar.is_64bit) {
        writable_[reg + 1] = static_cast<std::uint32_t>(address_mask >> 32);
        bar_taken_[index + 1] = true;
    }
    bar_taken_[index] = true;
    bar_sizes_[index] = bar.size;
}

std::uint64_t ConfigSpace::bar_size(std::size_t index) const {
    return index < kBarCount ? bar_sizes_[index] : 0;
}

std::size_t ConfigSpace::add_capability(std::uint8_t id, std::span<const std::uint8_t> body,
                                        std::span<const std::uint8_t> writable) {
    const std::size_t offset =
        capabilities_end_ == 0 ? kFirstCapabilityOffset : (capabilities_end_ + 3) & ~std::size_t{3};
    const std::size_t length = 2 + body.size();
    if (offset + length > kConfigSpaceSize) {
        throw std::invalid_argument(describe() + ": no room for capability " + hex(id) + " of " +
                                    std::to_string(length) + " bytes at " + hex(offset));
    }
    if (!writable.empty() && writable.size() != body.size()) {
        throw std::invalid_argument(describe() + ": capability " + hex(id) + " has " +
                                    std::to_string(body.size()) + " bytes but a write mask of " +
                                    std::to_string(writable.size()));
    }
    const auto set_byte = [this](std::size_t at, std::uint8_t value, std::uint8_t writable_bits) {
        const unsigned shift = 8 * (at % 4);
        registers_[at / 4] = (registers_[at / 4] & ~(0xffu << shift)) | std::uint32_t{value} << shift;
        writable_[at / 4] = (writable_[at / 4] & ~(0xffu << shift)) | std::uint32_t{writable_bits} << shift;
    };
    set_byte(offset, id, 0);
    set_byte(offset + 1, 0, 0);
    for (std::size_t i = 0; i < body.size(); ++i) {
        set_byte(offset + 2 + i, body[i], writable.empty() ? 0 : writable[i]);
    }
    // Link it in: from the header's pointer for the first, else from the
    // previous capability's next byte.
    const std::size_t link = last_capability_ == 0 ? kCapabilityPointerRegister * 4 : last_capability_ + 1;
    set_byte(link, static_cast<std::uint8_t>(offset), 0);
    registers_[kCommandStatusRegister] |= std::uint32_t{kStatusCapabilityList} << 16;
    last_capability_ = offset;
    capabilities_end_ = offset + length;
    return offset;
}

void ConfigSpace::set_interrupt_pin(std::uint8_t pin) {
    registers_[kInterruptRegister] = (registers_[kInterruptRegister] & ~0xff00u) | std::uint32_t{pin} << 8;
}

void ConfigSpace::set_interrupt_line(std::uint8_t line) {
    registers_[kInterruptRegister] = (registers_[kInterruptRegister] & ~0xffu) | line;
}

void ConfigSpace::set_interrupt_status(bool pending) {
    const std::uint32_t bit = std::uint32_t{kStatusInterrupt} << 16;
    registers_[kCommandStatusRegister] =
        pending ? registers_[kCommandStatusRegister] | bit : registers_[kCommandStatusRegister] & ~bit;
}

void ConfigSpace::report_status_errors(std::uint16_t bits) {
    registers_[kCommandStatusRegister] |= std::uint32_t{static_cast<std::uint16_t>(bits & kStatusErrors)}
                                          << 16;
}

}  // namespace vim::vmm::pci
