#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "vim/testing/guest_ram.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/queue.h"

namespace vim::fuzz {

// A virtqueue_fuzz input: this header (little-endian, as the host), then the
// bytes of guest RAM, region after region. The seed generator writes the same.
struct VirtqueueFuzzHeader {
    std::uint16_t queue_size;
    std::uint16_t next_avail;
    std::uint16_t next_used;
    std::uint8_t event_idx;         // bit 0
    std::uint8_t low_region_pages;  // RAM splits after this many pages, with a one-page hole; 0: one region
    std::uint32_t ram_start_page;
    std::uint32_t descriptor_table;  // guest addresses of the rings
    std::uint32_t avail_ring;
    std::uint32_t used_ring;
};
static_assert(sizeof(VirtqueueFuzzHeader) == 24);

// Small enough for many runs a second, big enough for a few rings and buffers.
inline constexpr std::uint64_t kMaxRamPages = 16;
// The device's maximum: a chain costs at most twice this many descriptor reads.
inline constexpr std::uint16_t kMaxFuzzQueueSize = 256;

// Guest RAM for `image_size` bytes after the header: whole pages, at least one.
inline std::vector<vmm::memory::RegionLayout> fuzz_ram_layout(const VirtqueueFuzzHeader& header,
                                                              std::uint64_t image_size) {
    using vmm::memory::kPageSize;
    const std::uint64_t pages =
        std::clamp<std::uint64_t>((image_size + kPageSize - 1) / kPageSize, 1, kMaxRamPages);
    const std::uint64_t start = std::uint64_t{header.ram_start_page} * kPageSize;
    const std::uint64_t low_pages = header.low_region_pages;
    if (low_pages == 0 || low_pages >= pages) {
        return {{start, pages * kPageSize}};
    }
    return {{start, low_pages * kPageSize},
            {start + (low_pages + 1) * kPageSize, (pages - low_pages) * kPageSize}};
}

// Guest RAM for an input's image: laid out as above, holding the image's
// bytes region after region (the rest zero).
inline testing::GuestRam fuzz_ram(const VirtqueueFuzzHeader& header, std::span<const std::uint8_t> image) {
    testing::GuestRam ram(fuzz_ram_layout(header, image.size()));
    std::size_t copied = 0;
    for (const auto& region : ram.memory().regions()) {
        const std::size_t length = std::min<std::size_t>(region.size, image.size() - copied);
        std::memcpy(region.host, image.data() + copied, length);
        copied += length;
    }
    return ram;
}

// The queue the header describes, ready and part-way through its rings as a
// device would have it; nullopt when restore() finds its configuration broken.
inline std::optional<vmm::virtio::Queue> fuzz_queue(const VirtqueueFuzzHeader& header,
                                                    const vmm::memory::GuestMemory& memory) {
    vmm::virtio::Queue queue("fuzz queue", kMaxFuzzQueueSize);
    vmm::virtio::QueueState state;
    state.size = header.queue_size;
    state.ready = true;
    state.descriptor_table = header.descriptor_table;
    state.avail_ring = header.avail_ring;
    state.used_ring = header.used_ring;
    state.next_avail = header.next_avail;
    state.next_used = header.next_used;
    state.next_used_at_last_check = header.next_used;
    state.event_idx = (header.event_idx & 1) != 0;
    try {
        queue.restore(state, memory);
    } catch (const vmm::virtio::QueueBrokenError&) {
        return std::nullopt;
    }
    return queue;
}

}  // namespace vim::fuzz
