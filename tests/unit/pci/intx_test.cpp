#include "vmm/pci/intx.h"

#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "vim/testing/fake_interrupt_line.h"

namespace vim::vmm::pci {
namespace {

using vim::testing::FakeInterruptLine;

class IntxTest : public ::testing::Test {
protected:
    void write_command(std::uint16_t command) {
        const std::array<std::uint8_t, 2> bytes{static_cast<std::uint8_t>(command),
                                                static_cast<std::uint8_t>(command >> 8)};
        config.write(kCommandStatusRegister, 0, bytes);
        intx.sync(config);
    }

    FakeInterruptLine line;
    ConfigSpace config{DeviceIdentity{.vendor_id = 0x1af4, .device_id = 0x1042}};
    Intx intx{config, line};
};

TEST_F(IntxTest, DeclaresInta) {
    EXPECT_EQ((config.read(kInterruptRegister) >> 8) & 0xff, kInterruptPinA);
    EXPECT_TRUE(line.levels.empty());
}

TEST_F(IntxTest, LineAndStatusFollowTheDevice) {
    intx.set_pending(config, true);
    EXPECT_TRUE(line.high());
    EXPECT_TRUE(config.status() & kStatusInterrupt);
    intx.set_pending(config, true);
    intx.set_pending(config, false);
    EXPECT_FALSE(line.high());
    EXPECT_FALSE(config.status() & kStatusInterrupt);
    EXPECT_TRUE(line.only_changes());
}

TEST_F(IntxTest, DisableBitMasksTheLineNotTheStatus) {
    intx.set_pending(config, true);
    write_command(kCommandIntxDisable);
    EXPECT_FALSE(line.high());
    EXPECT_TRUE(config.status() & kStatusInterrupt);  // the driver can still see why

    intx.set_pending(config, false);
    intx.set_pending(config, true);
    EXPECT_FALSE(line.high());
    write_command(kCommandMemorySpace);
    EXPECT_TRUE(line.high());
    EXPECT_EQ(line.levels, (std::vector<bool>{true, false, true}));
}

TEST_F(IntxTest, StatusBitIsNotTheGuests) {
    const std::array<std::uint8_t, 2> ones{0xff, 0xff};
    config.write(kCommandStatusRegister, 2, ones);
    intx.sync(config);
    EXPECT_FALSE(config.status() & kStatusInterrupt);
    EXPECT_TRUE(line.levels.empty());
}

}  // namespace
}  // namespace vim::vmm::pci
