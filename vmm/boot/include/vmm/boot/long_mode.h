#pragma once

// The state the boot vCPU starts the kernel's 64-bit entry in: long mode with
// the first 4 GiB identity-mapped, flat segments, interrupts off. Application
// processors are not set up here: they start through the in-kernel LAPIC's
// INIT/SIPI sequence.

#include <cstdint>

#include "vmm/kvm/x86_state.h"
#include "vmm/memory/guest_memory.h"

namespace vim::vmm::boot {

// The selectors the 64-bit boot protocol requires (__BOOT_CS and __BOOT_DS).
inline constexpr std::uint16_t kBootCodeSelector = 0x10;
inline constexpr std::uint16_t kBootDataSelector = 0x18;

// Writes the identity-mapping page tables (layout::kPml4Address, kPdptAddress,
// kPdAddress: 2 MiB pages over the first 4 GiB), the GDT at layout::kGdtAddress
// and an empty IDT at layout::kIdtAddress.
void write_long_mode_tables(memory::GuestMemory& memory);

// `current` with the segments, descriptor tables, control registers and EFER
// of long mode; the fields boot does not care about (APIC base, pending
// interrupts, LDT) keep their values.
kvm::SpecialRegisters boot_special_registers(const kvm::SpecialRegisters& current);

// rip at the kernel's entry, rsi at boot_params, the boot stack, interrupts off.
kvm::Registers boot_registers(std::uint64_t entry_point, std::uint64_t boot_params_address);

// The x87 and SSE control words as after FNINIT and a reset of MXCSR.
kvm::FpuState boot_fpu_state();

}  // namespace vim::vmm::boot
