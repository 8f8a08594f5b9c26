#include "vmm/virtio/block/disk_image.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include "block_test_support.h"
#include "vmm/virtio/block/io_engine.h"
#include "vmm/virtio/block/sync_engine.h"

namespace {

using vim::vmm::virtio::block::DiskImage;
using vim::vmm::virtio::block::DiskOptions;
using vim::vmm::virtio::block::Operation;
using vim::vmm::virtio::block::testing::LoopDevice;
using vim::vmm::virtio::block::testing::pattern;
using vim::vmm::virtio::block::testing::read_file;
using vim::vmm::virtio::block::testing::run_one;
using vim::vmm::virtio::block::testing::ScratchMount;
using vim::vmm::virtio::block::testing::TempDir;
using vim::vmm::virtio::block::testing::write_file;
using Bytes = std::vector<std::uint8_t>;

// The message DiskImage::open throws, or "" when it opens.
std::string open_error(const std::string& path, DiskOptions options = {}) {
    try {
        DiskImage::open(path, options);
        return "";
    } catch (const std::runtime_error& error) {
        return error.what();
    }
}

class DiskImageTest : public ::testing::Test {
protected:
    TempDir directory_;
    const std::string path_ = directory_.path("a.raw");
};

TEST_F(DiskImageTest, OpensARawFile) {
    write_file(path_, pattern(1 << 20));
    const DiskImage image = DiskImage::open(path_);
    EXPECT_EQ(image.path(), path_);
    EXPECT_GE(image.fd(), 0);
    EXPECT_EQ(image.size(), 1u << 20);
    EXPECT_EQ(image.logical_block_size(), 512u);
    EXPECT_FALSE(image.is_block_device());
    EXPECT_FALSE(image.read_only());
    EXPECT_FALSE(image.direct());
    EXPECT_EQ(::fcntl(image.fd(), F_GETFL) & (O_ACCMODE | O_NONBLOCK | O_DIRECT), O_RDWR)
        << "O_NONBLOCK would make io_uring answer EAGAIN";
    EXPECT_TRUE(::fcntl(image.fd(), F_GETFD) & FD_CLOEXEC);
}

TEST_F(DiskImageTest, ReadOnlyImagesRefuseWrites) {
    write_file(path_, pattern(8192));
    const DiskImage image = DiskImage::open(path_, {.read_only = true});
    EXPECT_TRUE(image.read_only());
    EXPECT_EQ(::fcntl(image.fd(), F_GETFL) & O_ACCMODE, O_RDONLY);
    auto engine = vim::vmm::virtio::block::make_sync_engine(image.fd(), 1);
    Bytes data(512);
    const iovec from{data.data(), data.size()};
    EXPECT_EQ(run_one(*engine, {.operation = Operation::Write, .offset = 0, .iovecs = {&from, 1}}).result,
              -EBADF);
    EXPECT_EQ(read_file(path_), pattern(8192));
}

TEST_F(DiskImageTest, MissingFile) {
    EXPECT_EQ(open_error(path_), "disk " + path_ + ": open: No such file or directory");
}

TEST_F(DiskImageTest, Directory) {
    EXPECT_EQ(open_error(directory_.path()), "disk " + directory_.path() + ": is a directory");
    EXPECT_EQ(open_error(directory_.path(), {.read_only = true}),
              "disk " + directory_.path() + ": is a directory");
}

TEST_F(DiskImageTest, NeitherAFileNorABlockDevice) {
    ASSERT_EQ(::mkfifo(path_.c_str(), 0600), 0);
    // A FIFO without a writer must not block open().
    EXPECT_EQ(open_error(path_, {.read_only = true}),
              "disk " + path_ + ": is neither a regular file nor a block device");
    EXPECT_EQ(open_error("/dev/null"), "disk /dev/null: is neither a regular file nor a block device");
}

TEST_F(DiskImageTest, SizeNotAMultipleOf512) {
    write_file(path_, pattern(1000));
    EXPECT_EQ(open_error(path_), "disk " + path_ + ": size 1000 is not a multiple of 512");
    write_file(path_, {});
    EXPECT_EQ(DiskImage::open(path_).size(), 0u) << "an empty disk is a disk";
}

TEST_F(DiskImageTest, AWritableImageIsExclusiveAReadOnlyOneShared) {
    write_file(path_, pattern(4096));
    const std::string locked = "disk " + path_ + ": in use by another process (locked)";
    {
        const DiskImage writer = DiskImage::open(path_);
        EXPECT_EQ(open_error(path_), locked);
        EXPECT_EQ(open_error(path_, {.read_only = true}), locked);
    }
    {
        const DiskImage reader = DiskImage::open(path_, {.read_only = true});
        EXPECT_EQ(open_error(path_, {.read_only = true}), "") << "readers share";
        EXPECT_EQ(open_error(path_), locked);
    }
    DiskImage moved = DiskImage::open(path_);
    const DiskImage owner = std::move(moved);
    EXPECT_EQ(open_error(path_), locked) << "the lock moves with the image";
}

TEST_F(DiskImageTest, LockedByAnotherProcess) {
    write_file(path_, pattern(4096));
    int opened[2];
    int release[2];
    ASSERT_EQ(::pipe(opened), 0);
    ASSERT_EQ(::pipe(release), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        const DiskImage image = DiskImage::open(path_);
        char byte = 1;
        [[maybe_unused]] auto written = ::write(opened[1], &byte, 1);
        [[maybe_unused]] auto read = ::read(release[0], &byte, 1);
        std::_Exit(0);
    }
    char byte = 0;
    ASSERT_EQ(::read(opened[0], &byte, 1), 1);
    EXPECT_EQ(open_error(path_, {.read_only = true}),
              "disk " + path_ + ": in use by another process (locked)");
    ASSERT_EQ(::write(release[1], &byte, 1), 1);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_EQ(open_error(path_), "") << "the lock goes with the process";
    for (const int fd : {opened[0], opened[1], release[0], release[1]}) {
        ::close(fd);
    }
}

TEST_F(DiskImageTest, DirectIoWhereTheFilesystemLacksIt) {
    std::string why_not;
    auto ramfs = ScratchMount::mount("ramfs", "mode=0700", why_not);
    if (!ramfs) {
        GTEST_SKIP() << why_not;
    }
    const std::string path = ramfs->path("a.raw");
    write_file(path, pattern(4096));
    EXPECT_EQ(open_error(path, {.direct = true}),
              "disk " + path + ": the filesystem does not support O_DIRECT (direct I/O)");
    EXPECT_EQ(open_error(path), "") << "nor is the failed attempt left holding the lock";
}

TEST_F(DiskImageTest, DirectIoOnADiskFilesystem) {
    TempDir on_disk("/var/tmp");
    const std::string path = on_disk.path("a.raw");
    write_file(path, pattern(65536));
    const DiskImage image = DiskImage::open(path, {.direct = true});
    EXPECT_TRUE(image.direct());
    EXPECT_TRUE(::fcntl(image.fd(), F_GETFL) & O_DIRECT);
    EXPECT_GE(image.logical_block_size(), 512u);
    EXPECT_EQ(image.logical_block_size() & (image.logical_block_size() - 1), 0u);
}

TEST_F(DiskImageTest, BlockDevice) {
    write_file(path_, pattern(1 << 20));
    std::string why_not;
    auto loop = LoopDevice::attach(path_, 4096, why_not);
    if (!loop) {
        GTEST_SKIP() << why_not;
    }
    const DiskImage image = DiskImage::open(loop->path(), {.direct = true});
    EXPECT_TRUE(image.is_block_device());
    EXPECT_EQ(image.size(), 1u << 20);
    EXPECT_EQ(image.logical_block_size(), 4096u);
    EXPECT_EQ(open_error(loop->path()), "disk " + loop->path() + ": in use by another process (locked)");

    auto engine = vim::vmm::virtio::block::make_engine(image.fd(), 4).engine;
    alignas(4096) static std::uint8_t buffer[8192];
    const iovec into{buffer, sizeof buffer};
    EXPECT_EQ(run_one(*engine, {.operation = Operation::Read, .offset = 4096, .iovecs = {&into, 1}}).result,
              8192);
    EXPECT_EQ(Bytes(buffer, buffer + sizeof buffer), pattern(8192, 4096));
    EXPECT_EQ(run_one(*engine, {.operation = Operation::WriteZeroes, .offset = 4096, .length = 4096}).result,
              0);
    EXPECT_EQ(run_one(*engine, {.operation = Operation::Flush}).result, 0);
    EXPECT_EQ(run_one(*engine, {.operation = Operation::Read, .offset = 4096, .iovecs = {&into, 1}}).result,
              8192);
    EXPECT_EQ(Bytes(buffer, buffer + 4096), Bytes(4096, 0));
    EXPECT_EQ(Bytes(buffer + 4096, buffer + 8192), pattern(4096, 8192));
}

}  // namespace
