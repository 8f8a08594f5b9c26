// The balloon's target, actual size and the stats buffer it holds travel: on
// the destination the driver reads the same sizes, and the next stats request
// gives the buffer the source held back to the driver.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "vim/testing/guest_ram.h"
#include "vim/testing/loop_steps.h"
#include "vim/testing/recording_interrupt.h"
#include "vim/testing/virtio_driver.h"
#include "vmm/state/state.h"
#include "vmm/sys/event_fd.h"
#include "vmm/sys/event_loop.h"
#include "vmm/virtio/balloon/balloon_device.h"
#include "vmm/virtio/balloon/protocol.h"

namespace vim::vmm::virtio::balloon {
namespace {

using ::testing::HasSubstr;
using state::State;
using vim::testing::RingLayout;
using vim::testing::VirtqueueDriver;

constexpr std::uint16_t kSize = BalloonDevice::kQueueSize;
constexpr memory::GuestAddress kRam = 0;
constexpr std::uint64_t kRamSize = 4 << 20;
constexpr std::size_t kStatsQueue = 2;
constexpr std::uint64_t kAllFeatures = feature_bit(kFeatureStatsQueue) | feature_bit(kFeatureDeflateOnOom) |
                                       feature_bit(kFeatureFreePageReporting);

// One side: a balloon with its four queues on one guest RAM.
struct Side {
    explicit Side(memory::GuestMemory& ram) : memory(ram) {
        for (std::size_t queue = 0; queue < BalloonDevice::kQueueCount; ++queue) {
            queues.emplace_back("virtio-balloon0 queue " + std::to_string(queue), kSize);
            notifications.emplace_back("balloon test notification");
            notification_fds.push_back(notifications.back().get());
        }
    }
    ~Side() { device.reset(); }
    void activate() {
        device.activate(Activation{memory, loop, kAllFeatures, queues, notification_fds, interrupt});
    }

    memory::GuestMemory& memory;
    std::vector<Queue> queues;
    std::vector<sys::EventFd> notifications;
    std::vector<int> notification_fds;
    sys::EventLoop loop;
    vim::testing::RecordingInterrupt interrupt;
    BalloonDevice device{BalloonDevice::Options{}};
};

class BalloonStateTest : public ::testing::Test {
protected:
    BalloonStateTest() {
        for (std::size_t queue = 0; queue < BalloonDevice::kQueueCount; ++queue) {
            drivers.emplace_back(ram.memory(), kSize, RingLayout::packed(queue * 0x10000, kSize),
                                 0x100000 + queue * 0x40000, 0x40000);
            drivers.back().configure(source.queues[queue]);
        }
        source.activate();
        // The driver hands its stats buffer over and sets its balloon's size.
        std::array<std::uint8_t, 10> entry{};  // tag 0 (swap in), value 0
        drivers[kStatsQueue].add_chain(std::array{drivers[kStatsQueue].readable(entry)});
        vim::testing::run_loop_steps(source.loop, {{[&] { source.notifications[kStatsQueue].signal(); },
                                                    vim::testing::after_turns(2)}});
        source.device.set_target(4096);
        const std::uint32_t actual = 1024;
        source.device.write_config(4, {reinterpret_cast<const std::uint8_t*>(&actual), 4});
        source.device.quiesce();
        saved = source.device.save_device();
        for (std::size_t queue = 0; queue < BalloonDevice::kQueueCount; ++queue) {
            destination.queues[queue].restore(source.queues[queue].state(), ram.memory());
        }
    }

    std::string restore_error(const State& state, std::uint64_t features = kAllFeatures) {
        try {
            destination.device.restore_device(state, features, destination.queues);
        } catch (const state::StateError& error) {
            return error.what();
        }
        return "";
    }

    vim::testing::GuestRam ram{kRam, kRamSize};
    Side source{ram.memory()};
    Side destination{ram.memory()};
    std::vector<VirtqueueDriver> drivers;
    State saved;
};

TEST_F(BalloonStateTest, SizesAndTheHeldStatsBufferTravel) {
    ASSERT_EQ(drivers[kStatsQueue].used_idx(), 0);  // the source holds the buffer
    destination.device.restore_device(saved, kAllFeatures, destination.queues);
    destination.activate();
    EXPECT_EQ(destination.device.target(), 4096u);
    EXPECT_EQ(destination.device.actual(), 1024u);
    std::uint32_t num_pages = 0;
    destination.device.read_config(0, {reinterpret_cast<std::uint8_t*>(&num_pages), 4});
    EXPECT_EQ(num_pages, 4096u);

    destination.device.request_guest_stats();
    EXPECT_EQ(drivers[kStatsQueue].used_idx(), 1);
    EXPECT_EQ(drivers[kStatsQueue].used_element(0).id, 0u);
}

TEST_F(BalloonStateTest, RefusesAStatsBufferWithoutAStatsQueueOrOutsideIt) {
    EXPECT_EQ(restore_error(saved, feature_bit(kFeatureDeflateOnOom)),
              "stats_buffer: held without a stats queue negotiated");
    State state = saved;
    state["stats_buffer"] = kSize;
    EXPECT_EQ(restore_error(state), "stats_buffer: head 128 is not a descriptor of a ready stats queue");
    state = saved;
    state["stats_buffer"] = "0";
    EXPECT_THAT(restore_error(state), HasSubstr("stats_buffer: not an unsigned integer"));
    state = saved;
    state.erase("actual_pages");
    EXPECT_EQ(restore_error(state), "actual_pages: missing");
}

}  // namespace
}  // namespace vim::vmm::virtio::balloon
