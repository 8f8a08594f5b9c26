#include "vmm/sys/event_loop.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "vmm/sys/event_fd.h"

namespace vim::vmm::sys {
namespace {

using namespace std::chrono_literals;

TEST(EventLoop, RunsTheHandlerOfAReadyDescriptorUntilStopped) {
    EventLoop loop;
    EventFd ready("test");
    int calls = 0;
    loop.add(ready.get(), EPOLLIN, [&](std::uint32_t events) {
        EXPECT_TRUE(events & EPOLLIN);
        ready.drain();
        if (++calls == 2) {
            loop.stop();
        } else {
            ready.signal();
        }
    });
    ready.signal();
    loop.run();
    EXPECT_EQ(calls, 2);
}

TEST(EventLoop, PostedTasksRunOnTheLoopThread) {
    EventLoop loop;
    std::thread::id loop_thread;
    std::thread runner([&] {
        loop_thread = std::this_thread::get_id();
        loop.run();
    });
    std::atomic<bool> ran_on_loop = false;
    loop.post([&] {
        ran_on_loop = std::this_thread::get_id() == loop_thread;
        loop.stop();
    });
    runner.join();
    EXPECT_TRUE(ran_on_loop);
}

// A handler that removes another source whose event is already in the same
// batch: that event is dropped, not delivered to a dead handler.
TEST(EventLoop, SourceRemovedByAnEarlierHandlerGetsNoEvent) {
    EventLoop loop;
    EventFd first("first"), second("second");
    std::vector<int> called;
    loop.add(first.get(), EPOLLIN, [&](std::uint32_t) {
        called.push_back(1);
        loop.remove(first.get());
        loop.remove(second.get());
        loop.stop();
    });
    loop.add(second.get(), EPOLLIN, [&](std::uint32_t) {
        called.push_back(2);
        loop.remove(first.get());
        loop.remove(second.get());
        loop.stop();
    });
    first.signal();
    second.signal();
    loop.run();
    EXPECT_EQ(called.size(), 1u);
}

TEST(EventLoop, PauseReturnsWithTheLoopParkedAndResumeLetsItGoOn) {
    EventLoop loop;
    EventFd ready("test");
    std::atomic<int> calls = 0;
    loop.add(ready.get(), EPOLLIN, [&](std::uint32_t) {
        ready.drain();
        ++calls;
    });
    std::thread runner([&] { loop.run(); });
    loop.pause();
    ready.signal();
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(calls.load(), 0);
    loop.resume();
    for (int i = 0; i < 200 && calls.load() == 0; ++i) {
        std::this_thread::sleep_for(5ms);
    }
    EXPECT_EQ(calls.load(), 1);
    loop.stop();
    runner.join();
}

TEST(EventLoop, RefusesADescriptorEpollCannotWatch) {
    EventLoop loop;
    EXPECT_THROW(loop.add(-1, EPOLLIN, [](std::uint32_t) {}), std::system_error);
    EXPECT_THROW(loop.modify(12345, EPOLLIN), std::invalid_argument);
}

}  // namespace
}  // namespace vim::vmm::sys
