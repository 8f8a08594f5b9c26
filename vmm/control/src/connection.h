#pragma once

#include <string>
#include <utility>

#include "vmm/control/command.h"
#include "vmm/sys/fd.h"

namespace vmm::control {

// One client of the control socket, on a non-blocking descriptor. Complete
// lines are dispatched one at a time and the reply to each is written out
// before the next is dispatched or more input is read, so memory stays bounded
// by one line and one reply and a client that stops reading waits alone.
class Connection {
public:
    Connection(sys::Fd fd, const CommandTable& commands) : fd_(std::move(fd)), commands_(&commands) {}

    int fd() const noexcept { return fd_.get(); }
    // POLLOUT while a reply is pending, otherwise POLLIN.
    short wanted_events() const noexcept;
    // Called when poll() reports anything for wanted_events().
    void on_ready();
    // The client left, failed, or was sent its last reply: drop the connection.
    bool finished() const noexcept { return finished_; }

private:
    void read_input();
    // Writes pending output and dispatches buffered lines until a reply cannot
    // be written without blocking or no complete line is left.
    void advance();
    // Turns the next buffered line, if complete or over-long, into output.
    // Returns false when more input is needed.
    bool take_line();

    sys::Fd fd_;
    const CommandTable* commands_;
    std::string input_;
    std::string output_;
    bool close_after_output_ = false;
    bool finished_ = false;
};

}  // namespace vmm::control
