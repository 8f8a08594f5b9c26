#include "console.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>


namespace vmm::machine {
namespace {

constexpr char kEscape = 0x01;  // Ctrl-A

}  // namespace

ConsoleInput::ConsoleInput(int input_fd, devices::Serial& serial, std::function<void()> on_quit)
    : input_fd_(input_fd),
      serial_(serial),
      on_quit_(std::move(on_quit)),
      drained_event_("console input"),
      stop_event_("console stop") {
    termios terminal;
    if (::isatty(input_fd_) && ::tcgetattr(input_fd_, &terminal) == 0) {
        saved_terminal_ = terminal;
        ::cfmakeraw(&terminal);
        // Keep output processing: the host terminal still wants \n -> \r\n
        // for anything this process prints itself.
        terminal.c_oflag |= OPOST;
        ::tcsetattr(input_fd_, TCSANOW, &terminal);
    }
    thread_ = std::thread([this] { run(); });
}

ConsoleInput::~ConsoleInput() {
    stop();
    if (saved_terminal_) {
        ::tcsetattr(input_fd_, TCSANOW, &*saved_terminal_);
    }
}

void ConsoleInput::notify_drained() { drained_event_.signal(); }

void ConsoleInput::stop() {
    if (thread_.joinable()) {
        stop_event_.signal();
        thread_.join();
    }
}

bool ConsoleInput::offer() {
    std::size_t taken = serial_.enqueue_input(
        {reinterpret_cast<const std::uint8_t*>(pending_.data()), pending_.size()});
    pending_.erase(0, taken);
    return pending_.empty();
}

void ConsoleInput::run() {
    bool input_open = true;
    for (;;) {
        // While the guest has not taken what we have, stop reading: the
        // backlog stays in the pipe or terminal, not in our memory.
        pollfd fds[3] = {{stop_event_.get(), POLLIN, 0},
                         {drained_event_.get(), POLLIN, 0},
                         {pending_.empty() && input_open ? input_fd_ : -1, POLLIN, 0}};
        if (::poll(fds, 3, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;
        }
        if (fds[0].revents) {
            return;
        }
        if (fds[1].revents) {
            drained_event_.drain();
            offer();
        }
        if (fds[2].revents) {
            char buffer[256];
            ssize_t count = ::read(input_fd_, buffer, sizeof buffer);
            if (count <= 0) {
                if (count < 0 && (errno == EINTR || errno == EAGAIN)) {
                    continue;
                }
                input_open = false;  // EOF: the guest simply gets no more input
                continue;
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
    }
}

}  // namespace vmm::machine
