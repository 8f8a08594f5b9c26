#include "vmm/devices/i8042.h"

namespace vim::vmm::devices {
namespace {

constexpr std::uint8_t kStatusOutputFull = 0x01;
constexpr std::uint8_t kStatusSystemFlag = 0x04;
constexpr std::uint8_t kStatusLastWriteWasCommand = 0x08;
constexpr std::uint8_t kStatusNotInhibited = 0x10;  // the keylock switch is open
constexpr std::uint8_t kStatusAuxData = 0x20;       // the output buffer holds an aux byte

constexpr std::uint8_t kCommandByteKeyboardInterrupt = 0x01;
constexpr std::uint8_t kCommandByteAuxInterrupt = 0x02;
constexpr std::uint8_t kCommandByteSystemFlag = 0x04;
constexpr std::uint8_t kCommandByteKeyboardDisabled = 0x10;
constexpr std::uint8_t kCommandByteAuxDisabled = 0x20;
constexpr std::uint8_t kCommandByteTranslate = 0x40;
// What a BIOS leaves after POST: keyboard interrupt on, system flag set,
// translation to set 1 on, and the aux port (no mouse behind it) off.
constexpr std::uint8_t kDefaultCommandByte =
    kCommandByteKeyboardInterrupt | kCommandByteSystemFlag | kCommandByteAuxDisabled | kCommandByteTranslate;

constexpr std::uint8_t kOutputPortResetInactive = 0x01;  // the reset line is active low
constexpr std::uint8_t kOutputPortA20 = 0x02;
constexpr std::uint8_t kOutputPortKeyboardFull = 0x10;
constexpr std::uint8_t kOutputPortAuxFull = 0x20;
// Bits 2-3 are unused and bits 6-7 (keyboard clock and data) idle high.
constexpr std::uint8_t kDefaultOutputPort = 0xcc | kOutputPortA20 | kOutputPortResetInactive;

constexpr std::uint8_t kCmdReadRamFirst = 0x20;
constexpr std::uint8_t kCmdReadRamLast = 0x3f;
constexpr std::uint8_t kCmdWriteRamFirst = 0x60;
constexpr std::uint8_t kCmdWriteRamLast = 0x7f;
constexpr std::uint8_t kCmdDisableAux = 0xa7;
constexpr std::uint8_t kCmdEnableAux = 0xa8;
constexpr std::uint8_t kCmdAuxInterfaceTest = 0xa9;
constexpr std::uint8_t kCmdSelfTest = 0xaa;
constexpr std::uint8_t kCmdKeyboardInterfaceTest = 0xab;
constexpr std::uint8_t kCmdDisableKeyboard = 0xad;
constexpr std::uint8_t kCmdEnableKeyboard = 0xae;
constexpr std::uint8_t kCmdReadOutputPort = 0xd0;
constexpr std::uint8_t kCmdWriteOutputPort = 0xd1;
// These three take a data byte: the first two put it in the output buffer as
// if the keyboard or aux device had sent it (Linux's aux probe loops bytes
// back through 0xd3), the last sends it to the aux device.
constexpr std::uint8_t kCmdWriteKeyboardOutput = 0xd2;
constexpr std::uint8_t kCmdWriteAuxOutput = 0xd3;
constexpr std::uint8_t kCmdWriteAux = 0xd4;
constexpr std::uint8_t kCmdPulseOutputFirst = 0xf0;  // low nibble clear = pulse that line

constexpr std::uint8_t kSelfTestPassed = 0x55;
constexpr std::uint8_t kInterfaceTestPassed = 0x00;

constexpr std::uint8_t kKbdSetLeds = 0xed;
constexpr std::uint8_t kKbdEcho = 0xee;
constexpr std::uint8_t kKbdScanCodeSet = 0xf0;
constexpr std::uint8_t kKbdIdentify = 0xf2;
constexpr std::uint8_t kKbdTypematic = 0xf3;
constexpr std::uint8_t kKbdEnable = 0xf4;
constexpr std::uint8_t kKbdDefaultDisable = 0xf5;
constexpr std::uint8_t kKbdDefault = 0xf6;
constexpr std::uint8_t kKbdReset = 0xff;

constexpr std::uint8_t kKbdAck = 0xfa;
constexpr std::uint8_t kKbdSelfTestPassed = 0xaa;
constexpr std::uint8_t kKbdIdFirst = 0xab;
constexpr std::uint8_t kKbdIdSecond = 0x83;
constexpr std::uint8_t kScanCodeSet2 = 0x02;
// The controller translates every byte the keyboard sends while translation
// is on; both 0x83 (the ID) and 0x02 (the set number) become 0x41.
constexpr std::uint8_t kTranslated0x83And0x02 = 0x41;

// The keyboard's own output buffer on a real AT keyboard; it also bounds what
// a guest that never reads can make the VMM hold.
constexpr std::size_t kKeyboardBufferSize = 16;

// What the controller answers, from the aux side, for a byte it could not
// deliver to the aux device. A real controller reports an absent mouse only
// after clocking at nothing for a while; this one answers at once, so that
// psmouse gives up in microseconds: libps2 takes 0xfe as a NAK, retries once
// and fails the command, where a byte dropped silently would cost it 200 ms a
// try. The status register's timeout bit stays clear; the NAK alone is enough.
constexpr std::uint8_t kAuxNoDevice = 0xfe;
// Rejections the guest has not read yet, capped like the keyboard's buffer so
// that a guest writing to the aux port without reading cannot grow it.
constexpr std::size_t kAuxBufferSize = 16;

// Left Ctrl, left Alt and Delete (an extended key) pressed, then released in
// reverse order. In set 1 a release is the press code with bit 7 set; in set 2
// it is the press code behind an 0xf0 prefix.
constexpr std::uint8_t kCtrlAltDelSet1[] = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};
constexpr std::uint8_t kCtrlAltDelSet2[] = {0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14};

}  // namespace

