#include "vmm/devices/i8042.h"

#include <gtest/gtest.h>

#include <vector>

#include "fake_interrupt_line.h"

namespace vmm::devices {
namespace {

constexpr std::uint16_t kData = I8042::kDataOffset;
constexpr std::uint16_t kCommand = I8042::kCommandOffset;
constexpr std::uint8_t kStatusOutputFull = 0x01;
constexpr std::uint8_t kStatusSystemFlag = 0x04;
constexpr std::uint8_t kCommandByteInterrupt = 0x01;
constexpr std::uint8_t kCommandByteTranslate = 0x40;

class I8042Test : public ::testing::Test {
protected:
    std::uint8_t in(std::uint16_t offset) {
        std::uint8_t byte = 0;
        controller.read(offset, {&byte, 1});
        return byte;
    }
    void out(std::uint16_t offset, std::uint8_t value) { controller.write(offset, {&value, 1}); }
    bool output_full() { return (in(kCommand) & kStatusOutputFull) != 0; }

    // What Linux's i8042_command() does for a command with one reply.
    std::uint8_t command_with_reply(std::uint8_t command) {
        out(kCommand, command);
        EXPECT_TRUE(output_full()) << "no reply to command " << int{command};
        return in(kData);
    }

    // Everything the guest can read right now, a byte per interrupt.
    std::vector<std::uint8_t> drain() {
        std::vector<std::uint8_t> bytes;
        while (output_full()) {
            bytes.push_back(in(kData));
        }
        return bytes;
    }

