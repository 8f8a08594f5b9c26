#include "vmm/devices/serial.h"

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <thread>
#include <vector>

#include "vim/testing/fake_interrupt_line.h"

namespace vim::vmm::devices {
namespace {

constexpr std::uint16_t kRbr = 0, kThr = 0, kDll = 0;
constexpr std::uint16_t kIer = 1, kDlm = 1;
constexpr std::uint16_t kIir = 2, kFcr = 2, kEfr = 2;
constexpr std::uint16_t kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;

constexpr std::uint8_t kMcrDtr = 0x01, kMcrRts = 0x02, kMcrOut2 = 0x08, kMcrLoop = 0x10;
constexpr std::uint8_t kLsrDataReady = 0x01, kLsrOverrun = 0x02, kLsrIdle = 0x60;

class SerialTest : public ::testing::Test {
protected:
    std::uint8_t read_port(std::uint16_t offset) {
        std::uint8_t byte = 0;
        serial.read(offset, {&byte, 1});
        return byte;
    }
    void write_port(std::uint16_t offset, std::uint8_t value) { serial.write(offset, {&value, 1}); }
    std::size_t enqueue(const std::string& text) {
        return serial.enqueue_input({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
    }
    std::string output_text() const { return {output.begin(), output.end()}; }

    vim::testing::FakeInterruptLine irq;
    std::vector<std::uint8_t> output;
    int drained = 0;
    Serial serial{irq,
                  [this](std::span<const std::uint8_t> bytes) {
                      output.insert(output.end(), bytes.begin(), bytes.end());
                  },
                  [this] { ++drained; }};
};

// The checks Linux's 8250 autoconfig() and autoconfig_16550a() make, in
// order; each one that went the other way would name a different chip.
TEST_F(SerialTest, PassesLinuxProbeAsA16550A) {
    // Is there a UART: IER keeps its four bits and nothing else.
    const std::uint8_t saved_ier = read_port(kIer);
    write_port(kIer, 0);
    EXPECT_EQ(read_port(kIer) & 0x0f, 0);
    write_port(kIer, 0x0f);
    EXPECT_EQ(read_port(kIer) & 0x0f, 0x0f);
    write_port(kIer, saved_ier);

    // Loopback: RTS and OUT2 come back as CTS and DCD.
    const std::uint8_t saved_mcr = read_port(kMcr);
    write_port(kMcr, kMcrLoop | 0x0a);
    EXPECT_EQ(read_port(kMsr) & 0xf0, 0x90);
    write_port(kMcr, saved_mcr);

    // FIFO detection: both FIFO bits in IIR mean a 16550A.
    write_port(kLcr, 0xbf);
    write_port(kEfr, 0);
    write_port(kLcr, 0);
    write_port(kFcr, 0x01);
    EXPECT_EQ(read_port(kIir) >> 6, 3);

    // No EFR behind either configuration mode (not an ST16650).
    write_port(kLcr, 0x80);
    EXPECT_NE(read_port(kEfr), 0);
    write_port(kLcr, 0xbf);
    EXPECT_NE(read_port(kEfr), 0);

    // Not a National Semiconductor SuperIO: MCR's loop bit does not show in
    // EXCR1 (offset 2 with LCR = 0xe0).
    write_port(kLcr, 0);
    const std::uint8_t mcr = read_port(kMcr);
    write_port(kLcr, 0xe0);
    EXPECT_EQ((read_port(2) ^ mcr) & kMcrLoop, 0);
    write_port(kLcr, 0);
    write_port(kMcr, mcr ^ kMcrLoop);
    write_port(kLcr, 0xe0);
    const std::uint8_t excr1 = read_port(2);
    write_port(kLcr, 0);
    write_port(kMcr, mcr);
    EXPECT_EQ((excr1 ^ mcr) & kMcrLoop, 0);

    // Not a TI16750: no 64-byte FIFO bit in IIR with or without DLAB.
    write_port(kFcr, 0x21);
    EXPECT_EQ(read_port(kIir) & 0xe0, 0xc0);
    write_port(kFcr, 0);
    write_port(kLcr, 0x80);
    write_port(kFcr, 0x21);
    EXPECT_NE(read_port(kIir) & 0xe0, 0xe0);
    write_port(kFcr, 0);
    write_port(kLcr, 0);

    // Not an XScale: IER's UUE bit does not stick.
    const std::uint8_t ier = read_port(kIer);
    write_port(kIer, ier | 0x40);
    EXPECT_EQ(read_port(kIer) & 0x40, 0);
    write_port(kIer, ier);

    // The scratch register holds what is written.
    write_port(kScr, 0xa5);
    EXPECT_EQ(read_port(kScr), 0xa5);
    write_port(kScr, 0x5a);
    EXPECT_EQ(read_port(kScr), 0x5a);

    // Startup's safety check: LSR must not float.
    EXPECT_NE(read_port(kLsr), 0xff);
    EXPECT_TRUE(output.empty());
    EXPECT_FALSE(irq.high());
}

TEST_F(SerialTest, TransmittedBytesReachTheSink) {
    for (char c : std::string("login: ")) {
        EXPECT_EQ(read_port(kLsr) & kLsrIdle, kLsrIdle);
        write_port(kThr, static_cast<std::uint8_t>(c));
    }
    EXPECT_EQ(output_text(), "login: ");
}

TEST_F(SerialTest, LoopbackReturnsTransmittedBytesInsteadOfSendingThem) {
    write_port(kMcr, kMcrLoop);
    write_port(kThr, 'x');
    EXPECT_EQ(read_port(kLsr) & kLsrDataReady, kLsrDataReady);
    EXPECT_EQ(read_port(kRbr), 'x');
    EXPECT_EQ(read_port(kLsr) & kLsrDataReady, 0);
    EXPECT_TRUE(output.empty());
}

TEST_F(SerialTest, ModemStatusOutsideLoopbackIsAReadyTerminal) {
    EXPECT_EQ(read_port(kMsr), 0xb0);  // DCD | DSR | CTS
    write_port(kMcr, kMcrLoop | kMcrDtr | kMcrRts);
    EXPECT_EQ(read_port(kMsr), 0x30);  // DSR | CTS
}

TEST_F(SerialTest, InputRaisesDataReadyInterruptUntilRead) {
    write_port(kMcr, kMcrOut2);
    write_port(kIer, 0x01);
    EXPECT_FALSE(irq.high());

    EXPECT_EQ(enqueue("ok"), 2u);
    EXPECT_TRUE(irq.high());
    EXPECT_EQ(read_port(kIir), 0x04);  // received data available, FIFO off
    EXPECT_EQ(read_port(kLsr) & kLsrDataReady, kLsrDataReady);
    EXPECT_EQ(read_port(kRbr), 'o');
    EXPECT_TRUE(irq.high());
    EXPECT_EQ(read_port(kRbr), 'k');
    EXPECT_EQ(read_port(kLsr) & kLsrDataReady, 0);
    EXPECT_FALSE(irq.high());
    EXPECT_EQ(read_port(kIir), 0x01);
    EXPECT_TRUE(irq.only_changes());
}

TEST_F(SerialTest, Out2GatesTheInterruptLikeAPc) {
    write_port(kIer, 0x01);
    enqueue("a");
    EXPECT_TRUE(irq.levels.empty());
    EXPECT_EQ(read_port(kIir), 0x04);  // pending inside the chip all the same

    write_port(kMcr, kMcrOut2);
    EXPECT_TRUE(irq.high());
    write_port(kMcr, kMcrOut2 | kMcrLoop);
    EXPECT_FALSE(irq.high());
    write_port(kMcr, 0);
    EXPECT_TRUE(irq.only_changes());
}

// The sequence of Linux's serial8250_do_startup() that decides whether the
// UART re-asserts THRE; if not, Linux polls the port with a timer.
TEST_F(SerialTest, ThreInterruptIsReassertedWhenReenabled) {
    write_port(kMcr, kMcrOut2);
    write_port(kFcr, 0x01);
    write_port(kIer, 0x02);
    EXPECT_TRUE(irq.high());
    const std::uint8_t iir1 = read_port(kIir);
    write_port(kIer, 0);
    write_port(kIer, 0x02);
    const std::uint8_t iir2 = read_port(kIir);
    write_port(kIer, 0);

    EXPECT_EQ(iir1, 0xc2);
    EXPECT_EQ(iir2, 0xc2);
    EXPECT_FALSE(irq.high());
    EXPECT_TRUE(irq.only_changes());
}

TEST_F(SerialTest, ReadingIirClearsThreOnlyWhenItIsTheReportedSource) {
    write_port(kMcr, kMcrOut2);
    write_port(kIer, 0x03);
    enqueue("z");
    EXPECT_EQ(read_port(kIir), 0x04);  // data outranks THRE, which stays pending
    EXPECT_EQ(read_port(kRbr), 'z');
    EXPECT_TRUE(irq.high());
    EXPECT_EQ(read_port(kIir), 0x02);  // now THRE is reported, and consumed
    EXPECT_FALSE(irq.high());
    EXPECT_EQ(read_port(kIir), 0x01);

    write_port(kThr, '!');  // the transmitter empties again at once
    EXPECT_TRUE(irq.high());
    EXPECT_EQ(read_port(kIir), 0x02);
    EXPECT_FALSE(irq.high());
    EXPECT_EQ(irq.rising_edges(), 2);
}

TEST_F(SerialTest, DivisorLatchHidesDataAndInterruptEnable) {
    write_port(kIer, 0x05);
    write_port(kLcr, 0x83);
    write_port(kDll, 0x01);
    write_port(kDlm, 0x00);
    EXPECT_EQ(read_port(kDll), 0x01);
    EXPECT_EQ(read_port(kDlm), 0x00);
    write_port(kLcr, 0x03);
    EXPECT_EQ(read_port(kIer), 0x05);
    EXPECT_EQ(read_port(kLcr), 0x03);
    EXPECT_TRUE(output.empty());
}

TEST_F(SerialTest, FullFifoTakesWhatFitsAndSignalsWhenDrained) {
    const std::string text(Serial::kInputFifoCapacity + 10, 'q');
    EXPECT_EQ(enqueue(text), Serial::kInputFifoCapacity);
    EXPECT_EQ(enqueue("more"), 0u);
    for (std::size_t i = 0; i + 1 < Serial::kInputFifoCapacity; ++i) {
        read_port(kRbr);
    }
    EXPECT_EQ(drained, 0);
    read_port(kRbr);
    EXPECT_EQ(drained, 1);
    read_port(kRbr);  // reading an empty FIFO does not signal again
    EXPECT_EQ(drained, 1);
}

TEST_F(SerialTest, FifoResetDiscardsInput) {
    write_port(kFcr, 0x01);
    enqueue("stale");
    write_port(kFcr, 0x07);  // clear receive and transmit FIFOs
    EXPECT_EQ(read_port(kLsr) & kLsrDataReady, 0);
    enqueue("x");
    write_port(kFcr, 0x00);  // disabling the FIFO empties it too
    EXPECT_EQ(read_port(kLsr) & kLsrDataReady, 0);
    EXPECT_EQ(read_port(kIir), 0x01);  // no FIFO bits once disabled
}

TEST_F(SerialTest, LoopbackOverrunIsReportedOnceAsALineStatusInterrupt) {
    write_port(kMcr, kMcrOut2 | kMcrLoop);
    write_port(kIer, 0x04);
    for (std::size_t i = 0; i <= Serial::kInputFifoCapacity; ++i) {
        write_port(kThr, 'o');
    }
    EXPECT_EQ(read_port(kIir), 0x06);
    EXPECT_EQ(read_port(kLsr) & kLsrOverrun, kLsrOverrun);
    EXPECT_EQ(read_port(kLsr) & kLsrOverrun, 0);
    EXPECT_EQ(read_port(kIir), 0x01);
}

TEST_F(SerialTest, WideAccessReachesConsecutiveRegisters) {
    write_port(kLcr, 0x03);
    write_port(kMcr, kMcrOut2);
    std::array<std::uint8_t, 2> data{};
    serial.read(kLcr, data);
    EXPECT_EQ(data, (std::array<std::uint8_t, 2>{0x03, kMcrOut2}));
}

TEST_F(SerialTest, ConcurrentWritersAndHostInputLoseNothing) {
    constexpr int kPerThread = 2000;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([this] {
            for (int i = 0; i < kPerThread; ++i) {
                write_port(kThr, 'w');
            }
        });
    }
    std::size_t received = 0;
    std::thread reader([&] {
        while (received < 1000) {
            if (read_port(kLsr) & kLsrDataReady) {
                read_port(kRbr);
                ++received;
            }
        }
    });
    std::size_t sent = 0;
    while (sent < 1000) {
        sent += enqueue("i");
    }
    for (auto& thread : threads) {
        thread.join();
    }
    reader.join();
    EXPECT_EQ(output.size(), 4u * kPerThread);
    EXPECT_EQ(received, 1000u);
}

}  // namespace
}  // namespace vim::vmm::devices
