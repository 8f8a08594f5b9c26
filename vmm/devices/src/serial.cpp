#include "vmm/devices/serial.h"

#include <algorithm>
#include <utility>

namespace vim::vmm::devices {
namespace {

// Register offsets; DLL and DLM replace RBR/THR and IER while LCR.DLAB is set.
constexpr std::uint16_t kData = 0;             // RBR on read, THR on write, DLL with DLAB
constexpr std::uint16_t kInterruptEnable = 1;  // IER, DLM with DLAB
constexpr std::uint16_t kInterruptId = 2;      // IIR on read, FCR on write
constexpr std::uint16_t kLineControl = 3;
constexpr std::uint16_t kModemControl = 4;
constexpr std::uint16_t kLineStatus = 5;
constexpr std::uint16_t kModemStatus = 6;
constexpr std::uint16_t kScratch = 7;

constexpr std::uint8_t kIerReceivedData = 0x01;
constexpr std::uint8_t kIerTransmitterEmpty = 0x02;
constexpr std::uint8_t kIerLineStatus = 0x04;
// A 16550A has four enable bits; Linux writes the upper ones to detect other
// chips (XScale's UUE bit), so they must read back as zero.
constexpr std::uint8_t kIerMask = 0x0f;

constexpr std::uint8_t kIirNoInterrupt = 0x01;
constexpr std::uint8_t kIirTransmitterEmpty = 0x02;
constexpr std::uint8_t kIirReceivedData = 0x04;
constexpr std::uint8_t kIirLineStatus = 0x06;
constexpr std::uint8_t kIirFifoEnabled = 0xc0;

constexpr std::uint8_t kFcrEnableFifo = 0x01;
constexpr std::uint8_t kFcrClearReceiver = 0x02;

constexpr std::uint8_t kLcrDivisorLatch = 0x80;

constexpr std::uint8_t kMcrDtr = 0x01;
constexpr std::uint8_t kMcrRts = 0x02;
constexpr std::uint8_t kMcrOut1 = 0x04;
constexpr std::uint8_t kMcrOut2 = 0x08;
constexpr std::uint8_t kMcrLoopback = 0x10;
constexpr std::uint8_t kMcrMask = 0x1f;

constexpr std::uint8_t kLsrDataReady = 0x01;
constexpr std::uint8_t kLsrOverrun = 0x02;
constexpr std::uint8_t kLsrTransmitterIdle = 0x20 | 0x40;  // THRE | TEMT

constexpr std::uint8_t kMsrCts = 0x10;
constexpr std::uint8_t kMsrDsr = 0x20;
constexpr std::uint8_t kMsrRi = 0x40;
constexpr std::uint8_t kMsrDcd = 0x80;

// Divisor 12 (9600 baud from the 1.8432 MHz clock), as firmware leaves it.
constexpr std::uint8_t kDefaultDivisor = 12;

}  // namespace

Serial::Serial(InterruptLine& interrupt, OutputSink output, std::function<void()> input_drained)
    : interrupt_(interrupt),
      output_(std::move(output)),
      input_drained_(std::move(input_drained)),
      divisor_low_(kDefaultDivisor) {}

void Serial::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    bool drained = false;
    {
        std::lock_guard lock(mutex_);
        // A wider access reaches consecutive registers, as the ISA bus splits it.
        for (std::size_t i = 0; i < data.size(); ++i) {
            data[i] = read_register(static_cast<std::uint16_t>(offset + i), drained);
        }
    }
    if (drained && input_drained_) {
        input_drained_();
    }
}

void Serial::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    bool drained = false;
    {
        std::lock_guard lock(mutex_);
        for (std::size_t i = 0; i < data.size(); ++i) {
            write_register(static_cast<std::uint16_t>(offset + i), data[i], drained);
        }
    }
    if (drained && input_drained_) {
        input_drained_();
    }
}

std::size_t Serial::enqueue_input(std::span<const std::uint8_t> bytes) {
    std::lock_guard lock(mutex_);
    // Input is accepted in loopback mode too: the guest only loops back
    // briefly while probing, and dropping the bytes would lose keystrokes.
    const std::size_t accepted = std::min(bytes.size(), kInputFifoCapacity - input_.size());
    input_.insert(input_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(accepted));
    if (accepted < bytes.size()) {
        host_waiting_for_space_ = true;
    }
    update_interrupt();
    return accepted;
}

