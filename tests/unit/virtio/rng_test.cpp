// The entropy device driven as a guest would drive it: chains offered on a
// queue in plain heap RAM, notifications through an eventfd served by a real
// event loop on the test thread, interrupts recorded by a fake.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <vector>

#include "vim/testing/guest_ram.h"
#include "vim/testing/loop_steps.h"
#include "vim/testing/virtio_driver.h"
#include "vmm/sys/event_fd.h"
#include "vmm/sys/event_loop.h"
#include "vmm/virtio/rng/rng_device.h"
#include "vmm/virtio/split_ring.h"

namespace vim::vmm::virtio {
namespace {

using ::testing::ElementsAre;
using vim::testing::after_turns;
using vim::testing::DriverBuffer;
using vim::testing::LoopStep;
using vim::testing::run_loop_steps;
using vim::testing::VirtqueueDriver;

class RecordingInterrupt : public DeviceInterrupt {
public:
    void used_buffers(std::size_t queue) override { used_buffers_queues.push_back(queue); }
    void config_changed() override { ADD_FAILURE() << "an entropy device has no configuration to change"; }
    void needs_reset() override { ++needs_reset_calls; }

    std::vector<std::size_t> used_buffers_queues;
    int needs_reset_calls = 0;
};

bool all_equal_to(const std::vector<std::uint8_t>& bytes, std::uint8_t value) {
    return std::ranges::all_of(bytes, [value](std::uint8_t byte) { return byte == value; });
}

// Bytes the device wrote: none is left as the driver filled it (a run of a
// few bytes could match by chance; a whole buffer cannot) and they are not
// all zero.
bool looks_random(const std::vector<std::uint8_t>& bytes) {
    return !all_equal_to(bytes, 0) && !all_equal_to(bytes, VirtqueueDriver::kUnwrittenByte);
}

class RngDeviceTest : public ::testing::Test {
protected:
    static constexpr std::uint16_t kSize = RngDevice::kQueueSize;
    static constexpr memory::GuestAddress kRam = 0x100000;
    static constexpr std::uint64_t kRamSize = 0x100000;
    static constexpr memory::GuestAddress kData = kRam + 0x4000;
    static constexpr memory::GuestAddress kOutsideRam = 0x40000000;

    vim::testing::GuestRam ram{kRam, kRamSize};
    VirtqueueDriver driver{ram.memory(), kSize, vim::testing::RingLayout::packed(kRam, kSize), kData,
                           kRam + kRamSize - kData};
    std::array<Queue, 1> queues{Queue{"virtio-rng0 queue 0", RngDevice::kQueueSize}};
    sys::EventFd notification{"virtio-rng test notification"};
    std::array<int, 1> notification_fds{notification.get()};
    sys::EventLoop loop;
    RecordingInterrupt interrupt;
    RngDevice device;

    Queue& queue() { return queues[0]; }

    void activate(bool event_idx = false) {
        driver.configure(queue(), event_idx);
        device.activate(
            Activation{ram.memory(), loop, device.device_features(), queues, notification_fds, interrupt});
    }

    // A chain of one device-writable buffer of `length` bytes, offered.
    DriverBuffer offer_writable(std::uint32_t length) {
        const DriverBuffer buffer = driver.writable(length);
        driver.add_chain(std::array{buffer});
        return buffer;
    }

    void run_loop(std::vector<LoopStep> steps) { run_loop_steps(loop, std::move(steps)); }

    // Signals the queue's notification and runs the loop until `done`.
    void notify_and_run_until(std::function<bool()> done) {
        run_loop({{[&] { notification.signal(); }, std::move(done)}});
    }

    void notify_and_run_until_used(std::uint16_t used_idx) {
        notify_and_run_until([&, used_idx] { return driver.used_idx() == used_idx; });
    }

