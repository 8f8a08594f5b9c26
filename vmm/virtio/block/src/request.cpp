#include "vmm/virtio/block/request.h"

#include <algorithm>
#include <cstring>

namespace vim::vmm::virtio::block {
namespace {

// The pieces of `buffers`, read as one stream, from `offset` for `length` bytes.
std::vector<GuestBuffer> slice(const std::vector<GuestBuffer>& buffers, std::uint64_t offset,
                               std::uint64_t length) {
    std::vector<GuestBuffer> pieces;
    for (const GuestBuffer& buffer : buffers) {
        if (length == 0) {
            break;
        }
        if (offset >= buffer.length) {
            offset -= buffer.length;
            continue;
        }
        const auto piece =
            static_cast<std::uint32_t>(std::min<std::uint64_t>(buffer.length - offset, length));
        pieces.push_back({buffer.address + offset, piece});
        length -= piece;
        offset = 0;
    }
    return pieces;
}

// Whether `count` sectors from `sector` lie inside the disk; no overflow for any guest value.
bool inside_disk(std::uint64_t sector, std::uint64_t count, const DiskLimits& limits) {
    return sector <= limits.capacity_sectors && count <= limits.capacity_sectors - sector;
}

RefusedRequest io_error(std::string_view reason) { return {Status::IoError, reason}; }

RefusedRequest unsupported(std::string_view reason) { return {Status::Unsupported, reason}; }

constexpr std::uint64_t kHeaderSize = sizeof(RequestHeader);

DecodedRequest decode_transfer(const DescriptorChain& chain, const RequestHeader& header, RequestType type,
                               const DiskLimits& limits) {
    BlockRequest request{.type = type, .sector = header.sector};
    if (type == RequestType::In) {
        if (chain.readable_length() > kHeaderSize) {
            return io_error("a read with device-readable data");
        }
        request.data_length = chain.writable_length() - 1;
        request.data = slice(chain.writable, 0, request.data_length);
    } else {
        if (limits.read_only) {
            return io_error("a write to a read-only disk");
        }
        if (chain.writable_length() > 1) {
            return io_error("a write with device-writable data");
        }
        request.data_length = chain.readable_length() - kHeaderSize;
        request.data = slice(chain.readable, kHeaderSize, request.data_length);
    }
    if (request.data_length % kSectorSize != 0) {
        return io_error("data length not a multiple of 512");
    }
    if (!inside_disk(header.sector, request.data_length / kSectorSize, limits)) {
        return io_error("sectors past the end of the disk");
    }
    return request;
}

DecodedRequest decode_ranges(const DescriptorChain& chain, const memory::GuestMemory& memory,
                             RequestType type, const DiskLimits& limits) {
    const bool discard = type == RequestType::Discard;
    if (!(discard ? limits.discard : limits.write_zeroes)) {
        return unsupported(discard ? "DISCARD not negotiated" : "WRITE_ZEROES not negotiated");
    }
    if (limits.read_only) {
        return io_error("a discard or write zeroes on a read-only disk");
    }
    const std::uint64_t table_length = chain.readable_length() - kHeaderSize;
    if (table_length == 0 || table_length % sizeof(RangeSegment) != 0) {
        return io_error("range table not a whole number of segments");
    }
    // Checked before reading: a table as long as the guest likes is never copied.
    const std::uint64_t count = table_length / sizeof(RangeSegment);
    const std::uint32_t max_segments =
        discard ? limits.max_discard_segments : limits.max_write_zeroes_segments;
    const std::uint32_t max_sectors = discard ? limits.max_discard_sectors : limits.max_write_zeroes_sectors;
    if (count > max_segments) {
        return io_error("more segments than advertised");
    }
    std::vector<RangeSegment> segments(count);
    chain.read(memory, kHeaderSize, {reinterpret_cast<std::uint8_t*>(segments.data()), table_length});

    BlockRequest request{.type = type};
    for (const RangeSegment& segment : segments) {
        if ((segment.flags & ~kSegmentUnmap) != 0) {
            return unsupported("unknown segment flags");
        }
        if (discard && (segment.flags & kSegmentUnmap) != 0) {
            return unsupported("the unmap flag on a discard");
        }
        if (segment.sectors > max_sectors) {
            return io_error("a segment longer than advertised");
        }
        if (!inside_disk(segment.sector, segment.sectors, limits)) {
            return io_error("sectors past the end of the disk");
        }
        if (segment.sectors != 0) {
            request.ranges.push_back({segment.sector, segment.sectors, (segment.flags & kSegmentUnmap) != 0});
        }
    }
    return request;
}

}  // namespace

DecodedRequest decode_request(const DescriptorChain& chain, const memory::GuestMemory& memory,
                              const DiskLimits& limits) {
    if (chain.writable_length() == 0) {
        return UnanswerableChain{};
    }
    std::uint8_t header_bytes[kHeaderSize];
    if (chain.read(memory, 0, header_bytes) != kHeaderSize) {
        return io_error("request header shorter than 16 bytes");
    }
    RequestHeader header;
    std::memcpy(&header, header_bytes, sizeof header);

    const auto type = static_cast<RequestType>(header.type);
    switch (type) {
    case RequestType::In:
    case RequestType::Out:
        return decode_transfer(chain, header, type, limits);
    case RequestType::Flush:
        // Buffers besides the header and status mean nothing to a flush; Linux and QEMU ignore them too.
        return BlockRequest{.type = type};
    case RequestType::GetId: {
        const std::uint64_t room = std::min<std::uint64_t>(chain.writable_length() - 1, kIdBytes);
        if (room == 0) {
            return io_error("GET_ID without room for the ID");
        }
        return BlockRequest{.type = type, .data = slice(chain.writable, 0, room), .data_length = room};
    }
    case RequestType::Discard:
    case RequestType::WriteZeroes:
        return decode_ranges(chain, memory, type, limits);
    }
    return unsupported("unknown request type");
}

}  // namespace vim::vmm::virtio::block
