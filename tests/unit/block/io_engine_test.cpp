#include "vmm/virtio/block/io_engine.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "block_test_support.h"
#include "vmm/sys/fd.h"
#include "vmm/virtio/block/io_uring_engine.h"
#include "vmm/virtio/block/sync_engine.h"

namespace {

using vim::vmm::sys::Fd;
using vim::vmm::virtio::block::Completion;
using vim::vmm::virtio::block::IoEngine;
using vim::vmm::virtio::block::Operation;
using vim::vmm::virtio::block::Request;
using vim::vmm::virtio::block::testing::io_uring_unavailable;
using vim::vmm::virtio::block::testing::pattern;
using vim::vmm::virtio::block::testing::read_file;
using vim::vmm::virtio::block::testing::run_one;
using vim::vmm::virtio::block::testing::ScratchMount;
using vim::vmm::virtio::block::testing::TempDir;
using vim::vmm::virtio::block::testing::wait_for_completion;
using vim::vmm::virtio::block::testing::write_file;
using Bytes = std::vector<std::uint8_t>;

constexpr std::size_t kFileSize = 1 << 20;

iovec segment(Bytes& bytes, std::size_t offset, std::size_t length) {
    return {bytes.data() + offset, length};
}

Bytes slice(const Bytes& bytes, std::size_t offset, std::size_t length) {
    return {bytes.begin() + static_cast<std::ptrdiff_t>(offset),
            bytes.begin() + static_cast<std::ptrdiff_t>(offset + length)};
}

bool completion_fd_readable(IoEngine& engine) {
    pollfd ready{.fd = engine.completion_fd(), .events = POLLIN, .revents = 0};
    return ::poll(&ready, 1, 0) == 1;
}

class IoEngineTest : public ::testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        if (GetParam() == "io_uring") {
            if (const auto reason = io_uring_unavailable()) {
                GTEST_SKIP() << *reason;
            }
        }
    }

    std::unique_ptr<IoEngine> make_engine(int fd, unsigned queue_depth = 8) {
        return GetParam() == "io_uring" ? vim::vmm::virtio::block::make_io_uring_engine(fd, queue_depth)
                                        : vim::vmm::virtio::block::make_sync_engine(fd, queue_depth);
    }

    // A file of kFileSize pattern bytes, opened with `flags`.
    Fd make_file(const std::string& path, int flags = O_RDWR) {
        write_file(path, pattern(kFileSize));
        Fd fd(::open(path.c_str(), flags | O_CLOEXEC));
        EXPECT_TRUE(fd.valid()) << path << ": " << std::strerror(errno);
        return fd;
    }

    TempDir directory_;
    const std::string path_ = directory_.path("disk.raw");
};

TEST_P(IoEngineTest, WritesAndReadsAtOffsetsThroughSeveralIovecs) {
    Fd fd = make_file(path_);
    auto engine = make_engine(fd.get());

    Bytes written = pattern(8192, 0x77777);
    const iovec out[] = {segment(written, 0, 512), segment(written, 512, 3584), segment(written, 4096, 4096)};
    const Completion write =
        run_one(*engine, {.operation = Operation::Write, .offset = 12288, .iovecs = out, .user_data = 41});
    EXPECT_EQ(write.user_data, 41u);
    EXPECT_EQ(write.result, 8192);

    Bytes expected = pattern(kFileSize);
    std::copy(written.begin(), written.end(), expected.begin() + 12288);
    EXPECT_EQ(read_file(path_), expected);

    Bytes read(10000, 0);
    const iovec in[] = {segment(read, 0, 100), segment(read, 100, 0), segment(read, 100, 4000),
                        segment(read, 4100, 5900)};
    const Completion completion =
        run_one(*engine, {.operation = Operation::Read, .offset = 10000, .iovecs = in, .user_data = 42});
    EXPECT_EQ(completion.user_data, 42u);
    EXPECT_EQ(completion.result, 10000);
    EXPECT_EQ(read, slice(expected, 10000, 10000));
    EXPECT_EQ(engine->in_flight(), 0u);
}

