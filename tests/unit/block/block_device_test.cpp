// The block device driven as a guest would drive it: requests offered on a
// queue in plain heap RAM, notifications through an eventfd served by a real
// event loop on the test thread, interrupts recorded by a fake, and the disk
// a file checked with pread. Every test runs with both engines.
#include "vmm/virtio/block/block_device.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "block_device_fixture.h"
#include "block_test_support.h"
#include "request_bytes.h"
#include "vim/testing/guest_ram.h"
#include "vim/testing/loop_steps.h"
#include "vim/testing/recording_interrupt.h"
#include "vim/testing/virtio_driver.h"
#include "vmm/sys/event_fd.h"
#include "vmm/sys/event_loop.h"
#include "vmm/sys/fd.h"
#include "vmm/virtio/block/io_uring_engine.h"
#include "vmm/virtio/block/sync_engine.h"
#include "vmm/virtio/split_ring.h"

namespace vim::vmm::virtio::block {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using ::testing::UnorderedElementsAre;
using ::testing::Each;
using ::testing::Not;
using testing::engine_name;
using testing::header_bytes;
using testing::io_uring_unavailable;
using testing::pattern;
using testing::read_file;
using testing::ScratchMount;
using testing::segment_bytes;
using testing::TempDir;
using testing::write_file;
using vim::testing::after_turns;
using vim::testing::DriverBuffer;
using vim::testing::LoopStep;
using vim::testing::run_loop_steps;
using vim::testing::VirtqueueDriver;
using Bytes = std::vector<std::uint8_t>;

constexpr std::uint8_t kOk = 0;
constexpr std::uint8_t kIoError = 1;
constexpr std::uint8_t kUnsupported = 2;

using vim::testing::RecordingInterrupt;

// What a test does to the engine the device gets, and what it saw.
struct EngineHooks {
    unsigned depth = BlockDevice::kQueueSize;  // smaller: an engine that fills up sooner
    bool hold = false;                         // nothing reaches the kernel until the engine is destroyed
    std::function<void()> after_submit;        // after each submit() that had requests to start
    std::function<void(Completion&)> on_completion;

    unsigned enqueued = 0;
    unsigned batches = 0;  // submit() calls with requests to start
    unsigned max_in_flight = 0;
    unsigned enqueued_since_submit = 0;
};

// A real engine with the test's hooks in between.
class InterceptingEngine final : public IoEngine {
public:
    InterceptingEngine(std::unique_ptr<IoEngine> engine, EngineHooks& hooks)
        : engine_(std::move(engine)), hooks_(hooks) {}

    const char* name() const noexcept override { return engine_->name(); }
    unsigned queue_depth() const noexcept override { return engine_->queue_depth(); }
    unsigned in_flight() const noexcept override { return engine_->in_flight(); }

    bool enqueue(const Request& request) override {
        if (!engine_->enqueue(request)) {
            return false;
        }
        ++hooks_.enqueued;
        ++hooks_.enqueued_since_submit;
        hooks_.max_in_flight = std::max(hooks_.max_in_flight, engine_->in_flight());
        return true;
    }

    void submit() override {
        if (hooks_.hold) {
            return;
        }
        const bool batch = std::exchange(hooks_.enqueued_since_submit, 0) > 0;
        engine_->submit();
        if (batch) {
            ++hooks_.batches;
            if (hooks_.after_submit) {
                hooks_.after_submit();
            }
        }
    }

    int completion_fd() const noexcept override { return engine_->completion_fd(); }

    std::optional<Completion> next_completion() override {
        if (hooks_.hold) {
            return std::nullopt;
        }
        std::optional<Completion> completion = engine_->next_completion();
        if (completion && hooks_.on_completion) {
            hooks_.on_completion(*completion);
        }
        return completion;
    }

private:
    std::unique_ptr<IoEngine> engine_;
    EngineHooks& hooks_;
};

// A request's buffers as the driver offered them.
struct Offered {
    std::uint16_t head;
    DriverBuffer data;  // device-writable data (In, GetId); length 0 when none
    DriverBuffer status;
};

class BlockDeviceTest : public testing::BlockDeviceFixture {
protected:
    static constexpr memory::GuestAddress kOutsideRam = 0x40000000;
    static constexpr std::uint64_t kDiskSize = 1 << 20;
    static constexpr std::uint64_t kCapacity = kDiskSize / kSectorSize;

    void SetUp() override {
        BlockDeviceFixture::SetUp();
        if (!IsSkipped()) {
            write_file(disk_path, pattern(kDiskSize));
        }
    }

    BlockDevice::EngineFactory engine_factory() {
        return [this](int fd, unsigned depth) {
            const unsigned actual = std::min(depth, hooks.depth);
            std::unique_ptr<IoEngine> engine =
                GetParam() == "io_uring" ? make_io_uring_engine(fd, actual) : make_sync_engine(fd, actual);
            return EngineSelection{std::make_unique<InterceptingEngine>(std::move(engine), hooks), {}};
        };
    }

    void make_device(DiskOptions options = {}, const std::string& serial = "test-disk") {
        make_device_on(disk_path, options, serial);
    }

    void make_device_on(const std::string& path, DiskOptions options = {},
                        const std::string& serial = "test-disk") {
        device = std::make_unique<BlockDevice>(DiskImage::open(path, options), serial, 1, engine_factory());
    }

    void start_device(DiskOptions options = {}) {
        make_device(options);
        activate();
    }

    Queue& queue() { return queues[0]; }