state::State Serial::save() const {
    std::lock_guard lock(mutex_);
    const std::vector<std::uint8_t> input(input_.begin(), input_.end());
    return {
        {"input", state::binary(input)}, {"interrupt_enable", interrupt_enable_},
        {"line_control", line_control_}, {"modem_control", modem_control_},
        {"scratch", scratch_},           {"divisor_low", divisor_low_},
        {"divisor_high", divisor_high_}, {"fifo_enabled", fifo_enabled_},
        {"overrun", overrun_},           {"transmitter_empty_pending", transmitter_empty_pending_},
    };
}

void Serial::restore(const state::State& state) {
    state::restoring("serial", [&] {
        const auto& input = state::binary_field(state, "input", kInputFifoCapacity);
        const auto interrupt_enable = state::unsigned_field<std::uint8_t>(state, "interrupt_enable");
        if (interrupt_enable & ~kIerMask) {
            throw state::StateError("interrupt_enable: bits 4-7 set (" + std::to_string(interrupt_enable) +
                                    ")");
        }
        const auto modem_control = state::unsigned_field<std::uint8_t>(state, "modem_control");
        if (modem_control & ~kMcrMask) {
            throw state::StateError("modem_control: bits 5-7 set (" + std::to_string(modem_control) + ")");
        }
        const auto line_control = state::unsigned_field<std::uint8_t>(state, "line_control");
        const auto scratch = state::unsigned_field<std::uint8_t>(state, "scratch");
        const auto divisor_low = state::unsigned_field<std::uint8_t>(state, "divisor_low");
        const auto divisor_high = state::unsigned_field<std::uint8_t>(state, "divisor_high");
        const auto fifo_enabled = state::unsigned_field<bool>(state, "fifo_enabled");
        const auto overrun = state::unsigned_field<bool>(state, "overrun");
        const auto transmitter_empty_pending =
            state::unsigned_field<bool>(state, "transmitter_empty_pending");

        std::lock_guard lock(mutex_);
        input_.assign(input.begin(), input.end());
        host_waiting_for_space_ = false;
        interrupt_enable_ = interrupt_enable;
        line_control_ = line_control;
        modem_control_ = modem_control;
        scratch_ = scratch;
        divisor_low_ = divisor_low;
        divisor_high_ = divisor_high;
        fifo_enabled_ = fifo_enabled;
        overrun_ = overrun;
        transmitter_empty_pending_ = transmitter_empty_pending;
        // As from a line never driven: raised if an interrupt is pending.
        interrupt_level_ = false;
        update_interrupt();
    });
}

std::uint8_t Serial::read_register(std::uint16_t offset, bool& drained) {
    const bool divisor_latch = (line_control_ & kLcrDivisorLatch) != 0;
    switch (offset) {
    case kData: {
        if (divisor_latch) {
            return divisor_low_;
        }
        if (input_.empty()) {
            return 0;
        }
        const std::uint8_t byte = input_.front();
        input_.pop_front();
        if (input_.empty() && host_waiting_for_space_) {
            host_waiting_for_space_ = false;
            drained = true;
        }
        update_interrupt();
        return byte;
    }
    case kInterruptEnable:
        return divisor_latch ? divisor_high_ : interrupt_enable_;
    case kInterruptId: {
        const std::uint8_t id = pending_interrupt();
        if (id == kIirTransmitterEmpty) {
            transmitter_empty_pending_ = false;
            update_interrupt();
        }
        return id | (fifo_enabled_ ? kIirFifoEnabled : 0);
    }
    case kLineControl:
        return line_control_;
    case kModemControl:
        return modem_control_;
    case kLineStatus: {
        std::uint8_t status = kLsrTransmitterIdle;
        if (!input_.empty()) {
            status |= kLsrDataReady;
        }
        if (overrun_) {
            status |= kLsrOverrun;
            overrun_ = false;
            update_interrupt();
        }
        return status;
    }
    case kModemStatus:
        return modem_status();
    case kScratch:
        return scratch_;
    default:
        return 0xff;
    }
}

