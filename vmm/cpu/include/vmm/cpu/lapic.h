#pragma once

#include <cstdint>

#include "vmm/kvm/x86_state.h"

namespace vim::vmm::cpu {

// Offsets of the local vector table's LINT entries in the LAPIC register page.
inline constexpr std::uint32_t kLapicLvtLint0 = 0x350;
inline constexpr std::uint32_t kLapicLvtLint1 = 0x360;

// LVT delivery modes (bits 10:8 of an LVT entry).
inline constexpr std::uint32_t kLapicDeliveryModeNmi = 0b100;
inline constexpr std::uint32_t kLapicDeliveryModeExtInt = 0b111;

// Wires LINT0 to the 8259 (ExtINT) and LINT1 to NMI, as on a PC: the state
// KVM_GET_LAPIC returned, to be written back with KVM_SET_LAPIC.
void configure_lint(kvm::LapicState& lapic);

}  // namespace vim::vmm::cpu