    // A request as Linux lays it out: the header, the readable payload, the
    // writable data and the status byte, each in a buffer of its own.
    Offered offer(std::uint32_t type, std::uint64_t sector, const Bytes& payload,
                  std::uint32_t writable_length) {
        std::vector<DriverBuffer> buffers{driver.readable(header_bytes(type, sector))};
        if (!payload.empty()) {
            buffers.push_back(driver.readable(payload));
        }
        Offered offered{};
        if (writable_length > 0) {
            offered.data = driver.writable(writable_length);
            buffers.push_back(offered.data);
        }
        offered.status = driver.writable(1);
        buffers.push_back(offered.status);
        offered.head = driver.add_chain(buffers);
        return offered;
    }

    Offered offer(RequestType type, std::uint64_t sector, const Bytes& payload,
                  std::uint32_t writable_length) {
        return offer(static_cast<std::uint32_t>(type), sector, payload, writable_length);
    }

    Offered offer_read(std::uint64_t sector, std::uint32_t length) {
        return offer(RequestType::In, sector, {}, length);
    }

    Offered offer_write(std::uint64_t sector, const Bytes& data) {
        return offer(RequestType::Out, sector, data, 0);
    }

    std::uint8_t status_of(const Offered& offered) const { return driver.contents(offered.status)[0]; }
    Bytes data_of(const Offered& offered) const { return driver.contents(offered.data); }

    void run_loop(std::vector<LoopStep> steps) { run_loop_steps(loop, std::move(steps)); }

    // A step that offers requests, notifies, and waits for used.idx to reach `used_idx`.
    LoopStep requests(std::function<void()> offer_requests, std::uint16_t used_idx) {
        return {[this, offer_requests] {
                    offer_requests();
                    notification.signal();
                },
                [this, used_idx] { return driver.used_idx() == used_idx; }};
    }

    // Notifies what is already offered and runs the loop until used.idx reaches `used_idx`.
    void serve_until_used(std::uint16_t used_idx) {
        run_loop({requests([] {}, used_idx)});
    }

    Bytes disk_bytes(std::uint64_t offset, std::size_t length) const {
        const sys::Fd fd(::open(disk_path.c_str(), O_RDONLY | O_CLOEXEC));
        Bytes bytes(length);
        EXPECT_EQ(::pread(fd.get(), bytes.data(), length, static_cast<off_t>(offset)),
                  static_cast<ssize_t>(length));
        return bytes;
    }

    // Whether the disk file has a hole at `offset` (nothing allocated there).
    bool hole_at(std::uint64_t offset) const {
        const sys::Fd fd(::open(disk_path.c_str(), O_RDONLY | O_CLOEXEC));
        return ::lseek(fd.get(), static_cast<off_t>(offset), SEEK_HOLE) == static_cast<off_t>(offset);
    }

    std::uint64_t stat(const char* name) const { return device->stats()[name].get<std::uint64_t>(); }