void Serial::write_register(std::uint16_t offset, std::uint8_t value, bool& drained) {
    const bool divisor_latch = (line_control_ & kLcrDivisorLatch) != 0;
    switch (offset) {
    case kData:
        if (divisor_latch) {
            divisor_low_ = value;
            return;
        }
        if (modem_control_ & kMcrLoopback) {
            receive(value);
        } else {
            output_(std::span<const std::uint8_t>(&value, 1));
        }
        // The byte left the transmitter at once, so it is empty again.
        transmitter_empty_pending_ = true;
        update_interrupt();
        return;
    case kInterruptEnable: {
        if (divisor_latch) {
            divisor_high_ = value;
            return;
        }
        const std::uint8_t enable = value & kIerMask;
        // Setting the THRE enable bit re-arms the interrupt because the
        // holding register is empty; Linux checks this at startup and falls
        // back to polling with a timer if it does not happen.
        if ((enable ^ interrupt_enable_) & kIerTransmitterEmpty) {
            transmitter_empty_pending_ = (enable & kIerTransmitterEmpty) != 0;
        }
        interrupt_enable_ = enable;
        update_interrupt();
        return;
    }
    case kInterruptId: {
        const bool enable = (value & kFcrEnableFifo) != 0;
        // Switching the FIFO on or off empties it, as on the chip.
        if (enable != fifo_enabled_ || (enable && (value & kFcrClearReceiver))) {
            drained = clear_input() || drained;
        }
        fifo_enabled_ = enable;
        update_interrupt();
        return;
    }
    case kLineControl:
        line_control_ = value;
        return;
    case kModemControl:
        modem_control_ = value & kMcrMask;
        update_interrupt();
        return;
    case kScratch:
        scratch_ = value;
        return;
    default:
        // LSR and MSR writes are factory-test hooks on the chip; ignored.
        return;
    }
}

void Serial::receive(std::uint8_t byte) {
    if (input_.size() >= kInputFifoCapacity) {
        overrun_ = true;
        return;
    }
    input_.push_back(byte);
}

bool Serial::clear_input() {
    input_.clear();
    if (host_waiting_for_space_) {
        host_waiting_for_space_ = false;
        return true;
    }
    return false;
}

std::uint8_t Serial::pending_interrupt() const {
    // Highest priority first, as the chip reports them.
    if ((interrupt_enable_ & kIerLineStatus) && overrun_) {
        return kIirLineStatus;
    }
    if ((interrupt_enable_ & kIerReceivedData) && !input_.empty()) {
        return kIirReceivedData;
    }
    if ((interrupt_enable_ & kIerTransmitterEmpty) && transmitter_empty_pending_) {
        return kIirTransmitterEmpty;
    }
    return kIirNoInterrupt;
}

std::uint8_t Serial::modem_status() const {
    if (modem_control_ & kMcrLoopback) {
        // The outputs are wired back to the inputs: RTS->CTS, DTR->DSR,
        // OUT1->RI, OUT2->DCD; Linux's probe expects exactly this mapping.
        std::uint8_t status = 0;
        for (const auto& [output, input] : {std::pair{kMcrRts, kMsrCts}, std::pair{kMcrDtr, kMsrDsr},
                                            std::pair{kMcrOut1, kMsrRi}, std::pair{kMcrOut2, kMsrDcd}}) {
            if (modem_control_ & output) {
                status |= input;
            }
        }
        return status;
    }
    // A terminal that is always present and ready to receive.
    return kMsrDcd | kMsrDsr | kMsrCts;
}

void Serial::update_interrupt() {
    // On a PC, OUT2 enables the buffer that drives the UART's interrupt onto
    // the ISA bus, and loopback mode disconnects OUT2 from that pin.
    const bool gate_open = (modem_control_ & kMcrOut2) != 0 && (modem_control_ & kMcrLoopback) == 0;
    const bool level = gate_open && pending_interrupt() != kIirNoInterrupt;
    if (level != interrupt_level_) {
        interrupt_level_ = level;
        interrupt_.set_level(level);
    }
}

}  // namespace vim::vmm::devices
