#pragma once

#include <cstdint>

#include "vmm/memory/guest_memory.h"

namespace vim::vmm::acpi {

// The MADT gives every vCPU an 8-bit xAPIC ID 0..n-1 and the I/O APIC ID n;
// 255 is the broadcast ID.
inline constexpr std::uint32_t kMaxVcpus = 254;

// Writes the ACPI tables a PC-style Linux guest needs to bring up its CPUs,
// find its PCI devices and power off: the RSDP at layout::kAcpiRsdpAddress,
// then XSDT, FADT, FACS, DSDT (\_S5, and the PCI host bridge \_SB.PCI0 with
// its windows and _PRT) and MADT from layout::kAcpiTablesAddress on, all
// below the MP table's place (layout::kMpConfigTableAddress). Throws
// std::invalid_argument for a vCPU count of 0 or above kMaxVcpus,
// std::length_error if the tables would not fit, and
// memory::GuestMemoryError if that area is not guest RAM.
void write_acpi_tables(memory::GuestMemory& memory, std::uint32_t vcpu_count);

}  // namespace vim::vmm::acpi
