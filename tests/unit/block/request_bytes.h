#pragma once

// The bytes a virtio-blk driver puts in a request's readable buffers.

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

#include "vmm/virtio/block/protocol.h"

namespace vim::vmm::virtio::block::testing {

template <typename T>
std::vector<std::uint8_t> bytes_of(const T& value) {
    std::vector<std::uint8_t> bytes(sizeof value);
    std::memcpy(bytes.data(), &value, sizeof value);
    return bytes;
}

inline std::vector<std::uint8_t> header_bytes(std::uint32_t type, std::uint64_t sector = 0) {
    return bytes_of(RequestHeader{type, 0, sector});
}

inline std::vector<std::uint8_t> header_bytes(RequestType type, std::uint64_t sector = 0) {
    return header_bytes(static_cast<std::uint32_t>(type), sector);
}

inline std::vector<std::uint8_t> segment_bytes(std::initializer_list<RangeSegment> segments) {
    std::vector<std::uint8_t> bytes;
    for (const RangeSegment& segment : segments) {
        const auto one = bytes_of(segment);
        bytes.insert(bytes.end(), one.begin(), one.end());
    }
    return bytes;
}

}  // namespace vim::vmm::virtio::block::testing
