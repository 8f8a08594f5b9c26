#include "vmm/devices/i8042.h"

#include <gtest/gtest.h>

#include <vector>

#include "vim/testing/fake_interrupt_line.h"

namespace vim::vmm::devices {
namespace {

constexpr std::uint16_t kData = I8042::kDataOffset;
constexpr std::uint16_t kCommand = I8042::kCommandOffset;
constexpr std::uint8_t kStatusOutputFull = 0x01;
constexpr std::uint8_t kStatusSystemFlag = 0x04;
constexpr std::uint8_t kStatusAuxData = 0x20;
constexpr std::uint8_t kCommandByteInterrupt = 0x01;
constexpr std::uint8_t kCommandByteAuxInterrupt = 0x02;
constexpr std::uint8_t kCommandByteKeyboardDisabled = 0x10;
constexpr std::uint8_t kCommandByteAuxDisabled = 0x20;
constexpr std::uint8_t kCommandByteTranslate = 0x40;
// System flag and translation on, both interfaces enabled, both interrupts on:
// what Linux runs with once it has found a keyboard and an aux port.
constexpr std::uint8_t kBothPortsInterrupting = 0x47;
constexpr std::uint8_t kNoDevice = 0xfe;

class I8042Test : public ::testing::Test {
protected:
    std::uint8_t read_port(std::uint16_t offset) {
        std::uint8_t byte = 0;
        controller.read(offset, {&byte, 1});
        return byte;
    }
    void write_port(std::uint16_t offset, std::uint8_t value) { controller.write(offset, {&value, 1}); }
    bool output_full() { return (read_port(kCommand) & kStatusOutputFull) != 0; }

    // What Linux's i8042_command() does for a command with one reply.
    std::uint8_t command_with_reply(std::uint8_t command) {
        write_port(kCommand, command);
        EXPECT_TRUE(output_full()) << "no reply to command " << int{command};
        return read_port(kData);
    }

    // Everything the guest can read right now, a byte per interrupt.
    std::vector<std::uint8_t> drain() {
        std::vector<std::uint8_t> bytes;
        while (output_full()) {
            bytes.push_back(read_port(kData));
        }
        return bytes;
    }

    void write_command_byte(std::uint8_t value) {
        write_port(kCommand, 0x60);
        write_port(kData, value);
    }

    // What Linux's i8042_command(&param, I8042_CMD_AUX_LOOP) does: the byte
    // must come back flagged as aux data, or Linux reports "auxerr".
    std::uint8_t aux_loopback(std::uint8_t byte) {
        write_port(kCommand, 0xd3);
        write_port(kData, byte);
        EXPECT_EQ(read_port(kCommand) & (kStatusAuxData | kStatusOutputFull),
                  kStatusAuxData | kStatusOutputFull);
        return read_port(kData);
    }

    // What Linux's i8042_aux_write() does for every byte psmouse sends.
    void send_to_mouse(std::uint8_t byte) {
        write_port(kCommand, 0xd4);
        write_port(kData, byte);
    }

