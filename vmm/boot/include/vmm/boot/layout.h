#pragma once

// The x86 guest-physical address map every part of the VMM agrees on.

#include <cstdint>

namespace vim::vmm::boot::layout {

// Low memory, all below 1 MiB.
inline constexpr std::uint64_t kGdtAddress = 0x500;
inline constexpr std::uint64_t kIdtAddress = 0x520;
inline constexpr std::uint64_t kBootParamsAddress = 0x7000;  // the "zero page"
inline constexpr std::uint64_t kPml4Address = 0x9000;        // identity-mapping page tables
inline constexpr std::uint64_t kPdptAddress = 0xa000;
inline constexpr std::uint64_t kPdAddress = 0xb000;  // 4 pages: 4 GiB of 2 MiB pages
inline constexpr std::uint64_t kBootStackTop = 0x8ff0;
inline constexpr std::uint64_t kCmdlineAddress = 0x20000;
inline constexpr std::uint64_t kCmdlineMaxSize = 0x10000;
inline constexpr std::uint64_t kEbdaStart = 0x9fc00;  // RAM ends here below 640 KiB
// The MP floating pointer sits where Linux looks second (the last KiB below
// 640 KiB, after the first KiB), so its scan ends at once. Linux scans on
// every boot, ACPI or not, and remaps the rest of the region at each 16-byte
// step: over the whole F segment, tens of thousands of TLB flushes, each a VM
// exit under shadow paging (about 3 s of a 9 s boot in the nested sandbox).
inline constexpr std::uint64_t kMpFloatingPointerAddress = kEbdaStart;
// ACPI tables and the MP configuration table live in the BIOS area, which
// e820 reports reserved.
inline constexpr std::uint64_t kBiosAreaStart = 0xe0000;
inline constexpr std::uint64_t kBiosAreaEnd = 0x100000;
inline constexpr std::uint64_t kAcpiRsdpAddress = 0xe0000;
inline constexpr std::uint64_t kAcpiTablesAddress = 0xe0100;
inline constexpr std::uint64_t kMpConfigTableAddress = 0xf0000;  // up to kBiosAreaEnd

// The protected-mode kernel is loaded at 1 MiB (bzImage "code32_start").
inline constexpr std::uint64_t kKernelLoadAddress = 0x100000;

// RAM is split around a 1 GiB hole below 4 GiB for MMIO: PCI, IOAPIC, LAPIC.
inline constexpr std::uint64_t kMmioHoleStart = 3ull << 30;
inline constexpr std::uint64_t kMmioHoleEnd = 4ull << 30;
inline constexpr std::uint64_t kIoapicAddress = 0xfec00000;
inline constexpr std::uint64_t kLapicAddress = 0xfee00000;
// Pages KVM needs for itself on Intel (TSS, identity map), inside the hole.
inline constexpr std::uint64_t kKvmTssAddress = 0xfeffd000;
inline constexpr std::uint64_t kKvmIdentityMapAddress = 0xfeffc000;

// PCI: one bus (0) behind a host bridge, reached through configuration
// mechanism #1. Device BARs are placed in a 32-bit window at the bottom of the
// MMIO hole (e820 has no RAM there), clear of the APICs and KVM's pages.
inline constexpr std::uint16_t kPciConfigAddressPort = 0xcf8;
inline constexpr std::uint16_t kPciConfigDataPort = 0xcfc;
inline constexpr std::uint64_t kPciMmioStart = kMmioHoleStart;
inline constexpr std::uint64_t kPciMmioSize = 512ull << 20;  // up to 0xe0000000
// The port-I/O window the host bridge forwards (for I/O BARs; virtio uses memory BARs).
inline constexpr std::uint16_t kPciIoStart = 0xc000;
inline constexpr std::uint32_t kPciIoSize = 0x4000;  // up to 0xffff
// INTx: slot S's INTA# is wired to IOAPIC pin kPciIntxFirstGsi + S % kPciIntxGsiCount,
// level-triggered and active-low as PCI interrupts are; the ISA IRQs (0-15) stay apart.
inline constexpr std::uint32_t kPciIntxFirstGsi = 16;
inline constexpr std::uint32_t kPciIntxGsiCount = 8;
inline constexpr std::uint32_t kPciMaxSlots = 32;

// Ports of the ACPI fixed hardware the VMM emulates (FADT points at them).
inline constexpr std::uint16_t kAcpiPm1EventPort = 0x600;    // 4 bytes: status, enable
inline constexpr std::uint16_t kAcpiPm1ControlPort = 0x604;  // 2 bytes
inline constexpr std::uint8_t kAcpiSciIrq = 9;
// SLP_TYP value that DSDT's \_S5 advertises and the PM1 control block treats as "off".
inline constexpr std::uint8_t kAcpiS5SleepType = 5;

// Legacy devices.
inline constexpr std::uint16_t kSerialPort = 0x3f8;
inline constexpr std::uint8_t kSerialIrq = 4;
inline constexpr std::uint16_t kI8042DataPort = 0x60;
inline constexpr std::uint16_t kI8042CommandPort = 0x64;
inline constexpr std::uint8_t kI8042KeyboardIrq = 1;
inline constexpr std::uint8_t kI8042AuxIrq = 12;  // the PS/2 mouse port
inline constexpr std::uint16_t kCmosPort = 0x70;
inline constexpr std::uint8_t kIoapicPins = 24;

}  // namespace vim::vmm::boot::layout