TEST_P(IoEngineTest, ManyRequestsInFlightEachCompleteOnce) {
    Fd fd = make_file(path_);
    constexpr unsigned kDepth = 64;
    auto engine = make_engine(fd.get(), kDepth);
    EXPECT_EQ(engine->queue_depth(), kDepth);

    std::vector<Bytes> buffers(kDepth, Bytes(4096));
    std::vector<iovec> segments;
    for (auto& buffer : buffers) {
        segments.push_back(segment(buffer, 0, buffer.size()));
    }
    for (unsigned index = 0; index < kDepth; ++index) {
        // Backwards through the file, 12 KiB apart, so no two requests touch the same block.
        const std::uint64_t offset = kFileSize - 4096 - index * 12288ull;
        ASSERT_TRUE(engine->enqueue({.operation = Operation::Read,
                                     .offset = offset,
                                     .iovecs = {&segments[index], 1},
                                     .user_data = 1000 + index}));
    }
    EXPECT_EQ(engine->in_flight(), kDepth);
    EXPECT_FALSE(engine->enqueue({.operation = Operation::Flush, .user_data = 9}))
        << "the queue is full at queue_depth";
    engine->submit();

    std::set<std::uint64_t> seen;
    for (unsigned count = 0; count < kDepth; ++count) {
        const Completion completion = wait_for_completion(*engine);
        EXPECT_EQ(completion.result, 4096);
        const std::uint64_t index = completion.user_data - 1000;
        ASSERT_LT(index, kDepth);
        EXPECT_TRUE(seen.insert(index).second) << "request " << index << " completed twice";
        EXPECT_EQ(buffers[index], pattern(4096, kFileSize - 4096 - index * 12288));
    }
    EXPECT_EQ(engine->in_flight(), 0u);
    EXPECT_EQ(engine->next_completion(), std::nullopt);
    EXPECT_FALSE(completion_fd_readable(*engine)) << "nothing is left to report";
}

TEST_P(IoEngineTest, QueuedRequestsStartAtSubmit) {
    Fd fd = make_file(path_);
    auto engine = make_engine(fd.get());
    Bytes first(4096, 0xa1);
    Bytes second(4096, 0xb2);
    const iovec first_segment = segment(first, 0, first.size());
    const iovec second_segment = segment(second, 0, second.size());
    ASSERT_TRUE(engine->enqueue(
        {.operation = Operation::Write, .offset = 0, .iovecs = {&first_segment, 1}, .user_data = 1}));
    ASSERT_TRUE(engine->enqueue(
        {.operation = Operation::Write, .offset = 8192, .iovecs = {&second_segment, 1}, .user_data = 2}));
    EXPECT_EQ(slice(read_file(path_), 0, 4096), pattern(4096)) << "nothing is written before submit()";
    EXPECT_FALSE(completion_fd_readable(*engine));

    engine->submit();
    std::set<std::uint64_t> seen;
    seen.insert(wait_for_completion(*engine).user_data);
    seen.insert(wait_for_completion(*engine).user_data);
    EXPECT_EQ(seen, (std::set<std::uint64_t>{1, 2}));
    const Bytes contents = read_file(path_);
    EXPECT_EQ(slice(contents, 0, 4096), first);
    EXPECT_EQ(slice(contents, 8192, 4096), second);
}

TEST_P(IoEngineTest, CompletionFdIsReadableUntilEverythingIsCollected) {
    Fd fd = make_file(path_);
    auto engine = make_engine(fd.get());
    Bytes buffer(512);
    const iovec into = segment(buffer, 0, buffer.size());
    for (std::uint64_t user_data = 0; user_data < 3; ++user_data) {
        ASSERT_TRUE(engine->enqueue({.operation = Operation::Read,
                                     .offset = user_data * 512,
                                     .iovecs = {&into, 1},
                                     .user_data = user_data}));
    }
    engine->submit();
    pollfd ready{.fd = engine->completion_fd(), .events = POLLIN, .revents = 0};
    ASSERT_EQ(::poll(&ready, 1, 10000), 1);
    for (int count = 0; count < 3; ++count) {
        wait_for_completion(*engine);
    }
    EXPECT_EQ(engine->next_completion(), std::nullopt);
    EXPECT_FALSE(completion_fd_readable(*engine));
}

