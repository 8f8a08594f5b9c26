#pragma once

#include <sys/un.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "vim/testing/temp_dir.h"
#include "vmm/sys/event_loop.h"
#include "vmm/sys/fd.h"

namespace vim::vmm::control::testing {

using vim::testing::TempDir;

// The address of the Unix socket at path, which must fit.
sockaddr_un socket_address(const std::string& path);

// A client speaking raw bytes, for what send_command() cannot do: partial
// lines, several lines at once, never reading, watching for EOF.
class RawClient {
public:
    explicit RawClient(const std::string& socket_path);
    explicit RawClient(sys::Fd connected) : fd_(std::move(connected)) {}

    void send(const std::string& bytes);
    // Like send(), but returns false instead of throwing once the server has closed.
    bool try_send(const std::string& bytes);
    // Whether a line or EOF can be read within `wait`.
    bool input_ready(std::chrono::milliseconds wait);
    // The next line without its newline; nullopt once the server has closed. Fails the test
    // (throws) when nothing arrives within the timeout.
    std::optional<std::string> read_line(std::chrono::milliseconds timeout = std::chrono::seconds(5));
    void close() { fd_.reset(); }

private:
    sys::Fd fd_;
    std::string buffered_;
};

// Runs an event loop on a thread of its own, as the machine does, until destroyed.
class LoopThread {
public:
    explicit LoopThread(sys::EventLoop& loop);
    ~LoopThread();
    LoopThread(const LoopThread&) = delete;
    LoopThread& operator=(const LoopThread&) = delete;

    // Runs task on the loop's thread and returns once it has; rethrows what it threw.
    void run_on_loop(std::function<void()> task);
    // CPU time the loop's thread has used so far.
    std::chrono::nanoseconds cpu_time();

private:
    sys::EventLoop& loop_;
    std::thread thread_;
};

}  // namespace vim::vmm::control::testing