    nlohmann::json expected_stats(std::uint64_t requests, std::uint64_t bytes, std::uint64_t errors) {
        return {{"requests", requests}, {"bytes", bytes}, {"errors", errors}};
    }
};

TEST_F(RngDeviceTest, IsAnEntropyDeviceWithOneQueueAndNoConfigurationSpace) {
    EXPECT_EQ(device.device_type(), 4u);
    EXPECT_THAT(device.queue_max_sizes(), ElementsAre(RngDevice::kQueueSize));
    EXPECT_EQ(device.device_features() & 0xffffff, 0u);  // no device-specific feature
    std::array<std::uint8_t, 8> config;
    config.fill(0xaa);
    device.write_config(0, std::array<std::uint8_t, 4>{1, 2, 3, 4});
    device.read_config(0, config);
    EXPECT_THAT(config, ::testing::Each(0));
}

TEST_F(RngDeviceTest, FillsEachBufferWithDifferentRandomBytes) {
    activate();
    const DriverBuffer first = offer_writable(64);
    const DriverBuffer second = offer_writable(64);
    notify_and_run_until_used(2);

    const auto first_bytes = driver.contents(first);
    const auto second_bytes = driver.contents(second);
    EXPECT_TRUE(looks_random(first_bytes));
    EXPECT_TRUE(looks_random(second_bytes));
    EXPECT_NE(first_bytes, second_bytes);
}

TEST_F(RngDeviceTest, ServesSeveralChainsPerNotificationWithOneInterrupt) {
    activate();
    std::vector<std::uint16_t> heads;
    for (std::uint32_t length : {1u, 17u, 64u, 100u, 4096u}) {
        heads.push_back(driver.add_chain(std::array{driver.writable(length)}));
    }
    notify_and_run_until_used(5);

    const auto used = driver.take_used();
    ASSERT_EQ(used.size(), 5u);
    const std::array<std::uint32_t, 5> lengths{1, 17, 64, 100, 4096};
    for (std::size_t i = 0; i < used.size(); ++i) {
        EXPECT_EQ(used[i].id, heads[i]);
        EXPECT_EQ(used[i].length, lengths[i]) << "chain " << i;
    }
    EXPECT_THAT(interrupt.used_buffers_queues, ElementsAre(RngDevice::kRequestQueue));
    EXPECT_EQ(device.stats(), expected_stats(5, 1 + 17 + 64 + 100 + 4096, 0));
}

TEST_F(RngDeviceTest, FillsEveryWritableBufferOfAChainDirectOrIndirect) {
    activate();
    const std::array direct{driver.writable(10), driver.writable(3000), driver.writable(7)};
    const std::array indirect{driver.writable(300), driver.writable(40)};
    driver.add_chain(direct);
    driver.add_indirect_chain(indirect);
    notify_and_run_until_used(2);

    const auto used = driver.take_used();
    ASSERT_EQ(used.size(), 2u);
    EXPECT_EQ(used[0].length, 3017u);
    EXPECT_EQ(used[1].length, 340u);
    for (const DriverBuffer& buffer : direct) {
        EXPECT_TRUE(looks_random(driver.contents(buffer))) << "buffer of " << buffer.length;
    }
    for (const DriverBuffer& buffer : indirect) {
        EXPECT_TRUE(looks_random(driver.contents(buffer))) << "buffer of " << buffer.length;
    }
}

TEST_F(RngDeviceTest, MarksTheWrittenPagesDirty) {
    activate();
    (void)ram.take_dirty_page_numbers();
    const DriverBuffer buffer = driver.writable(2 * memory::kPageSize + 100);
    driver.add_chain(std::array{buffer});
    notify_and_run_until_used(1);

    const std::uint64_t first_page = (buffer.address - kRam) / memory::kPageSize;
    const std::uint64_t last_page = (buffer.address + buffer.length - 1 - kRam) / memory::kPageSize;
    const auto dirty = ram.take_dirty_page_numbers();
    for (std::uint64_t page = first_page; page <= last_page; ++page) {
        EXPECT_THAT(dirty, ::testing::Contains(page)) << "page " << page;
    }
}

TEST_F(RngDeviceTest, GivesAHugeRequestItsFirst64KiBOnly) {
    activate();
    (void)ram.take_dirty_page_numbers();
    // 96 KiB asked for in two buffers: the first whole, half of the second.
    const std::array buffers{driver.writable(48 * 1024), driver.writable(48 * 1024)};
    driver.add_chain(buffers);
    notify_and_run_until_used(1);

    const auto used = driver.take_used();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(used[0].length, RngDevice::kMaxBytesPerRequest);
    EXPECT_TRUE(looks_random(driver.contents(buffers[0])));
    const auto second = driver.contents(buffers[1]);
    const std::vector<std::uint8_t> filled(second.begin(), second.begin() + 16 * 1024);
    const std::vector<std::uint8_t> untouched(second.begin() + 16 * 1024, second.end());
    EXPECT_TRUE(looks_random(filled));
    EXPECT_TRUE(all_equal_to(untouched, VirtqueueDriver::kUnwrittenByte));
    // Nor are the untouched pages reported as written.
    const auto dirty = ram.take_dirty_page_numbers();
    const std::uint64_t first_untouched_page =
        (buffers[1].address + 16 * 1024 - kRam + memory::kPageSize - 1) / memory::kPageSize;
    const std::uint64_t last_page = (buffers[1].address + buffers[1].length - 1 - kRam) / memory::kPageSize;
    for (std::uint64_t page = first_untouched_page; page < last_page; ++page) {
        EXPECT_THAT(dirty, ::testing::Not(::testing::Contains(page))) << "page " << page;
    }
    EXPECT_EQ(device.stats(), expected_stats(1, RngDevice::kMaxBytesPerRequest, 0));
}

TEST_F(RngDeviceTest, ABusyQueueLetsTheLoopsOtherSourcesRunBetweenTurns) {
    activate();
    constexpr std::uint16_t kChains = 2 * RngDevice::kMaxRequestsPerTurn + 10;
    for (std::uint16_t i = 0; i < kChains; ++i) {
        offer_writable(16);
    }
    sys::EventFd other_source{"another source on the loop"};
    std::optional<std::uint16_t> used_when_other_source_ran;
    loop.add(other_source.get(), EPOLLIN, [&](std::uint32_t) {
        used_when_other_source_ran = driver.used_idx();
        loop.remove(other_source.get());
    });
    run_loop({{[&] {
                   notification.signal();
                   other_source.signal();
               },
               [&] { return driver.used_idx() == kChains; }}});

    ASSERT_TRUE(used_when_other_source_ran.has_value());
    EXPECT_LT(*used_when_other_source_ran, kChains);
    // One interrupt per turn, each turn at most kMaxRequestsPerTurn chains.
    EXPECT_EQ(interrupt.used_buffers_queues.size(), 3u);
    EXPECT_EQ(device.stats(), expected_stats(kChains, 16 * kChains, 0));
}

TEST_F(RngDeviceTest, WithEventIdxInterruptsOnlyOnceUsedIdxPassesUsedEvent) {
    activate(/*event_idx=*/true);
    // "Interrupt me once the entry at used index 5 is written": 3 chains do not get there.
    driver.set_used_event(5);
    for (int i = 0; i < 3; ++i) {
        offer_writable(8);
    }
    notify_and_run_until_used(3);
    EXPECT_TRUE(interrupt.used_buffers_queues.empty());
    // The device asks to be notified of the next chain.
    EXPECT_EQ(driver.avail_event(), 3);
}

TEST_F(RngDeviceTest, WithEventIdxInterruptsWhenUsedEventIsReached) {
    activate(/*event_idx=*/true);
    driver.set_used_event(1);
    for (int i = 0; i < 3; ++i) {
        offer_writable(8);
    }
    notify_and_run_until_used(3);
    EXPECT_THAT(interrupt.used_buffers_queues, ElementsAre(RngDevice::kRequestQueue));
}

TEST_F(RngDeviceTest, WithoutEventIdxADriverAskingForNoInterruptGetsNone) {
    activate();
    driver.set_avail_flags(kAvailNoInterrupt);
    offer_writable(8);
    notify_and_run_until_used(1);
    EXPECT_TRUE(interrupt.used_buffers_queues.empty());
    // Notifications are back on once the queue is empty.
    EXPECT_EQ(driver.used_flags(), 0);
}

TEST_F(RngDeviceTest, AChainOutsideRamGetsNothingAndTheNextIsStillServed) {
    activate();
    const std::uint16_t hostile = driver.add_chain(std::array{DriverBuffer{kOutsideRam, 64, true}});
    const DriverBuffer good = offer_writable(32);
    notify_and_run_until_used(2);

    const auto used = driver.take_used();
    ASSERT_EQ(used.size(), 2u);
    EXPECT_EQ(used[0].id, hostile);
    EXPECT_EQ(used[0].length, 0u);
    EXPECT_EQ(used[1].length, 32u);
    EXPECT_TRUE(looks_random(driver.contents(good)));
    EXPECT_EQ(interrupt.needs_reset_calls, 0);
    EXPECT_EQ(device.stats(), expected_stats(2, 32, 1));
}

TEST_F(RngDeviceTest, AChainWithReadableBuffersGetsNothing) {
    activate();
    const std::array<std::uint8_t, 4> request{1, 2, 3, 4};
    const DriverBuffer writable = driver.writable(32);
    driver.add_chain(std::array{driver.readable(request), writable});
    const std::uint16_t only_readable = driver.add_chain(std::array{driver.readable(request)});
    const DriverBuffer good = offer_writable(16);
    notify_and_run_until_used(3);

    const auto used = driver.take_used();
    ASSERT_EQ(used.size(), 3u);
    EXPECT_EQ(used[0].length, 0u);
    EXPECT_EQ(used[1].id, only_readable);
    EXPECT_EQ(used[1].length, 0u);
    EXPECT_EQ(used[2].length, 16u);
    EXPECT_TRUE(all_equal_to(driver.contents(writable), VirtqueueDriver::kUnwrittenByte));
    EXPECT_TRUE(looks_random(driver.contents(good)));
    EXPECT_EQ(device.stats(), expected_stats(3, 16, 2));
}

TEST_F(RngDeviceTest, ABrokenQueueAsksForAResetAndIsNotTouchedAgain) {
    activate();
    // avail.idx further ahead than the queue is long: no correct driver writes that.
    driver.set_avail_idx(kSize + 1);
    DriverBuffer later{};
    run_loop({{[&] { notification.signal(); }, [&] { return interrupt.needs_reset_calls == 1; }},
              {[&] {
                   // The driver goes on as if nothing happened.
                   driver.set_avail_idx(0);
                   later = offer_writable(16);
                   notification.signal();
               },
               after_turns(3)}});

    EXPECT_EQ(driver.used_idx(), 0);
    EXPECT_TRUE(all_equal_to(driver.contents(later), VirtqueueDriver::kUnwrittenByte));
    EXPECT_EQ(interrupt.needs_reset_calls, 1);
    EXPECT_TRUE(interrupt.used_buffers_queues.empty());
    EXPECT_EQ(device.stats(), expected_stats(0, 0, 1));
}

TEST_F(RngDeviceTest, AfterResetANotificationDoesNothing) {
    activate();
    offer_writable(16);
    DriverBuffer later{};
    run_loop({{[&] { notification.signal(); }, [&] { return driver.used_idx() == 1; }},
              {[&] {
                   device.reset();
                   later = offer_writable(16);
                   notification.signal();
               },
               after_turns(3)}});

    EXPECT_EQ(driver.used_idx(), 1);
    EXPECT_TRUE(all_equal_to(driver.contents(later), VirtqueueDriver::kUnwrittenByte));
    EXPECT_EQ(interrupt.used_buffers_queues.size(), 1u);
    // The fd is no longer the loop's: it can be watched anew.
    EXPECT_NO_THROW(loop.add(notification.get(), EPOLLIN, [](std::uint32_t) {}));
}

TEST_F(RngDeviceTest, ServesANotificationThatCameBeforeActivation) {
    const DriverBuffer buffer = driver.writable(16);
    driver.add_chain(std::array{buffer});
    notification.signal();
    activate();
    run_loop({{[] {}, [&] { return driver.used_idx() == 1; }}});
    EXPECT_TRUE(looks_random(driver.contents(buffer)));
}

TEST_F(RngDeviceTest, RefusesAnActivationWithAnotherNumberOfQueues) {
    std::array<Queue, 2> two_queues{Queue{"q0", 16}, Queue{"q1", 16}};
    std::array<int, 2> two_fds{notification.get(), notification.get()};
    try {
        device.activate(Activation{ram.memory(), loop, 0, two_queues, two_fds, interrupt});
        FAIL() << "no exception";
    } catch (const std::invalid_argument& error) {
        EXPECT_STREQ(error.what(),
                     "virtio-rng: activated with 2 queues and 2 notification fds; it has one queue");
    }
}

}  // namespace
}  // namespace vim::vmm::virtio
