#pragma once

#include <cstdint>
#include <string_view>
#include <variant>
#include <vector>

#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/block/protocol.h"
#include "vmm/virtio/descriptor_chain.h"

namespace vim::vmm::virtio::block {

// What a request is checked against: the disk, and what the device told the
// driver in its features and configuration space.
struct DiskLimits {
    std::uint64_t capacity_sectors = 0;
    bool read_only = false;
    // DISCARD and WRITE_ZEROES exist for a driver that accepted their feature;
    // the limits below are the ones the configuration space advertises.
    bool discard = false;
    bool write_zeroes = false;
    std::uint32_t max_discard_sectors = 0;
    std::uint32_t max_discard_segments = 0;
    std::uint32_t max_write_zeroes_sectors = 0;
    std::uint32_t max_write_zeroes_segments = 0;
};

// One range of a DISCARD or WRITE_ZEROES, inside the disk and its limits.
struct SectorRange {
    std::uint64_t sector;
    std::uint32_t sectors;  // never 0: empty segments are dropped
    bool unmap;             // WRITE_ZEROES only: the device may deallocate the range

    bool operator==(const SectorRange&) const = default;
};

// A request that passed every check; the device carries it out.
struct BlockRequest {
    RequestType type;
    // In, Out: the first sector, with the whole transfer inside the disk.
    std::uint64_t sector = 0;
    // In: the device-writable bytes before the status byte, where the data
    // goes; Out: the device-readable bytes after the header, where it comes
    // from; GetId: where the ID goes. Pieces of the chain's buffers, so inside
    // guest RAM. In and Out: a multiple of kSectorSize bytes in all.
    std::vector<GuestBuffer> data = {};
    std::uint64_t data_length = 0;
    // Discard, WriteZeroes: what to do, in the driver's order (possibly none).
    std::vector<SectorRange> ranges = {};
};

// A request answered with `status` (IoError or Unsupported) without touching
// the disk; its chain has a status byte for the answer.
struct RefusedRequest {
    Status status;
    std::string_view reason;  // for tests and debugging: "sectors past the end of the disk"
};

// A chain with no device-writable byte: there is nowhere to answer, so the
// device completes it with 0 bytes written.
struct UnanswerableChain {};

using DecodedRequest = std::variant<BlockRequest, RefusedRequest, UnanswerableChain>;

// Reads a request from a chain that Queue::pop() accepted (spec 5.2.6): the
// 16-byte header from the first readable bytes (split across buffers as the
// driver pleases), the data, the status byte (the chain's last writable
// byte). Only reads guest memory, and only inside the chain's readable
// buffers; a guest's chain can make it refuse, never fail.
//
// Refused with IoError: a short header; IN with device-readable data or OUT
// with device-writable data besides the status; data not a multiple of 512
// bytes or past the end of the disk; a write, discard or write zeroes on a
// read-only disk; a range table that is not whole segments, is empty, or
// breaks the advertised limits; GET_ID without room for a byte. Refused with
// Unsupported: an unknown type, DISCARD or WRITE_ZEROES the driver did not
// negotiate, a segment flag the type does not have (spec 5.2.6.2).
DecodedRequest decode_request(const DescriptorChain& chain, const memory::GuestMemory& memory,
                              const DiskLimits& limits);

}  // namespace vim::vmm::virtio::block
