#include "vmm/control/control_server.h"

#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <system_error>

#include "connection.h"
#include "listening_socket.h"
#include "vmm/sys/error.h"

namespace vim::vmm::control {

namespace {

using std::chrono::milliseconds;

// Room for clients that arrive while the loop is busy elsewhere; past it a
// blocking connect() waits.
constexpr int listen_backlog = 16;
// How long accepting rests when the process has run out of descriptors or
// memory, in the hope that some are given back.
constexpr milliseconds accept_retry_delay{100};

std::string in_milliseconds(std::chrono::steady_clock::duration duration) {
    return std::to_string(std::chrono::duration_cast<milliseconds>(duration).count()) + " ms";
}

}  // namespace

ControlServer::ControlServer(sys::EventLoop& loop, std::string socket_path, CommandTable commands,
                             milliseconds request_timeout)
    : loop_(loop),
      socket_path_(std::move(socket_path)),
      commands_(std::move(commands)),
      request_timeout_(request_timeout),
      timer_(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) {
    if (!timer_) {
        sys::throw_errno("create the timer of api socket " + socket_path_);
    }
    // Reserved so that adding a connection never throws once it is registered.
    connections_.reserve(max_connections);
    listener_ = std::make_unique<ListeningSocket>(socket_path_, listen_backlog);
    loop_.add(timer_.get(), EPOLLIN, [this](std::uint32_t) { on_timer(); });
    try {
        loop_.add(listener_->fd(), EPOLLIN, [this](std::uint32_t) { accept_clients(); });
    } catch (...) {
        loop_.remove(timer_.get());
        throw;
    }
}

ControlServer::~ControlServer() { stop(); }

void ControlServer::stop() {
    if (!listener_) {
        return;
    }
    loop_.remove(listener_->fd());
    loop_.remove(timer_.get());
    for (const auto& connection : connections_) {
        loop_.remove(connection->fd());
    }
    // The file goes first, so that no client connects to a server about to close.
    listener_.reset();
    connections_.clear();
}

void ControlServer::accept_clients() {
    // A backlog's worth at a time, so that a flood of connections cannot hold
    // the loop's other sources up.
    for (int accepted = 0; accepted < listen_backlog; ++accepted) {
        sys::Fd client(::accept4(listener_->fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (client) {
            start_serving(std::move(client));
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        }
        // A client that gave up while waiting, or a signal: the next one may be fine.
        if (errno == ECONNABORTED || errno == EPROTO || errno == EINTR) {
            continue;
        }
        // Out of descriptors or memory. The backlog stays readable, so
        // watching it now would spin the loop without end.
        loop_.modify(listener_->fd(), 0);
        accept_retry_at_ = Clock::now() + accept_retry_delay;
        break;
    }
    update_timer();
}

void ControlServer::start_serving(sys::Fd client) {
    if (connections_.size() == max_connections) {
        evict_most_idle();
    }
    auto connection = std::make_unique<Connection>(std::move(client), commands_);
    Connection& added = *connection;
    try {
        loop_.add(added.fd(), added.wanted_events(), [this, &added](std::uint32_t) { serve(added); });
    } catch (const std::system_error&) {
        // epoll has no room for it: this client reads EOF, the others are still served.
        return;
    }
    connections_.push_back(std::move(connection));
}

void ControlServer::evict_most_idle() {
    // A client whose request has arrived but not been read yet is not idle:
    // in a burst of connections each one's request is still unread when the
    // next is accepted.
    for (const auto& connection : connections_) {
        advance(*connection);
    }
    drop_finished();
    if (connections_.size() < max_connections) {
        return;
    }
    Connection& most_idle = **std::ranges::min_element(
        connections_, {}, [](const auto& connection) { return connection->last_progress(); });
    most_idle.close_with_error("connection limit of " + std::to_string(max_connections) +
                               " reached; closing this connection, the longest idle (" +
                               in_milliseconds(Clock::now() - most_idle.last_progress()) +
                               "), to serve a new one");
    drop_finished();
}

void ControlServer::serve(Connection& connection) {
    advance(connection);
    drop_finished();
    update_timer();
}

void ControlServer::advance(Connection& connection) {
    // Between events the connection is always watched for what it wanted last.
    const std::uint32_t watched = connection.wanted_events();
    connection.on_ready();
    if (!connection.finished() && connection.wanted_events() != watched) {
        loop_.modify(connection.fd(), connection.wanted_events());
    }
}

void ControlServer::on_timer() {
    std::uint64_t expirations = 0;
    // Fails with EAGAIN only if the timer was re-armed after this event was queued.
    [[maybe_unused]] const ssize_t drained = ::read(timer_.get(), &expirations, sizeof(expirations));
    timer_armed_for_.reset();

    const Clock::time_point now = Clock::now();
    for (const auto& connection : connections_) {
        const auto since = connection->unfinished_line_since();
        if (since && now - *since >= request_timeout_) {
            connection->close_with_error("request not completed within " + in_milliseconds(request_timeout_) +
                                         "; closing the connection");
        }
    }
    drop_finished();
    if (accept_retry_at_ && now >= *accept_retry_at_) {
        accept_retry_at_.reset();
        loop_.modify(listener_->fd(), EPOLLIN);
    }
    update_timer();
}

void ControlServer::drop_finished() {
    std::erase_if(connections_, [this](const auto& connection) {
        if (!connection->finished()) {
            return false;
        }
        loop_.remove(connection->fd());
        return true;
    });
}

void ControlServer::update_timer() {
    std::optional<Clock::time_point> earliest = accept_retry_at_;
    for (const auto& connection : connections_) {
        if (const auto since = connection->unfinished_line_since()) {
            const Clock::time_point deadline = *since + request_timeout_;
            if (!earliest || deadline < *earliest) {
                earliest = deadline;
            }
        }
    }
    if (earliest == timer_armed_for_) {
        return;
    }
    itimerspec setting{};  // all zero: disarmed
    if (earliest) {
        // At least 1 ns: a zero it_value would disarm a timer already due.
        const auto delay = std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::max<Clock::duration>(*earliest - Clock::now(), std::chrono::nanoseconds(1)));
        const auto seconds = std::chrono::floor<std::chrono::seconds>(delay);
        setting.it_value.tv_sec = seconds.count();
        setting.it_value.tv_nsec = (delay - seconds).count();
    }
    if (::timerfd_settime(timer_.get(), 0, &setting, nullptr) != 0) {
        sys::throw_errno("arm the timer of api socket " + socket_path_);
    }
    timer_armed_for_ = earliest;
}

}  // namespace vim::vmm::control