    testing::FakeInterruptLine irq;
    int resets = 0;
    I8042 controller{irq, [this] { ++resets; }};
};

TEST_F(I8042Test, StatusAfterPowerOnHasSystemFlagAndNoData) {
    const std::uint8_t status = in(kCommand);
    EXPECT_EQ(status & kStatusOutputFull, 0);
    EXPECT_EQ(status & kStatusSystemFlag, kStatusSystemFlag);
    EXPECT_EQ(status & 0x10, 0x10);  // not inhibited by the keylock
}

TEST_F(I8042Test, SelfTestAndInterfaceTestPass) {
    EXPECT_EQ(command_with_reply(0xaa), 0x55);
    EXPECT_EQ(command_with_reply(0xab), 0x00);
    EXPECT_FALSE(output_full());
}

TEST_F(I8042Test, CommandByteReadsBackWhatWasWritten) {
    const std::uint8_t initial = command_with_reply(0x20);
    EXPECT_EQ(initial & kCommandByteTranslate, kCommandByteTranslate);
    EXPECT_EQ(initial & kCommandByteInterrupt, kCommandByteInterrupt);

    out(kCommand, 0x60);
    out(kData, 0x65);
    EXPECT_EQ(command_with_reply(0x20), 0x65);
    EXPECT_EQ(in(kCommand) & 0x08, 0x08);  // last write went to the command port
    out(kCommand, 0x60);
    out(kData, 0x47);
    EXPECT_EQ(in(kCommand) & 0x08, 0);
    EXPECT_EQ(command_with_reply(0x20), 0x47);
}

TEST_F(I8042Test, InterfaceEnableCommandsFlipTheCommandByte) {
    out(kCommand, 0x60);
    out(kData, 0x45);
    out(kCommand, 0xad);
    EXPECT_EQ(command_with_reply(0x20), 0x55);
    out(kCommand, 0xae);
    out(kCommand, 0xa7);
    EXPECT_EQ(command_with_reply(0x20), 0x65);
    out(kCommand, 0xa8);
    EXPECT_EQ(command_with_reply(0x20), 0x45);
}

TEST_F(I8042Test, ControllerReplyRaisesKeyboardInterruptWhenEnabled) {
    out(kCommand, 0xaa);
    EXPECT_TRUE(irq.high());
    in(kData);
    EXPECT_FALSE(irq.high());

    out(kCommand, 0x60);
    out(kData, 0x44);  // interrupt disabled
    out(kCommand, 0xaa);
    EXPECT_TRUE(output_full());
    EXPECT_FALSE(irq.high());
    EXPECT_TRUE(irq.only_changes());
}

TEST_F(I8042Test, OutputPortReadsBackAndResetBitPulsesReset) {
    const std::uint8_t port = command_with_reply(0xd0);
    EXPECT_EQ(port & 0x03, 0x03);  // reset inactive, A20 on
    out(kCommand, 0xd1);
    out(kData, 0xdf);
    EXPECT_EQ(command_with_reply(0xd0) & 0xcf, 0xcf);
    EXPECT_EQ(resets, 0);
    out(kCommand, 0xd1);
    out(kData, 0xde);  // reset line driven low
    EXPECT_EQ(resets, 1);
}

TEST_F(I8042Test, PulseCommandsResetOnlyWhenLineZeroIsPulsed) {
    out(kCommand, 0xff);  // pulse nothing
    out(kCommand, 0xfd);  // pulse line 1 only
    EXPECT_EQ(resets, 0);
    out(kCommand, 0xfe);  // what Linux's reboot=k writes
    EXPECT_EQ(resets, 1);
    out(kCommand, 0xf0);
    EXPECT_EQ(resets, 2);
}

TEST_F(I8042Test, KeyboardCommandsAreAcknowledged) {
    out(kData, 0xff);
    EXPECT_EQ(drain(), (std::vector<std::uint8_t>{0xfa, 0xaa}));
    out(kData, 0xed);  // set LEDs
    EXPECT_EQ(drain(), std::vector<std::uint8_t>{0xfa});
    out(kData, 0x00);
    EXPECT_EQ(drain(), std::vector<std::uint8_t>{0xfa});
    out(kData, 0xf3);  // typematic rate, with its argument
    out(kData, 0x20);
    EXPECT_EQ(drain(), (std::vector<std::uint8_t>{0xfa, 0xfa}));
    out(kData, 0xee);
    EXPECT_EQ(drain(), std::vector<std::uint8_t>{0xee});
}

TEST_F(I8042Test, KeyboardIdentifiesAsTranslatedOrRawMf2) {
    out(kData, 0xf2);
    EXPECT_EQ(drain(), (std::vector<std::uint8_t>{0xfa, 0xab, 0x41}));
    out(kCommand, 0x60);
    out(kData, 0x05);  // translation off
    out(kData, 0xf2);
    EXPECT_EQ(drain(), (std::vector<std::uint8_t>{0xfa, 0xab, 0x83}));
    out(kData, 0xf0);  // query scan code set
    out(kData, 0x00);
    EXPECT_EQ(drain(), (std::vector<std::uint8_t>{0xfa, 0xfa, 0x02}));
}

TEST_F(I8042Test, CtrlAltDelArrivesAsTranslatedSet1OneInterruptPerByte) {
    ASSERT_TRUE(controller.request_ctrl_alt_del());
    std::vector<std::uint8_t> bytes;
    while (irq.high()) {
        bytes.push_back(in(kData));
    }
    EXPECT_EQ(bytes, (std::vector<std::uint8_t>{0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d}));
    EXPECT_EQ(irq.rising_edges(), 8);
    EXPECT_TRUE(irq.only_changes());
    EXPECT_FALSE(output_full());
}

TEST_F(I8042Test, CtrlAltDelArrivesAsSet2WithoutTranslation) {
    out(kCommand, 0x60);
    out(kData, 0x05);
    ASSERT_TRUE(controller.request_ctrl_alt_del());
    EXPECT_EQ(drain(), (std::vector<std::uint8_t>{0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0,
                                                  0x11, 0xf0, 0x14}));
}

TEST_F(I8042Test, KeysWaitWhileTheKeyboardInterfaceIsDisabled) {
    out(kCommand, 0xad);
    ASSERT_TRUE(controller.request_ctrl_alt_del());
    EXPECT_FALSE(output_full());
    EXPECT_FALSE(irq.high());
    out(kCommand, 0xae);
    EXPECT_TRUE(irq.high());
    EXPECT_EQ(drain().size(), 8u);
}

TEST_F(I8042Test, CtrlAltDelIsRefusedWhileScanningIsOffOrTheBufferIsFull) {
    out(kData, 0xf5);  // atkbd deactivates the keyboard while probing
    drain();
    EXPECT_FALSE(controller.request_ctrl_alt_del());
    EXPECT_FALSE(output_full());

    out(kData, 0xf4);
    drain();
    EXPECT_TRUE(controller.request_ctrl_alt_del());
    EXPECT_TRUE(controller.request_ctrl_alt_del());
    EXPECT_FALSE(controller.request_ctrl_alt_del());  // nobody read the first two
    EXPECT_EQ(drain().size(), 16u);
    EXPECT_TRUE(controller.request_ctrl_alt_del());
}

}  // namespace
}  // namespace vmm::devices
