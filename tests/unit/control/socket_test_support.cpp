#include "socket_test_support.h"

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "vmm/sys/error.h"

namespace vmm::control::testing {

TempDir::TempDir() {
    std::string pattern = "/tmp/vmm-control-test-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
        sys::throw_errno("mkdtemp " + pattern);
    }
    path_ = pattern;
}

TempDir::~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

RawClient::RawClient(const std::string& socket_path)
    : fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (!fd_) {
        sys::throw_errno("socket");
    }
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    socket_path.copy(address.sun_path, sizeof(address.sun_path) - 1);
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

}  // namespace vmm::control::testing
