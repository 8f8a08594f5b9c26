#pragma once

#include <sys/epoll.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "vmm/sys/event_fd.h"
#include "vmm/sys/fd.h"

namespace vim::vmm::sys {

// One epoll loop for a thread's sources: the console, the control socket,
// virtqueue notifications, disk completions. Handlers run on the loop's
// thread, one at a time, so the state they share needs no lock among them.
//
// add(), modify() and remove() belong to the loop's thread (inside handlers)
// or to the time before run(); other threads hand work over with post(). A
// handler may remove any source, itself included: events still queued for a
// removed source are dropped.
class EventLoop {
public:
    // Receives the epoll events that fired (EPOLLIN, EPOLLOUT, EPOLLHUP, ...).
    using Handler = std::function<void(std::uint32_t events)>;

    EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // Watches `fd` for `events` (level-triggered unless EPOLLET is given).
    // Throws std::system_error naming the descriptor if epoll refuses it.
    void add(int fd, std::uint32_t events, Handler handler);
    void modify(int fd, std::uint32_t events);
    // Stops watching `fd`; nothing happens if it is not watched.
    void remove(int fd);

    // Runs `task` on the loop's thread soon; safe from any thread.
    void post(std::function<void()> task);

    // Dispatches events on the calling thread until stop().
    void run();
    // Makes run() return after the handler in progress; safe from any thread.
    void stop();

    // From another thread: returns once the loop's thread is parked between
    // handlers (so device state can be saved), and keeps it there until
    // resume(). A loop that is not running counts as parked.
    void pause();
    void resume();

private:
    struct Source {
        int fd;
        std::shared_ptr<Handler> handler;
    };

    void run_posted();
    void park_while_paused();

    Fd epoll_;
    EventFd wake_{"event loop wake-up"};
    // Sources by the id their epoll registration carries; ids are never
    // reused, so a stale event cannot reach a source added later on the same fd.
    std::unordered_map<std::uint64_t, Source> sources_;
    std::unordered_map<int, std::uint64_t> ids_by_fd_;
    std::uint64_t next_id_ = 1;

    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<std::function<void()>> posted_;
    bool stop_requested_ = false;
    bool running_ = false;
    bool pause_requested_ = false;
    bool parked_ = false;
};

}  // namespace vim::vmm::sys
