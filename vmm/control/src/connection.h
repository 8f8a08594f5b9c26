#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "vmm/control/command.h"
#include "vmm/sys/fd.h"

namespace vim::vmm::control {

// One client of the control socket, on a non-blocking descriptor. Complete
// lines are dispatched one at a time and the reply to each is written out
// before the next is dispatched or more input is read, so memory stays bounded
// by one line and one reply and a client that stops reading waits alone.
//
// It knows nothing of the event loop: the server watches fd() for
// wanted_events(), calls on_ready() and drops the connection once finished().
class Connection {
public:
    using Clock = std::chrono::steady_clock;

    Connection(sys::Fd fd, const CommandTable& commands);

    int fd() const noexcept { return fd_.get(); }
    // EPOLLOUT while a reply is pending, otherwise EPOLLIN.
    std::uint32_t wanted_events() const noexcept;
    // Called when the descriptor is ready for wanted_events() (or failed);
    // harmless when it is not.
    void on_ready();
    // The client left, failed, or was sent its last reply: drop the connection.
    bool finished() const noexcept { return finished_; }

    // Since when the connection has been waiting for the rest of a request
    // line the client began; nullopt while it is not.
    std::optional<Clock::time_point> unfinished_line_since() const noexcept { return unfinished_line_since_; }
    // When bytes last moved either way (or the connection was accepted).
    Clock::time_point last_progress() const noexcept { return last_progress_; }

    // Ends the connection, first sending {"ok": false, "error": message} if
    // that fits without blocking and no reply is pending (it may be partly
    // sent, and appending to it would garble both).
    void close_with_error(std::string_view message);

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
    std::optional<Clock::time_point> unfinished_line_since_;
    Clock::time_point last_progress_ = Clock::now();
};

}  // namespace vim::vmm::control
