#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

#include "vmm/devices/bus_device.h"
#include "vmm/devices/interrupts.h"
#include "vmm/state/state.h"

namespace vim::vmm::devices {

// A 16550A UART wired as on a PC: eight consecutive ports, one interrupt line
// gated by the modem-control OUT2 bit. Transmission is immediate (the
// transmitter is always empty), so the guest never waits on a baud rate.
//
// Enough of the chip is modelled for Linux's 8250 driver to identify it as a
// 16550A: a scratch register, loopback mode with the modem-status mapping,
// the FIFO-enabled bits in IIR, IER bits 4-7 reading zero, and the THRE
// interrupt re-asserted when IER's THRE bit is set again.
//
// Not modelled: modem-status change interrupts and delta bits (the lines never
// change outside loopback), parity/framing/break errors, the receive-timeout
// interrupt and FIFO trigger levels (data-ready interrupts on any byte, which
// the driver handles the same way).
class Serial final : public BusDevice, public state::Stateful {
public:
    // Receives each byte the guest transmits, on the vCPU thread, with the
    // UART's lock held (so output from several vCPUs stays in order): it must
    // not call back into this Serial.
    using OutputSink = std::function<void(std::span<const std::uint8_t>)>;

    static constexpr std::uint16_t kPortSpan = 8;
    // Deeper than a real 16550A's 16 bytes: the guest cannot tell, since its
    // driver drains the FIFO until data-ready clears, and a deeper buffer
    // wakes the host's input loop less often.
    static constexpr std::size_t kInputFifoCapacity = 64;

    // `input_drained`, if given, is called on the vCPU thread, without the
    // UART's lock held, when the guest has emptied the input FIFO after an
    // enqueue_input() call could not take all its bytes: the moment for the
    // host to offer the rest.
    Serial(InterruptLine& interrupt, OutputSink output, std::function<void()> input_drained = {});

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    // Host side, from any thread: queues bytes for the guest to receive and
    // raises the data-ready interrupt. Returns how many bytes fit in the FIFO;
    // the caller keeps the rest until input_drained.
    std::size_t enqueue_input(std::span<const std::uint8_t> bytes);

    // The registers, the input FIFO and the interrupt conditions. The host's
    // wait for FIFO space does not travel: the destination's console starts
    // afresh. restore() drives the interrupt line high if an interrupt is
    // pending, as the source had it.
    state::State save() const override;
    void restore(const state::State& state) override;

private:
    std::uint8_t read_register(std::uint16_t offset, bool& drained);
    void write_register(std::uint16_t offset, std::uint8_t value, bool& drained);
    void receive(std::uint8_t byte);
    bool clear_input();  // true when that emptied a FIFO the host is waiting on
    std::uint8_t pending_interrupt() const;
    std::uint8_t modem_status() const;
    void update_interrupt();

    InterruptLine& interrupt_;
    const OutputSink output_;
    const std::function<void()> input_drained_;

    mutable std::mutex mutex_;
    std::deque<std::uint8_t> input_;
    bool host_waiting_for_space_ = false;
    std::uint8_t interrupt_enable_ = 0;
    std::uint8_t line_control_ = 0;
    std::uint8_t modem_control_ = 0;
    std::uint8_t scratch_ = 0;
    std::uint8_t divisor_low_;
    std::uint8_t divisor_high_ = 0;
    bool fifo_enabled_ = false;
    bool overrun_ = false;
    // THRE is an event, not a state: it is pending after the transmitter
    // empties or IER's THRE bit is set, and consumed when IIR reports it.
    bool transmitter_empty_pending_ = false;
    bool interrupt_level_ = false;
};

}  // namespace vim::vmm::devices
