// The balloon driven as a guest's driver drives it: chains offered on its
// queues in guest RAM that is a real memfd (so holes punched show in the
// file's allocated blocks), notifications through eventfds served by a real
// event loop on the test thread, interrupts recorded by a fake.
#include "vmm/virtio/balloon/balloon_device.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "vim/testing/loop_steps.h"
#include "vim/testing/recording_interrupt.h"
#include "vim/testing/virtio_driver.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/sys/event_fd.h"
#include "vmm/sys/event_loop.h"
#include "vmm/virtio/balloon/protocol.h"
#include "vmm/virtio/split_ring.h"

namespace vim::vmm::virtio::balloon {
namespace {

using ::testing::ElementsAre;
using memory::GuestAddress;
using memory::kPageSize;
using vim::testing::after_turns;
using vim::testing::DriverBuffer;
using vim::testing::LoopStep;
using vim::testing::RingLayout;
using vim::testing::VirtqueueDriver;

constexpr std::uint64_t kMiB = 1 << 20;

using vim::testing::RecordingInterrupt;

constexpr std::uint64_t kAllFeatures = feature_bit(kFeatureStatsQueue) | feature_bit(kFeatureDeflateOnOom) |
                                       feature_bit(kFeatureFreePageReporting);

class BalloonDeviceTest : public ::testing::Test {
protected:
    static constexpr std::uint16_t kSize = BalloonDevice::kQueueSize;
    // Rings and driver buffers in the first 4 MiB; the pages the guest gives
    // away in the rest of low RAM and in a second region above 4 GiB.
    static constexpr GuestAddress kLowRamSize = 8 * kMiB;
    static constexpr GuestAddress kBalloonPages = 4 * kMiB;
    static constexpr GuestAddress kHighRam = 0x100000000;
    static constexpr std::uint64_t kHighRamSize = 4 * kMiB;
    static constexpr std::array<memory::RegionLayout, 2> kLayout{
        memory::RegionLayout{0, kLowRamSize}, memory::RegionLayout{kHighRam, kHighRamSize}};

    memory::GuestMemory memory = memory::GuestMemory::allocate(kLayout);
    std::array<VirtqueueDriver, BalloonDevice::kQueueCount> drivers{driver_for(0), driver_for(1),
                                                                    driver_for(2), driver_for(3)};
    std::array<Queue, BalloonDevice::kQueueCount> queues{
        Queue{"virtio-balloon0 queue 0", kSize}, Queue{"virtio-balloon0 queue 1", kSize},
        Queue{"virtio-balloon0 queue 2", kSize}, Queue{"virtio-balloon0 queue 3", kSize}};
    std::array<sys::EventFd, BalloonDevice::kQueueCount> notifications{
        sys::EventFd("balloon test notification 0"), sys::EventFd("balloon test notification 1"),
        sys::EventFd("balloon test notification 2"), sys::EventFd("balloon test notification 3")};
    std::array<int, BalloonDevice::kQueueCount> notification_fds{
        notifications[0].get(), notifications[1].get(), notifications[2].get(), notifications[3].get()};
    sys::EventLoop loop;
    RecordingInterrupt interrupt;
    BalloonDevice device{BalloonDevice::Options{}};

    VirtqueueDriver driver_for(std::size_t queue) {
        const GuestAddress rings = queue * 0x10000;
        const GuestAddress data = kMiB + queue * (512 * 1024);
        return VirtqueueDriver(memory, kSize, RingLayout::packed(rings, kSize), data, 512 * 1024);
    }

    // Sets up the queues the driver uses with `features`, as Linux does, and
    // activates the device.
    void activate(std::uint64_t features = kAllFeatures) {
        // Rings and driver buffers allocated now, so that the host memory the
        // tests measure changes only with what the device discards.
        fill(0, kBalloonPages, 0);
        const std::size_t used_queues = BalloonDevice::queue_roles(features).size();
        for (std::size_t queue = 0; queue < used_queues; ++queue) {
            drivers[queue].configure(queues[queue]);
        }
        device.activate(Activation{memory, loop, features, queues, notification_fds, interrupt});
    }

