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

#include "block_device_fixture.h"
#include "block_test_support.h"
#include "request_bytes.h"
#include "vim/testing/loop_steps.h"
#include "vim/testing/virtio_driver.h"
#include "vmm/virtio/block/block_device.h"
#include "vmm/virtio/block/io_uring_engine.h"
#include "vmm/virtio/block/sync_engine.h"

namespace vim::vmm::virtio::block {
namespace {

using testing::header_bytes;
using testing::pattern;
using testing::write_file;
using vim::testing::DriverBuffer;

constexpr std::uint64_t kDiskSize = 4 << 20;
constexpr std::uint32_t kReadLength = 64 << 10;
constexpr int kRequests = 24;

class BlockQuiesceTest : public testing::BlockDeviceFixture {
protected:
    void SetUp() override {
        BlockDeviceFixture::SetUp();
        if (IsSkipped()) {
            return;
        }
        write_file(disk_path, pattern(kDiskSize));
        device = std::make_unique<BlockDevice>(
            DiskImage::open(disk_path, {}), "disk", 1, [this](int fd, unsigned depth) {
                return EngineSelection{
                    GetParam() == "io_uring" ? make_io_uring_engine(fd, depth) : make_sync_engine(fd, depth),
                    {}};
            });
        activate();
    }
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
                         testing::engine_name);

}  // namespace
}  // namespace vim::vmm::virtio::block
