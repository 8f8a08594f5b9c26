#include "vmm/devices/acpi_pm.h"

#include <gtest/gtest.h>

#include <array>
#include <stdexcept>

#include "vim/testing/fake_interrupt_line.h"

namespace vim::vmm::devices {
namespace {

constexpr std::uint8_t kS5 = 5;
constexpr std::uint16_t kSleepEnable = 1u << 13;
constexpr std::uint16_t kPowerButton = 1u << 8;

std::uint16_t sleep_request(std::uint8_t type) {
    return static_cast<std::uint16_t>(type << 10 | kSleepEnable);
}

void write16(BusDevice& device, std::uint64_t offset, std::uint16_t value) {
    const std::array<std::uint8_t, 2> bytes{static_cast<std::uint8_t>(value),
                                            static_cast<std::uint8_t>(value >> 8)};
    device.write(offset, bytes);
}

std::uint16_t read16(BusDevice& device, std::uint64_t offset) {
    std::array<std::uint8_t, 2> bytes{};
    device.read(offset, bytes);
    return static_cast<std::uint16_t>(bytes[0] | bytes[1] << 8);
}

class AcpiPm1ControlTest : public ::testing::Test {
protected:
    int power_offs = 0;
    AcpiPm1ControlBlock control{kS5, [this] { ++power_offs; }};
};

TEST_F(AcpiPm1ControlTest, SciEnableReadsSet) { EXPECT_EQ(read16(control, 0) & 1, 1); }

TEST_F(AcpiPm1ControlTest, S5WithSleepEnablePowersOff) {
    write16(control, 0, sleep_request(kS5));
    EXPECT_EQ(power_offs, 1);
}

TEST_F(AcpiPm1ControlTest, OtherSleepTypesOrNoSleepEnableDoNothing) {
    write16(control, 0, static_cast<std::uint16_t>(kS5 << 10));  // SLP_TYP alone
    write16(control, 0, sleep_request(3));
    write16(control, 0, sleep_request(0));
    EXPECT_EQ(power_offs, 0);
    // SLP_EN is write-only, SLP_TYP is kept.
    EXPECT_EQ(read16(control, 0), (0u << 10) | 1u);
}

TEST_F(AcpiPm1ControlTest, ByteWriteOfTheHighByteIsACompleteRequest) {
    const std::uint8_t high = static_cast<std::uint8_t>(sleep_request(kS5) >> 8);
    control.write(1, {&high, 1});
    EXPECT_EQ(power_offs, 1);
}

TEST(AcpiPm1Control, RejectsASleepTypeWiderThanThreeBits) {
    try {
        AcpiPm1ControlBlock control(8, [] {});
        FAIL() << "accepted sleep type 8";
    } catch (const std::invalid_argument& error) {
        EXPECT_STREQ(error.what(), "acpi pm1 control: S5 sleep type 8 does not fit SLP_TYP's 3 bits");
    }
}

TEST(AcpiPm1Event, StatusIsWriteOneToClearAndEnableIsPlain) {
    vim::testing::FakeInterruptLine sci;
    AcpiPm1EventBlock events(sci);
    events.press_power_button();
    EXPECT_EQ(read16(events, 0), kPowerButton);
    EXPECT_FALSE(sci.high());  // not enabled yet

    write16(events, 2, kPowerButton);
    EXPECT_EQ(read16(events, 2), kPowerButton);
    EXPECT_TRUE(sci.high());

    write16(events, 0, 0);  // writing zeros clears nothing
    EXPECT_EQ(read16(events, 0), kPowerButton);
    EXPECT_TRUE(sci.high());
    write16(events, 0, kPowerButton);
    EXPECT_EQ(read16(events, 0), 0);
    EXPECT_FALSE(sci.high());
    EXPECT_TRUE(sci.only_changes());
}

TEST(AcpiPm1Event, DisablingTheEventDropsTheSci) {
    vim::testing::FakeInterruptLine sci;
    AcpiPm1EventBlock events(sci);
    write16(events, 2, kPowerButton);
    events.press_power_button();
    EXPECT_TRUE(sci.high());
    write16(events, 2, 0);
    EXPECT_FALSE(sci.high());
    EXPECT_EQ(read16(events, 0), kPowerButton);  // still latched for the guest to see
}

}  // namespace
}  // namespace vim::vmm::devices