I8042::I8042(InterruptLine& keyboard_interrupt, InterruptLine& aux_interrupt, std::function<void()> on_reset)
    : keyboard_interrupt_{keyboard_interrupt},
      aux_interrupt_{aux_interrupt},
      on_reset_(std::move(on_reset)),
      output_port_(kDefaultOutputPort) {
    ram_[0] = kDefaultCommandByte;
}

void I8042::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < data.size(); ++i) {
        data[i] = read_register(static_cast<std::uint16_t>(offset + i));
    }
}

void I8042::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    bool reset = false;
    {
        std::lock_guard lock(mutex_);
        for (std::size_t i = 0; i < data.size(); ++i) {
            write_register(static_cast<std::uint16_t>(offset + i), data[i], reset);
        }
    }
    if (reset && on_reset_) {
        on_reset_();
    }
}

bool I8042::request_ctrl_alt_del() {
    std::lock_guard lock(mutex_);
    const std::span<const std::uint8_t> sequence = translating()
                                                       ? std::span<const std::uint8_t>(kCtrlAltDelSet1)
                                                       : std::span<const std::uint8_t>(kCtrlAltDelSet2);
    if (!keyboard_scanning_ || keyboard_queue_.size() + sequence.size() > kKeyboardBufferSize) {
        return false;
    }
    keyboard_queue_.insert(keyboard_queue_.end(), sequence.begin(), sequence.end());
    fill_output_buffer();
    update_interrupts();
    return true;
}

state::State I8042::save() const {
    const auto byte_state = [](const std::optional<OutputByte>& byte) -> state::State {
        if (!byte) {
            return nullptr;
        }
        return {{"value", byte->value}, {"aux", byte->port == Port::Aux}};
    };
    std::lock_guard lock(mutex_);
    return {
        {"ram", state::binary(std::span<const std::uint8_t>(ram_))},
        {"output_port", output_port_},
        {"output_buffer", byte_state(output_buffer_)},
        {"last_output", last_output_},
        {"controller_reply", byte_state(controller_reply_)},
        {"keyboard_queue",
         state::binary(std::vector<std::uint8_t>(keyboard_queue_.begin(), keyboard_queue_.end()))},
        {"aux_queue", state::binary(std::vector<std::uint8_t>(aux_queue_.begin(), aux_queue_.end()))},
        {"controller_command_awaiting_data", controller_command_awaiting_data_},
        {"keyboard_command_awaiting_data", keyboard_command_awaiting_data_},
        {"last_write_was_command", last_write_was_command_},
        {"keyboard_scanning", keyboard_scanning_},
    };
}

