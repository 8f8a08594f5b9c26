#include "vmm/virtio/block/io_engine.h"

#include "vmm/virtio/block/io_uring_engine.h"
#include "vmm/virtio/block/sync_engine.h"

namespace vim::vmm::virtio::block {

EngineSelection make_engine(int fd, unsigned queue_depth) {
    try {
        return {make_io_uring_engine(fd, queue_depth), {}};
    } catch (const IoUringUnavailable& unavailable) {
        return {make_sync_engine(fd, queue_depth), unavailable.what()};
    }
}

}  // namespace vim::vmm::virtio::block