TEST_P(IoEngineTest, NextCompletionStartsRequestsNobodySubmitted) {
    Fd fd = make_file(path_);
    auto engine = make_engine(fd.get());
    Bytes buffer(4096);
    const iovec into = segment(buffer, 0, buffer.size());
    ASSERT_TRUE(engine->enqueue(
        {.operation = Operation::Read, .offset = 4096, .iovecs = {&into, 1}, .user_data = 5}));
    const Completion completion = wait_for_completion(*engine);
    EXPECT_EQ(completion.user_data, 5u);
    EXPECT_EQ(buffer, pattern(4096, 4096));
}

TEST_P(IoEngineTest, FlushSucceedsAfterWrites) {
    Fd fd = make_file(path_);
    auto engine = make_engine(fd.get());
    Bytes data(4096, 0x3c);
    const iovec from = segment(data, 0, data.size());
    EXPECT_EQ(run_one(*engine, {.operation = Operation::Write, .offset = 0, .iovecs = {&from, 1}}).result,
              4096);
    const Completion flush = run_one(*engine, {.operation = Operation::Flush, .user_data = 77});
    EXPECT_EQ(flush.user_data, 77u);
    EXPECT_EQ(flush.result, 0);
}

// Bytes [offset, offset + length) of `path` are a hole: SEEK_HOLE finds it.
void expect_hole(const std::string& path, off_t offset, off_t length) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_EQ(::lseek(fd.get(), 0, SEEK_HOLE), offset);
    EXPECT_EQ(::lseek(fd.get(), offset, SEEK_DATA), offset + length);
}

TEST_P(IoEngineTest, DiscardPunchesAHoleAndKeepsTheSize) {
    Fd fd = make_file(path_);
    ASSERT_EQ(::fsync(fd.get()), 0);  // allocated blocks, not delayed allocation
    auto engine = make_engine(fd.get());
    const Completion discard = run_one(
        *engine, {.operation = Operation::Discard, .offset = 256 << 10, .length = 64 << 10, .user_data = 3});
    EXPECT_EQ(discard.user_data, 3u);
    ASSERT_EQ(discard.result, 0);

    Bytes expected = pattern(kFileSize);
    std::fill_n(expected.begin() + (256 << 10), 64 << 10, 0);
    EXPECT_EQ(read_file(path_), expected);
    expect_hole(path_, 256 << 10, 64 << 10);
}

TEST_P(IoEngineTest, WriteZeroesZeroesTheRangeAndKeepsTheSize) {
    Fd fd = make_file(path_);
    auto engine = make_engine(fd.get());
    // Past the end too: the file must not grow.
    for (const auto& [offset, length] :
         {std::pair{4096ull, 8192ull}, std::pair{kFileSize - 512ull, 4096ull}}) {
        const Request request{.operation = Operation::WriteZeroes, .offset = offset, .length = length};
        EXPECT_EQ(run_one(*engine, request).result, 0);
    }
    Bytes expected = pattern(kFileSize);
    std::fill_n(expected.begin() + 4096, 8192, 0);
    std::fill_n(expected.end() - 512, 512, 0);
    EXPECT_EQ(read_file(path_), expected);
}

// tmpfs refuses ZERO_RANGE; ramfs refuses fallocate altogether.
class ZeroingFallbackTest : public IoEngineTest {};

TEST_P(ZeroingFallbackTest, WriteZeroesFallsBackWhereTheFilesystemRefusesFallocate) {
    for (const char* type : {"tmpfs", "ramfs"}) {
        SCOPED_TRACE(type);
        std::string why_not;
        auto scratch = ScratchMount::mount(type, "mode=0700", why_not);
        if (!scratch) {
            GTEST_SKIP() << why_not;
        }
        const std::string path = scratch->path("disk.raw");
        constexpr std::size_t kSize = 4 << 20;
        write_file(path, pattern(kSize));
        Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
        auto engine = make_engine(fd.get());
        // 3 MiB: more than one chunk of the zero-writing fallback. The second request goes
        // straight to the method that worked.
        for (int repeat = 0; repeat < 2; ++repeat) {
            const std::uint64_t offset = 4096 + repeat * 512;
            EXPECT_EQ(
                run_one(*engine, {.operation = Operation::WriteZeroes, .offset = offset, .length = 3 << 20})
                    .result,
                0);
        }
        Bytes expected = pattern(kSize);
        std::fill_n(expected.begin() + 4096, (3 << 20) + 512, 0);
        EXPECT_EQ(read_file(path), expected);
    }
}