void I8042::restore(const state::State& state) {
    const auto byte_field = [](const state::State& parent, const char* name) -> std::optional<OutputByte> {
        const state::State& value = state::field(parent, name);
        if (value.is_null()) {
            return std::nullopt;
        }
        std::optional<OutputByte> byte;
        state::restoring(name, [&] {
            byte = OutputByte{state::unsigned_field<std::uint8_t>(value, "value"),
                              state::unsigned_field<bool>(value, "aux") ? Port::Aux : Port::Keyboard};
        });
        return byte;
    };
    state::restoring("i8042", [&] {
        std::array<std::uint8_t, 32> ram;
        state::bytes_field(state, "ram", ram);
        const auto output_port = state::unsigned_field<std::uint8_t>(state, "output_port");
        const std::optional<OutputByte> output_buffer = byte_field(state, "output_buffer");
        const auto last_output = state::unsigned_field<std::uint8_t>(state, "last_output");
        const std::optional<OutputByte> controller_reply = byte_field(state, "controller_reply");
        const auto& keyboard_queue = state::binary_field(state, "keyboard_queue", kKeyboardBufferSize);
        const auto& aux_queue = state::binary_field(state, "aux_queue", kAuxBufferSize);
        // controller_data() indexes controller RAM with the command: only
        // the commands that take a data byte may be waiting for one.
        const auto controller_command =
            state::unsigned_field<std::uint8_t>(state, "controller_command_awaiting_data");
        if (controller_command != 0 &&
            !(controller_command >= kCmdWriteRamFirst && controller_command <= kCmdWriteRamLast) &&
            !(controller_command >= kCmdWriteOutputPort && controller_command <= kCmdWriteAux)) {
            throw state::StateError(
                "controller_command_awaiting_data: " + std::to_string(controller_command) +
                " is no command that takes a data byte");
        }
        const auto keyboard_command =
            state::unsigned_field<std::uint8_t>(state, "keyboard_command_awaiting_data");
        if (keyboard_command != 0 && keyboard_command != kKbdSetLeds && keyboard_command != kKbdScanCodeSet &&
            keyboard_command != kKbdTypematic) {
            throw state::StateError("keyboard_command_awaiting_data: " + std::to_string(keyboard_command) +
                                    " is no keyboard command that takes an argument");
        }
        const auto last_write_was_command = state::unsigned_field<bool>(state, "last_write_was_command");
        const auto keyboard_scanning = state::unsigned_field<bool>(state, "keyboard_scanning");

        std::lock_guard lock(mutex_);
        ram_ = ram;
        output_port_ = output_port;
        output_buffer_ = output_buffer;
        last_output_ = last_output;
        controller_reply_ = controller_reply;
        keyboard_queue_.assign(keyboard_queue.begin(), keyboard_queue.end());
        aux_queue_.assign(aux_queue.begin(), aux_queue.end());
        controller_command_awaiting_data_ = controller_command;
        keyboard_command_awaiting_data_ = keyboard_command;
        last_write_was_command_ = last_write_was_command;
        keyboard_scanning_ = keyboard_scanning;
        // As from lines never driven: raised where the output buffer interrupts.
        keyboard_interrupt_.level = false;
        aux_interrupt_.level = false;
        update_interrupts();
    });
}

std::uint8_t I8042::read_register(std::uint16_t offset) {
    switch (offset) {
    case kDataOffset:
        if (output_buffer_) {
            last_output_ = output_buffer_->value;
            output_buffer_.reset();
            // Drop the line before refilling so that every byte is a fresh
            // edge on the (edge-triggered) ISA interrupt.
            update_interrupts();
            fill_output_buffer();
            update_interrupts();
        }
        // An empty buffer reads as whatever it last held, as on the chip.
        return last_output_;
    case kCommandOffset: {
        std::uint8_t status = kStatusNotInhibited;
        if (output_buffer_) {
            status |= kStatusOutputFull;
        }
        if (output_holds(Port::Aux)) {
            status |= kStatusAuxData;
        }
        if (ram_[0] & kCommandByteSystemFlag) {
            status |= kStatusSystemFlag;
        }
        if (last_write_was_command_) {
            status |= kStatusLastWriteWasCommand;
        }
        return status;
    }
    default:
        return 0xff;
    }
}