    EngineHooks hooks;
};

TEST_P(BlockDeviceTest, WritesThenReadsBackThroughSeveralBuffers) {
    start_device();
    const Bytes data = pattern(3 * 4096, 0xabcdef);
    // The data split unevenly across three buffers, as a guest's scattered pages are.
    const DriverBuffer header = driver.readable(header_bytes(RequestType::Out, 64));
    const std::array write_buffers{header, driver.readable(std::span(data).first(512)),
                                   driver.readable(std::span(data).subspan(512, 7000)),
                                   driver.readable(std::span(data).subspan(7512)), driver.writable(1)};
    std::array<DriverBuffer, 5> read_buffers{};
    run_loop({requests([&] { driver.add_chain(write_buffers); }, 1),
              requests(
                  [&] {
                      read_buffers = {driver.readable(header_bytes(RequestType::In, 64)),
                                      driver.writable(100), driver.writable(9000), driver.writable(3188),
                                      driver.writable(1)};
                      driver.add_chain(read_buffers);
                  },
                  2)});

    const auto used = driver.take_used();
    ASSERT_EQ(used.size(), 2u);
    EXPECT_EQ(used[0].length, 1u);
    EXPECT_EQ(used[1].length, data.size() + 1);
    EXPECT_EQ(driver.contents(write_buffers[4])[0], kOk);
    EXPECT_EQ(driver.contents(read_buffers[4])[0], kOk);
    EXPECT_EQ(disk_bytes(64 * kSectorSize, data.size()), data);
    EXPECT_EQ(disk_bytes(0, 64 * kSectorSize), pattern(64 * kSectorSize)) << "the bytes before are untouched";
    Bytes read_back;
    for (std::size_t index = 1; index < 4; ++index) {
        const Bytes part = driver.contents(read_buffers[index]);
        read_back.insert(read_back.end(), part.begin(), part.end());
    }
    EXPECT_EQ(read_back, data);

    const nlohmann::json stats = device->stats();
    EXPECT_EQ(stats["requests"]["read"], 1);
    EXPECT_EQ(stats["requests"]["write"], 1);
    EXPECT_EQ(stats["bytes_read"], data.size());
    EXPECT_EQ(stats["bytes_written"], data.size());
    EXPECT_EQ(stats["errors"], 0);
    EXPECT_EQ(stats["in_flight"], 0);
    EXPECT_EQ(stats["engine"], GetParam());
    EXPECT_EQ(stats["engine_fallback_reason"], "");
}

TEST_P(BlockDeviceTest, FindsHeaderDataAndStatusWhereverTheBuffersSplitThem) {
    start_device();
    // A write whose header and data share a buffer; a read whose header is
    // split in three and whose last buffer holds the end of the data and the status.
    Bytes header_and_data = header_bytes(RequestType::Out, 8);
    const Bytes data = pattern(1024, 77);
    header_and_data.insert(header_and_data.end(), data.begin(), data.end());
    const DriverBuffer write_status = driver.writable(1);
    const Bytes read_header = header_bytes(RequestType::In, 8);
    DriverBuffer read_tail{};
    run_loop({requests(
                  [&] {
                      driver.add_chain(std::array{driver.readable(header_and_data), write_status});
                  },
                  1),
              requests(
                  [&] {
                      read_tail = driver.writable(513);
                      driver.add_chain(std::array{driver.readable(std::span(read_header).first(1)),
                                                  driver.readable(std::span(read_header).subspan(1, 1)),
                                                  driver.readable(std::span(read_header).subspan(2)),
                                                  driver.writable(512), read_tail});
                  },
                  2)});

    EXPECT_EQ(driver.contents(write_status)[0], kOk);
    EXPECT_EQ(disk_bytes(8 * kSectorSize, 1024), data);
    const Bytes tail = driver.contents(read_tail);
    EXPECT_EQ(Bytes(tail.begin(), tail.end() - 1), Bytes(data.begin() + 512, data.end()));
    EXPECT_EQ(tail.back(), kOk);
}

TEST_P(BlockDeviceTest, KeepsManyRequestsInFlightAndSubmitsEachNotificationsBatchAtOnce) {
    start_device();
    constexpr std::uint16_t kRequests = 128;
    const Bytes data = pattern(kRequests * 4096, 0x5000000);
    std::vector<DriverBuffer> statuses;
    std::vector<DriverBuffer> read_data;
    std::size_t interrupts_after_writes = 0;
    // Indirect chains: 128 of them take only 128 descriptors.
    run_loop({requests(
                  [&] {
                      for (std::uint16_t index = 0; index < kRequests; ++index) {
                          statuses.push_back(driver.writable(1));
                          driver.add_indirect_chain(
                              std::array{driver.readable(header_bytes(RequestType::Out, index * 8u)),
                                         driver.readable(std::span(data).subspan(index * 4096u, 4096)),
                                         statuses.back()});
                      }
                  },
                  kRequests),
              requests(
                  [&] {
                      EXPECT_EQ(hooks.batches, 1u) << "one submit() for the notification's requests";
                      EXPECT_EQ(hooks.max_in_flight, kRequests);
                      interrupts_after_writes = interrupt.used_buffers_queues.size();
                      for (std::uint16_t index = 0; index < kRequests; ++index) {
                          statuses.push_back(driver.writable(1));
                          read_data.push_back(driver.writable(4096));
                          // Backwards, so a device completing in order of sectors would show.
                          driver.add_indirect_chain(std::array{
                              driver.readable(header_bytes(RequestType::In, (kRequests - 1 - index) * 8u)),
                              read_data.back(), statuses.back()});
                      }
                  },
                  2 * kRequests)});

    for (const DriverBuffer& status : statuses) {
        EXPECT_EQ(driver.contents(status)[0], kOk);
    }
    EXPECT_EQ(disk_bytes(0, data.size()), data);
    for (std::uint16_t index = 0; index < kRequests; ++index) {
        const std::size_t sector_index = kRequests - 1 - index;
        EXPECT_EQ(driver.contents(read_data[index]),
                  Bytes(data.begin() + sector_index * 4096, data.begin() + (sector_index + 1) * 4096))
            << "read " << index;
    }
    EXPECT_EQ(hooks.batches, 2u);
    ASSERT_GE(interrupts_after_writes, 1u);
    if (GetParam() == "sync") {
        // Every completion of the batch is reaped in one turn: one interrupt.
        EXPECT_EQ(interrupts_after_writes, 1u);
    }
    EXPECT_EQ(stat("in_flight"), 0u);
}

TEST_P(BlockDeviceTest, StopsPoppingWhileTheEngineIsFullAndLosesNothing) {
    hooks.depth = 2;
    start_device();
    constexpr std::uint16_t kRequests = 20;
    std::vector<Offered> reads;
    for (std::uint16_t index = 0; index < kRequests; ++index) {
        reads.push_back(offer_read(index * 16u, 4096));
    }
    serve_until_used(kRequests);

    EXPECT_LE(hooks.max_in_flight, 2u);
    EXPECT_GE(hooks.batches, kRequests / 2u);
    for (std::uint16_t index = 0; index < kRequests; ++index) {
        EXPECT_EQ(status_of(reads[index]), kOk);
        EXPECT_EQ(data_of(reads[index]), pattern(4096, index * 16u * kSectorSize)) << "read " << index;
    }
}

TEST_P(BlockDeviceTest, FlushesAndAnswersWithTheStatusByteAlone) {
    start_device();
    const Offered flush = offer(RequestType::Flush, 0, {}, 0);
    serve_until_used(1);
    EXPECT_EQ(status_of(flush), kOk);
    EXPECT_EQ(driver.take_used()[0].length, 1u);
    EXPECT_EQ(device->stats()["requests"]["flush"], 1);
}

TEST_P(BlockDeviceTest, DiscardPunchesHolesInEveryRange) {
    start_device();
    ASSERT_FALSE(hole_at(128 * 1024));
    const Offered discard =
        offer(RequestType::Discard, 0, segment_bytes({{256, 128, 0}, {0, 0, 0}, {1024, 64, 0}}), 0);
    serve_until_used(1);

    EXPECT_EQ(status_of(discard), kOk);
    EXPECT_EQ(disk_bytes(256 * kSectorSize, 128 * kSectorSize), Bytes(128 * kSectorSize, 0));
    EXPECT_EQ(disk_bytes(1024 * kSectorSize, 64 * kSectorSize), Bytes(64 * kSectorSize, 0));
    EXPECT_TRUE(hole_at(256 * kSectorSize));
    EXPECT_TRUE(hole_at(1024 * kSectorSize));
    EXPECT_EQ(disk_bytes(0, 256 * kSectorSize), pattern(256 * kSectorSize));
    EXPECT_EQ(disk_bytes(384 * kSectorSize, 640 * kSectorSize),
              pattern(640 * kSectorSize, 384 * kSectorSize));
    EXPECT_EQ(device->stats()["requests"]["discard"], 1);
}

TEST_P(BlockDeviceTest, WriteZeroesZeroesEachRangeAndUnmapsWhereAsked) {
    start_device();
    const Offered zeroes =
        offer(RequestType::WriteZeroes, 0, segment_bytes({{3, 5, 0}, {512, 128, kSegmentUnmap}}), 0);
    serve_until_used(1);

    EXPECT_EQ(status_of(zeroes), kOk);
    EXPECT_EQ(disk_bytes(0, 3 * kSectorSize), pattern(3 * kSectorSize));
    EXPECT_EQ(disk_bytes(3 * kSectorSize, 5 * kSectorSize), Bytes(5 * kSectorSize, 0));
    EXPECT_EQ(disk_bytes(8 * kSectorSize, 504 * kSectorSize), pattern(504 * kSectorSize, 8 * kSectorSize));
    EXPECT_EQ(disk_bytes(512 * kSectorSize, 128 * kSectorSize), Bytes(128 * kSectorSize, 0));
    EXPECT_TRUE(hole_at(512 * kSectorSize)) << "unmap deallocates";
    EXPECT_EQ(disk_bytes(640 * kSectorSize, 64 * kSectorSize), pattern(64 * kSectorSize, 640 * kSectorSize));
    EXPECT_EQ(device->stats()["requests"]["write_zeroes"], 1);
}

TEST_P(BlockDeviceTest, WithoutHolesDiscardDoesNothingAndWriteZeroesStillZeroes) {
    // ramfs refuses fallocate altogether: no hole can be punched.
    std::string why_not;
    auto scratch = ScratchMount::mount("ramfs", "mode=0700", why_not);
    if (!scratch) {
        GTEST_SKIP() << "no ramfs: " << why_not;
    }
    const std::string path = scratch->path("disk.raw");
    write_file(path, pattern(kDiskSize));
    make_device_on(path);
    activate();
    const Offered discard = offer(RequestType::Discard, 0, segment_bytes({{0, 8, 0}}), 0);
    const Offered zeroes = offer(RequestType::WriteZeroes, 0,
                                 segment_bytes({{16, 8, kSegmentUnmap}, {32, 8, kSegmentUnmap}}), 0);
    serve_until_used(2);

    EXPECT_EQ(status_of(discard), kOk);
    EXPECT_EQ(status_of(zeroes), kOk);
    Bytes expected = pattern(kDiskSize);
    std::fill_n(expected.begin() + 16 * kSectorSize, 8 * kSectorSize, 0);
    std::fill_n(expected.begin() + 32 * kSectorSize, 8 * kSectorSize, 0);
    EXPECT_EQ(read_file(path), expected);
}

TEST_P(BlockDeviceTest, GetIdAnswersTheSerialPaddedWithZeroes) {
    start_device();
    const Offered id = offer(RequestType::GetId, 0, {}, 32);
    serve_until_used(1);

    EXPECT_EQ(status_of(id), kOk);
    EXPECT_EQ(driver.take_used()[0].length, kIdBytes + 1);
    Bytes expected(32, VirtqueueDriver::kUnwrittenByte);
    std::fill_n(expected.begin(), kIdBytes, 0);
    std::memcpy(expected.data(), "test-disk", 9);
    EXPECT_EQ(data_of(id), expected);
}

TEST_P(BlockDeviceTest, GetIdCutsALongSerialToTwentyBytes) {
    make_device({}, "a-serial-longer-than-twenty-bytes");
    activate();
    const Offered id = offer(RequestType::GetId, 0, {}, kIdBytes);
    serve_until_used(1);
    const Bytes answer = data_of(id);
    EXPECT_EQ(std::string(answer.begin(), answer.end()), "a-serial-longer-than");
}

TEST_P(BlockDeviceTest, AReadOnlyDiskRefusesWritesWithIoErrorAndKeepsTheFile) {
    start_device({.read_only = true});
    EXPECT_NE(device->device_features() & feature_bit(kFeatureReadOnly), 0u);
    const Offered write = offer_write(0, Bytes(4096, 0x11));
    const Offered discard = offer(RequestType::Discard, 0, segment_bytes({{0, 8, 0}}), 0);
    const Offered zeroes = offer(RequestType::WriteZeroes, 0, segment_bytes({{0, 8, kSegmentUnmap}}), 0);
    const Offered read = offer_read(0, 4096);
    serve_until_used(4);

    EXPECT_EQ(status_of(write), kIoError);
    EXPECT_EQ(status_of(discard), kIoError);
    EXPECT_EQ(status_of(zeroes), kIoError);
    EXPECT_EQ(status_of(read), kOk);
    EXPECT_EQ(data_of(read), pattern(4096));
    EXPECT_EQ(read_file(disk_path), pattern(kDiskSize));
    EXPECT_EQ(stat("errors"), 3u);
}

TEST_P(BlockDeviceTest, RefusedRequestsGetTheirStatusAndLeaveTheDiskAlone) {
    start_device();
    const Offered last_sector = offer_read(kCapacity - 1, 512);
    const Offered past_the_end = offer_read(kCapacity - 1, 1024);
    const Offered far_past_the_end = offer_write(std::uint64_t{1} << 60, Bytes(512, 0x22));
    const Offered bad_length = offer_write(0, Bytes(100, 0x33));
    const Offered unknown_type = offer(10, 0, {}, 512);
    const Offered discard_with_unmap =
        offer(RequestType::Discard, 0, segment_bytes({{0, 8, kSegmentUnmap}}), 0);
    serve_until_used(6);

    EXPECT_EQ(status_of(last_sector), kOk);
    EXPECT_EQ(data_of(last_sector), pattern(512, kDiskSize - 512));
    EXPECT_EQ(status_of(past_the_end), kIoError);
    EXPECT_THAT(data_of(past_the_end), Each(VirtqueueDriver::kUnwrittenByte));
    EXPECT_EQ(status_of(far_past_the_end), kIoError);
    EXPECT_EQ(status_of(bad_length), kIoError);
    EXPECT_EQ(status_of(unknown_type), kUnsupported);
    EXPECT_EQ(status_of(discard_with_unmap), kUnsupported);
    EXPECT_EQ(read_file(disk_path), pattern(kDiskSize));
    // Refused requests report the status byte alone as written.
    for (const auto& used : driver.take_used()) {
        EXPECT_EQ(used.length, used.id == last_sector.head ? 513u : 1u);
    }
    EXPECT_EQ(stat("errors"), 3u);
    EXPECT_EQ(stat("unsupported"), 2u);
}

TEST_P(BlockDeviceTest, HostileChainsNeverCrashAndTheNextRequestIsServed) {
    start_device();
    // No status byte: a write whose buffers are all device-readable.
    Bytes write_request = header_bytes(RequestType::Out, 0);
    write_request.resize(16 + 512, 0x44);
    const std::uint16_t no_status = driver.add_chain(std::array{driver.readable(write_request)});
    // A data buffer outside guest RAM.
    const std::uint16_t outside =
        driver.add_chain(std::array{driver.readable(header_bytes(RequestType::In, 0)),
                                    DriverBuffer{kOutsideRam, 512, true}, driver.writable(1)});
    // A header of 16 readable bytes made of 1 + 1 + 14, then a good read.
    const Bytes header = header_bytes(RequestType::In, 2);
    const DriverBuffer data = driver.writable(512);
    const DriverBuffer status = driver.writable(1);
    driver.add_chain(std::array{driver.readable(std::span(header).first(1)),
                                driver.readable(std::span(header).subspan(1, 1)),
                                driver.readable(std::span(header).subspan(2)), data, status});
    const Offered next = offer_read(4, 512);
    serve_until_used(4);

    const auto used = driver.take_used();
    ASSERT_EQ(used.size(), 4u);
    EXPECT_EQ(used[0].id, no_status);
    EXPECT_EQ(used[0].length, 0u);
    EXPECT_EQ(used[1].id, outside);
    EXPECT_EQ(used[1].length, 0u);
    EXPECT_EQ(driver.contents(status)[0], kOk);
    EXPECT_EQ(driver.contents(data), pattern(512, 2 * kSectorSize));
    EXPECT_EQ(status_of(next), kOk);
    EXPECT_EQ(read_file(disk_path), pattern(kDiskSize));
    EXPECT_EQ(stat("bad_chains"), 2u);
    EXPECT_EQ(interrupt.needs_reset_calls, 0);
}

TEST_P(BlockDeviceTest, AFullFilesystemIsAnIoErrorAndTheDeviceKeepsServing) {
    std::string why_not;
    auto scratch = ScratchMount::mount("tmpfs", "size=1m,mode=0700", why_not);
    if (!scratch) {
        GTEST_SKIP() << "no tmpfs to fill: " << why_not;
    }
    const std::string path = scratch->path("disk.raw");
    {
        const sys::Fd file(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
        ASSERT_EQ(::ftruncate(file.get(), 8 << 20), 0);  // sparse: 8 MiB on 1 MiB
    }
    make_device_on(path);
    activate();
    const Offered too_big = offer_write(0, pattern(3 << 19));
    const Offered read = offer_read(8192, 4096);  // a hole
    const Offered flush = offer(RequestType::Flush, 0, {}, 0);
    serve_until_used(3);

    EXPECT_EQ(status_of(too_big), kIoError);
    EXPECT_EQ(status_of(read), kOk);
    EXPECT_EQ(data_of(read), Bytes(4096, 0));
    EXPECT_EQ(status_of(flush), kOk);
    EXPECT_EQ(stat("errors"), 1u);
    EXPECT_EQ(stat("bytes_written"), 0u);
}

TEST_P(BlockDeviceTest, HostErrorsAndShortReadsAreIoErrors) {
    start_device();
    bool fail_next = true;
    hooks.on_completion = [&](Completion& completion) {
        if (std::exchange(fail_next, false)) {
            completion.result = -EIO;
        }
    };
    const Offered failed = offer_read(0, 4096);
    // The file shrinks behind the device's back: its capacity no longer holds.
    ASSERT_EQ(::truncate(disk_path.c_str(), kDiskSize / 2), 0);
    Offered across_the_end{};
    Offered past_the_end{};
    Offered good{};
    run_loop({requests([] {}, 1), requests(
                                      [&] {
                                          across_the_end = offer_read(kCapacity / 2 - 4, 4096);
                                          past_the_end = offer_read(kCapacity / 2 + 8, 4096);
                                          good = offer_read(8, 4096);
                                      },
                                      4)});

    EXPECT_EQ(status_of(failed), kIoError);
    EXPECT_EQ(status_of(across_the_end), kIoError);
    EXPECT_EQ(status_of(past_the_end), kIoError);
    EXPECT_EQ(status_of(good), kOk);
    EXPECT_EQ(data_of(good), pattern(4096, 8 * kSectorSize));
    EXPECT_EQ(stat("errors"), 3u);
}

TEST_P(BlockDeviceTest, MarksReadDataDirtyWhenItLandsNotJustWhenSubmitted) {
    start_device();
    // A migration taking the dirty bitmap after the device handed the buffers
    // to the engine, before the engine's writes are known to be done.
    hooks.after_submit = [&] { (void)ram.take_dirty_page_numbers(); };
    const auto page_buffer = [&](std::uint64_t pages, bool writable) {
        const memory::GuestAddress address = driver.allocate(pages * memory::kPageSize, memory::kPageSize);
        return DriverBuffer{address, static_cast<std::uint32_t>(pages * memory::kPageSize), writable};
    };
    const DriverBuffer read_data = page_buffer(3, true);
    const DriverBuffer write_data = page_buffer(2, false);
    const DriverBuffer read_status = driver.writable(1);
    driver.add_chain(std::array{driver.readable(header_bytes(RequestType::In, 16)), read_data, read_status});
    driver.add_chain(
        std::array{driver.readable(header_bytes(RequestType::Out, 64)), write_data, driver.writable(1)});
    serve_until_used(2);

    ASSERT_EQ(driver.contents(read_status)[0], kOk);
    const auto dirty = ram.take_dirty_page_numbers();
    const auto page_of = [](memory::GuestAddress address) { return (address - kRam) / memory::kPageSize; };
    for (std::uint64_t page = 0; page < 3; ++page) {
        EXPECT_THAT(dirty, Contains(page_of(read_data.address) + page)) << "read data page " << page;
    }
    EXPECT_THAT(dirty, Contains(page_of(read_status.address)));
    for (std::uint64_t page = 0; page < 2; ++page) {
        EXPECT_THAT(dirty, Not(Contains(page_of(write_data.address) + page))) << "written-from page " << page;
    }
}

TEST_P(BlockDeviceTest, AResetDropsRequestsInFlightAndNeverTouchesTheirMemoryAgain) {
    hooks.hold = true;
    start_device();
    std::vector<Offered> offered;
    for (std::uint64_t index = 0; index < 4; ++index) {
        offered.push_back(offer_read(index * 8, 4096));
        offered.push_back(offer_write(64 + index * 8, Bytes(4096, 0x55)));
    }
    Bytes memory_after_reset;
    run_loop({requests([] {}, 0),
              {[] {}, [&] { return hooks.enqueued == 8; }},
              {[&] {
                   EXPECT_EQ(stat("in_flight"), 8u);
                   device->reset();
                   const auto bytes = driver.guest_bytes(kRam, kRamSize);
                   memory_after_reset.assign(bytes.begin(), bytes.end());
                   // A completion arriving now would find nobody listening.
                   notification.signal();
               },
               after_turns(5)}});

    const auto bytes = driver.guest_bytes(kRam, kRamSize);
    EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), memory_after_reset.begin())) << "guest RAM changed";
    EXPECT_EQ(driver.used_idx(), 0);
    for (const Offered& request : offered) {
        EXPECT_EQ(status_of(request), VirtqueueDriver::kUnwrittenByte);
    }
    EXPECT_EQ(stat("in_flight"), 0u);
    EXPECT_TRUE(interrupt.used_buffers_queues.empty());
}

