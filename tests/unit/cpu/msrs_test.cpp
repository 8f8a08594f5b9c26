#include "vmm/cpu/msrs.h"

#include <gtest/gtest.h>

#include <map>

namespace vim::vmm::cpu {
namespace {

TEST(BootMsrs, HoldsEachBootMsrOnceWithItsValue) {
    std::map<std::uint32_t, std::uint64_t> values;
    for (const kvm::MsrEntry& entry : boot_msrs()) {
        EXPECT_TRUE(values.emplace(entry.index, entry.data).second) << "duplicate MSR " << entry.index;
    }
    const std::map<std::uint32_t, std::uint64_t> expected = {
        {0x174, 0},               // IA32_SYSENTER_CS
        {0x175, 0},               // IA32_SYSENTER_ESP
        {0x176, 0},               // IA32_SYSENTER_EIP
        {0xc0000081, 0},          // STAR
        {0xc0000082, 0},          // LSTAR
        {0xc0000083, 0},          // CSTAR
        {0xc0000084, 0},          // SYSCALL_MASK
        {0xc0000102, 0},          // KERNEL_GS_BASE
        {0x10, 0},                // IA32_TSC
        {0x1a0, 1},               // IA32_MISC_ENABLE: fast strings
        {0x2ff, (1u << 11) | 6},  // MTRRdefType: enabled, write-back
    };
    EXPECT_EQ(values, expected);
}

}  // namespace
}  // namespace vim::vmm::cpu
