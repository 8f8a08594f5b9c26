#include "vmm/boot/long_mode.h"

#include <gtest/gtest.h>

#include <vector>

#include "vmm/boot/layout.h"

namespace vim::vmm::boot {
namespace {

// Guest RAM [0, 1 MiB) over a plain buffer: all the tables live there.
class LongModeTables : public ::testing::Test {
protected:
    LongModeTables()
        : buffer_(1 << 20, 0xcc), memory_(memory::GuestMemory::over({{0, buffer_.size(), buffer_.data()}})) {}

    std::uint64_t entry(std::uint64_t table, std::size_t index) {
        return memory_.read_object<std::uint64_t>(table + index * 8);
    }

    std::vector<std::uint8_t> buffer_;
    memory::GuestMemory memory_;
};

TEST_F(LongModeTables, IdentityMapTheFirst4GiBWith2MiBPages) {
    write_long_mode_tables(memory_);
    EXPECT_EQ(entry(layout::kPml4Address, 0), layout::kPdptAddress | 0x3);
    // Stale bytes of the rest of each table page are cleared.
    EXPECT_EQ(entry(layout::kPml4Address, 1), 0u);
    EXPECT_EQ(entry(layout::kPml4Address, 511), 0u);
    for (std::size_t i = 0; i < 4; ++i) {
        EXPECT_EQ(entry(layout::kPdptAddress, i), (layout::kPdAddress + i * 0x1000) | 0x3);
    }
    EXPECT_EQ(entry(layout::kPdptAddress, 4), 0u);
    EXPECT_EQ(entry(layout::kPdAddress, 0), 0x83u);
    EXPECT_EQ(entry(layout::kPdAddress, 1), 0x200083u);
    EXPECT_EQ(entry(layout::kPdAddress, 512), 0x40000083u);  // first entry of the second directory
    EXPECT_EQ(entry(layout::kPdAddress, 2047), 0xffe00083u);
}

TEST_F(LongModeTables, GdtHasTheBootProtocolSelectorsAndIdtIsEmpty) {
    write_long_mode_tables(memory_);
    EXPECT_EQ(entry(layout::kGdtAddress, 0), 0u);
    EXPECT_EQ(entry(layout::kGdtAddress, 1), 0u);
    EXPECT_EQ(entry(layout::kGdtAddress + kBootCodeSelector, 0), 0x00af9b000000ffffu);
    EXPECT_EQ(entry(layout::kGdtAddress + kBootDataSelector, 0), 0x00cf93000000ffffu);
    EXPECT_EQ(entry(layout::kIdtAddress, 0), 0u);
    EXPECT_EQ(entry(layout::kIdtAddress, 1), 0u);
}

kvm::SpecialRegisters reset_state() {
    kvm::SpecialRegisters registers{};
    registers.cr0 = 0x60000010;  // CD | NW | ET, as after reset
    registers.apic_base = 0xfee00900;
    registers.ldt.type = 2;
    registers.ldt.present = 1;
    return registers;
}

TEST(BootSpecialRegisters, EnterLongModeWithFlatBootSegments) {
    const kvm::SpecialRegisters registers = boot_special_registers(reset_state());

    EXPECT_EQ(registers.cs.selector, kBootCodeSelector);
    EXPECT_EQ(registers.cs.base, 0u);
    EXPECT_EQ(registers.cs.limit, 0xffffffffu);
    EXPECT_EQ(registers.cs.type, 0xb);
    EXPECT_EQ(registers.cs.present, 1);
    EXPECT_EQ(registers.cs.s, 1);
    EXPECT_EQ(registers.cs.l, 1);
    EXPECT_EQ(registers.cs.db, 0);
    EXPECT_EQ(registers.cs.g, 1);
    EXPECT_EQ(registers.cs.dpl, 0);
    for (const kvm::Segment* segment :
         {&registers.ds, &registers.es, &registers.fs, &registers.gs, &registers.ss}) {
        EXPECT_EQ(segment->selector, kBootDataSelector);
        EXPECT_EQ(segment->base, 0u);
        EXPECT_EQ(segment->limit, 0xffffffffu);
        EXPECT_EQ(segment->type, 0x3);
        EXPECT_EQ(segment->present, 1);
        EXPECT_EQ(segment->s, 1);
        EXPECT_EQ(segment->l, 0);
        EXPECT_EQ(segment->db, 1);
        EXPECT_EQ(segment->g, 1);
    }
    EXPECT_EQ(registers.tr.type, 0xb);
    EXPECT_EQ(registers.tr.present, 1);
    EXPECT_EQ(registers.tr.s, 0);

    EXPECT_EQ(registers.gdt.base, layout::kGdtAddress);
    EXPECT_EQ(registers.gdt.limit, 31);
    EXPECT_EQ(registers.idt.base, layout::kIdtAddress);
    EXPECT_EQ(registers.idt.limit, 15);

    EXPECT_EQ(registers.cr0, 0x80000031u);  // PG | NE | ET | PE; CD and NW cleared
    EXPECT_EQ(registers.cr3, layout::kPml4Address);
    EXPECT_EQ(registers.cr4, 0x20u);
    EXPECT_EQ(registers.efer, 0x500u);
}

TEST(BootSpecialRegisters, KeepWhatBootDoesNotOwn) {
    const kvm::SpecialRegisters registers = boot_special_registers(reset_state());
    EXPECT_EQ(registers.apic_base, 0xfee00900u);
    EXPECT_EQ(registers.ldt.type, 2);
    EXPECT_EQ(registers.ldt.present, 1);
}

TEST(BootRegisters, StartAtTheEntryWithBootParamsInRsi) {
    const kvm::Registers registers = boot_registers(0x100200, layout::kBootParamsAddress);
    EXPECT_EQ(registers.rip, 0x100200u);
    EXPECT_EQ(registers.rsi, layout::kBootParamsAddress);
    EXPECT_EQ(registers.rflags, 0x2u);
    EXPECT_EQ(registers.rsp, layout::kBootStackTop);
    EXPECT_EQ(registers.rbp, layout::kBootStackTop);
    EXPECT_EQ(registers.rax, 0u);
    EXPECT_EQ(registers.rbx, 0u);
    EXPECT_EQ(registers.rdi, 0u);
}

TEST(BootFpuState, HasTheResetControlWords) {
    const kvm::FpuState fpu = boot_fpu_state();
    EXPECT_EQ(fpu.fcw, 0x37f);
    EXPECT_EQ(fpu.mxcsr, 0x1f80u);
    EXPECT_EQ(fpu.fsw, 0);
}

}  // namespace
}  // namespace vim::vmm::boot
