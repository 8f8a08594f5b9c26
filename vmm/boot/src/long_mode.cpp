#include "vmm/boot/long_mode.h"

#include <array>

#include "vmm/boot/layout.h"

namespace vim::vmm::boot {
namespace {

constexpr std::uint64_t kPagePresent = 1ull << 0;
constexpr std::uint64_t kPageWritable = 1ull << 1;
constexpr std::uint64_t kPageHuge = 1ull << 7;
constexpr std::uint64_t kHugePageSize = 2ull << 20;
constexpr std::size_t kEntriesPerTable = 512;
constexpr std::size_t kPageDirectories = 4;  // one per GiB of the identity map

// GDT descriptors: flat 4 GiB, base 0. Code is 64-bit (L) execute/read,
// data read/write; both already "accessed" so the CPU never writes the GDT.
constexpr std::uint64_t kCodeDescriptor = 0x00af9b000000ffff;
constexpr std::uint64_t kDataDescriptor = 0x00cf93000000ffff;
// Index = selector / 8; entry 1 stays null because the boot protocol fixes
// the code and data selectors at 0x10 and 0x18.
constexpr std::array<std::uint64_t, 4> kGdt = {0, 0, kCodeDescriptor, kDataDescriptor};
static_assert(layout::kGdtAddress + sizeof(kGdt) <= layout::kIdtAddress, "GDT runs into the IDT");
static_assert(kBootCodeSelector / 8 == 2 && kBootDataSelector / 8 == 3);
// One not-present 16-byte gate: any interrupt or exception before Linux loads
// its own IDT ends in a triple fault, which the VMM sees, instead of a jump
// into whatever lies in low memory.
constexpr std::uint64_t kIdtSize = 16;

constexpr std::uint64_t kCr0ProtectionEnable = 1ull << 0;
constexpr std::uint64_t kCr0ExtensionType = 1ull << 4;
constexpr std::uint64_t kCr0NumericError = 1ull << 5;
constexpr std::uint64_t kCr0NotWriteThrough = 1ull << 29;
constexpr std::uint64_t kCr0CacheDisable = 1ull << 30;
constexpr std::uint64_t kCr0Paging = 1ull << 31;
constexpr std::uint64_t kCr4PhysicalAddressExtension = 1ull << 5;
constexpr std::uint64_t kEferLongModeEnable = 1ull << 8;
constexpr std::uint64_t kEferLongModeActive = 1ull << 10;

constexpr std::uint8_t kBusyTssType = 0xb;
constexpr std::uint32_t kTssLimit = 0x67;  // the smallest 64-bit TSS

// The segment register cache KVM wants, decoded from the same descriptor the
// GDT holds, so the two can never disagree.
kvm::Segment segment_from_descriptor(std::uint64_t descriptor, std::uint16_t selector) {
    const std::uint8_t access = static_cast<std::uint8_t>(descriptor >> 40);
    const std::uint8_t flags = static_cast<std::uint8_t>((descriptor >> 52) & 0xf);
    const std::uint32_t raw_limit =
        static_cast<std::uint32_t>((descriptor & 0xffff) | (((descriptor >> 48) & 0xf) << 16));
    kvm::Segment segment{};
    segment.base = ((descriptor >> 16) & 0xffffff) | (((descriptor >> 56) & 0xff) << 24);
    segment.selector = selector;
    segment.type = access & 0xf;
    segment.s = (access >> 4) & 1;
    segment.dpl = (access >> 5) & 3;
    segment.present = (access >> 7) & 1;
    segment.avl = flags & 1;
    segment.l = (flags >> 1) & 1;
    segment.db = (flags >> 2) & 1;
    segment.g = (flags >> 3) & 1;
    segment.limit = segment.g ? (raw_limit << 12) | 0xfff : raw_limit;
    return segment;
}

}  // namespace

void write_long_mode_tables(memory::GuestMemory& memory) {
    // Whole pages are written so that nothing left from an earlier boot of
    // this memory survives in the unused entries.
    std::array<std::uint64_t, kEntriesPerTable> pml4{};
    pml4[0] = layout::kPdptAddress | kPagePresent | kPageWritable;
    memory.write_object(layout::kPml4Address, pml4);

    std::array<std::uint64_t, kEntriesPerTable> pdpt{};
    for (std::size_t i = 0; i < kPageDirectories; ++i) {
        pdpt[i] = (layout::kPdAddress + i * memory::kPageSize) | kPagePresent | kPageWritable;
    }
    memory.write_object(layout::kPdptAddress, pdpt);

    std::array<std::uint64_t, kEntriesPerTable * kPageDirectories> directories{};
    for (std::size_t i = 0; i < directories.size(); ++i) {
        directories[i] = (i * kHugePageSize) | kPagePresent | kPageWritable | kPageHuge;
    }
    memory.write_object(layout::kPdAddress, directories);

    memory.write_object(layout::kGdtAddress, kGdt);
    memory.write_object(layout::kIdtAddress, std::array<std::uint8_t, kIdtSize>{});
}

kvm::SpecialRegisters boot_special_registers(const kvm::SpecialRegisters& current) {
    kvm::SpecialRegisters registers = current;
    const kvm::Segment data = segment_from_descriptor(kDataDescriptor, kBootDataSelector);
    registers.cs = segment_from_descriptor(kCodeDescriptor, kBootCodeSelector);
    registers.ds = data;
    registers.es = data;
    registers.fs = data;
    registers.gs = data;
    registers.ss = data;
    // VM entry in long mode wants a busy TSS in TR; Linux loads its own TSS
    // before anything could use this one, so it needs no GDT entry.
    registers.tr = kvm::Segment{};
    registers.tr.limit = kTssLimit;
    registers.tr.type = kBusyTssType;
    registers.tr.present = 1;

    registers.gdt = {};
    registers.gdt.base = layout::kGdtAddress;
    registers.gdt.limit = sizeof(kGdt) - 1;
    registers.idt = {};
    registers.idt.base = layout::kIdtAddress;
    registers.idt.limit = kIdtSize - 1;

    // CD and NW are set at reset; clearing them lets the guest run with caches on.
    registers.cr0 = (current.cr0 & ~(kCr0CacheDisable | kCr0NotWriteThrough)) | kCr0ProtectionEnable |
                    kCr0ExtensionType | kCr0NumericError | kCr0Paging;
    registers.cr3 = layout::kPml4Address;
    registers.cr4 = current.cr4 | kCr4PhysicalAddressExtension;
    registers.efer = current.efer | kEferLongModeEnable | kEferLongModeActive;
    return registers;
}

kvm::Registers boot_registers(std::uint64_t entry_point, std::uint64_t boot_params_address) {
    kvm::Registers registers{};
    registers.rip = entry_point;
    registers.rsi = boot_params_address;
    registers.rflags = 0x2;  // bit 1 is reserved and always set; IF clear
    registers.rsp = layout::kBootStackTop;
    registers.rbp = layout::kBootStackTop;
    return registers;
}

kvm::FpuState boot_fpu_state() {
    kvm::FpuState fpu{};
    fpu.fcw = 0x37f;
    fpu.mxcsr = 0x1f80;
    return fpu;
}

}  // namespace vim::vmm::boot