TEST_P(ZeroingFallbackTest, DiscardWhereTheFilesystemCannotPunchHolesIsEopnotsupp) {
    std::string why_not;
    auto scratch = ScratchMount::mount("ramfs", "mode=0700", why_not);
    if (!scratch) {
        GTEST_SKIP() << why_not;
    }
    const std::string path = scratch->path("disk.raw");
    write_file(path, pattern(65536));
    Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    auto engine = make_engine(fd.get());
    const Request discard{.operation = Operation::Discard, .offset = 0, .length = 4096};
    EXPECT_EQ(run_one(*engine, discard).result, -EOPNOTSUPP);
    EXPECT_EQ(read_file(path), pattern(65536));
}

TEST_P(IoEngineTest, ReadsAcrossTheEndOfTheFileAreShort) {
    write_file(path_, pattern(8192));
    Fd fd(::open(path_.c_str(), O_RDWR | O_CLOEXEC));
    auto engine = make_engine(fd.get());
    Bytes buffer(16384, 0xee);
    const iovec halves[] = {segment(buffer, 0, 8192), segment(buffer, 8192, 8192)};
    EXPECT_EQ(run_one(*engine, {.operation = Operation::Read, .offset = 4096, .iovecs = halves}).result,
              4096);
    EXPECT_EQ(slice(buffer, 0, 4096), pattern(4096, 4096));
    EXPECT_EQ(slice(buffer, 4096, 4096), Bytes(4096, 0xee)) << "nothing past the end is touched";
    for (const std::uint64_t offset : {8192ull, 1ull << 40}) {
        EXPECT_EQ(run_one(*engine, {.operation = Operation::Read, .offset = offset, .iovecs = halves}).result,
                  0);
    }
}

TEST_P(IoEngineTest, MoreIovecsThanIovMaxAreTransferredWhole) {
    Fd fd = make_file(path_);
    auto engine = make_engine(fd.get());
    constexpr std::size_t kSegments = 3000;  // IOV_MAX is 1024
    Bytes buffer(kSegments * 256);
    std::vector<iovec> segments;
    for (std::size_t index = 0; index < kSegments; ++index) {
        segments.push_back(segment(buffer, index * 256, 256));
    }
    EXPECT_EQ(run_one(*engine, {.operation = Operation::Read, .offset = 1024, .iovecs = segments}).result,
              static_cast<std::int64_t>(buffer.size()));
    EXPECT_EQ(buffer, pattern(buffer.size(), 1024));
}

TEST_P(IoEngineTest, WriteOnAFullFilesystemIsEnospc) {
    std::string why_not;
    auto scratch = ScratchMount::mount("tmpfs", "size=1m,mode=0700", why_not);
    if (!scratch) {
        GTEST_SKIP() << why_not;
    }
    const std::string path = scratch->path("disk.raw");
    Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    auto engine = make_engine(fd.get());
    // 2 MiB into 1 MiB: the first part fits, the rest fails.
    Bytes data = pattern(2 << 20);
    const iovec from = segment(data, 0, data.size());
    EXPECT_EQ(run_one(*engine, {.operation = Operation::Write, .offset = 0, .iovecs = {&from, 1}}).result,
              -ENOSPC);
    // Now full: a write that allocates fails outright.
    EXPECT_EQ(
        run_one(*engine, {.operation = Operation::Write, .offset = 4 << 20, .iovecs = {&from, 1}}).result,
        -ENOSPC);
}

