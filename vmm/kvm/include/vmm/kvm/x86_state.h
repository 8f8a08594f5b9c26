#pragma once

// x86 vCPU state as plain C++ types, so code outside the KVM layer never
// includes <linux/kvm.h>. Each struct has the layout of its KVM counterpart
// (checked with static_asserts in the KVM layer), so a get-modify-set round
// trip loses nothing.

#include <array>
#include <cstdint>
#include <vector>

namespace vim::vmm::kvm {

struct Registers {
    std::uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
    std::uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    std::uint64_t rip, rflags;
};

struct Segment {
    std::uint64_t base;
    std::uint32_t limit;
    std::uint16_t selector;
    std::uint8_t type;
    std::uint8_t present, dpl, db, s, l, g, avl;
    std::uint8_t unusable;
    std::uint8_t padding;
};

struct DescriptorTable {
    std::uint64_t base;
    std::uint16_t limit;
    std::uint16_t padding[3];
};

struct SpecialRegisters {
    Segment cs, ds, es, fs, gs, ss;
    Segment tr, ldt;
    DescriptorTable gdt, idt;
    std::uint64_t cr0, cr2, cr3, cr4, cr8;
    std::uint64_t efer;
    std::uint64_t apic_base;
    std::uint64_t interrupt_bitmap[4];
};

struct FpuState {
    std::uint8_t fpr[8][16];
    std::uint16_t fcw;
    std::uint16_t fsw;
    std::uint8_t ftwx;
    std::uint8_t pad1;
    std::uint16_t last_opcode;
    std::uint64_t last_ip;
    std::uint64_t last_dp;
    std::uint8_t xmm[16][16];
    std::uint32_t mxcsr;
    std::uint32_t pad2;
};

struct CpuidEntry {
    std::uint32_t function;
    std::uint32_t index;
    std::uint32_t flags;
    std::uint32_t eax, ebx, ecx, edx;
    std::uint32_t padding[3];
};

struct MsrEntry {
    std::uint32_t index;
    std::uint64_t data;
};

// The local APIC's 1 KiB register page as KVM_GET_LAPIC returns it.
struct LapicState {
    std::array<std::uint8_t, 1024> registers;
};

// State saved and restored whole, for snapshots and migration: the kernel's
// structures as bytes (kvm_xcrs, kvm_vcpu_events, kvm_debugregs, kvm_irqchip,
// kvm_pit_state2), which only the KVM layer reads.
struct XcrState {
    std::array<std::uint8_t, 392> bytes;
};
struct VcpuEvents {
    std::array<std::uint8_t, 64> bytes;
};
struct DebugRegisters {
    std::array<std::uint8_t, 128> bytes;
};
// The XSAVE area (FPU, SSE, AVX, ...): 4 KiB, or more where KVM_CAP_XSAVE2 says so.
struct XsaveState {
    std::vector<std::uint8_t> bytes;
};
// KVM_MP_STATE_*: running, waiting for INIT/SIPI, halted, ...
struct MpState {
    std::uint32_t value;
};
struct IrqchipState {
    enum class Chip : std::uint32_t { PicMaster = 0, PicSlave = 1, Ioapic = 2 };
    std::array<std::uint8_t, 520> bytes;  // kvm_irqchip, chip_id first
};
struct PitState {
    std::array<std::uint8_t, 112> bytes;
};
// kvm_clock_data's fields that travel.
struct ClockState {
    std::uint64_t clock_ns;     // the kvmclock
    std::uint64_t realtime_ns;  // the host's CLOCK_REALTIME when it was read; 0: unknown
};

}  // namespace vim::vmm::kvm
