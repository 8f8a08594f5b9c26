#pragma once

// The host side of the serial console's input: bytes from stdin go to the
// UART, as fast as the guest drains its FIFO. On a terminal, the terminal is
// put in raw mode (so Ctrl-C reaches the guest) and Ctrl-A x quits, as in QEMU.

#include <termios.h>

#include <functional>
#include <optional>
#include <string>

#include "vmm/devices/serial.h"
#include "vmm/sys/event_fd.h"
#include "vmm/sys/event_loop.h"

namespace vim::vmm::machine {

// Lives on the event loop's thread: construct it, and destroy it, there or
// while the loop is not running.
class ConsoleInput {
public:
    // `on_quit` runs on the loop's thread when the user types Ctrl-A x.
    ConsoleInput(sys::EventLoop& loop, int input_fd, devices::Serial& serial, std::function<void()> on_quit);
    ~ConsoleInput();
    ConsoleInput(const ConsoleInput&) = delete;
    ConsoleInput& operator=(const ConsoleInput&) = delete;

    // For the UART's input_drained callback (any thread): the guest has room again.
    void notify_drained() { drained_event_.signal(); }

private:
    void read_input();
    // Offers pending bytes to the UART; reads more input once all are taken.
    void offer();
    // Watches the input only while nothing is pending: the backlog stays in
    // the pipe or terminal, not in our memory.
    void watch_input(bool watch);

    sys::EventLoop& loop_;
    int input_fd_;
    devices::Serial& serial_;
    std::function<void()> on_quit_;
    std::optional<termios> saved_terminal_;
    sys::EventFd drained_event_{"console input drained"};
    std::string pending_;
    bool escape_ = false;
    bool input_open_ = true;
    // epoll refuses files that are always readable (/dev/null, regular files);
    // those are read from posted tasks instead.
    bool pollable_ = true;
    bool watching_ = false;
};

}  // namespace vim::vmm::machine
