#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <span>

#include "vmm/devices/bus_device.h"
#include "vmm/devices/interrupts.h"
#include "vmm/state/state.h"

namespace vim::vmm::devices {

// The PC keyboard controller (i8042) with an AT keyboard behind it. It exists
// for two things: the guest resets the machine through it, and the host asks
// the guest for a graceful shutdown by typing Ctrl-Alt-Del on it.
//
// It is registered as one range of kPortSpan ports starting at the data port
// (0x60 on a PC): the command/status port (0x64) is at kCommandOffset. The
// ports in between (0x61, the PC speaker gate) belong to KVM's in-kernel PIT
// and never reach this device.
//
// Modelled: the status register, controller RAM (the command byte at address
// 0), self-test and interface tests, keyboard/aux enable bits, the output port
// and CPU-reset pulses, and the keyboard's replies to the commands Linux's
// atkbd sends. The aux (PS/2 mouse) port exists with no mouse plugged in: it
// answers the loopback (0xd3) and interface test (0xa9) Linux's i8042 probe
// runs, raises IRQ 12 for bytes from the aux side, and rejects every byte sent
// to the mouse at once, so neither the probe nor psmouse waits for timeouts.
// Only scan code set 2 exists, delivered as set 1 while the command byte asks
// the controller to translate.
class I8042 final : public BusDevice, public state::Stateful {
public:
    static constexpr std::uint16_t kDataOffset = 0;
    static constexpr std::uint16_t kCommandOffset = 4;
    static constexpr std::uint16_t kPortSpan = 5;

    // `keyboard_interrupt` is IRQ 1 and `aux_interrupt` IRQ 12. `on_reset` is
    // called on the vCPU thread, without the controller's lock held, when the
    // guest pulses the CPU reset line.
    I8042(InterruptLine& keyboard_interrupt, InterruptLine& aux_interrupt, std::function<void()> on_reset);

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    // Host side, from any thread: presses Ctrl, Alt and Delete, then releases
    // them. Returns false, typing nothing, when the guest has switched keyboard
    // scanning off or the keyboard's buffer cannot take the whole sequence
    // (the guest is not reading it).
    bool request_ctrl_alt_del();

    // Controller RAM, output port and buffer, the keyboard's and aux side's
    // queued bytes and the commands waiting for an argument. restore() drives
    // IRQ 1 or 12 high when the output buffer holds a byte that interrupts.
    state::State save() const override;
    void restore(const state::State& state) override;

private:
    // The side of the controller a byte in the output buffer belongs to: the
    // status register tells the guest, and it decides the interrupt (1 or 12).
    enum class Port : std::uint8_t { Keyboard, Aux };
    struct OutputByte {
        std::uint8_t value;
        Port port;
    };
    // One interrupt wire and the level last driven on it, so that only
    // changes reach the interrupt controller.
    struct DrivenLine {
        InterruptLine& line;
        bool level = false;
        void drive(bool high);
    };

    std::uint8_t read_register(std::uint16_t offset);
    void write_register(std::uint16_t offset, std::uint8_t value, bool& reset);
    void controller_command(std::uint8_t command, bool& reset);
    void controller_data(std::uint8_t command, std::uint8_t value, bool& reset);
    void keyboard_command(std::uint8_t value);
    void keyboard_reply(std::initializer_list<std::uint8_t> bytes);
    void aux_command();
    void respond(std::uint8_t byte, Port port = Port::Keyboard);
    bool translating() const;
    bool output_holds(Port port) const;
    void fill_output_buffer();
    void update_interrupts();

    DrivenLine keyboard_interrupt_;
    DrivenLine aux_interrupt_;
    const std::function<void()> on_reset_;

    mutable std::mutex mutex_;
    std::array<std::uint8_t, 32> ram_{};  // ram_[0] is the command byte
    std::uint8_t output_port_;
    // What the guest reads at the data port next; OBF is set while it holds one.
    std::optional<OutputByte> output_buffer_;
    std::uint8_t last_output_ = 0;
    // A controller reply goes ahead of keyboard and aux bytes still in flight.
    std::optional<OutputByte> controller_reply_;
    std::deque<std::uint8_t> keyboard_queue_;
    // What the aux side has to say: with no mouse, only the controller's
    // rejection of each byte the guest sent to it.
    std::deque<std::uint8_t> aux_queue_;
    // A command written to the command port that takes its argument from the
    // data port (0x60-0x7f, 0xd1-0xd4); 0 when none.
    std::uint8_t controller_command_awaiting_data_ = 0;
    // A keyboard command that takes an argument byte (0xed, 0xf0, 0xf3); 0 when none.
    std::uint8_t keyboard_command_awaiting_data_ = 0;
    bool last_write_was_command_ = false;
    bool keyboard_scanning_ = true;
};

}  // namespace vim::vmm::devices
