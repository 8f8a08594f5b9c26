// protocol.h against the kernel's own definitions, so a typo in an offset or
// a constant fails the build instead of a guest's disk.
#include <linux/virtio_blk.h>

#include <cstddef>

#include "vmm/virtio/block/protocol.h"

namespace vim::vmm::virtio::block {

static_assert(kIdBytes == VIRTIO_BLK_ID_BYTES);
static_assert(kFeatureSegMax == VIRTIO_BLK_F_SEG_MAX);
static_assert(kFeatureReadOnly == VIRTIO_BLK_F_RO);
static_assert(kFeatureBlockSize == VIRTIO_BLK_F_BLK_SIZE);
static_assert(kFeatureFlush == VIRTIO_BLK_F_FLUSH);
static_assert(kFeatureDiscard == VIRTIO_BLK_F_DISCARD);
static_assert(kFeatureWriteZeroes == VIRTIO_BLK_F_WRITE_ZEROES);

static_assert(static_cast<unsigned>(RequestType::In) == VIRTIO_BLK_T_IN);
static_assert(static_cast<unsigned>(RequestType::Out) == VIRTIO_BLK_T_OUT);
static_assert(static_cast<unsigned>(RequestType::Flush) == VIRTIO_BLK_T_FLUSH);
static_assert(static_cast<unsigned>(RequestType::GetId) == VIRTIO_BLK_T_GET_ID);
static_assert(static_cast<unsigned>(RequestType::Discard) == VIRTIO_BLK_T_DISCARD);
static_assert(static_cast<unsigned>(RequestType::WriteZeroes) == VIRTIO_BLK_T_WRITE_ZEROES);

static_assert(static_cast<unsigned>(Status::Ok) == VIRTIO_BLK_S_OK);
static_assert(static_cast<unsigned>(Status::IoError) == VIRTIO_BLK_S_IOERR);
static_assert(static_cast<unsigned>(Status::Unsupported) == VIRTIO_BLK_S_UNSUPP);

static_assert(sizeof(RequestHeader) == sizeof(virtio_blk_outhdr));
static_assert(offsetof(RequestHeader, sector) == offsetof(virtio_blk_outhdr, sector));
static_assert(sizeof(RangeSegment) == sizeof(virtio_blk_discard_write_zeroes));
static_assert(kSegmentUnmap == VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);

static_assert(sizeof(Config) == sizeof(virtio_blk_config));
#define VIM_SAME_OFFSET(ours, theirs) \
    static_assert(offsetof(Config, ours) == offsetof(virtio_blk_config, theirs))
VIM_SAME_OFFSET(capacity, capacity);
VIM_SAME_OFFSET(size_max, size_max);
VIM_SAME_OFFSET(seg_max, seg_max);
VIM_SAME_OFFSET(cylinders, geometry.cylinders);
VIM_SAME_OFFSET(heads, geometry.heads);
VIM_SAME_OFFSET(sectors, geometry.sectors);
VIM_SAME_OFFSET(blk_size, blk_size);
VIM_SAME_OFFSET(physical_block_exp, physical_block_exp);
VIM_SAME_OFFSET(alignment_offset, alignment_offset);
VIM_SAME_OFFSET(min_io_size, min_io_size);
VIM_SAME_OFFSET(opt_io_size, opt_io_size);
VIM_SAME_OFFSET(writeback, wce);
VIM_SAME_OFFSET(num_queues, num_queues);
VIM_SAME_OFFSET(max_discard_sectors, max_discard_sectors);
VIM_SAME_OFFSET(max_discard_seg, max_discard_seg);
VIM_SAME_OFFSET(discard_sector_alignment, discard_sector_alignment);
VIM_SAME_OFFSET(max_write_zeroes_sectors, max_write_zeroes_sectors);
VIM_SAME_OFFSET(max_write_zeroes_seg, max_write_zeroes_seg);
VIM_SAME_OFFSET(write_zeroes_may_unmap, write_zeroes_may_unmap);
VIM_SAME_OFFSET(max_secure_erase_sectors, max_secure_erase_sectors);
VIM_SAME_OFFSET(max_secure_erase_seg, max_secure_erase_seg);
VIM_SAME_OFFSET(secure_erase_sector_alignment, secure_erase_sector_alignment);
#undef VIM_SAME_OFFSET

}  // namespace vim::vmm::virtio::block
