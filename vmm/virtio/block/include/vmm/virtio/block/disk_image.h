#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "vmm/sys/fd.h"

namespace vim::vmm::virtio::block {

// A disk the vmm refuses to use, with the reason: "disk /img/a.raw: size 1000 is not a multiple
// of 512". Failed system calls are std::system_error instead ("disk /img/a.raw: open: No such
// file or directory"); both are std::runtime_error.
class DiskError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct DiskOptions {
    bool read_only = false;
    // O_DIRECT: the host's page cache is bypassed; requests must be aligned to
    // logical_block_size() in offset, length and memory.
    bool direct = false;
    // Open without the lock, for a VM arriving by migration: the source holds
    // it until it hands the guest over, and lock() takes it then.
    bool defer_lock = false;
};

// A raw image file or a block device, open and locked for one vmm: exclusively when writable,
// shared when read-only, so two vmms never write one disk and nobody reads a disk being written.
// The lock is flock(2), held as long as the descriptor is open.
class DiskImage {
public:
    static DiskImage open(const std::string& path, DiskOptions options = {});

    const std::string& path() const noexcept { return path_; }
    int fd() const noexcept { return fd_.get(); }
    std::uint64_t size() const noexcept { return size_; }
    // The unit of direct I/O: the device's logical sector size for a block device, the
    // filesystem's direct I/O alignment for a file opened direct, 512 otherwise.
    std::uint32_t logical_block_size() const noexcept { return logical_block_size_; }
    bool read_only() const noexcept { return options_.read_only; }
    bool direct() const noexcept { return options_.direct; }
    bool is_block_device() const noexcept { return block_device_; }

    // Takes the lock open() would have (after defer_lock), waiting for a
    // process that holds it to let go when `wait`; throws DiskError otherwise.
    void lock(bool wait) const;
    // Lets the lock go before the descriptor closes: a migrating VM's source
    // hands its disks to the destination this way.
    void unlock() const;

private:
    DiskImage(std::string path, DiskOptions options, sys::Fd fd)
        : path_(std::move(path)), options_(options), fd_(std::move(fd)) {}

    std::string path_;
    DiskOptions options_;
    sys::Fd fd_;
    std::uint64_t size_ = 0;
    std::uint32_t logical_block_size_ = 512;
    bool block_device_ = false;
};

}  // namespace vim::vmm::virtio::block
