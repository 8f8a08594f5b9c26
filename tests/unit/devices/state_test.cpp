// Each legacy device driven into a state through its ports, saved, restored
// into a fresh device built the same way: the guest reads the same registers
// and sees the same interrupt. Hostile states are refused with the device and
// the field named.
#include "vmm/state/state.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "vim/testing/fake_interrupt_line.h"
#include "vmm/devices/acpi_pm.h"
#include "vmm/devices/cmos.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/serial.h"

namespace vim::vmm::devices {
namespace {

using ::testing::HasSubstr;
using vim::testing::FakeInterruptLine;
using state::State;
using state::StateError;

std::uint8_t read_port(BusDevice& device, std::uint16_t offset) {
    std::uint8_t byte = 0;
    device.read(offset, {&byte, 1});
    return byte;
}

void write_port(BusDevice& device, std::uint16_t offset, std::uint8_t value) {
    device.write(offset, {&value, 1});
}

// The message of the StateError restore() throws, or "" when it throws none.
template <typename Device>
std::string restore_error(Device& device, const State& state) {
    try {
        device.restore(state);
    } catch (const StateError& error) {
        return error.what();
    }
    return "";
}

// Serial registers (16550A).
constexpr std::uint16_t kRbr = 0, kIer = 1, kIir = 2, kLcr = 3, kMcr = 4, kLsr = 5, kScr = 7;

struct SerialBench {
    FakeInterruptLine irq;
    std::vector<std::uint8_t> output;
    Serial serial{irq, [this](std::span<const std::uint8_t> bytes) {
                      output.insert(output.end(), bytes.begin(), bytes.end());
                  }};
};

TEST(SerialStateTest, PendingInputDivisorAndInterruptSurviveTheTrip) {
    SerialBench source;
    write_port(source.serial, kLcr, 0x80);  // DLAB: program the divisor
    write_port(source.serial, 0, 0x03);
    write_port(source.serial, 1, 0x00);
    write_port(source.serial, kLcr, 0x03);  // 8N1
    write_port(source.serial, kIir, 0x01);  // FIFO on
    write_port(source.serial, kMcr, 0x0b);  // DTR, RTS, OUT2
    write_port(source.serial, kIer, 0x01);  // data-ready interrupts
    write_port(source.serial, kScr, 0x5a);
    const std::string typed = "login";
    source.serial.enqueue_input({reinterpret_cast<const std::uint8_t*>(typed.data()), typed.size()});
    ASSERT_TRUE(source.irq.high());
    EXPECT_EQ(read_port(source.serial, kRbr), 'l');

    const State saved = source.serial.save();
    SerialBench destination;
    destination.serial.restore(saved);

    EXPECT_TRUE(destination.irq.high());
    EXPECT_EQ(read_port(destination.serial, kIir), 0xc4);  // FIFO on, received data
    EXPECT_EQ(read_port(destination.serial, kLcr), 0x03);
    EXPECT_EQ(read_port(destination.serial, kMcr), 0x0b);
    EXPECT_EQ(read_port(destination.serial, kIer), 0x01);
    EXPECT_EQ(read_port(destination.serial, kScr), 0x5a);
    std::string received;
    while (read_port(destination.serial, kLsr) & 0x01) {
        received += static_cast<char>(read_port(destination.serial, kRbr));
    }
    EXPECT_EQ(received, "ogin");
    EXPECT_FALSE(destination.irq.high());
    write_port(destination.serial, kLcr, 0x83);
    EXPECT_EQ(read_port(destination.serial, 0), 0x03);
    EXPECT_EQ(read_port(destination.serial, 1), 0x00);
}

TEST(SerialStateTest, QuietUartRestoresWithTheLineLow) {
    SerialBench source;
    SerialBench destination;
    destination.serial.restore(source.serial.save());
    EXPECT_FALSE(destination.irq.high());
    EXPECT_EQ(read_port(destination.serial, kIir), 0x01);
}

TEST(SerialStateTest, RefusesHostileStates) {
    SerialBench bench;
    const State good = bench.serial.save();

    State missing = good;
    missing.erase("line_control");
    EXPECT_EQ(restore_error(bench.serial, missing), "serial: line_control: missing");

    State wrong_type = good;
    wrong_type["scratch"] = "x";
    EXPECT_THAT(restore_error(bench.serial, wrong_type),
                HasSubstr("serial: scratch: not an unsigned integer"));

    State too_big = good;
    too_big["divisor_low"] = 256;
    EXPECT_THAT(restore_error(bench.serial, too_big),
                HasSubstr("serial: divisor_low: not an unsigned integer of at most 255"));

    State overfull = good;
    overfull["input"] = state::binary(std::vector<std::uint8_t>(Serial::kInputFifoCapacity + 1, 'x'));
    EXPECT_EQ(restore_error(bench.serial, overfull), "serial: input: 65 bytes, at most 64 expected");

    State ier = good;
    ier["interrupt_enable"] = 0xf0;
    EXPECT_THAT(restore_error(bench.serial, ier), HasSubstr("serial: interrupt_enable: bits 4-7 set"));

    EXPECT_EQ(restore_error(bench.serial, State::array()), "serial: not an object where input was expected");
}

// i8042.
constexpr std::uint16_t kData = I8042::kDataOffset, kCommand = I8042::kCommandOffset;

struct I8042Bench {
    FakeInterruptLine keyboard_irq;
    FakeInterruptLine aux_irq;
    int resets = 0;
    I8042 controller{keyboard_irq, aux_irq, [this] { ++resets; }};
};

TEST(I8042StateTest, QueuedKeysAndCommandByteSurviveTheTrip) {
    I8042Bench source;
    write_port(source.controller, kCommand, 0x60);  // write the command byte: no translation
    write_port(source.controller, kData, 0x05);
    ASSERT_TRUE(source.controller.request_ctrl_alt_del());
    ASSERT_TRUE(source.keyboard_irq.high());
    EXPECT_EQ(read_port(source.controller, kData), 0x14);  // set 2 Ctrl
    write_port(source.controller, kCommand, 0xd1);         // write output port: waits for its byte

    const State saved = source.controller.save();
    I8042Bench destination;
    destination.controller.restore(saved);

    EXPECT_TRUE(destination.keyboard_irq.high());
    EXPECT_FALSE(destination.aux_irq.high());
    EXPECT_EQ(read_port(destination.controller, kCommand) & 0x0d,
              0x0d);  // OBF, system flag, last was command
    std::vector<std::uint8_t> rest;
    while (read_port(destination.controller, kCommand) & 0x01) {
        rest.push_back(read_port(destination.controller, kData));
    }
    EXPECT_EQ(rest, (std::vector<std::uint8_t>{0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14}));
    // The output-port write waiting for its byte completes on this side: a reset pulse.
    write_port(destination.controller, kData, 0xfe);
    EXPECT_EQ(destination.resets, 1);
    write_port(destination.controller, kCommand, 0x20);  // read the command byte back
    EXPECT_EQ(read_port(destination.controller, kData), 0x05);
}

TEST(I8042StateTest, RefusesHostileStates) {
    I8042Bench bench;
    const State good = bench.controller.save();

    State command = good;
    command["controller_command_awaiting_data"] = 0xaa;
    EXPECT_EQ(restore_error(bench.controller, command),
              "i8042: controller_command_awaiting_data: 170 is no command that takes a data byte");

    State keyboard = good;
    keyboard["keyboard_command_awaiting_data"] = 0x01;
    EXPECT_THAT(restore_error(bench.controller, keyboard),
                HasSubstr("i8042: keyboard_command_awaiting_data"));

    State ram = good;
    ram["ram"] = state::binary(std::vector<std::uint8_t>(31));
    EXPECT_EQ(restore_error(bench.controller, ram), "i8042: ram: 31 bytes, expected 32");

    State queue = good;
    queue["keyboard_queue"] = state::binary(std::vector<std::uint8_t>(17));
    EXPECT_THAT(restore_error(bench.controller, queue),
                HasSubstr("i8042: keyboard_queue: 17 bytes, at most 16"));

    State buffer = good;
    buffer["output_buffer"] = {{"value", 1}};
    EXPECT_EQ(restore_error(bench.controller, buffer), "i8042: output_buffer: aux: missing");
}

// CMOS.
TEST(CmosStateTest, GuestBytesAndIndexSurviveButTheClockIsTheHosts) {
    const auto source_time = std::chrono::system_clock::from_time_t(0);          // 1970, 00:00:00
    const auto destination_time = std::chrono::system_clock::from_time_t(3723);  // 01:02:03
    Cmos source({.below_4g = 512ull << 20}, [&] { return source_time; });
    write_port(source, Cmos::kIndexOffset, 0x0b);
    write_port(source, Cmos::kDataOffset, 0x06);  // binary, 24-hour
    write_port(source, Cmos::kIndexOffset, 0x40);
    write_port(source, Cmos::kDataOffset, 0xa5);   // a byte of the guest's own
    write_port(source, Cmos::kIndexOffset, 0x02);  // minutes selected

    Cmos destination({.below_4g = 512ull << 20}, [&] { return destination_time; });
    destination.restore(source.save());

    EXPECT_EQ(read_port(destination, Cmos::kDataOffset), 2);  // minutes, in binary, of this host's clock
    write_port(destination, Cmos::kIndexOffset, 0x40);
    EXPECT_EQ(read_port(destination, Cmos::kDataOffset), 0xa5);
}

TEST(CmosStateTest, RefusesHostileStates) {
    Cmos cmos({});
    const State good = cmos.save();
    State index = good;
    index["index"] = 128;
    EXPECT_EQ(restore_error(cmos, index), "cmos: index: 128 is past the 128 bytes");
    State bytes = good;
    bytes["bytes"] = state::binary(std::vector<std::uint8_t>(129));
    EXPECT_EQ(restore_error(cmos, bytes), "cmos: bytes: 129 bytes, expected 128");
    State update = good;
    std::vector<std::uint8_t> raw(128);
    raw[0x0a] = 0x80;
    update["bytes"] = state::binary(raw);
    EXPECT_THAT(restore_error(cmos, update), HasSubstr("cmos: bytes: register A has update-in-progress"));
}

// ACPI PM1.
TEST(AcpiPmStateTest, PendingPowerButtonRaisesTheSciAgain) {
    FakeInterruptLine source_sci;
    AcpiPm1EventBlock source(source_sci);
    const std::uint8_t enable[] = {0x00, 0x01};  // PWRBTN_EN
    source.write(2, enable);
    source.press_power_button();
    ASSERT_TRUE(source_sci.high());

    FakeInterruptLine destination_sci;
    AcpiPm1EventBlock destination(destination_sci);
    destination.restore(source.save());
    EXPECT_TRUE(destination_sci.high());
    std::uint8_t block[4] = {};
    destination.read(0, block);
    EXPECT_EQ(block[1], 0x01);  // PWRBTN_STS
    EXPECT_EQ(block[3], 0x01);  // PWRBTN_EN
    const std::uint8_t clear[] = {0x00, 0x01};
    destination.write(0, clear);
    EXPECT_FALSE(destination_sci.high());

    State status = source.save();
    status["status"] = 0x0001;
    EXPECT_THAT(restore_error(destination, status), HasSubstr("acpi-pm1-event: status: 1 has events"));
}

TEST(AcpiPmStateTest, ControlBlockKeepsSleepTypeAndRefusesWriteOnlyBits) {
    AcpiPm1ControlBlock source(5, [] {});
    const std::uint8_t sleep_type[] = {0x00, 0x04};  // SLP_TYP 1, no SLP_EN
    source.write(0, sleep_type);
    int power_offs = 0;
    AcpiPm1ControlBlock destination(5, [&] { ++power_offs; });
    destination.restore(source.save());
    std::uint8_t value[2] = {};
    destination.read(0, value);
    EXPECT_EQ(value[0], 0x01);  // SCI_EN
    EXPECT_EQ(value[1], 0x04);
    EXPECT_EQ(power_offs, 0);

    State write_only = source.save();
    write_only["control"] = 1u << 13;
    EXPECT_EQ(restore_error(destination, write_only),
              "acpi-pm1-control: control: 8192 has write-only bits set");
}

}  // namespace
}  // namespace vim::vmm::devices
