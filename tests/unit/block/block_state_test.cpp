// A block device quiesced with requests in flight at its engine: quiesce()
// returns only once every one of them is on the used ring, so a snapshot
// never holds a request half done, and save_device() refuses to run while
// one is.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "block_test_support.h"
#include "request_bytes.h"
#include "vim/testing/guest_ram.h"
#include "vim/testing/loop_steps.h"
#include "vim/testing/recording_interrupt.h"
#include "vim/testing/temp_dir.h"
#include "vim/testing/virtio_driver.h"
#include "vmm/sys/event_fd.h"
#include "vmm/sys/event_loop.h"
#include "vmm/virtio/block/block_device.h"
#include "vmm/virtio/block/io_uring_engine.h"
#include "vmm/virtio/block/sync_engine.h"

namespace vim::vmm::virtio::block {
namespace {

using testing::header_bytes;
using testing::io_uring_unavailable;
using testing::pattern;
using testing::write_file;
using vim::testing::DriverBuffer;
using vim::testing::VirtqueueDriver;

constexpr std::uint16_t kSize = BlockDevice::kQueueSize;
constexpr memory::GuestAddress kRam = 0x100000;
constexpr std::uint64_t kRamSize = 8 << 20;
constexpr memory::GuestAddress kData = kRam + 0x4000;
constexpr std::uint64_t kDiskSize = 4 << 20;
constexpr std::uint32_t kReadLength = 64 << 10;
constexpr int kRequests = 24;

class BlockQuiesceTest : public ::testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        if (GetParam() == "io_uring") {
            if (const auto reason = io_uring_unavailable()) {
                GTEST_SKIP() << *reason;
            }
        }
        write_file(disk_path, pattern(kDiskSize));
        device = std::make_unique<BlockDevice>(
            DiskImage::open(disk_path, {}), "disk", 1, [this](int fd, unsigned depth) {
                return EngineSelection{
                    GetParam() == "io_uring" ? make_io_uring_engine(fd, depth) : make_sync_engine(fd, depth),
                    {}};
            });
        driver.configure(queues[0]);
        device->activate(
            Activation{ram.memory(), loop, device->device_features(), queues, notification_fds, interrupt});
    }
    void TearDown() override {
        if (device) {
            device->reset();
        }
    }

    vim::testing::TempDir directory;
    const std::string disk_path = directory.path("disk.raw");
    vim::testing::GuestRam ram{kRam, kRamSize};
    VirtqueueDriver driver{ram.memory(), kSize, vim::testing::RingLayout::packed(kRam, kSize), kData,
                           kRam + kRamSize - kData};
    std::array<Queue, 1> queues{Queue{"virtio-blk0 queue 0", kSize}};
    sys::EventFd notification{"virtio-blk test notification"};
    std::array<int, 1> notification_fds{notification.get()};
    sys::EventLoop loop;
    vim::testing::RecordingInterrupt interrupt;
    std::unique_ptr<BlockDevice> device;
};

TEST_P(BlockQuiesceTest, EveryRequestInFlightIsOnTheUsedRingAfterQuiesce) {
    struct Offered {
        DriverBuffer data;
        DriverBuffer status;
    };
    std::vector<Offered> offered;
    std::uint64_t in_flight_before = 0;
    bool save_refused = false;
    vim::testing::run_loop_steps(
        loop, {{[&] {
                    for (int index = 0; index < kRequests; ++index) {
                        Offered request{driver.writable(kReadLength), driver.writable(1)};
                        const std::uint64_t sector =
                            static_cast<std::uint64_t>(index) * kReadLength / kSectorSize;
                        driver.add_chain(std::array{driver.readable(header_bytes(RequestType::In, sector)),
                                                    request.data, request.status});
                        offered.push_back(request);
                    }
                    notification.signal();
                },
                [&] { return device->stats()["in_flight"].get<std::uint64_t>() > 0; }},
               {[&] {
                    in_flight_before = device->stats()["in_flight"].get<std::uint64_t>();
                    try {
                        (void)device->save_device();
                    } catch (const std::logic_error&) {
                        save_refused = true;
                    }
                    device->quiesce();
                },
                vim::testing::after_turns(0)}});

    EXPECT_GT(in_flight_before, 0u);
    EXPECT_TRUE(save_refused);
    EXPECT_EQ(device->stats()["in_flight"], 0u);
    EXPECT_EQ(driver.used_idx(), kRequests);
    EXPECT_EQ(device->save_device(), state::State::object());
    const std::vector<std::uint8_t> disk = pattern(kDiskSize);
    for (int index = 0; index < kRequests; ++index) {
        EXPECT_EQ(driver.contents(offered[index].status)[0], 0) << "request " << index;
        const auto expected = std::vector<std::uint8_t>(disk.begin() + index * kReadLength,
                                                        disk.begin() + (index + 1) * kReadLength);
        EXPECT_EQ(driver.contents(offered[index].data), expected) << "request " << index;
    }
    EXPECT_FALSE(interrupt.used_buffers_queues.empty());
}

TEST_P(BlockQuiesceTest, QuiesceWithNothingInFlightChangesNothing) {
    device->quiesce();
    EXPECT_EQ(driver.used_idx(), 0);
    EXPECT_TRUE(interrupt.used_buffers_queues.empty());
}

INSTANTIATE_TEST_SUITE_P(Engines, BlockQuiesceTest, ::testing::Values("io_uring", "sync"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                             return info.param == "io_uring" ? "IoUring" : "Sync";
                         });

}  // namespace
}  // namespace vim::vmm::virtio::block
