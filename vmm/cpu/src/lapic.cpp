#include "vmm/cpu/lapic.h"

#include <cstring>

namespace vim::vmm::cpu {
namespace {

constexpr std::uint32_t kDeliveryModeShift = 8;
constexpr std::uint32_t kDeliveryModeMask = 0b111u << kDeliveryModeShift;

std::uint32_t read_register(const kvm::LapicState& lapic, std::uint32_t offset) {
    std::uint32_t value;
    std::memcpy(&value, lapic.registers.data() + offset, sizeof value);
    return value;
}

void write_register(kvm::LapicState& lapic, std::uint32_t offset, std::uint32_t value) {
    std::memcpy(lapic.registers.data() + offset, &value, sizeof value);
}

// Only the delivery mode changes: the mask bit and the rest stay as KVM left
// them, and the guest kernel unmasks the lines itself when it sets up its LAPIC.
void set_delivery_mode(kvm::LapicState& lapic, std::uint32_t offset, std::uint32_t mode) {
    const std::uint32_t value = read_register(lapic, offset);
    write_register(lapic, offset, (value & ~kDeliveryModeMask) | (mode << kDeliveryModeShift));
}

}  // namespace

void configure_lint(kvm::LapicState& lapic) {
    // LINT0 takes the 8259's interrupts (virtual-wire mode until the guest
    // switches to the I/O APIC); LINT1 carries NMIs, as the MADT's Local APIC
    // NMI entry says.
    set_delivery_mode(lapic, kLapicLvtLint0, kLapicDeliveryModeExtInt);
    set_delivery_mode(lapic, kLapicLvtLint1, kLapicDeliveryModeNmi);
}

}  // namespace vim::vmm::cpu
