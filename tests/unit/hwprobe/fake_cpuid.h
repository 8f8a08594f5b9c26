#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <utility>

#include "hwprobe/probe.h"

namespace vim::hwprobe::testing {

enum class Register { eax, ebx, ecx, edx };

// A CPU answering only the leaves a test sets; its ranges (leaves 0x0 and 0x80000000)
// follow from the highest leaves set.
class FakeCpuid {
public:
    void set_bit(std::uint32_t leaf, std::uint32_t subleaf, Register reg, int bit) {
        CpuidRegisters& registers = leaves_[{leaf, subleaf}];
        field(registers, reg) |= 1u << bit;
        extend(leaf);
    }
    void set(std::uint32_t leaf, std::uint32_t subleaf, CpuidRegisters registers) {
        leaves_[{leaf, subleaf}] = registers;
        extend(leaf);
    }
    // The 12-byte vendor string of leaf 0 (EBX, EDX, ECX).
    void set_vendor(const std::string& vendor) {
        CpuidRegisters& registers = leaves_[{0, 0}];
        std::memcpy(&registers.ebx, vendor.data(), 4);
        std::memcpy(&registers.edx, vendor.data() + 4, 4);
        std::memcpy(&registers.ecx, vendor.data() + 8, 4);
    }
    // The brand string of leaves 0x80000002..4, NUL-padded to 48 bytes.
    void set_brand(const std::string& brand) {
        char bytes[48] = {};
        std::memcpy(bytes, brand.data(), std::min(brand.size(), sizeof(bytes)));
        for (std::uint32_t leaf = 0; leaf < 3; ++leaf) {
            CpuidRegisters registers;
            std::memcpy(&registers, bytes + 16 * leaf, 16);
            set(0x80000002 + leaf, 0, registers);
        }
    }

    CpuidFunction function() const {
        return [leaves = leaves_](std::uint32_t leaf, std::uint32_t subleaf) {
            const auto found = leaves.find({leaf, subleaf});
            return found == leaves.end() ? CpuidRegisters{} : found->second;
        };
    }

private:
    static std::uint32_t& field(CpuidRegisters& registers, Register reg) {
        switch (reg) {
        case Register::eax:
            return registers.eax;
        case Register::ebx:
            return registers.ebx;
        case Register::ecx:
            return registers.ecx;
        case Register::edx:
            return registers.edx;
        }
        return registers.eax;
    }
    void extend(std::uint32_t leaf) {
        const std::uint32_t range = leaf >= 0x80000000 ? 0x80000000 : leaf >= 0x40000000 ? 0x40000000 : 0;
        std::uint32_t& max = leaves_[{range, 0}].eax;
        max = std::max(max, leaf);
    }

    std::map<std::pair<std::uint32_t, std::uint32_t>, CpuidRegisters> leaves_;
};

// The Xeon Gold 6338 of the numa-2socket fixture: Ice Lake, VMX, AVX-512, a 2 GHz TSC by leaf 0x15.
inline FakeCpuid xeon_gold_6338() {
    FakeCpuid cpu;
    cpu.set_vendor("GenuineIntel");
    cpu.set(0x1, 0, {0x000606a6, 0, 0, 0});
    for (int bit : {5, 21, 25, 28, 30}) {  // vmx x2apic aes avx rdrand
        cpu.set_bit(0x1, 0, Register::ecx, bit);
    }
    for (int bit : {5, 16, 17, 18, 30, 31}) {  // avx2 avx512f avx512dq rdseed avx512bw avx512vl
        cpu.set_bit(0x7, 0, Register::ebx, bit);
    }
    cpu.set_bit(0x80000007, 0, Register::edx, 8);  // invariant TSC
    cpu.set(0x15, 0, {1, 80, 25000000, 0});        // 25 MHz crystal * 80
    cpu.set_brand("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz");
    return cpu;
}

// An EPYC (Zen 3) with SVM and NPT, whose leaf 0x16 (reserved on AMD) must be ignored.
inline FakeCpuid epyc_7763() {
    FakeCpuid cpu;
    cpu.set_vendor("AuthenticAMD");
    cpu.set(0x1, 0, {0x00a00f11, 0, 0, 0});
    cpu.set_bit(0x80000001, 0, Register::ecx, 2);  // svm
    cpu.set_bit(0x8000000a, 0, Register::edx, 0);  // npt
    cpu.set(0x16, 0, {2450, 0, 0, 0});
    cpu.set_brand("AMD EPYC 7763 64-Core Processor                 ");
    return cpu;
}

}  // namespace vim::hwprobe::testing
