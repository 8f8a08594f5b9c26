#pragma once

#include <memory>
#include <stdexcept>

#include "vmm/virtio/block/io_engine.h"

namespace vim::vmm::virtio::block {

// io_uring cannot serve here: the kernel lacks it (ENOSYS) or an operation we need, or a seccomp
// filter or the sysctl kernel.io_uring_disabled forbids it (EPERM). what() says which.
class IoUringUnavailable : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Reads, writes, fdatasync and fallocate through one ring whose completions signal an eventfd.
// Throws IoUringUnavailable, or std::invalid_argument for a queue depth outside 1..kMaxQueueDepth.
// Destroying the engine cancels the requests in flight and waits until the kernel has let go of
// their memory; a transfer the disk is already doing finishes first. Their completions are lost.
std::unique_ptr<IoEngine> make_io_uring_engine(int fd, unsigned queue_depth);

}  // namespace vim::vmm::virtio::block
