#include "vmm/virtio/block/disk_image.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "vmm/sys/error.h"

namespace vim::vmm::virtio::block {
namespace {

constexpr std::uint32_t kSectorSize = 512;

std::uint32_t direct_io_alignment(int fd) {
    struct statx status {};
    if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &status) != 0 || !(status.stx_mask & STATX_DIOALIGN)) {
        return kSectorSize;  // kernels before 6.1 do not say; 512 is what block devices take at least
    }
    return std::max(kSectorSize, status.stx_dio_offset_align);
}

}  // namespace

DiskImage DiskImage::open(const std::string& path, DiskOptions options) {
    const std::string disk = "disk " + path;
    // O_NONBLOCK keeps open() from waiting for a writer when the path is a FIFO; it is cleared
    // below, as io_uring would answer EAGAIN instead of waiting for the page cache.
    const int access = options.read_only ? O_RDONLY : O_RDWR;
    sys::Fd opened(::open(path.c_str(), access | O_CLOEXEC | O_NONBLOCK));
    if (!opened) {
        if (errno == EISDIR) {
            throw DiskError(disk + ": is a directory");
        }
        sys::throw_errno(disk + ": open");
    }
    DiskImage image(path, options, std::move(opened));
    const int fd = image.fd();

    struct stat status {};
    if (::fstat(fd, &status) != 0) {
        sys::throw_errno(disk + ": fstat");
    }
    if (S_ISDIR(status.st_mode)) {
        throw DiskError(disk + ": is a directory");
    }
    if (!S_ISREG(status.st_mode) && !S_ISBLK(status.st_mode)) {
        throw DiskError(disk + ": is neither a regular file nor a block device");
    }
    image.block_device_ = S_ISBLK(status.st_mode);

    if (!options.defer_lock) {
        image.lock(/*wait=*/false);
    }

    // The kernel checks here, as at open(), that the filesystem can do direct I/O.
    if (::fcntl(fd, F_SETFL, options.direct ? O_DIRECT : 0) != 0) {
        if (errno == EINVAL && options.direct) {
            throw DiskError(disk + ": the filesystem does not support O_DIRECT (direct I/O)");
        }
        sys::throw_errno(disk + ": fcntl F_SETFL");
    }

    if (image.block_device_) {
        if (::ioctl(fd, BLKGETSIZE64, &image.size_) != 0) {
            sys::throw_errno(disk + ": ioctl BLKGETSIZE64");
        }
        int sector_size = 0;
        if (::ioctl(fd, BLKSSZGET, &sector_size) != 0) {
            sys::throw_errno(disk + ": ioctl BLKSSZGET");
        }
        image.logical_block_size_ = static_cast<std::uint32_t>(sector_size);
    } else {
        image.size_ = static_cast<std::uint64_t>(status.st_size);
        image.logical_block_size_ = options.direct ? direct_io_alignment(fd) : kSectorSize;
    }
    if (image.size_ % image.logical_block_size_ != 0) {
        throw DiskError(disk + ": size " + std::to_string(image.size_) + " is not a multiple of " +
                        std::to_string(image.logical_block_size_));
    }
    return image;
}

void DiskImage::lock(bool wait) const {
    int result;
    do {
        result = ::flock(fd_.get(), (options_.read_only ? LOCK_SH : LOCK_EX) | (wait ? 0 : LOCK_NB));
    } while (result != 0 && errno == EINTR);
    if (result != 0) {
        if (errno == EWOULDBLOCK) {
            throw DiskError("disk " + path_ + ": in use by another process (locked)");
        }
        sys::throw_errno("disk " + path_ + ": flock");
    }
}

void DiskImage::unlock() const { ::flock(fd_.get(), LOCK_UN); }

}  // namespace vim::vmm::virtio::block