TEST_P(BlockDeviceTest, ServesAgainAfterAResetOnTheDriversNewQueue) {
    start_device();
    const Offered before = offer_read(0, 512);
    // The driver's queue after the reset, on rings of its own further up.
    constexpr memory::GuestAddress kNewRings = kRam + (4 << 20);
    VirtqueueDriver new_driver{ram.memory(), kSize, vim::testing::RingLayout::packed(kNewRings, kSize),
                               kNewRings + 0x4000, 0x100000};
    DriverBuffer after_data{};
    DriverBuffer after_status{};
    run_loop({requests([] {}, 1),
              {[&] {
                   device->reset();
                   queue().reset();
                   new_driver.configure(queue());
                   device->activate(Activation{ram.memory(), loop, device->device_features(), queues,
                                               notification_fds, interrupt});
                   after_data = new_driver.writable(512);
                   after_status = new_driver.writable(1);
                   new_driver.add_chain(std::array{new_driver.readable(header_bytes(RequestType::In, 1)),
                                                   after_data, after_status});
                   notification.signal();
               },
               [&] { return new_driver.used_idx() == 1; }}});

    EXPECT_EQ(status_of(before), kOk);
    EXPECT_EQ(new_driver.contents(after_status)[0], kOk);
    EXPECT_EQ(new_driver.contents(after_data), pattern(512, kSectorSize));
}

