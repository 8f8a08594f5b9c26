#include "socket_test_support.h"

#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>

#include <cerrno>
#include <cstdlib>
#include <future>
#include <stdexcept>

#include "vmm/sys/error.h"

namespace vim::vmm::control::testing {

sockaddr_un socket_address(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    path.copy(address.sun_path, sizeof(address.sun_path) - 1);
    return address;
}

RawClient::RawClient(const std::string& socket_path) : fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (!fd_) {
        sys::throw_errno("socket");
    }
    const sockaddr_un address = socket_address(socket_path);
    if (::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
        sys::throw_errno("connect " + socket_path);
    }
}

void RawClient::send(const std::string& bytes) {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
        const ssize_t count = ::send(fd_.get(), bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (count < 0) {
            sys::throw_errno("send");
        }
        sent += static_cast<std::size_t>(count);
    }
}

bool RawClient::try_send(const std::string& bytes) {
    return ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

bool RawClient::input_ready(std::chrono::milliseconds wait) {
    if (buffered_.find('\n') != std::string::npos) {
        return true;
    }
    pollfd polled{fd_.get(), POLLIN, 0};
    const int ready = ::poll(&polled, 1, static_cast<int>(wait.count()));
    if (ready < 0) {
        sys::throw_errno("poll");
    }
    return ready > 0;
}

std::optional<std::string> RawClient::read_line(std::chrono::milliseconds timeout) {
    for (;;) {
        if (const auto newline = buffered_.find('\n'); newline != std::string::npos) {
            std::string line = buffered_.substr(0, newline);
            buffered_.erase(0, newline + 1);
            return line;
        }
        pollfd polled{fd_.get(), POLLIN, 0};
        const int ready = ::poll(&polled, 1, static_cast<int>(timeout.count()));
        if (ready < 0) {
            sys::throw_errno("poll");
        }
        if (ready == 0) {
            throw std::runtime_error("no line from the server within " + std::to_string(timeout.count()) +
                                     " ms");
        }
        char chunk[4096];
        const ssize_t count = ::recv(fd_.get(), chunk, sizeof(chunk), 0);
        // A Unix socket closed with unread input gives its peer ECONNRESET
        // instead of EOF, once the peer has read what was queued for it.
        if (count < 0 && errno != ECONNRESET) {
            sys::throw_errno("recv");
        }
        if (count <= 0) {
            return std::nullopt;
        }
        buffered_.append(chunk, static_cast<std::size_t>(count));
    }
}

LoopThread::LoopThread(sys::EventLoop& loop) : loop_(loop), thread_([&loop] { loop.run(); }) {}

LoopThread::~LoopThread() {
    loop_.stop();
    thread_.join();
}

void LoopThread::run_on_loop(std::function<void()> task) {
    std::promise<void> done;
    loop_.post([&] {
        try {
            task();
            done.set_value();
        } catch (...) {
            done.set_exception(std::current_exception());
        }
    });
    done.get_future().get();
}

std::chrono::nanoseconds LoopThread::cpu_time() {
    clockid_t clock;
    if (const int error = ::pthread_getcpuclockid(thread_.native_handle(), &clock); error != 0) {
        sys::throw_errno("pthread_getcpuclockid", error);
    }
    timespec used{};
    if (::clock_gettime(clock, &used) != 0) {
        sys::throw_errno("clock_gettime");
    }
    return std::chrono::seconds(used.tv_sec) + std::chrono::nanoseconds(used.tv_nsec);
}

}  // namespace vim::vmm::control::testing
