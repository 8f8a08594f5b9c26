#pragma once

#include <cstdint>

#include "vmm/memory/guest_memory.h"

namespace vim::vmm::acpi {

// Writes an Intel MultiProcessor Specification 1.4 table describing the same
// machine as the ACPI tables: vCPUs with APIC IDs 0..n-1 (vCPU 0 boots), the
// I/O APIC with ID n, ISA IRQs 0-15 on its pins 0-15, and PCI bus 0 with the
// INTx# routing of the DSDT's _PRT. Linux scans for it on every boot, before
// it reads ACPI; found at once, the scan is cheap, and a guest booted with
// acpi=off still brings up all its CPUs and routes its PCI interrupts.
//
// The floating pointer goes to layout::kMpFloatingPointerAddress, the
// configuration table to layout::kMpConfigTableAddress. Throws
// std::invalid_argument for a vCPU count of 0 or above kMaxVcpus (tables.h),
// and memory::GuestMemoryError if those addresses are not guest RAM.
void write_mp_table(memory::GuestMemory& memory, std::uint32_t vcpu_count);

}  // namespace vim::vmm::acpi