TEST_P(BlockDeviceTest, ABrokenQueueAsksForAResetAndIsNotTouchedAgain) {
    start_device();
    // avail.idx further ahead than the queue is long: no correct driver writes that.
    driver.set_avail_idx(kSize + 1);
    Offered later{};
    run_loop({{[&] { notification.signal(); }, [&] { return interrupt.needs_reset_calls == 1; }},
              {[&] {
                   driver.set_avail_idx(0);
                   later = offer_read(0, 512);
                   notification.signal();
               },
               after_turns(5)}});

    EXPECT_EQ(driver.used_idx(), 0);
    EXPECT_EQ(status_of(later), VirtqueueDriver::kUnwrittenByte);
    EXPECT_TRUE(interrupt.used_buffers_queues.empty());
}

INSTANTIATE_TEST_SUITE_P(Engines, BlockDeviceTest, ::testing::Values("io_uring", "sync"), engine_name);

// What needs no event loop: the device's identity, its configuration space, its engine's creation.
class BlockDeviceSetupTest : public ::testing::Test {
protected:
    void SetUp() override { write_file(path, pattern(3 << 20)); }

    TempDir directory;
    const std::string path = directory.path("disk.raw");
};

TEST_F(BlockDeviceSetupTest, IsABlockDeviceWithOneQueueAndTheFeaturesItServes) {
    const std::uint64_t writable_features =
        feature_bit(kFeatureSegMax) | feature_bit(kFeatureBlockSize) | feature_bit(kFeatureFlush) |
        feature_bit(kFeatureDiscard) | feature_bit(kFeatureWriteZeroes) |
        feature_bit(kFeatureRingIndirectDesc) | feature_bit(kFeatureRingEventIdx);
    {
        BlockDevice device(DiskImage::open(path), "serial", 1);
        EXPECT_EQ(device.device_type(), 2u);
        EXPECT_EQ(device.queue_max_sizes(), std::vector<std::uint16_t>{256});
        EXPECT_EQ(device.device_features(), writable_features);
    }
    // Opened after the writable one is gone: a disk is locked for one writer or several readers.
    BlockDevice read_only(DiskImage::open(path, {.read_only = true}), "serial", 1);
    EXPECT_EQ(read_only.device_features(), writable_features | feature_bit(kFeatureReadOnly));
}

