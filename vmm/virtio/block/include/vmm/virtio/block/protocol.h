#pragma once

// What a virtio-blk driver and device exchange (spec 5.2): feature bits,
// request layout, status codes, configuration space. Little-endian, read as
// native integers (split_ring.h checks the host is little-endian).

#include <cstddef>
#include <cstdint>

namespace vim::vmm::virtio::block {

// Sector numbers and request lengths count 512-byte sectors whatever the
// disk's block size is.
inline constexpr std::uint64_t kSectorSize = 512;
// GET_ID's answer: the serial, zero-padded, not terminated when it fills all 20.
inline constexpr std::size_t kIdBytes = 20;

// Device feature bits (spec 5.2.3).
inline constexpr unsigned kFeatureSegMax = 2;
inline constexpr unsigned kFeatureReadOnly = 5;
inline constexpr unsigned kFeatureBlockSize = 6;
inline constexpr unsigned kFeatureFlush = 9;
inline constexpr unsigned kFeatureMultiQueue = 12;
inline constexpr unsigned kFeatureDiscard = 13;
inline constexpr unsigned kFeatureWriteZeroes = 14;

enum class RequestType : std::uint32_t {
    In = 0,
    Out = 1,
    Flush = 4,
    GetId = 8,
    Discard = 11,
    WriteZeroes = 13,
};

// The byte the device writes last into a request's chain.
enum class Status : std::uint8_t {
    Ok = 0,
    IoError = 1,
    Unsupported = 2,
};

// The first 16 device-readable bytes of every request.
struct RequestHeader {
    std::uint32_t type;
    std::uint32_t reserved;
    std::uint64_t sector;
};
static_assert(sizeof(RequestHeader) == 16);

// DISCARD and WRITE_ZEROES carry a table of these after the header.
struct RangeSegment {
    std::uint64_t sector;
    std::uint32_t sectors;
    std::uint32_t flags;
};
static_assert(sizeof(RangeSegment) == 16);
// WRITE_ZEROES may deallocate the range; DISCARD must not carry it (spec 5.2.6.2).
inline constexpr std::uint32_t kSegmentUnmap = 1;

// struct virtio_blk_config (spec 5.2.4). Every field sits at its natural
// alignment, so the layout needs no packing; src/layout_checks.cpp compares
// the offsets with Linux's <linux/virtio_blk.h>.
struct Config {
    std::uint64_t capacity;  // in 512-byte sectors
    std::uint32_t size_max;
    std::uint32_t seg_max;
    std::uint16_t cylinders;
    std::uint8_t heads;
    std::uint8_t sectors;
    std::uint32_t blk_size;
    std::uint8_t physical_block_exp;
    std::uint8_t alignment_offset;
    std::uint16_t min_io_size;
    std::uint32_t opt_io_size;
    std::uint8_t writeback;
    std::uint8_t unused0;
    std::uint16_t num_queues;
    std::uint32_t max_discard_sectors;
    std::uint32_t max_discard_seg;
    std::uint32_t discard_sector_alignment;
    std::uint32_t max_write_zeroes_sectors;
    std::uint32_t max_write_zeroes_seg;
    std::uint8_t write_zeroes_may_unmap;
    std::uint8_t unused1[3];
    std::uint32_t max_secure_erase_sectors;
    std::uint32_t max_secure_erase_seg;
    std::uint32_t secure_erase_sector_alignment;
};
static_assert(sizeof(Config) == 72);

}  // namespace vim::vmm::virtio::block
