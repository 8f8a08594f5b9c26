#include "vmm/control/client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>

#include "unix_address.h"
#include "vmm/sys/error.h"
#include "vmm/sys/fd.h"

namespace vim::vmm::control {

namespace {

using Clock = std::chrono::steady_clock;

class Exchange {
public:
    Exchange(const std::string& socket_path, std::chrono::milliseconds timeout)
        : socket_path_(socket_path), timeout_(timeout), deadline_(Clock::now() + timeout) {}

    void connect() {
        const sockaddr_un address = unix_address(socket_path_);
        fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!fd_) {
            sys::throw_errno("create a socket for api socket " + socket_path_);
        }
        // A blocking Unix connect() waits only while the server's backlog is
        // full, and SO_SNDTIMEO bounds that wait (it then fails with EAGAIN).
        // Zero would mean no limit at all, hence the floor of 1 us.
        const auto micros =
            std::max<long>(std::chrono::duration_cast<std::chrono::microseconds>(timeout_).count(), 1);
        const timeval limit{.tv_sec = micros / 1000000, .tv_usec = micros % 1000000};
        if (::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit)) != 0) {
            sys::throw_errno("set the send timeout for api socket " + socket_path_);
        }
        while (::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
            if (errno == EAGAIN) {
                timed_out("connection accepted");
            }
            if (errno != EINTR) {
                sys::throw_errno("connect to api socket " + socket_path_);
            }
        }
    }

    void send_all(std::string_view data) {
        while (!data.empty()) {
            wait_for(POLLOUT, "request sent");
            const ssize_t count = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (count < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                    continue;
                }
                sys::throw_errno("send to api socket " + socket_path_);
            }
            data.remove_prefix(static_cast<std::size_t>(count));
        }
    }

    std::string receive_line() {
        std::string received;
        for (;;) {
            if (const auto newline = received.find('\n'); newline != std::string::npos) {
                received.resize(newline);
                return received;
            }
            wait_for(POLLIN, "reply");
            char chunk[4096];
            const ssize_t count = ::recv(fd_.get(), chunk, sizeof(chunk), MSG_DONTWAIT);
            if (count == 0) {
                throw std::runtime_error("api socket " + socket_path_ +
                                         " closed the connection before replying");
            }
            if (count < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                    continue;
                }
                sys::throw_errno("receive from api socket " + socket_path_);
            }
            received.append(chunk, static_cast<std::size_t>(count));
        }
    }

private:
    [[noreturn]] void timed_out(const char* awaited) const {
        throw std::runtime_error("api socket " + socket_path_ + ": no " + awaited + " within " +
                                 std::to_string(timeout_.count()) + " ms");
    }

    void wait_for(short events, const char* awaited) {
        for (;;) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline_ - Clock::now());
            if (left.count() <= 0) {
                timed_out(awaited);
            }
            pollfd polled{fd_.get(), events, 0};
            const int ready = ::poll(&polled, 1, static_cast<int>(left.count()));
            if (ready > 0) {
                return;
            }
            if (ready < 0 && errno != EINTR) {
                sys::throw_errno("poll api socket " + socket_path_);
            }
        }
    }

    const std::string& socket_path_;
    const std::chrono::milliseconds timeout_;
    const Clock::time_point deadline_;
    sys::Fd fd_;
};

}  // namespace

nlohmann::json send_command(const std::string& socket_path, const nlohmann::json& request,
                            std::chrono::milliseconds timeout) {
    Exchange exchange(socket_path, timeout);
    exchange.connect();
    exchange.send_all(request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + '\n');
    const std::string line = exchange.receive_line();
    try {
        return nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& error) {
        throw std::runtime_error("api socket " + socket_path +
                                 " sent a reply that is not JSON: " + error.what());
    }
}

}  // namespace vim::vmm::control