TEST_F(BlockDeviceSetupTest, TakesOneToSixteenQueues) {
    EXPECT_THAT([&] { BlockDevice(DiskImage::open(path), "serial", 0); },
                ThrowsMessage<std::invalid_argument>(HasSubstr("virtio-blk: 0 queues; it takes 1 to 16")));
    EXPECT_THAT([&] { BlockDevice(DiskImage::open(path), "serial", 17); },
                ThrowsMessage<std::invalid_argument>(HasSubstr("virtio-blk: 17 queues; it takes 1 to 16")));
}

TEST_F(BlockDeviceSetupTest, ConfigurationSpaceDescribesTheDiskAndTheLimitsAtAnyOffsetAndSize) {
    BlockDevice device(DiskImage::open(path), "serial", 1);
    Config config{};
    device.read_config(0, {reinterpret_cast<std::uint8_t*>(&config), sizeof config});
    EXPECT_EQ(config.capacity, (3u << 20) / 512);
    EXPECT_EQ(config.seg_max, 254u);
    EXPECT_EQ(config.blk_size, 512u);
    EXPECT_EQ(config.num_queues, 1u);
    EXPECT_EQ(config.writeback, 1u);
    EXPECT_EQ(config.max_discard_sectors, BlockDevice::kMaxRangeSectors);
    EXPECT_EQ(config.max_discard_seg, BlockDevice::kMaxRangeSegments);
    EXPECT_EQ(config.discard_sector_alignment, 1u);
    EXPECT_EQ(config.max_write_zeroes_sectors, BlockDevice::kMaxRangeSectors);
    EXPECT_EQ(config.max_write_zeroes_seg, BlockDevice::kMaxRangeSegments);
    EXPECT_EQ(config.write_zeroes_may_unmap, 1u);

    Bytes whole(sizeof config);
    std::memcpy(whole.data(), &config, sizeof config);
    // Byte by byte, and in odd pieces that straddle fields, the same bytes.
    for (std::size_t offset = 0; offset < sizeof config; ++offset) {
        std::uint8_t byte = 0xff;
        device.read_config(offset, {&byte, 1});
        EXPECT_EQ(byte, whole[offset]) << "offset " << offset;
    }
    std::array<std::uint8_t, 3> piece{};
    device.read_config(7, piece);
    EXPECT_EQ(Bytes(piece.begin(), piece.end()), Bytes(whole.begin() + 7, whole.begin() + 10));
    // Past the end: zeroes, also for a read that starts inside.
    std::array<std::uint8_t, 8> straddling{};
    straddling.fill(0xff);
    device.read_config(sizeof config - 4, straddling);
    EXPECT_EQ(Bytes(straddling.begin(), straddling.end()),
              (Bytes{whole[68], whole[69], whole[70], whole[71], 0, 0, 0, 0}));
    std::array<std::uint8_t, 4> beyond{};
    beyond.fill(0xff);
    device.read_config(0x1000, beyond);
    EXPECT_THAT(beyond, Each(0));
    // Nothing is writable.
    device.write_config(0, std::array<std::uint8_t, 8>{1, 2, 3, 4, 5, 6, 7, 8});
    device.write_config(32, std::array<std::uint8_t, 1>{0});
    Config again{};
    device.read_config(0, {reinterpret_cast<std::uint8_t*>(&again), sizeof again});
    EXPECT_EQ(std::memcmp(&again, &config, sizeof config), 0);
}

