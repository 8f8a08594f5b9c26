#include "console.h"

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace vim::vmm::machine {
namespace {

constexpr char kEscape = 0x01;  // Ctrl-A

}  // namespace

ConsoleInput::ConsoleInput(sys::EventLoop& loop, int input_fd, devices::Serial& serial,
                           std::function<void()> on_quit)
    : loop_(loop), input_fd_(input_fd), serial_(serial), on_quit_(std::move(on_quit)) {
    termios terminal;
    if (::isatty(input_fd_) && ::tcgetattr(input_fd_, &terminal) == 0) {
        saved_terminal_ = terminal;
        ::cfmakeraw(&terminal);
        // Keep output processing: the host terminal still wants \n -> \r\n
        // for anything this process prints itself.
        terminal.c_oflag |= OPOST;
        ::tcsetattr(input_fd_, TCSANOW, &terminal);
    }
    loop_.add(drained_event_.get(), EPOLLIN, [this](std::uint32_t) {
        drained_event_.drain();
        offer();
    });
    try {
        loop_.add(input_fd_, EPOLLIN, [this](std::uint32_t) { read_input(); });
        watching_ = true;
    } catch (const std::system_error& error) {
        if (error.code() != std::errc::operation_not_permitted) {
            throw;
        }
        pollable_ = false;
        loop_.post([this] { read_input(); });
    }
}

ConsoleInput::~ConsoleInput() {
    loop_.remove(drained_event_.get());
    if (pollable_) {
        loop_.remove(input_fd_);
    }
    if (saved_terminal_) {
        ::tcsetattr(input_fd_, TCSANOW, &*saved_terminal_);
    }
}

void ConsoleInput::watch_input(bool watch) {
    if (pollable_ && input_open_ && watch != watching_) {
        loop_.modify(input_fd_, watch ? std::uint32_t{EPOLLIN} : 0u);
        watching_ = watch;
    }
}

void ConsoleInput::offer() {
    std::size_t taken =
        serial_.enqueue_input({reinterpret_cast<const std::uint8_t*>(pending_.data()), pending_.size()});
    pending_.erase(0, taken);
    if (!pending_.empty()) {
        watch_input(false);
    } else if (pollable_) {
        watch_input(true);
    } else if (input_open_) {
        loop_.post([this] { read_input(); });
    }
}

void ConsoleInput::read_input() {
    char buffer[256];
    ssize_t count = ::read(input_fd_, buffer, sizeof buffer);
    if (count <= 0) {
        if (count < 0 && (errno == EINTR || errno == EAGAIN)) {
            return;
        }
        // EOF: the guest simply gets no more input.
        if (pollable_) {
            loop_.remove(input_fd_);
            pollable_ = false;
        }
        input_open_ = false;
        return;
    }
    for (ssize_t i = 0; i < count; ++i) {
        char byte = buffer[i];
        if (saved_terminal_ && escape_) {
            escape_ = false;
            if (byte == 'x') {
                on_quit_();
                return;
            }
            if (byte != kEscape) {
                pending_.push_back(kEscape);
            }
        } else if (saved_terminal_ && byte == kEscape) {
            escape_ = true;
            continue;
        }
        pending_.push_back(byte);
    }
    offer();
}

}  // namespace vim::vmm::machine
