#include "connection.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>

#include "dispatch.h"
#include "vmm/control/control_server.h"

namespace vim::vmm::control {

Connection::Connection(sys::Fd fd, const CommandTable& commands) : fd_(std::move(fd)), commands_(&commands) {}

std::uint32_t Connection::wanted_events() const noexcept { return output_.empty() ? EPOLLIN : EPOLLOUT; }

void Connection::on_ready() {
    // Errors and hang-ups surface from the recv() or send() below, so the
    // direction asked for decides which call reports them.
    if (output_.empty()) {
        read_input();
    }
    if (!finished_) {
        advance();
    }
}

void Connection::read_input() {
    std::array<char, 16 * 1024> chunk;
    const ssize_t count = ::recv(fd_.get(), chunk.data(), chunk.size(), MSG_DONTWAIT);
    if (count > 0) {
        input_.append(chunk.data(), static_cast<std::size_t>(count));
        last_progress_ = Clock::now();
    } else if (count == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        // A partial line left by a departing client is dropped with it.
        finished_ = true;
    }
}

void Connection::advance() {
    for (;;) {
        if (!output_.empty()) {
            // MSG_NOSIGNAL: a client gone before its reply must not SIGPIPE the VMM.
            const ssize_t count =
                ::send(fd_.get(), output_.data(), output_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (count < 0) {
                if (errno == EINTR) {
                    continue;
                }
                if (errno != EAGAIN && errno != EWOULDBLOCK) {
                    finished_ = true;
                }
                return;
            }
            output_.erase(0, static_cast<std::size_t>(count));
            last_progress_ = Clock::now();
            continue;
        }
        if (close_after_output_) {
            finished_ = true;
            return;
        }
        if (!take_line()) {
            // The clock starts when the server waits, not when the bytes came:
            // they may have waited behind replies the client was slow to read.
            if (input_.empty()) {
                unfinished_line_since_.reset();
            } else if (!unfinished_line_since_) {
                unfinished_line_since_ = Clock::now();
            }
            return;
        }
        unfinished_line_since_.reset();
    }
}

void Connection::close_with_error(std::string_view message) {
    if (output_.empty()) {
        // Best effort: a client that does not read cannot be told anything.
        const std::string line = error_line(message);
        [[maybe_unused]] const ssize_t sent =
            ::send(fd_.get(), line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    finished_ = true;
}

bool Connection::take_line() {
    const auto newline = input_.find('\n');
    const std::size_t line_length = newline == std::string::npos ? input_.size() : newline;
    if (line_length > ControlServer::max_line_bytes) {
        output_ = error_line("request line longer than " + std::to_string(ControlServer::max_line_bytes) +
                             " bytes; closing the connection");
        close_after_output_ = true;
        input_.clear();
        return true;
    }
    if (newline == std::string::npos) {
        return false;
    }
    std::string_view line(input_.data(), newline);
    // Tolerated so that people typing into socat or nc with CRLF line ends get answers.
    if (line.ends_with('\r')) {
        line.remove_suffix(1);
    }
    // Blank lines are skipped, not answered, as an interactive user would expect.
    if (line.find_first_not_of(" \t") != std::string_view::npos) {
        output_ = dispatch_line(*commands_, line);
    }
    input_.erase(0, newline + 1);
    return true;
}

}  // namespace vim::vmm::control