TEST_P(IoEngineTest, OperationsOnABadDescriptorAreErrorResults) {
    Fd read_only = make_file(path_, O_RDONLY);
    Fd write_only(::open(path_.c_str(), O_WRONLY | O_CLOEXEC));
    Bytes buffer(4096);
    const iovec segments[] = {segment(buffer, 0, buffer.size())};

    auto reader = make_engine(read_only.get());
    EXPECT_EQ(run_one(*reader, {.operation = Operation::Write, .offset = 0, .iovecs = segments}).result,
              -EBADF);
    EXPECT_EQ(run_one(*reader, {.operation = Operation::Discard, .offset = 0, .length = 4096}).result,
              -EBADF);
    auto writer = make_engine(write_only.get());
    EXPECT_EQ(run_one(*writer, {.operation = Operation::Read, .offset = 0, .iovecs = segments}).result,
              -EBADF);

    // A number far above the ones in use, which the engine's own eventfd and ring will not take.
    const int closed = ::fcntl(read_only.get(), F_DUPFD_CLOEXEC, 1000);
    ASSERT_GE(closed, 1000);
    ::close(closed);
    for (const int number : {closed, -1}) {
        auto orphan = make_engine(number);
        EXPECT_EQ(run_one(*orphan, {.operation = Operation::Read, .iovecs = segments}).result, -EBADF);
        EXPECT_EQ(run_one(*orphan, {.operation = Operation::Flush}).result, -EBADF);
    }
    EXPECT_EQ(read_file(path_), pattern(kFileSize));
}

TEST_P(IoEngineTest, NonsenseOffsetsAndLengthsAreErrorResults) {
    Fd fd = make_file(path_);
    auto engine = make_engine(fd.get());
    Bytes buffer(4096);
    const iovec segments[] = {segment(buffer, 0, buffer.size())};
    const std::uint64_t negative = 1ull << 63;
    EXPECT_EQ(run_one(*engine, {.operation = Operation::Read, .offset = negative, .iovecs = segments}).result,
              -EINVAL);
    EXPECT_EQ(
        run_one(*engine, {.operation = Operation::Write, .offset = negative, .iovecs = segments}).result,
        -EINVAL);
    EXPECT_EQ(run_one(*engine, {.operation = Operation::Discard, .offset = 0, .length = 0}).result, -EINVAL);
    EXPECT_LT(run_one(*engine, {.operation = Operation::WriteZeroes, .offset = 0, .length = 0}).result, 0);
    EXPECT_LT(
        run_one(*engine, {.operation = Operation::WriteZeroes, .offset = negative, .length = 512}).result, 0);
    EXPECT_EQ(read_file(path_), pattern(kFileSize));
}

TEST(IoUringEngine, DestructionCancelsARequestThatWouldNeverComplete) {
    if (const auto reason = io_uring_unavailable()) {
        GTEST_SKIP() << *reason;
    }
    int ends[2];
    ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
    Fd read_end(ends[0]);
    Fd write_end(ends[1]);
    Bytes buffer(16, 0);
    {
        // A read from an empty pipe waits for a writer, as a request to a dead NFS server might.
        auto engine = vim::vmm::virtio::block::make_io_uring_engine(read_end.get(), 4);
        const iovec into = segment(buffer, 0, buffer.size());
        ASSERT_TRUE(engine->enqueue({.operation = Operation::Read, .iovecs = {&into, 1}, .user_data = 1}));
        engine->submit();
        EXPECT_EQ(engine->next_completion(), std::nullopt);
    }
    ASSERT_EQ(::write(write_end.get(), "after", 5), 5);
    char after[8] = {};
    EXPECT_EQ(::read(read_end.get(), after, sizeof after), 5) << "the cancelled read took nothing";
    EXPECT_STREQ(after, "after");
    EXPECT_EQ(buffer, Bytes(16, 0));
}