TEST_F(BlockDeviceSetupTest, BlockSizeIsTheDisksLogicalBlockSize) {
    // /var/tmp: a disk filesystem here (tmpfs only takes O_DIRECT since Linux 6.6).
    TempDir on_disk("/var/tmp");
    const std::string direct_path = on_disk.path("disk.raw");
    write_file(direct_path, pattern(1 << 20));
    BlockDevice device(DiskImage::open(direct_path, {.direct = true}), "serial", 1);
    Config config{};
    device.read_config(0, {reinterpret_cast<std::uint8_t*>(&config), sizeof config});
    EXPECT_EQ(config.blk_size, device.disk().logical_block_size());
    EXPECT_EQ(config.discard_sector_alignment, device.disk().logical_block_size() / 512);
}

TEST_F(BlockDeviceSetupTest, TheSerialIsTheImagesFileNameCutToTwentyBytes) {
    EXPECT_EQ(BlockDevice::serial_from_path("/img/debian.raw"), "debian.raw");
    EXPECT_EQ(BlockDevice::serial_from_path("relative.img"), "relative.img");
    EXPECT_EQ(BlockDevice::serial_from_path("/var/lib/vim/images/a-very-long-image-name.raw"),
              "a-very-long-image-na");
}

// Activation with a factory that decides the engine, as make_engine() does.
class BlockDeviceEngineTest : public BlockDeviceSetupTest {
protected:
    void activate(BlockDevice& device) {
        device.activate(Activation{ram.memory(), loop, 0, queues, notification_fds, interrupt});
    }

    vim::testing::GuestRam ram{0x100000, 0x10000};
    std::array<Queue, 1> queues{Queue{"virtio-blk0 queue 0", BlockDevice::kQueueSize}};
    sys::EventFd notification{"virtio-blk test notification"};
    std::array<int, 1> notification_fds{notification.get()};
    sys::EventLoop loop;
    RecordingInterrupt interrupt;
};

