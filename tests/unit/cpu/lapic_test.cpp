#include "vmm/cpu/lapic.h"

#include <gtest/gtest.h>

#include <cstring>

namespace vim::vmm::cpu {
namespace {

std::uint32_t read_register(const kvm::LapicState& lapic, std::size_t offset) {
    std::uint32_t value;
    std::memcpy(&value, lapic.registers.data() + offset, sizeof value);
    return value;
}

void write_register(kvm::LapicState& lapic, std::size_t offset, std::uint32_t value) {
    std::memcpy(lapic.registers.data() + offset, &value, sizeof value);
}

constexpr std::uint32_t kMasked = 1u << 16;

TEST(ConfigureLint, SetsExtIntOnLint0AndNmiOnLint1) {
    kvm::LapicState lapic{};
    // As KVM resets them: masked, fixed delivery.
    write_register(lapic, 0x350, kMasked);
    write_register(lapic, 0x360, kMasked);

    configure_lint(lapic);

    EXPECT_EQ(read_register(lapic, 0x350), kMasked | (0b111u << 8));
    EXPECT_EQ(read_register(lapic, 0x360), kMasked | (0b100u << 8));
}

TEST(ConfigureLint, ReplacesAnyOldDeliveryModeAndLeavesOtherRegistersAlone) {
    kvm::LapicState lapic{};
    write_register(lapic, 0x20, 0x03000000);   // APIC ID
    write_register(lapic, 0x350, 0x00000731);  // ExtINT, vector 0x31
    write_register(lapic, 0x360, 0x00000231);  // SMI, vector 0x31
    write_register(lapic, 0x370, kMasked);     // LVT error

    configure_lint(lapic);

    EXPECT_EQ(read_register(lapic, 0x350), 0x00000731u);
    EXPECT_EQ(read_register(lapic, 0x360), 0x00000431u);
    EXPECT_EQ(read_register(lapic, 0x20), 0x03000000u);
    EXPECT_EQ(read_register(lapic, 0x370), kMasked);
}

}  // namespace
}  // namespace vim::vmm::cpu
