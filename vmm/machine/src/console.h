#pragma once

// The host side of the serial console's input: bytes from stdin go to the
// UART, as fast as the guest drains its FIFO. On a terminal, the terminal is
// put in raw mode (so Ctrl-C reaches the guest) and Ctrl-A x quits, as in QEMU.

#include <termios.h>

#include <functional>
#include <optional>
#include <thread>

#include "vmm/devices/serial.h"
#include "vmm/sys/event_fd.h"

namespace vmm::machine {

class ConsoleInput {
public:
    // `on_quit` runs on the console thread when the user types Ctrl-A x.
    ConsoleInput(int input_fd, devices::Serial& serial, std::function<void()> on_quit);
    ~ConsoleInput();
    ConsoleInput(const ConsoleInput&) = delete;
    ConsoleInput& operator=(const ConsoleInput&) = delete;

    // For the UART's input_drained callback: the guest has room again.
    void notify_drained();
    void stop();

private:
    void run();
    // Offers pending bytes to the UART; returns true when all were taken.
    bool offer();

    int input_fd_;
    devices::Serial& serial_;
    std::function<void()> on_quit_;
    std::optional<termios> saved_terminal_;
    sys::EventFd drained_event_;
    sys::EventFd stop_event_;
    std::string pending_;
    bool escape_ = false;
    std::thread thread_;
};

}  // namespace vmm::machine
