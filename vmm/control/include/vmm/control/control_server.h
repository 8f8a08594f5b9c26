#pragma once

#include <cstddef>
#include <string>
#include <thread>

#include <sys/types.h>

#include "vmm/control/command.h"
#include "vmm/sys/event_fd.h"
#include "vmm/sys/fd.h"

namespace vmm::control {

// The VMM's control socket: a Unix stream socket speaking one JSON object per
// line in each direction. Each request is {"cmd": NAME, ...}; each reply has
// "ok": true|false and, when false, an "error" string.
//
// Serves on its own thread, several clients at once. A client gets the reply
// to one line before the server reads its next one, so a client that never
// reads its replies stalls only itself and costs at most one line and one
// reply of memory; it is never waited for.
class ControlServer {
public:
    // Longest request line accepted, newline excluded. A longer one gets an
    // error reply and its connection is closed.
    static constexpr std::size_t max_line_bytes = 64 * 1024;

    // Binds socket_path and starts serving. A stale socket file left by a dead
    // process is replaced; throws when the path is too long for sun_path, when
    // a live server accepts connections there ("api socket P is in use"), or
    // when something other than a socket exists there.
    ControlServer(std::string socket_path, CommandTable commands);
    ~ControlServer();

    // The serving thread points at this object.
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;
    ControlServer(ControlServer&&) = delete;
    ControlServer& operator=(ControlServer&&) = delete;

    // Waits for the command in progress, if any, closes every client (they
    // read EOF) and removes the socket file. Idempotent; must not be called
    // from a command function (it would wait for itself).
    void stop();

    const std::string& socket_path() const noexcept { return socket_path_; }

private:
    void serve();
    void remove_socket_file() noexcept;

    std::string socket_path_;
    CommandTable commands_;
    sys::Fd listen_fd_;
    // An eventfd: written by stop() to wake the serving thread's poll().
    sys::EventFd stop_event_{"api socket stop"};
    // Identity of the socket file this server created, so stop() never
    // removes a file someone else has since put at the same path.
    dev_t socket_device_ = 0;
    ino_t socket_inode_ = 0;
    std::thread thread_;
};

}  // namespace vmm::control
