#include "vmm/sys/event_loop.h"

#include <array>
#include <cerrno>
#include <stdexcept>
#include <string>

#include "vmm/sys/error.h"

namespace vim::vmm::sys {
namespace {

// The wake-up eventfd's id; sources count from 1.
constexpr std::uint64_t kWakeId = 0;

}  // namespace

EventLoop::EventLoop() : epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (!epoll_) {
        throw_errno("epoll_create1 for the event loop");
    }
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = kWakeId;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &event) != 0) {
        throw_errno("epoll_ctl add the event loop's wake-up");
    }
}

void EventLoop::add(int fd, std::uint32_t events, Handler handler) {
    const std::uint64_t id = next_id_++;
    epoll_event event{};
    event.events = events;
    event.data.u64 = id;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
        throw_errno("epoll_ctl add fd " + std::to_string(fd));
    }
    sources_.emplace(id, Source{fd, std::make_shared<Handler>(std::move(handler))});
    ids_by_fd_[fd] = id;
}

void EventLoop::modify(int fd, std::uint32_t events) {
    auto found = ids_by_fd_.find(fd);
    if (found == ids_by_fd_.end()) {
        throw std::invalid_argument("event loop: fd " + std::to_string(fd) + " is not watched");
    }
    epoll_event event{};
    event.events = events;
    event.data.u64 = found->second;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &event) != 0) {
        throw_errno("epoll_ctl modify fd " + std::to_string(fd));
    }
}

void EventLoop::remove(int fd) {
    auto found = ids_by_fd_.find(fd);
    if (found == ids_by_fd_.end()) {
        return;
    }
    // Fails only if the fd was closed first, which removed it from epoll anyway.
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    sources_.erase(found->second);
    ids_by_fd_.erase(found);
}

void EventLoop::post(std::function<void()> task) {
    {
        std::lock_guard lock(mutex_);
        posted_.push_back(std::move(task));
    }
    wake_.signal();
}

void EventLoop::stop() {
    {
        std::lock_guard lock(mutex_);
        stop_requested_ = true;
    }
    wake_.signal();
}

void EventLoop::pause() {
    std::unique_lock lock(mutex_);
    pause_requested_ = true;
    wake_.signal();
    changed_.wait(lock, [&] { return parked_ || !running_; });
}

void EventLoop::resume() {
    {
        std::lock_guard lock(mutex_);
        pause_requested_ = false;
    }
    changed_.notify_all();
}

void EventLoop::park_while_paused() {
    std::unique_lock lock(mutex_);
    if (!pause_requested_ || stop_requested_) {
        return;
    }
    parked_ = true;
    changed_.notify_all();
    changed_.wait(lock, [&] { return !pause_requested_ || stop_requested_; });
    parked_ = false;
}

void EventLoop::run_posted() {
    std::vector<std::function<void()>> tasks;
    {
        std::lock_guard lock(mutex_);
        tasks.swap(posted_);
    }
    for (auto& task : tasks) {
        task();
    }
}

void EventLoop::run() {
    {
        std::lock_guard lock(mutex_);
        running_ = true;
    }
    // However run() ends (a handler may throw), a pause() waiting for it returns.
    struct NotRunning {
        EventLoop& loop;
        ~NotRunning() {
            std::lock_guard lock(loop.mutex_);
            loop.running_ = false;
            loop.changed_.notify_all();
        }
    } not_running{*this};
    std::array<epoll_event, 64> events;
    for (;;) {
        park_while_paused();
        {
            std::lock_guard lock(mutex_);
            if (stop_requested_) {
                return;
            }
        }
        const int count = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), -1);
        if (count < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw_errno("epoll_wait");
        }
        for (int i = 0; i < count; ++i) {
            const std::uint64_t id = events[i].data.u64;
            if (id == kWakeId) {
                wake_.drain();
                run_posted();
                continue;
            }
            auto found = sources_.find(id);
            if (found == sources_.end()) {
                continue;  // removed by an earlier handler of this batch
            }
            // A copy: the handler may remove its own source.
            std::shared_ptr<Handler> handler = found->second.handler;
            (*handler)(events[i].events);
        }
    }
}

}  // namespace vim::vmm::sys