void I8042::write_register(std::uint16_t offset, std::uint8_t value, bool& reset) {
    switch (offset) {
    case kDataOffset:
        last_write_was_command_ = false;
        if (controller_command_awaiting_data_ != 0) {
            const std::uint8_t command = controller_command_awaiting_data_;
            controller_command_awaiting_data_ = 0;
            controller_data(command, value, reset);
        } else {
            // Writing to the keyboard re-enables its interface on the 8042.
            ram_[0] &= static_cast<std::uint8_t>(~kCommandByteKeyboardDisabled);
            keyboard_command(value);
        }
        break;
    case kCommandOffset:
        last_write_was_command_ = true;
        // A new command abandons one still waiting for its data byte.
        controller_command_awaiting_data_ = 0;
        controller_command(value, reset);
        break;
    default:
        return;
    }
    fill_output_buffer();
    update_interrupts();
}

void I8042::controller_command(std::uint8_t command, bool& reset) {
    if (command >= kCmdReadRamFirst && command <= kCmdReadRamLast) {
        respond(ram_[command - kCmdReadRamFirst]);
    } else if ((command >= kCmdWriteRamFirst && command <= kCmdWriteRamLast) ||
               (command >= kCmdWriteOutputPort && command <= kCmdWriteAux)) {
        controller_command_awaiting_data_ = command;
    } else if (command >= kCmdPulseOutputFirst) {
        // Bits 0-3 clear pulse output-port lines 0-3 low; line 0 is CPU reset.
        if ((command & kOutputPortResetInactive) == 0) {
            reset = true;
        }
    } else {
        switch (command) {
        case kCmdDisableAux:
            ram_[0] |= kCommandByteAuxDisabled;
            break;
        case kCmdEnableAux:
            ram_[0] &= static_cast<std::uint8_t>(~kCommandByteAuxDisabled);
            break;
        case kCmdAuxInterfaceTest:
            // The aux clock and data lines are fine; there is just nothing on them.
            respond(kInterfaceTestPassed);
            break;
        case kCmdSelfTest:
            respond(kSelfTestPassed);
            break;
        case kCmdKeyboardInterfaceTest:
            respond(kInterfaceTestPassed);
            break;
        case kCmdDisableKeyboard:
            ram_[0] |= kCommandByteKeyboardDisabled;
            break;
        case kCmdEnableKeyboard:
            ram_[0] &= static_cast<std::uint8_t>(~kCommandByteKeyboardDisabled);
            break;
        case kCmdReadOutputPort: {
            // The buffer-full lines are live signals, not stored bits.
            std::uint8_t port = output_port_ & ~(kOutputPortKeyboardFull | kOutputPortAuxFull);
            if (output_holds(Port::Keyboard)) {
                port |= kOutputPortKeyboardFull;
            }
            if (output_holds(Port::Aux)) {
                port |= kOutputPortAuxFull;
            }
            respond(port);
            break;
        }
        default:
            // Password, input-port and vendor commands: no such hardware here.
            break;
        }
    }
}

void I8042::controller_data(std::uint8_t command, std::uint8_t value, bool& reset) {
    switch (command) {
    case kCmdWriteOutputPort:
        output_port_ = value;
        if ((value & kOutputPortResetInactive) == 0) {
            reset = true;
        }
        break;
    case kCmdWriteKeyboardOutput:
        respond(value, Port::Keyboard);
        break;
    case kCmdWriteAuxOutput:
        respond(value, Port::Aux);
        break;
    case kCmdWriteAux:
        aux_command();
        break;
    default:
        ram_[command - kCmdWriteRamFirst] = value;
        break;
    }
}

