#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vmm/control/command.h"
#include "vmm/sys/event_loop.h"
#include "vmm/sys/fd.h"

namespace vim::vmm::control {

class Connection;
class ListeningSocket;

// The VMM's control socket: a Unix stream socket speaking one JSON object per
// line in each direction. Each request is {"cmd": NAME, ...}; each reply has
// "ok": true|false and, when false, an "error" string.
//
// Serves on an event loop, several clients at once; command functions run on
// the loop's thread, one at a time. A client gets the reply to one line before
// the server reads its next one, so a client that never reads its replies
// stalls only itself and costs at most one line and one reply of memory.
// No client can lock others out: a request line left unfinished for
// request_timeout ends its connection, and a client arriving when
// max_connections are open displaces the one that has been stuck longest.
//
// The constructor registers with the loop and stop() unregisters, so both
// belong where EventLoop::add() and remove() may be called: on the loop's
// thread (in a posted task; never in a command function) or while the loop is
// not running. The socket file appears when the constructor returns and
// clients may send commands at once, so construct the server once everything
// its commands use exists; requests wait in the socket until the loop runs.
class ControlServer {
public:
    // Longest request line accepted, newline excluded. A longer one gets an
    // error reply and its connection is closed.
    static constexpr std::size_t max_line_bytes = 64 * 1024;
    // Clients served at once, which bounds the descriptors and buffers a
    // misbehaving tool can make the VMM hold.
    static constexpr std::size_t max_connections = 32;
    static constexpr std::chrono::milliseconds default_request_timeout{5000};

    // Binds socket_path, listens and registers with loop. A stale socket file
    // left by a dead process is replaced; throws when the path is too long for
    // sun_path, when a live server accepts connections there ("api socket P
    // is in use"), or when something other than a socket exists there.
    ControlServer(sys::EventLoop& loop, std::string socket_path, CommandTable commands,
                  std::chrono::milliseconds request_timeout = default_request_timeout);
    ~ControlServer();

    // The loop's handlers point at this object.
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;
    ControlServer(ControlServer&&) = delete;
    ControlServer& operator=(ControlServer&&) = delete;

    // Unregisters from the loop, closes every client (they read EOF) and
    // removes the socket file. Idempotent.
    void stop();

    const std::string& socket_path() const noexcept { return socket_path_; }

private:
    using Clock = std::chrono::steady_clock;

    void accept_clients();
    void start_serving(sys::Fd client);
    void serve(Connection& connection);
    // Lets the connection read, dispatch and write what it can without
    // blocking; the caller drops it if that finished it.
    void advance(Connection& connection);
    // Makes room for a new client by closing the connection that has gone
    // longest without moving a byte.
    void evict_most_idle();
    void on_timer();
    void drop_finished();
    // Arms the timer for the earliest request deadline or accept retry.
    void update_timer();

    sys::EventLoop& loop_;
    std::string socket_path_;
    CommandTable commands_;
    std::chrono::milliseconds request_timeout_;
    std::unique_ptr<ListeningSocket> listener_;
    // A timerfd, one for all deadlines.
    sys::Fd timer_;
    std::optional<Clock::time_point> timer_armed_for_;
    // Set while accepting is suspended because the process ran out of
    // descriptors or memory; level-triggered epoll would spin otherwise.
    std::optional<Clock::time_point> accept_retry_at_;
    std::vector<std::unique_ptr<Connection>> connections_;
};

}  // namespace vim::vmm::control
