#pragma once

#include <memory>

#include "vmm/virtio/block/io_engine.h"

namespace vim::vmm::virtio::block {

// preadv, pwritev, fdatasync and fallocate run in submit() (or next_completion()), on the
// caller's thread; their completions queue up and completion_fd() is signalled. For tests and for
// kernels without io_uring. Throws std::invalid_argument for a queue depth outside
// 1..kMaxQueueDepth. Destroying it drops the requests not run yet.
std::unique_ptr<IoEngine> make_sync_engine(int fd, unsigned queue_depth);

}  // namespace vim::vmm::virtio::block
