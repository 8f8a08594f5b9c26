#pragma once

#include <bit>
#include <cstdint>

namespace vim::vmm::virtio {

// The split virtqueue as virtio 1.x lays it out in guest memory (spec 2.7):
// a descriptor table, the available ring the driver fills and the used ring
// the device fills. All fields are little-endian.
static_assert(std::endian::native == std::endian::little,
              "the queue reads virtio's little-endian ring fields as native integers");

// The largest queue the split ring allows (spec 2.7: Queue Size is at most 32768).
inline constexpr std::uint16_t kMaxQueueSize = 32768;

// Feature bits of the ring itself (spec 6), offered by every device that uses this queue.
inline constexpr unsigned kFeatureRingIndirectDesc = 28;
inline constexpr unsigned kFeatureRingEventIdx = 29;

// Descriptor flags.
inline constexpr std::uint16_t kDescriptorNext = 1;
inline constexpr std::uint16_t kDescriptorWrite = 2;     // device-writable buffer
inline constexpr std::uint16_t kDescriptorIndirect = 4;  // the buffer is a table of descriptors

// Available ring flags: the driver asks not to be interrupted (without event idx).
inline constexpr std::uint16_t kAvailNoInterrupt = 1;
// Used ring flags: the device asks not to be notified (without event idx).
inline constexpr std::uint16_t kUsedNoNotify = 1;

struct Descriptor {
    std::uint64_t address;
    std::uint32_t length;
    std::uint16_t flags;
    std::uint16_t next;
};
static_assert(sizeof(Descriptor) == 16);

struct UsedElement {
    std::uint32_t id;      // head of the completed chain
    std::uint32_t length;  // bytes the device wrote into the chain's writable buffers
};
static_assert(sizeof(UsedElement) == 8);

struct DescriptorTable {
    static constexpr std::uint64_t kAlignment = 16;
    static constexpr std::uint64_t size(std::uint16_t queue_size) { return sizeof(Descriptor) * queue_size; }
    static constexpr std::uint64_t entry(std::uint16_t index) { return sizeof(Descriptor) * index; }
};

// Byte offsets in the available ring: flags, idx, ring[queue_size], used_event.
struct AvailRing {
    static constexpr std::uint64_t kAlignment = 2;
    static constexpr std::uint64_t kFlags = 0;
    static constexpr std::uint64_t kIdx = 2;
    static constexpr std::uint64_t entry(std::uint16_t position) { return 4 + 2 * std::uint64_t{position}; }
    static constexpr std::uint64_t used_event(std::uint16_t queue_size) { return entry(queue_size); }
    static constexpr std::uint64_t size(std::uint16_t queue_size) { return used_event(queue_size) + 2; }
};

// Byte offsets in the used ring: flags, idx, ring[queue_size] of UsedElement, avail_event.
struct UsedRing {
    static constexpr std::uint64_t kAlignment = 4;
    static constexpr std::uint64_t kFlags = 0;
    static constexpr std::uint64_t kIdx = 2;
    static constexpr std::uint64_t entry(std::uint16_t position) {
        return 4 + sizeof(UsedElement) * std::uint64_t{position};
    }
    static constexpr std::uint64_t avail_event(std::uint16_t queue_size) { return entry(queue_size); }
    static constexpr std::uint64_t size(std::uint16_t queue_size) { return avail_event(queue_size) + 2; }
};

}  // namespace vim::vmm::virtio