    // A chain of one device-readable buffer holding `page_numbers`, offered.
    void offer_pages(std::size_t queue, const std::vector<std::uint32_t>& page_numbers) {
        std::vector<std::uint8_t> bytes(page_numbers.size() * sizeof(std::uint32_t));
        std::memcpy(bytes.data(), page_numbers.data(), bytes.size());
        drivers[queue].add_chain(std::array{drivers[queue].readable(bytes)});
    }

    void run_loop(std::vector<LoopStep> steps) { vim::testing::run_loop_steps(loop, std::move(steps)); }

    // One step: notify `queue` and run until the device returned `used` chains of it.
    LoopStep notify_until_used(std::size_t queue, std::uint16_t used) {
        return {[this, queue] { notifications[queue].signal(); },
                [this, queue, used] { return drivers[queue].used_idx() == used; }};
    }

    void fill(GuestAddress address, std::uint64_t length, std::uint8_t value) {
        auto bytes = drivers[0].guest_bytes(address, length);
        std::fill(bytes.begin(), bytes.end(), value);
    }

    bool all_bytes_are(GuestAddress address, std::uint64_t length, std::uint8_t value) {
        auto bytes = drivers[0].guest_bytes(address, length);
        return std::all_of(bytes.begin(), bytes.end(), [value](std::uint8_t byte) { return byte == value; });
    }

    // Bytes of guest RAM the host holds in memory.
    std::uint64_t allocated_bytes() const {
        struct stat status {};
        EXPECT_EQ(::fstat(memory.fd(), &status), 0);
        return static_cast<std::uint64_t>(status.st_blocks) * 512;
    }

    std::uint32_t read_config_word(std::uint64_t offset) {
        std::array<std::uint8_t, 4> bytes{};
        device.read_config(offset, bytes);
        std::uint32_t value;
        std::memcpy(&value, bytes.data(), sizeof value);
        return value;
    }

    void write_actual(std::uint32_t pages) {
        std::array<std::uint8_t, 4> bytes;
        std::memcpy(bytes.data(), &pages, sizeof pages);
        device.write_config(offsetof(Config, actual), bytes);
    }