void I8042::keyboard_command(std::uint8_t value) {
    if (keyboard_command_awaiting_data_ != 0) {
        const std::uint8_t command = keyboard_command_awaiting_data_;
        keyboard_command_awaiting_data_ = 0;
        if (command == kKbdScanCodeSet && value == 0) {
            keyboard_reply({kKbdAck, translating() ? kTranslated0x83And0x02 : kScanCodeSet2});
        } else {
            // LED state and typematic rate have nothing to drive. A request
            // for set 1 or 3 is acknowledged but set 2 stays, which is how
            // atkbd meets keyboards without them: it reads the set back.
            keyboard_reply({kKbdAck});
        }
        return;
    }
    switch (value) {
    case kKbdSetLeds:
    case kKbdScanCodeSet:
    case kKbdTypematic:
        keyboard_command_awaiting_data_ = value;
        keyboard_reply({kKbdAck});
        break;
    case kKbdEcho:
        keyboard_reply({kKbdEcho});
        break;
    case kKbdIdentify:
        keyboard_reply({kKbdAck, kKbdIdFirst, translating() ? kTranslated0x83And0x02 : kKbdIdSecond});
        break;
    case kKbdEnable:
        keyboard_scanning_ = true;
        keyboard_reply({kKbdAck});
        break;
    case kKbdDefaultDisable:
    case kKbdDefault:
        // Both restore defaults, which empties the keyboard's buffer.
        keyboard_queue_.clear();
        keyboard_scanning_ = value == kKbdDefault;
        keyboard_reply({kKbdAck});
        break;
    case kKbdReset:
        keyboard_queue_.clear();
        keyboard_scanning_ = true;
        keyboard_reply({kKbdAck, kKbdSelfTestPassed});
        break;
    default:
        keyboard_reply({kKbdAck});
        break;
    }
}

void I8042::keyboard_reply(std::initializer_list<std::uint8_t> bytes) {
    for (std::uint8_t byte : bytes) {
        // A guest that writes commands without reading replies loses the
        // excess, as it would on the real keyboard.
        if (keyboard_queue_.size() < kKeyboardBufferSize) {
            keyboard_queue_.push_back(byte);
        }
    }
}

void I8042::aux_command() {
    // Writing to the aux device re-enables its interface, as writing to the
    // keyboard does. No mouse takes the byte, whatever it is (see kAuxNoDevice).
    ram_[0] &= static_cast<std::uint8_t>(~kCommandByteAuxDisabled);
    if (aux_queue_.size() < kAuxBufferSize) {
        aux_queue_.push_back(kAuxNoDevice);
    }
}

void I8042::respond(std::uint8_t byte, Port port) { controller_reply_ = OutputByte{byte, port}; }

bool I8042::translating() const { return (ram_[0] & kCommandByteTranslate) != 0; }

bool I8042::output_holds(Port port) const { return output_buffer_ && output_buffer_->port == port; }

void I8042::fill_output_buffer() {
    if (output_buffer_) {
        return;
    }
    // A disabled interface holds its device's bytes back; the keyboard goes
    // first when both have some, which only matters for the order in which
    // they are read: each side keeps its own bytes in order.
    if (controller_reply_) {
        output_buffer_ = controller_reply_;
        controller_reply_.reset();
    } else if (!(ram_[0] & kCommandByteKeyboardDisabled) && !keyboard_queue_.empty()) {
        output_buffer_ = OutputByte{keyboard_queue_.front(), Port::Keyboard};
        keyboard_queue_.pop_front();
    } else if (!(ram_[0] & kCommandByteAuxDisabled) && !aux_queue_.empty()) {
        output_buffer_ = OutputByte{aux_queue_.front(), Port::Aux};
        aux_queue_.pop_front();
    }
}

void I8042::update_interrupts() {
    keyboard_interrupt_.drive(output_holds(Port::Keyboard) && (ram_[0] & kCommandByteKeyboardInterrupt));
    aux_interrupt_.drive(output_holds(Port::Aux) && (ram_[0] & kCommandByteAuxInterrupt));
}

void I8042::DrivenLine::drive(bool high) {
    if (high != level) {
        level = high;
        line.set_level(high);
    }
}

}  // namespace vim::vmm::devices