TEST_P(IoEngineTest, DirectIoIntoAlignedMemory) {
    // /var/tmp: a disk filesystem here (tmpfs only takes O_DIRECT since Linux 6.6).
    TempDir on_disk("/var/tmp");
    const std::string path = on_disk.path("disk.raw");
    write_file(path, pattern(kFileSize));
    Fd fd(::open(path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
    if (!fd) {
        GTEST_SKIP() << "O_DIRECT on /var/tmp: " << std::strerror(errno);
    }
    auto engine = make_engine(fd.get());
    constexpr std::size_t kAlign = 4096;
    std::unique_ptr<std::uint8_t, decltype(&std::free)> memory(
        static_cast<std::uint8_t*>(std::aligned_alloc(kAlign, 3 * kAlign)), &std::free);
    const Bytes data = pattern(2 * kAlign, 0xabc000);
    std::copy(data.begin(), data.end(), memory.get());
    const iovec out[] = {{memory.get(), kAlign}, {memory.get() + kAlign, kAlign}};
    EXPECT_EQ(run_one(*engine, {.operation = Operation::Write, .offset = 8 * kAlign, .iovecs = out}).result,
              static_cast<std::int64_t>(2 * kAlign));
    EXPECT_EQ(run_one(*engine, {.operation = Operation::WriteZeroes, .offset = 9 * kAlign, .length = kAlign})
                  .result,
              0);
    const iovec in[] = {{memory.get() + kAlign, 2 * kAlign}};
    EXPECT_EQ(run_one(*engine, {.operation = Operation::Read, .offset = 8 * kAlign, .iovecs = in}).result,
              static_cast<std::int64_t>(2 * kAlign));
    EXPECT_EQ(Bytes(memory.get() + kAlign, memory.get() + 2 * kAlign), slice(data, 0, kAlign));
    EXPECT_EQ(Bytes(memory.get() + 2 * kAlign, memory.get() + 3 * kAlign), Bytes(kAlign, 0));
    const iovec misaligned[] = {{memory.get() + 1, kAlign}};
    EXPECT_EQ(run_one(*engine, {.operation = Operation::Read, .offset = 0, .iovecs = misaligned}).result,
              -EINVAL);
}

TEST_P(IoEngineTest, QueueDepthOutsideTheRangeIsRefused) {
    for (const unsigned depth : {0u, vim::vmm::virtio::block::kMaxQueueDepth + 1}) {
        try {
            make_engine(0, depth);
            ADD_FAILURE() << "depth " << depth << " accepted";
        } catch (const std::invalid_argument& error) {
            EXPECT_EQ(error.what(),
                      "block engine: queue depth " + std::to_string(depth) + " is outside 1..32768");
        }
    }
}

std::string engine_name(const ::testing::TestParamInfo<std::string>& info) {
    return info.param == "io_uring" ? "IoUring" : "Sync";
}

INSTANTIATE_TEST_SUITE_P(Engines, IoEngineTest, ::testing::Values("io_uring", "sync"), engine_name);
INSTANTIATE_TEST_SUITE_P(Engines, ZeroingFallbackTest, ::testing::Values("io_uring", "sync"), engine_name);

TEST(MakeEngine, ChoosesIoUringWhereTheKernelHasIt) {
    if (const auto reason = io_uring_unavailable()) {
        GTEST_SKIP() << *reason;
    }
    const vim::vmm::virtio::block::EngineSelection selection = vim::vmm::virtio::block::make_engine(0, 16);
    EXPECT_STREQ(selection.engine->name(), "io_uring");
    EXPECT_EQ(selection.fallback_reason, "");
    EXPECT_EQ(selection.engine->queue_depth(), 16u);
}

// In a child: io_uring_setup(2) fails with `error`, as under a seccomp filter or
// kernel.io_uring_disabled; make_engine must fall back to the sync engine, which must work.
[[noreturn]] void make_engine_without_io_uring(int error, const std::string& path) {
    sock_filter program[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | static_cast<unsigned>(error)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog filter{.len = std::size(program), .filter = program};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter) != 0) {
        std::perror("seccomp");
        std::_Exit(2);
    }
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    const auto selection = vim::vmm::virtio::block::make_engine(fd.get(), 4);
    std::fprintf(stderr, "engine %s: %s\n", selection.engine->name(), selection.fallback_reason.c_str());
    Bytes buffer(4096);
    const iovec into = segment(buffer, 0, buffer.size());
    const Completion read = run_one(*selection.engine, {.operation = Operation::Read, .iovecs = {&into, 1}});
    const bool works = read.result == 4096 && buffer == pattern(4096);
    std::_Exit(works ? 0 : 1);
}

TEST(MakeEngine, FallsBackToTheSyncEngineWithTheReasonWhenIoUringIsForbidden) {
    TempDir directory;
    const std::string path = directory.path("disk.raw");
    write_file(path, pattern(8192));
    EXPECT_EXIT(
        make_engine_without_io_uring(EPERM, path), ::testing::ExitedWithCode(0),
        "engine sync: io_uring_setup: Operation not permitted \\(forbidden by a seccomp filter or sysctl "
        "kernel.io_uring_disabled\\)");
    EXPECT_EXIT(make_engine_without_io_uring(ENOSYS, path), ::testing::ExitedWithCode(0),
                "engine sync: io_uring_setup: Function not implemented \\(the kernel has no io_uring\\)");
}

}  // namespace