    static std::uint32_t page_number(GuestAddress address) {
        return static_cast<std::uint32_t>(address >> kPfnShift);
    }
};

// The stats queue's buffer: packed tag/value entries.
std::vector<std::uint8_t> stats_entries(const std::vector<std::pair<std::uint16_t, std::uint64_t>>& entries) {
    std::vector<std::uint8_t> bytes(entries.size() * kStatEntryBytes);
    for (std::size_t i = 0; i < entries.size(); ++i) {
        std::memcpy(bytes.data() + i * kStatEntryBytes, &entries[i].first, 2);
        std::memcpy(bytes.data() + i * kStatEntryBytes + 2, &entries[i].second, 8);
    }
    return bytes;
}

TEST_F(BalloonDeviceTest, IsABalloonWithStatsDeflateOnOomAndFreePageReporting) {
    EXPECT_EQ(device.device_type(), 5u);
    const std::uint64_t features = device.device_features();
    EXPECT_EQ(features & 0xffffff, kAllFeatures);
    EXPECT_NE(features & feature_bit(kFeatureRingEventIdx), 0u);
    EXPECT_THAT(device.queue_max_sizes(), ElementsAre(kSize, kSize, kSize, kSize));
}

TEST_F(BalloonDeviceTest, OffersFreePageReportingAndDeflateOnOomOnlyWhenAsked) {
    const BalloonDevice neither(
        BalloonDevice::Options{.free_page_reporting = false, .deflate_on_oom = false});
    EXPECT_EQ(neither.device_features() & 0xffffff, feature_bit(kFeatureStatsQueue));
    const BalloonDevice reporting(
        BalloonDevice::Options{.free_page_reporting = true, .deflate_on_oom = false});
    EXPECT_EQ(reporting.device_features() & 0xffffff,
              feature_bit(kFeatureStatsQueue) | feature_bit(kFeatureFreePageReporting));
}

TEST_F(BalloonDeviceTest, AnAbsentQueueTakesNoIndexSoTheLaterOnesMoveUp) {
    using enum QueueRole;
    EXPECT_THAT(BalloonDevice::queue_roles(kAllFeatures), ElementsAre(Inflate, Deflate, Stats, Reporting));
    EXPECT_THAT(BalloonDevice::queue_roles(feature_bit(kFeatureFreePageReporting)),
                ElementsAre(Inflate, Deflate, Reporting));
    EXPECT_THAT(BalloonDevice::queue_roles(feature_bit(kFeatureStatsQueue)),
                ElementsAre(Inflate, Deflate, Stats));
    EXPECT_THAT(BalloonDevice::queue_roles(feature_bit(kFeatureDeflateOnOom)), ElementsAre(Inflate, Deflate));
}

TEST_F(BalloonDeviceTest, TheTargetIsTheDevicesAndActualTheDrivers) {
    device.set_target(1000);
    EXPECT_EQ(read_config_word(offsetof(Config, num_pages)), 1000u);
    EXPECT_EQ(interrupt.config_changes, 0);  // nobody to tell yet: the driver reads it when it starts

    write_actual(600);
    EXPECT_EQ(read_config_word(offsetof(Config, actual)), 600u);
    EXPECT_EQ(device.actual(), 600u);
    // The driver cannot move the target, and may write actual a byte at a time.
    device.write_config(0, std::array<std::uint8_t, 8>{1, 2, 3, 4, 0x34, 0x12, 0, 0});
    EXPECT_EQ(device.target(), 1000u);
    EXPECT_EQ(device.actual(), 0x1234u);
    device.write_config(5, std::array<std::uint8_t, 1>{0x56});
    EXPECT_EQ(device.actual(), 0x5634u);
    // Past the end: zero, and writes go nowhere.
    device.write_config(8, std::array<std::uint8_t, 4>{9, 9, 9, 9});
    device.write_config(UINT64_MAX, std::array<std::uint8_t, 4>{9, 9, 9, 9});
    EXPECT_EQ(read_config_word(8), 0u);
    EXPECT_EQ(read_config_word(UINT64_MAX - 1), 0u);
    std::array<std::uint8_t, 6> straddling{};
    device.read_config(6, straddling);
    EXPECT_THAT(straddling, ElementsAre(0, 0, 0, 0, 0, 0));
    device.read_config(4, straddling);
    EXPECT_THAT(straddling, ElementsAre(0x34, 0x56, 0, 0, 0, 0));

    const auto stats = device.stats();
    EXPECT_EQ(stats["target_pages"], 1000);
    EXPECT_EQ(stats["target_mib"], 3);
    EXPECT_EQ(stats["actual_pages"], 0x5634);
    EXPECT_EQ(stats["actual_mib"], 0x5634 / 256);
}

TEST_F(BalloonDeviceTest, AnActiveDriverIsToldOfEachNewTarget) {
    activate();
    device.set_target(256);
    device.set_target(256);  // unchanged: nothing to tell
    device.set_target(512);
    EXPECT_EQ(interrupt.config_changes, 2);
    EXPECT_EQ(read_config_word(0), 512u);
}

TEST_F(BalloonDeviceTest, InflatingGivesThePagesBackToTheHost) {
    activate();
    fill(kBalloonPages, 4 * kMiB, 0x5a);
    fill(kHighRam, kHighRamSize, 0xa5);
    const std::uint64_t before = allocated_bytes();
    // 1 MiB of low RAM, out of order and one page twice, and 3 pages above 4 GiB.
    std::vector<std::uint32_t> pages;
    for (std::uint32_t page = 0; page < 256; ++page) {
        pages.push_back(page_number(kBalloonPages + kMiB) + (page * 37) % 256);
    }
    pages.push_back(page_number(kBalloonPages + kMiB));
    for (std::uint32_t page : {5u, 7u, 6u}) {
        pages.push_back(page_number(kHighRam) + page);
    }
    offer_pages(0, pages);
    run_loop({notify_until_used(0, 1)});

    EXPECT_EQ(allocated_bytes(), before - kMiB - 3 * kPageSize);
    EXPECT_TRUE(all_bytes_are(kBalloonPages + kMiB, kMiB, 0));
    EXPECT_TRUE(all_bytes_are(kHighRam + 5 * kPageSize, 3 * kPageSize, 0));
    // Only those pages.
    EXPECT_TRUE(all_bytes_are(kBalloonPages, kMiB, 0x5a));
    EXPECT_TRUE(all_bytes_are(kBalloonPages + 2 * kMiB, 2 * kMiB, 0x5a));
    EXPECT_TRUE(all_bytes_are(kHighRam, 5 * kPageSize, 0xa5));
    EXPECT_TRUE(all_bytes_are(kHighRam + 8 * kPageSize, kHighRamSize - 8 * kPageSize, 0xa5));
    // A migration would send them as zero pages without reading them.
    EXPECT_TRUE(memory.discarded(kBalloonPages + kMiB));
    EXPECT_TRUE(memory.discarded(kHighRam + 7 * kPageSize));
    EXPECT_FALSE(memory.discarded(kHighRam + 8 * kPageSize));

    const auto used = drivers[0].take_used();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(used[0].length, 0u);
    EXPECT_THAT(interrupt.used_buffers_queues, ElementsAre(0));
    const auto stats = device.stats();
    EXPECT_EQ(stats["inflated_pages"], 259);
    EXPECT_EQ(stats["invalid_pfns"], 0);
    EXPECT_EQ(stats["bad_chains"], 0);
    EXPECT_EQ(stats["discard_errors"], 0);
}

TEST_F(BalloonDeviceTest, DeflatedPagesAreTheGuestsAgain) {
    activate();
    fill(kBalloonPages, kMiB, 0x5a);
    std::vector<std::uint32_t> pages;
    for (std::uint32_t page = 0; page < 16; ++page) {
        pages.push_back(page_number(kBalloonPages) + page);
    }
    run_loop({{[&] { offer_pages(0, pages); }, after_turns(0)},
              notify_until_used(0, 1),
              {[&] { offer_pages(1, pages); }, after_turns(0)},
              notify_until_used(1, 1)});

    const auto stats = device.stats();
    EXPECT_EQ(stats["inflated_pages"], 16);
    EXPECT_EQ(stats["deflated_pages"], 16);
    EXPECT_EQ(drivers[1].take_used().at(0).length, 0u);
    // The guest uses them again: they read zero until written, then hold data.
    EXPECT_TRUE(all_bytes_are(kBalloonPages, 16 * kPageSize, 0));
    fill(kBalloonPages, 16 * kPageSize, 0x77);
    EXPECT_TRUE(all_bytes_are(kBalloonPages, 16 * kPageSize, 0x77));
    EXPECT_TRUE(all_bytes_are(kBalloonPages + 16 * kPageSize, kMiB - 16 * kPageSize, 0x5a));
}

TEST_F(BalloonDeviceTest, PageFrameNumbersOutsideGuestRamAreSkippedAndCounted) {
    activate();
    fill(kBalloonPages, kMiB, 0x5a);
    const std::uint64_t before = allocated_bytes();
    offer_pages(0, {page_number(kLowRamSize),              // the hole after low RAM
                    page_number(kHighRam + kHighRamSize),  // past the end of RAM
                    0xffffffff,                            // the last page a 32-bit number reaches
                    page_number(kBalloonPages)});
    offer_pages(1, {page_number(kLowRamSize + kMiB), page_number(kBalloonPages)});
    run_loop({notify_until_used(0, 1), notify_until_used(1, 1)});

    EXPECT_EQ(allocated_bytes(), before - kPageSize);
    EXPECT_TRUE(all_bytes_are(kBalloonPages, kPageSize, 0));
    EXPECT_TRUE(all_bytes_are(kBalloonPages + kPageSize, kMiB - kPageSize, 0x5a));
    const auto stats = device.stats();
    EXPECT_EQ(stats["inflated_pages"], 1);
    EXPECT_EQ(stats["deflated_pages"], 1);
    EXPECT_EQ(stats["invalid_pfns"], 4);
}

TEST_F(BalloonDeviceTest, ChainsThatAreNotPageArraysAreReturnedUntouched) {
    activate();
    fill(kBalloonPages, kMiB, 0x5a);
    const std::uint32_t page = page_number(kBalloonPages);
    std::array<std::uint8_t, 6> odd_length{};
    std::memcpy(odd_length.data(), &page, sizeof page);
    VirtqueueDriver& inflate = drivers[0];
    // Not a whole number of page frame numbers.
    inflate.add_chain(std::array{inflate.readable(odd_length)});
    // Page frame numbers in a device-writable buffer, alone or after readable ones.
    DriverBuffer writable = inflate.writable(4);
    std::memcpy(inflate.guest_bytes(writable.address, 4).data(), &page, 4);
    inflate.add_chain(std::array{writable});
    std::array<std::uint8_t, 4> page_bytes;
    std::memcpy(page_bytes.data(), &page, 4);
    inflate.add_chain(std::array{inflate.readable(page_bytes), inflate.writable(4)});
    // More page frame numbers than any driver sends in one chain.
    std::vector<std::uint32_t> too_many(BalloonDevice::kMaxPagesPerChain + 1, page);
    offer_pages(0, too_many);
    run_loop({notify_until_used(0, 4)});

    EXPECT_TRUE(all_bytes_are(kBalloonPages, kMiB, 0x5a));
    for (const UsedElement& used : inflate.take_used()) {
        EXPECT_EQ(used.length, 0u);
    }
    const auto stats = device.stats();
    EXPECT_EQ(stats["bad_chains"], 4);
    EXPECT_EQ(stats["inflated_pages"], 0);
    EXPECT_FALSE(memory.discarded(kBalloonPages));
}

TEST_F(BalloonDeviceTest, AChainTheQueueRefusesIsReturnedAndTheQueueGoesOn) {
    activate();
    fill(kBalloonPages, kMiB, 0x5a);
    VirtqueueDriver& inflate = drivers[0];
    // Its buffer lies outside guest RAM.
    inflate.add_chain(std::array{DriverBuffer{kLowRamSize, 64, false}});
    offer_pages(0, {page_number(kBalloonPages)});
    run_loop({notify_until_used(0, 2)});

    EXPECT_TRUE(all_bytes_are(kBalloonPages, kPageSize, 0));
    const auto stats = device.stats();
    EXPECT_EQ(stats["bad_chains"], 1);
    EXPECT_EQ(stats["inflated_pages"], 1);
}

TEST_F(BalloonDeviceTest, FreePageReportsGiveTheBlocksBackToTheHost) {
    activate();
    fill(kBalloonPages, 4 * kMiB, 0x5a);
    fill(kHighRam, kHighRamSize, 0xa5);
    const std::uint64_t before = allocated_bytes();
    VirtqueueDriver& reporting = drivers[3];
    // Linux reports free blocks of 2 MiB and more as device-writable buffers.
    reporting.add_chain(std::array{DriverBuffer{kBalloonPages + 2 * kMiB, 2 * kMiB, true},
                                   DriverBuffer{kHighRam, 2 * kMiB, true}});
    reporting.add_chain(
        std::array{DriverBuffer{kHighRam + 3 * kMiB, static_cast<std::uint32_t>(kMiB), true}});
    run_loop({notify_until_used(3, 2)});

    EXPECT_EQ(allocated_bytes(), before - 5 * kMiB);
    EXPECT_TRUE(all_bytes_are(kBalloonPages + 2 * kMiB, 2 * kMiB, 0));
    EXPECT_TRUE(all_bytes_are(kHighRam, 2 * kMiB, 0));
    EXPECT_TRUE(all_bytes_are(kHighRam + 3 * kMiB, kMiB, 0));
    EXPECT_TRUE(all_bytes_are(kBalloonPages, 2 * kMiB, 0x5a));
    EXPECT_TRUE(all_bytes_are(kHighRam + 2 * kMiB, kMiB, 0xa5));
    EXPECT_TRUE(memory.discarded(kHighRam + kMiB));
    for (const UsedElement& used : reporting.take_used()) {
        EXPECT_EQ(used.length, 0u);  // nothing written into the guest's free pages
    }
    EXPECT_THAT(interrupt.used_buffers_queues, ElementsAre(3));
    const auto stats = device.stats();
    EXPECT_EQ(stats["reported_bytes"], 5 * kMiB);
    EXPECT_EQ(stats["reports"], 3);
    EXPECT_EQ(stats["inflated_pages"], 0);
}

TEST_F(BalloonDeviceTest, ReportBuffersThatAreNotWholePagesOrNotWritableAreSkipped) {
    activate();
    fill(kBalloonPages, 4 * kMiB, 0x5a);
    VirtqueueDriver& reporting = drivers[3];
    reporting.add_chain(std::array{DriverBuffer{kBalloonPages + 100, 2 * kMiB, true},
                                   DriverBuffer{kBalloonPages + 2 * kMiB, 2 * kMiB - 1, true},
                                   DriverBuffer{kBalloonPages + 3 * kMiB, 0, true}});
    // Readable buffers: the driver means something the device does not know.
    reporting.add_chain(std::array{DriverBuffer{kBalloonPages, 2 * kMiB, false}});
    reporting.add_chain(std::array{DriverBuffer{kBalloonPages, static_cast<std::uint32_t>(kPageSize), false},
                                   DriverBuffer{kBalloonPages + kMiB, 2 * kMiB, true}});
    run_loop({notify_until_used(3, 3)});

    EXPECT_TRUE(all_bytes_are(kBalloonPages, 4 * kMiB, 0x5a));
    const auto stats = device.stats();
    EXPECT_EQ(stats["unaligned_reports"], 3);
    EXPECT_EQ(stats["bad_chains"], 2);
    EXPECT_EQ(stats["reported_bytes"], 0);
}

TEST_F(BalloonDeviceTest, WithoutTheStatsQueueReportingIsQueueTwo) {
    activate(feature_bit(kFeatureFreePageReporting));
    fill(kBalloonPages, 2 * kMiB, 0x5a);
    drivers[2].add_chain(std::array{DriverBuffer{kBalloonPages, 2 * kMiB, true}});
    run_loop({notify_until_used(2, 1)});

    EXPECT_TRUE(all_bytes_are(kBalloonPages, 2 * kMiB, 0));
    EXPECT_EQ(device.stats()["reported_bytes"], 2 * kMiB);
    EXPECT_EQ(device.stats()["features"]["stats_queue"], false);
    EXPECT_EQ(device.stats()["features"]["free_page_reporting"], true);
}

TEST_F(BalloonDeviceTest, WithoutReportingQueueThreeIsNotServed) {
    activate(feature_bit(kFeatureStatsQueue));
    drivers[3].configure(queues[3]);  // a driver that enables it anyway
    fill(kBalloonPages, 2 * kMiB, 0x5a);
    drivers[3].add_chain(std::array{DriverBuffer{kBalloonPages, 2 * kMiB, true}});
    run_loop({{[&] { notifications[3].signal(); }, after_turns(3)}});

    EXPECT_EQ(drivers[3].used_idx(), 0);
    EXPECT_TRUE(all_bytes_are(kBalloonPages, 2 * kMiB, 0x5a));
}

TEST_F(BalloonDeviceTest, KeepsTheStatsBufferAndReturnsItForFreshFigures) {
    activate();
    VirtqueueDriver& stats_queue = drivers[2];
    const DriverBuffer buffer = stats_queue.readable(stats_entries({{4, 300 * kMiB},  // free
                                                                    {5, 512 * kMiB},  // total
                                                                    {6, 400 * kMiB},  // available
                                                                    {2, 17},          // major faults
                                                                    {3, 12345},       // minor faults
                                                                    {0, 0},           // swap in
                                                                    {99, 1}}));       // a newer tag
    auto guest_stats = [&] { return device.stats()["guest_stats"]; };
    EXPECT_EQ(device.stats()["guest_stats_age_ms"], nullptr);
    // Before the driver gave it a buffer, a request has nothing to return.
    device.request_guest_stats();

    run_loop({{[&] {
                   stats_queue.add_chain(std::array{buffer});
                   notifications[2].signal();
               },
               [&] { return !guest_stats().empty(); }},
              {[&] {
                   EXPECT_EQ(stats_queue.used_idx(), 0);  // held by the device
                   device.request_guest_stats();
                   device.request_guest_stats();  // the driver has it: nothing more to return
               },
               [&] { return stats_queue.used_idx() == 1; }},
              {[&] {
                   // The driver refills the same buffer and hands it over again.
                   const auto fresh = stats_entries({{4, 100 * kMiB}, {5, 512 * kMiB}});
                   std::ranges::copy(fresh, stats_queue.guest_bytes(buffer.address, fresh.size()).begin());
                   stats_queue.add_chain(std::array{
                       DriverBuffer{buffer.address, static_cast<std::uint32_t>(fresh.size()), false}});
                   notifications[2].signal();
               },
               [&] { return guest_stats().size() == 2; }}});

    EXPECT_EQ(guest_stats(), (nlohmann::json{{"free_memory", 100 * kMiB}, {"total_memory", 512 * kMiB}}));
    EXPECT_EQ(stats_queue.used_idx(), 1);
    EXPECT_EQ(stats_queue.take_used().at(0).length, 0u);
    EXPECT_THAT(interrupt.used_buffers_queues, ElementsAre(2));
    EXPECT_TRUE(device.stats()["guest_stats_age_ms"].is_number_integer());
}

TEST_F(BalloonDeviceTest, ParsesEveryFigureTheDriverSends) {
    activate();
    std::vector<std::pair<std::uint16_t, std::uint64_t>> entries;
    for (std::uint16_t tag = 0; tag < kStatNames.size(); ++tag) {
        entries.emplace_back(tag, 1000 + tag);
    }
    drivers[2].add_chain(std::array{drivers[2].readable(stats_entries(entries))});
    run_loop({{[&] { notifications[2].signal(); }, [&] { return !device.stats()["guest_stats"].empty(); }}});

    const auto figures = device.stats()["guest_stats"];
    EXPECT_EQ(figures.size(), kStatNames.size());
    EXPECT_EQ(figures["swap_in"], 1000);
    EXPECT_EQ(figures["swap_out"], 1001);
    EXPECT_EQ(figures["major_faults"], 1002);
    EXPECT_EQ(figures["minor_faults"], 1003);
    EXPECT_EQ(figures["free_memory"], 1004);
    EXPECT_EQ(figures["total_memory"], 1005);
    EXPECT_EQ(figures["available_memory"], 1006);
    EXPECT_EQ(figures["disk_caches"], 1007);
    EXPECT_EQ(figures["hugetlb_allocations"], 1008);
    EXPECT_EQ(figures["hugetlb_failures"], 1009);
    EXPECT_EQ(figures["direct_reclaims"], 1015);
}

TEST_F(BalloonDeviceTest, AStatsBufferThatIsNotWholeEntriesLeavesTheFiguresAlone) {
    activate();
    VirtqueueDriver& stats_queue = drivers[2];
    stats_queue.add_chain(std::array{stats_queue.readable(stats_entries({{4, 1}}))});
    run_loop({{[&] { notifications[2].signal(); }, [&] { return !device.stats()["guest_stats"].empty(); }},
              {[&] {
                   device.request_guest_stats();
                   auto bytes = stats_entries({{4, 2}});
                   bytes.push_back(0);
                   stats_queue.add_chain(std::array{stats_queue.readable(bytes)});
               },
               after_turns(0)},
              {[&] { notifications[2].signal(); }, [&] { return device.stats()["bad_chains"] == 1; }},
              {[&] {
                   // Writable: not what the driver must offer.
                   device.request_guest_stats();
                   stats_queue.add_chain(std::array{stats_queue.writable(10)});
                   notifications[2].signal();
               },
               [&] { return device.stats()["bad_chains"] == 2; }}});

    EXPECT_EQ(device.stats()["guest_stats"], (nlohmann::json{{"free_memory", 1}}));
    // Each bad buffer was still kept, and went back on request.
    EXPECT_EQ(stats_queue.used_idx(), 2);
}

TEST_F(BalloonDeviceTest, ASecondStatsBufferSendsTheFirstBack) {
    activate();
    VirtqueueDriver& stats_queue = drivers[2];
    const std::uint16_t first =
        stats_queue.add_chain(std::array{stats_queue.readable(stats_entries({{4, 1}}))});
    stats_queue.add_chain(std::array{stats_queue.readable(stats_entries({{4, 2}}))});
    run_loop({notify_until_used(2, 1)});

    EXPECT_EQ(stats_queue.take_used().at(0).id, first);
    EXPECT_EQ(device.stats()["guest_stats"], (nlohmann::json{{"free_memory", 2}}));
}

TEST_F(BalloonDeviceTest, ABrokenQueueAsksForAResetAndNoQueueIsServedAgain) {
    activate();
    fill(kBalloonPages, kMiB, 0x5a);
    drivers[2].add_chain(std::array{drivers[2].readable(stats_entries({{4, 1}}))});
    drivers[1].set_avail_idx(kSize + 1);  // more chains than the queue holds
    run_loop({notify_until_used(2, 0),
              {[&] { notifications[1].signal(); }, [&] { return interrupt.needs_reset_calls == 1; }},
              {[&] {
                   offer_pages(0, {page_number(kBalloonPages)});
                   notifications[0].signal();
                   device.request_guest_stats();
               },
               after_turns(3)}});

    EXPECT_EQ(interrupt.needs_reset_calls, 1);
    EXPECT_EQ(drivers[0].used_idx(), 0);
    EXPECT_EQ(drivers[2].used_idx(), 0);
    EXPECT_TRUE(all_bytes_are(kBalloonPages, kMiB, 0x5a));
    EXPECT_EQ(device.stats()["broken_queues"], 1);
}

TEST_F(BalloonDeviceTest, AfterAResetNothingIsServedAndTheBalloonIsEmpty) {
    activate();
    write_actual(100);
    device.reset();
    EXPECT_EQ(device.actual(), 0u);
    fill(kBalloonPages, kMiB, 0x5a);
    offer_pages(0, {page_number(kBalloonPages)});
    run_loop({{[&] { notifications[0].signal(); }, after_turns(3)}});
    EXPECT_EQ(drivers[0].used_idx(), 0);
    EXPECT_TRUE(all_bytes_are(kBalloonPages, kMiB, 0x5a));
    // The target stays: the next driver inflates to it.
    device.set_target(7);
    EXPECT_EQ(read_config_word(0), 7u);
    EXPECT_EQ(interrupt.config_changes, 0);
}

TEST_F(BalloonDeviceTest, ALongQueueIsServedInTurnsWithTheOtherQueues) {
    activate();
    fill(kBalloonPages, 4 * kMiB, 0x5a);
    const std::uint16_t chains = BalloonDevice::kMaxChainsPerTurn + 36;
    for (std::uint32_t chain = 0; chain < chains; ++chain) {
        offer_pages(0, {page_number(kBalloonPages) + chain});
    }
    run_loop({notify_until_used(0, chains)});
    EXPECT_EQ(device.stats()["inflated_pages"], chains);
    EXPECT_TRUE(all_bytes_are(kBalloonPages, chains * kPageSize, 0));
    EXPECT_TRUE(all_bytes_are(kBalloonPages + chains * kPageSize, kPageSize, 0x5a));
}

TEST(GuestStatsTest, ReadsTaggedFiguresAndCountsUnknownTags) {
    const auto bytes = stats_entries({{4, 7}, {5, 9}, {4, 8}, {200, 1}, {16, 2}});
    const GuestStats stats = parse_guest_stats(bytes);
    EXPECT_EQ(stats.to_json(), (nlohmann::json{{"free_memory", 8}, {"total_memory", 9}}));
    EXPECT_EQ(stats.unknown_tags, 2u);
    EXPECT_EQ(parse_guest_stats({}).to_json(), nlohmann::json::object());
}

TEST(GuestStatsTest, RefusesABufferThatIsNotWholeEntries) {
    std::vector<std::uint8_t> bytes(25);
    try {
        (void)parse_guest_stats(bytes);
        FAIL() << "no error";
    } catch (const std::invalid_argument& error) {
        EXPECT_STREQ(error.what(), "stats buffer of 25 bytes is not a whole number of 10-byte entries");
    }
}

}  // namespace
}  // namespace vim::vmm::virtio::balloon