    vim::testing::FakeInterruptLine irq;      // IRQ 1, the keyboard's
    vim::testing::FakeInterruptLine aux_irq;  // IRQ 12, the aux port's
    int resets = 0;
    I8042 controller{irq, aux_irq, [this] { ++resets; }};
};

TEST_F(I8042Test, StatusAfterPowerOnHasSystemFlagAndNoData) {
    const std::uint8_t status = read_port(kCommand);
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

    write_port(kCommand, 0x60);
    write_port(kData, 0x65);
    EXPECT_EQ(command_with_reply(0x20), 0x65);
    EXPECT_EQ(read_port(kCommand) & 0x08, 0x08);  // last write went to the command port
    write_port(kCommand, 0x60);
    write_port(kData, 0x47);
    EXPECT_EQ(read_port(kCommand) & 0x08, 0);
    EXPECT_EQ(command_with_reply(0x20), 0x47);
}

TEST_F(I8042Test, InterfaceEnableCommandsFlipTheCommandByte) {
    write_port(kCommand, 0x60);
    write_port(kData, 0x45);
    write_port(kCommand, 0xad);
    EXPECT_EQ(command_with_reply(0x20), 0x55);
    write_port(kCommand, 0xae);
    write_port(kCommand, 0xa7);
    EXPECT_EQ(command_with_reply(0x20), 0x65);
    write_port(kCommand, 0xa8);
    EXPECT_EQ(command_with_reply(0x20), 0x45);
}

TEST_F(I8042Test, ControllerReplyRaisesKeyboardInterruptWhenEnabled) {
    write_port(kCommand, 0xaa);
    EXPECT_TRUE(irq.high());
    read_port(kData);
    EXPECT_FALSE(irq.high());

    write_port(kCommand, 0x60);
    write_port(kData, 0x44);  // interrupt disabled
    write_port(kCommand, 0xaa);
    EXPECT_TRUE(output_full());
    EXPECT_FALSE(irq.high());
    EXPECT_TRUE(irq.only_changes());
}

TEST_F(I8042Test, OutputPortReadsBackAndResetBitPulsesReset) {
    const std::uint8_t port = command_with_reply(0xd0);
    EXPECT_EQ(port & 0x03, 0x03);  // reset inactive, A20 on
    write_port(kCommand, 0xd1);
    write_port(kData, 0xdf);
    EXPECT_EQ(command_with_reply(0xd0) & 0xcf, 0xcf);
    EXPECT_EQ(resets, 0);
    write_port(kCommand, 0xd1);
    write_port(kData, 0xde);  // reset line driven low
    EXPECT_EQ(resets, 1);
}

TEST_F(I8042Test, PulseCommandsResetOnlyWhenLineZeroIsPulsed) {
    write_port(kCommand, 0xff);  // pulse nothing
    write_port(kCommand, 0xfd);  // pulse line 1 only
    EXPECT_EQ(resets, 0);
    write_port(kCommand, 0xfe);  // what Linux's reboot=k writes
    EXPECT_EQ(resets, 1);
    write_port(kCommand, 0xf0);
    EXPECT_EQ(resets, 2);
}

TEST_F(I8042Test, KeyboardCommandsAreAcknowledged) {
    write_port(kData, 0xff);
    EXPECT_EQ(drain(), (std::vector<std::uint8_t>{0xfa, 0xaa}));
    write_port(kData, 0xed);  // set LEDs
    EXPECT_EQ(drain(), std::vector<std::uint8_t>{0xfa});
    write_port(kData, 0x00);
    EXPECT_EQ(drain(), std::vector<std::uint8_t>{0xfa});
    write_port(kData, 0xf3);  // typematic rate, with its argument
    write_port(kData, 0x20);
    EXPECT_EQ(drain(), (std::vector<std::uint8_t>{0xfa, 0xfa}));
    write_port(kData, 0xee);
    EXPECT_EQ(drain(), std::vector<std::uint8_t>{0xee});
}

TEST_F(I8042Test, KeyboardIdentifiesAsTranslatedOrRawMf2) {
    write_port(kData, 0xf2);
    EXPECT_EQ(drain(), (std::vector<std::uint8_t>{0xfa, 0xab, 0x41}));
    write_port(kCommand, 0x60);
    write_port(kData, 0x05);  // translation off
    write_port(kData, 0xf2);
    EXPECT_EQ(drain(), (std::vector<std::uint8_t>{0xfa, 0xab, 0x83}));
    write_port(kData, 0xf0);  // query scan code set
    write_port(kData, 0x00);
    EXPECT_EQ(drain(), (std::vector<std::uint8_t>{0xfa, 0xfa, 0x02}));
}

TEST_F(I8042Test, CtrlAltDelArrivesAsTranslatedSet1OneInterruptPerByte) {
    ASSERT_TRUE(controller.request_ctrl_alt_del());
    std::vector<std::uint8_t> bytes;
    while (irq.high()) {
        bytes.push_back(read_port(kData));
    }
    EXPECT_EQ(bytes, (std::vector<std::uint8_t>{0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d}));
    EXPECT_EQ(irq.rising_edges(), 8);
    EXPECT_TRUE(irq.only_changes());
    EXPECT_FALSE(output_full());
}

TEST_F(I8042Test, CtrlAltDelArrivesAsSet2WithoutTranslation) {
    write_port(kCommand, 0x60);
    write_port(kData, 0x05);
    ASSERT_TRUE(controller.request_ctrl_alt_del());
    EXPECT_EQ(drain(),
              (std::vector<std::uint8_t>{0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14}));
}

TEST_F(I8042Test, KeysWaitWhileTheKeyboardInterfaceIsDisabled) {
    write_port(kCommand, 0xad);
    ASSERT_TRUE(controller.request_ctrl_alt_del());
    EXPECT_FALSE(output_full());
    EXPECT_FALSE(irq.high());
    write_port(kCommand, 0xae);
    EXPECT_TRUE(irq.high());
    EXPECT_EQ(drain().size(), 8u);
}

TEST_F(I8042Test, CtrlAltDelIsRefusedWhileScanningIsOffOrTheBufferIsFull) {
    write_port(kData, 0xf5);  // atkbd deactivates the keyboard while probing
    drain();
    EXPECT_FALSE(controller.request_ctrl_alt_del());
    EXPECT_FALSE(output_full());

    write_port(kData, 0xf4);
    drain();
    EXPECT_TRUE(controller.request_ctrl_alt_del());
    EXPECT_TRUE(controller.request_ctrl_alt_del());
    EXPECT_FALSE(controller.request_ctrl_alt_del());  // nobody read the first two
    EXPECT_EQ(drain().size(), 16u);
    EXPECT_TRUE(controller.request_ctrl_alt_del());
}

// The calls Linux 6.1's i8042 driver makes, in order, from
// i8042_controller_init() through i8042_check_aux(), i8042_check_mux() and
// i8042_setup_aux(), with the replies it needs to register an aux port.
TEST_F(I8042Test, LinuxAuxProbeFindsThePortAndItsInterrupt) {
    // i8042_controller_init(): keyboard interface and interrupt off.
    std::uint8_t ctr = command_with_reply(0x20);
    ASSERT_EQ(command_with_reply(0x20), ctr);
    ctr = static_cast<std::uint8_t>((ctr | kCommandByteKeyboardDisabled) & ~kCommandByteInterrupt);
    write_command_byte(ctr);
    drain();
    // The CTR reads above were replies on the keyboard side; nothing below is.
    const std::size_t keyboard_levels = irq.levels.size();

    // i8042_check_aux(): the loopback works with the aux port still disabled
    // and its interrupt off, so it is polled.
    drain();
    EXPECT_EQ(aux_loopback(0x5a), 0x5a);
    EXPECT_FALSE(output_full());

    // i8042_toggle_aux(false), then (true): each checked by reading the command byte.
    write_port(kCommand, 0xa7);
    EXPECT_EQ(command_with_reply(0x20) & kCommandByteAuxDisabled, kCommandByteAuxDisabled);
    write_port(kCommand, 0xa8);
    EXPECT_EQ(command_with_reply(0x20) & kCommandByteAuxDisabled, 0);

    // i8042_enable_aux_port(), then the IRQ delivery test: the interrupt
    // handler reads status and data, and wants 0xa5 from the aux side.
    ctr = static_cast<std::uint8_t>((ctr & ~kCommandByteAuxDisabled) | kCommandByteAuxInterrupt);
    write_command_byte(ctr);
    write_port(kCommand, 0xd3);
    write_port(kData, 0xa5);
    EXPECT_TRUE(aux_irq.high());
    EXPECT_FALSE(irq.high());
    EXPECT_EQ(read_port(kCommand) & (kStatusAuxData | kStatusOutputFull), kStatusAuxData | kStatusOutputFull);
    EXPECT_EQ(read_port(kData), 0xa5);
    EXPECT_FALSE(aux_irq.high());

    // The end of i8042_check_aux() turns the port off again.
    ctr = static_cast<std::uint8_t>((ctr | kCommandByteAuxDisabled) & ~kCommandByteAuxInterrupt);
    write_command_byte(ctr);

    // i8042_check_mux(): an active multiplexer would answer the third byte
    // with its version; echoing it says there is none, so Linux makes one
    // plain aux port.
    drain();
    EXPECT_EQ(aux_loopback(0xf0), 0xf0);
    EXPECT_EQ(aux_loopback(0x56), 0x56);
    EXPECT_EQ(aux_loopback(0xa4), 0xa4);

    // i8042_setup_aux() enables the port for good.
    ctr = static_cast<std::uint8_t>((ctr & ~kCommandByteAuxDisabled) | kCommandByteAuxInterrupt);
    write_command_byte(ctr);
    EXPECT_EQ(command_with_reply(0x20), ctr);

    EXPECT_EQ(aux_irq.rising_edges(), 1);
    EXPECT_TRUE(aux_irq.only_changes());
    EXPECT_EQ(irq.levels.size(), keyboard_levels);
    EXPECT_FALSE(output_full());
}

TEST_F(I8042Test, AuxInterfaceTestPasses) {
    write_port(kCommand, 0xa9);
    EXPECT_EQ(read_port(kCommand) & (kStatusAuxData | kStatusOutputFull), kStatusOutputFull);
    EXPECT_EQ(read_port(kData), 0x00);
    EXPECT_FALSE(output_full());
}

TEST_F(I8042Test, BytesForTheAbsentMouseAreRejectedAtOnceFromTheAuxSide) {
    write_command_byte(kBothPortsInterrupting);
    // psmouse's first command, GET ID, and libps2's one retry after a NAK.
    for (int attempt = 0; attempt < 2; ++attempt) {
        send_to_mouse(0xf2);
        EXPECT_TRUE(aux_irq.high());
        EXPECT_FALSE(irq.high());
        EXPECT_EQ(read_port(kCommand) & (kStatusAuxData | kStatusOutputFull),
                  kStatusAuxData | kStatusOutputFull);
        EXPECT_EQ(read_port(kData), kNoDevice);
        EXPECT_FALSE(aux_irq.high());
    }
    EXPECT_EQ(aux_irq.rising_edges(), 2);
    EXPECT_TRUE(aux_irq.only_changes());
    EXPECT_FALSE(output_full());
}

TEST_F(I8042Test, WritingToTheMouseEnablesTheAuxInterface) {
    ASSERT_EQ(command_with_reply(0x20) & kCommandByteAuxDisabled, kCommandByteAuxDisabled);
    send_to_mouse(0xff);
    EXPECT_EQ(read_port(kCommand) & kStatusAuxData, kStatusAuxData);
    EXPECT_EQ(read_port(kData), kNoDevice);
    EXPECT_EQ(command_with_reply(0x20) & kCommandByteAuxDisabled, 0);
}

TEST_F(I8042Test, KeyboardAndAuxBytesEachRaiseTheirOwnInterrupt) {
    write_command_byte(kBothPortsInterrupting);

    write_port(kData, 0xee);  // keyboard echo
    EXPECT_TRUE(irq.high());
    EXPECT_FALSE(aux_irq.high());
    EXPECT_EQ(read_port(kCommand) & kStatusAuxData, 0);
    EXPECT_EQ(read_port(kData), 0xee);

    send_to_mouse(0xf2);
    EXPECT_FALSE(irq.high());
    EXPECT_TRUE(aux_irq.high());
    EXPECT_EQ(read_port(kData), kNoDevice);

    // Both at once: one byte at a time, each on its own line.
    write_port(kData, 0xee);
    send_to_mouse(0xf2);
    EXPECT_TRUE(irq.high());
    EXPECT_FALSE(aux_irq.high());
    EXPECT_EQ(read_port(kData), 0xee);
    EXPECT_FALSE(irq.high());
    EXPECT_TRUE(aux_irq.high());
    EXPECT_EQ(read_port(kCommand) & kStatusAuxData, kStatusAuxData);
    EXPECT_EQ(read_port(kData), kNoDevice);
    EXPECT_FALSE(aux_irq.high());

    EXPECT_EQ(irq.rising_edges(), 2);
    EXPECT_EQ(aux_irq.rising_edges(), 2);
    EXPECT_TRUE(irq.only_changes());
    EXPECT_TRUE(aux_irq.only_changes());
    EXPECT_FALSE(output_full());
}

TEST_F(I8042Test, AuxByteWithTheAuxInterruptOffIsPolled) {
    write_command_byte(kBothPortsInterrupting & ~kCommandByteAuxInterrupt);
    send_to_mouse(0xf2);
    EXPECT_EQ(read_port(kCommand) & (kStatusAuxData | kStatusOutputFull), kStatusAuxData | kStatusOutputFull);
    EXPECT_TRUE(aux_irq.levels.empty());
    EXPECT_TRUE(irq.levels.empty());

    // Turning the interrupt on with the byte still unread raises it then.
    write_command_byte(kBothPortsInterrupting);
    EXPECT_TRUE(aux_irq.high());
    EXPECT_EQ(read_port(kData), kNoDevice);
    EXPECT_FALSE(aux_irq.high());
}

TEST_F(I8042Test, AuxBytesWaitWhileTheAuxInterfaceIsDisabled) {
    write_command_byte(kBothPortsInterrupting);
    send_to_mouse(0xf2);
    send_to_mouse(0xf2);
    write_port(kCommand, 0xa7);
    EXPECT_EQ(read_port(kData), kNoDevice);  // already in the output buffer
    EXPECT_FALSE(output_full());
    EXPECT_FALSE(aux_irq.high());
    write_port(kCommand, 0xa8);
    EXPECT_TRUE(aux_irq.high());
    EXPECT_EQ(drain(), std::vector<std::uint8_t>{kNoDevice});
}

TEST_F(I8042Test, FloodOfBytesForTheMouseIsBounded) {
    write_command_byte(kBothPortsInterrupting);
    for (int i = 0; i < 100000; ++i) {
        send_to_mouse(0xf2);
    }
    const std::vector<std::uint8_t> bytes = drain();
    // The output buffer and a keyboard-sized buffer behind it, no more.
    EXPECT_FALSE(bytes.empty());
    EXPECT_LE(bytes.size(), 17u);
    EXPECT_EQ(bytes, std::vector<std::uint8_t>(bytes.size(), kNoDevice));
    EXPECT_EQ(aux_irq.rising_edges(), static_cast<int>(bytes.size()));

    send_to_mouse(0xf2);  // still answers once the guest reads again
    EXPECT_EQ(drain(), std::vector<std::uint8_t>{kNoDevice});
}

TEST_F(I8042Test, OutputPortShowsWhichSideFilledTheOutputBuffer) {
    constexpr std::uint8_t kKeyboardFull = 0x10;
    constexpr std::uint8_t kAuxFull = 0x20;
    EXPECT_EQ(command_with_reply(0xd0) & (kKeyboardFull | kAuxFull), 0);

    // The port is read while the earlier byte still waits in the output
    // buffer; its value arrives behind it.
    write_port(kData, 0xee);
    write_port(kCommand, 0xd0);
    EXPECT_EQ(drain().at(1) & (kKeyboardFull | kAuxFull), kKeyboardFull);

    send_to_mouse(0xf2);
    write_port(kCommand, 0xd0);
    EXPECT_EQ(drain().at(1) & (kKeyboardFull | kAuxFull), kAuxFull);
}

TEST_F(I8042Test, KeyboardOutputWriteComesBackFromTheKeyboardSide) {
    write_port(kCommand, 0xd2);
    write_port(kData, 0x5a);
    EXPECT_TRUE(irq.high());
    EXPECT_FALSE(aux_irq.high());
    EXPECT_EQ(read_port(kCommand) & kStatusAuxData, 0);
    // Only the byte itself: the keyboard never saw it as a command to ACK.
    EXPECT_EQ(drain(), std::vector<std::uint8_t>{0x5a});
}

}  // namespace
}  // namespace vim::vmm::devices
