// Pause, resume and stop of real vCPUs that spin inside the guest without
// ever exiting: only the kick can get them out.

#include "vmm/machine/vcpu_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "real_mode_guest.h"

namespace {

using namespace std::chrono_literals;
using vim::testing::RealModeGuest;
using vim::testing::RecordingExitHandler;
using vim::vmm::machine::VcpuPool;

// inc dword [counter]; jmp back. No exits at all.
std::vector<std::uint8_t> counting_loop(std::uint16_t counter) {
    return {0x66, 0xFF, 0x06, static_cast<std::uint8_t>(counter), static_cast<std::uint8_t>(counter >> 8),
            0xEB, 0xF9};
}

struct CountingGuest {
    RealModeGuest guest{0x10000};
    RecordingExitHandler handler;
    std::unique_ptr<VcpuPool> pool;

    explicit CountingGuest(int vcpus) {
        std::vector<vim::vmm::kvm::Vcpu> list;
        for (int i = 0; i < vcpus; ++i) {
            std::uint16_t code = 0x1000 + 0x100 * i;
            guest.load(code, counting_loop(0x3000 + 4 * i));
            list.push_back(guest.add_vcpu(i, code));
        }
        pool = std::make_unique<VcpuPool>(
            std::move(list), handler, [](std::uint32_t, vim::vmm::kvm::VcpuExit) { return false; },
            [](std::uint32_t, const std::exception& error) { ADD_FAILURE() << error.what(); });
    }

    std::uint32_t count(int vcpu) {
        std::uint32_t value;
        std::memcpy(&value, guest.ram().data() + 0x3000 + 4 * vcpu, sizeof value);
        return value;
    }

    // Waits until vCPU `vcpu` has counted past `from`.
    bool advances(int vcpu, std::uint32_t from) {
        for (auto deadline = std::chrono::steady_clock::now() + 20s;
             std::chrono::steady_clock::now() < deadline;) {
            if (count(vcpu) != from) {
                return true;
            }
            std::this_thread::sleep_for(5ms);
        }
        return false;
    }
};

TEST(VcpuPool, PauseStopsEveryVcpuAndResumeRestartsThem) {
    CountingGuest counting(2);
    counting.pool->start();
    EXPECT_TRUE(counting.advances(0, 0));
    EXPECT_TRUE(counting.advances(1, 0));

    counting.pool->pause();
    EXPECT_TRUE(counting.pool->paused());
    std::uint32_t frozen[2] = {counting.count(0), counting.count(1)};
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(counting.count(0), frozen[0]) << "vCPU 0 ran while paused";
    EXPECT_EQ(counting.count(1), frozen[1]) << "vCPU 1 ran while paused";

    counting.pool->resume();
    EXPECT_FALSE(counting.pool->paused());
    EXPECT_TRUE(counting.advances(0, frozen[0]));
    EXPECT_TRUE(counting.advances(1, frozen[1]));

    counting.pool->request_stop();
    counting.pool->join();
    std::uint32_t stopped = counting.count(0);
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(counting.count(0), stopped);
    auto exits = counting.pool->exit_counts();
    ASSERT_EQ(exits.size(), 2u);
    EXPECT_GE(exits[0].by_kind[static_cast<std::size_t>(vim::vmm::kvm::VcpuExit::Interrupted)], 1u);
}

TEST(VcpuPool, RepeatedPauseResumeNeverLosesAVcpu) {
    CountingGuest counting(2);
    counting.pool->start();
    for (int round = 0; round < 20; ++round) {
        counting.pool->pause();
        counting.pool->resume();
    }
    EXPECT_TRUE(counting.advances(0, counting.count(0)));
    EXPECT_TRUE(counting.advances(1, counting.count(1)));
}

TEST(VcpuPool, StopWhilePausedEndsTheThreads) {
    CountingGuest counting(1);
    counting.pool->start();
    counting.pool->pause();
    counting.pool->request_stop();
    counting.pool->join();  // returns: the parked thread woke and ended
    SUCCEED();
}

}  // namespace