// Two request queues, as a guest with two vCPUs drives them.
class BlockDeviceMultiQueueTest : public BlockDeviceSetupTest {
protected:
    static constexpr memory::GuestAddress kRam = 0x100000;
    static constexpr std::uint64_t kQueueRam = 1 << 20;  // per queue: its rings, then its buffers
    static constexpr std::uint16_t kSize = 16;

    VirtqueueDriver driver_for(std::size_t queue) {
        const memory::GuestAddress base = kRam + queue * kQueueRam;
        return VirtqueueDriver{ram.memory(), kSize, vim::testing::RingLayout::packed(base, kSize),
                               base + 0x4000, kQueueRam - 0x4000};
    }

    vim::testing::GuestRam ram{kRam, 2 * kQueueRam};
    std::array<VirtqueueDriver, 2> drivers{driver_for(0), driver_for(1)};
    std::array<Queue, 2> queues{Queue{"virtio-blk0 queue 0", kSize}, Queue{"virtio-blk0 queue 1", kSize}};
    sys::EventFd first_notification{"virtio-blk test notification 0"};
    sys::EventFd second_notification{"virtio-blk test notification 1"};
    std::array<int, 2> notification_fds{first_notification.get(), second_notification.get()};
    sys::EventLoop loop;
    RecordingInterrupt interrupt;
};

TEST_F(BlockDeviceMultiQueueTest, AnswersEachRequestOnItsOwnQueueWithThatQueuesInterrupt) {
    BlockDevice device(DiskImage::open(path), "serial", 2, [](int fd, unsigned depth) {
        return EngineSelection{make_sync_engine(fd, depth), {}};
    });
    EXPECT_EQ(device.queue_max_sizes(), (std::vector<std::uint16_t>{256, 256}));
    EXPECT_NE(device.device_features() & feature_bit(kFeatureMultiQueue), 0u);
    Config config{};
    device.read_config(0, {reinterpret_cast<std::uint8_t*>(&config), sizeof config});
    EXPECT_EQ(config.num_queues, 2u);
    EXPECT_EQ(device.stats()["queues"], 2);

    for (std::size_t queue = 0; queue < queues.size(); ++queue) {
        drivers[queue].configure(queues[queue]);
    }
    device.activate(
        Activation{ram.memory(), loop, device.device_features(), queues, notification_fds, interrupt});
    const Bytes written = pattern(512, 0x5a5a);
    const std::array write_chain{drivers[1].readable(header_bytes(RequestType::Out, 8)),
                                 drivers[1].readable(written), drivers[1].writable(1)};
    const std::array read_chain{drivers[0].readable(header_bytes(RequestType::In, 0)),
                                drivers[0].writable(512), drivers[0].writable(1)};
    drivers[1].add_chain(write_chain);
    drivers[0].add_chain(read_chain);
    run_loop_steps(loop, {{[&] {
                               second_notification.signal();
                               first_notification.signal();
                           },
                           [&] { return drivers[0].used_idx() == 1 && drivers[1].used_idx() == 1; }}});

    EXPECT_EQ(drivers[1].contents(write_chain[2])[0], 0);  // OK
    EXPECT_EQ(drivers[0].contents(read_chain[2])[0], 0);
    EXPECT_EQ(drivers[0].contents(read_chain[1]), pattern(512));
    const Bytes disk = read_file(path);
    EXPECT_EQ(Bytes(disk.begin() + 8 * 512, disk.begin() + 9 * 512), written);
    EXPECT_THAT(interrupt.used_buffers_queues, UnorderedElementsAre(0, 1));
    device.reset();
}

TEST_F(BlockDeviceEngineTest, StatsNameTheEngineAndWhyItIsNotIoUring) {
    BlockDevice device(DiskImage::open(path), "serial", 1, [](int fd, unsigned depth) {
        return EngineSelection{make_sync_engine(fd, depth), "io_uring_setup: Operation not permitted"};
    });
    EXPECT_EQ(device.stats()["engine"], "none");
    activate(device);
    EXPECT_EQ(device.stats()["engine"], "sync");
    EXPECT_EQ(device.stats()["engine_fallback_reason"], "io_uring_setup: Operation not permitted");
    device.reset();
}

TEST_F(BlockDeviceEngineTest, TakesIoUringByDefaultWhereTheKernelHasIt) {
    BlockDevice device(DiskImage::open(path), "serial", 1);
    activate(device);
    if (const auto reason = io_uring_unavailable()) {
        EXPECT_EQ(device.stats()["engine"], "sync");
        EXPECT_EQ(device.stats()["engine_fallback_reason"], *reason);
    } else {
        EXPECT_EQ(device.stats()["engine"], "io_uring");
        EXPECT_EQ(device.stats()["engine_fallback_reason"], "");
    }
    device.reset();
}

TEST_F(BlockDeviceEngineTest, AnEngineThatCannotBeMadeAsksForAResetAndTheVmLivesOn) {
    BlockDevice device(DiskImage::open(path), "serial", 1, [](int, unsigned) -> EngineSelection {
        throw std::system_error(EMFILE, std::generic_category(), "eventfd");
    });
    activate(device);
    EXPECT_EQ(interrupt.needs_reset_calls, 1);
    EXPECT_EQ(device.stats()["engine"], "none");
    EXPECT_EQ(device.stats()["engine_error"], "disk " + path + ": eventfd: Too many open files");
    device.reset();
    // Nothing of the device is left on the loop: the fd can be watched anew.
    EXPECT_NO_THROW(loop.add(notification.get(), EPOLLIN, [](std::uint32_t) {}));
}

}  // namespace
}  // namespace vim::vmm::virtio::block
