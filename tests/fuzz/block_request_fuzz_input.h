#pragma once

#include <cstdint>

#include "vmm/virtio/block/request.h"

namespace vim::fuzz {

// A block_request_fuzz input: this header, then a virtqueue_fuzz input (its
// header and guest RAM). The disk the requests are checked against comes
// first, then the queue they are popped from.
struct BlockRequestFuzzHeader {
    std::uint64_t capacity_sectors;
    std::uint8_t flags;  // kReadOnly | kDiscard | kWriteZeroes
    // Segment limits in a byte: a table is copied only after its length is
    // checked against them, so they bound what one input can make the decoder allocate.
    std::uint8_t max_discard_segments;
    std::uint8_t max_write_zeroes_segments;
    std::uint8_t unused;
    std::uint32_t max_discard_sectors;
    std::uint32_t max_write_zeroes_sectors;
    std::uint32_t unused2;

    static constexpr std::uint8_t kReadOnly = 1;
    static constexpr std::uint8_t kDiscard = 2;
    static constexpr std::uint8_t kWriteZeroes = 4;

    vmm::virtio::block::DiskLimits limits() const {
        return {.capacity_sectors = capacity_sectors,
                .read_only = (flags & kReadOnly) != 0,
                .discard = (flags & kDiscard) != 0,
                .write_zeroes = (flags & kWriteZeroes) != 0,
                .max_discard_sectors = max_discard_sectors,
                .max_discard_segments = max_discard_segments,
                .max_write_zeroes_sectors = max_write_zeroes_sectors,
                .max_write_zeroes_segments = max_write_zeroes_segments};
    }
};
static_assert(sizeof(BlockRequestFuzzHeader) == 24);

}  // namespace vim::fuzz
