#include "vmm/control/control_server.h"

#include <cerrno>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "connection.h"
#include "unix_address.h"
#include "vmm/sys/error.h"

namespace vmm::control {

namespace {

// Past this many clients new connections wait in the listen backlog, which
// bounds the descriptors and buffers a misbehaving tool can make us hold.
constexpr std::size_t max_connections = 32;
constexpr int listen_backlog = 16;

// Makes path free for bind(): nothing there, or a socket nobody listens on
// any more (its server died without removing it), which is removed.
void claim_socket_path(const std::string& path, const sockaddr_un& address) {
    struct stat status {};
    if (::lstat(path.c_str(), &status) != 0) {
        if (errno == ENOENT) {
            return;
        }
        sys::throw_errno("stat api socket " + path);
    }
    if (!S_ISSOCK(status.st_mode)) {
        throw std::runtime_error("api socket " + path + " exists and is not a socket");
    }
    // Non-blocking, so a live server with a full backlog answers EAGAIN
    // instead of holding us up; that too means the path is in use.
    sys::Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!probe) {
        sys::throw_errno("create a socket to probe api socket " + path);
    }
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0 ||
        errno == EAGAIN) {
        throw std::runtime_error("api socket " + path + " is in use");
    }
    if (errno != ECONNREFUSED) {
        sys::throw_errno("probe existing api socket " + path);
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
        sys::throw_errno("remove stale api socket " + path);
    }
}

}  // namespace

ControlServer::ControlServer(std::string socket_path, CommandTable commands)
    : socket_path_(std::move(socket_path)), commands_(std::move(commands)) {
    const sockaddr_un address = unix_address(socket_path_);
    claim_socket_path(socket_path_, address);

    listen_fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!listen_fd_) {
        sys::throw_errno("create api socket " + socket_path_);
    }
    if (::bind(listen_fd_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
        sys::throw_errno("bind api socket " + socket_path_);
    }
    // From here on the file is ours: a failure must not leave it behind, or
    // the next start would take it for a stale socket of a crashed VMM.
    try {
        struct stat status {};
        if (::stat(socket_path_.c_str(), &status) != 0) {
            sys::throw_errno("stat api socket " + socket_path_);
        }
        socket_device_ = status.st_dev;
        socket_inode_ = status.st_ino;
        if (::listen(listen_fd_.get(), listen_backlog) != 0) {
            sys::throw_errno("listen on api socket " + socket_path_);
        }
        thread_ = std::thread([this] { serve(); });
    } catch (...) {
        ::unlink(socket_path_.c_str());
        throw;
    }
}

ControlServer::~ControlServer() { stop(); }

void ControlServer::stop() {
    if (!thread_.joinable()) {
        return;
    }
    stop_event_.signal();
    thread_.join();
    remove_socket_file();
    listen_fd_.reset();
}

void ControlServer::remove_socket_file() noexcept {
    struct stat status {};
    if (::lstat(socket_path_.c_str(), &status) == 0 && status.st_dev == socket_device_ &&
        status.st_ino == socket_inode_) {
        ::unlink(socket_path_.c_str());
    }
}

void ControlServer::serve() {
    std::vector<Connection> connections;
    std::vector<pollfd> polled;
    for (;;) {
        polled.clear();
        polled.push_back({stop_event_.get(), POLLIN, 0});
        // poll() skips negative descriptors: at the limit, stop accepting.
        const bool accepting = connections.size() < max_connections;
        polled.push_back({accepting ? listen_fd_.get() : -1, POLLIN, 0});
        for (const Connection& connection : connections) {
            polled.push_back({connection.fd(), connection.wanted_events(), 0});
        }
        if (::poll(polled.data(), polled.size(), -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            // Only EINVAL or ENOMEM remain: a bug or an exhausted kernel,
            // with no way left to serve.
            sys::throw_errno("poll api socket " + socket_path_);
        }
        // Returning closes every client, so each reads EOF.
        if (polled[0].revents != 0) {
            return;
        }
        for (std::size_t index = 0; index < connections.size(); ++index) {
            if (polled[index + 2].revents != 0) {
                connections[index].on_ready();
            }
        }
        std::erase_if(connections, [](const Connection& connection) { return connection.finished(); });
        if (polled[1].revents != 0) {
            while (connections.size() < max_connections) {
                sys::Fd client(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
                // EAGAIN ends the batch; anything else (a client that gave up,
                // no descriptors left) leaves the backlog for the next poll.
                if (!client) {
                    break;
                }
                connections.emplace_back(std::move(client), commands_);
            }
        }
    }
}

}  // namespace vmm::control
