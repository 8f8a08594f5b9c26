#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/queue.h"
#include "vmm/virtio/split_ring.h"

namespace vim::testing {

// A buffer the test's driver offers the device.
struct DriverBuffer {
    vmm::memory::GuestAddress address;
    std::uint32_t length;
    bool device_writable = false;
};

// Where the driver puts a queue's three parts.
struct RingLayout {
    vmm::memory::GuestAddress descriptor_table;
    vmm::memory::GuestAddress avail_ring;
    vmm::memory::GuestAddress used_ring;

    // One after the other from `start`, each at its alignment.
    static RingLayout packed(vmm::memory::GuestAddress start, std::uint16_t queue_size);
};

// Plays the guest's virtio driver for one split virtqueue, over any
// GuestMemory: lays out the rings, offers chains, reads what the device
// completed. It writes as the guest does, straight into RAM, so nothing it
// writes shows up in the VMM's dirty bitmap; only the device's writes do.
// Every field is also reachable raw, for tests that corrupt what the device
// reads.
class VirtqueueDriver {
public:
    // What writable buffers hold until the device writes them.
    static constexpr std::uint8_t kUnwrittenByte = 0xee;
    // Space left free after each buffer the driver allocates, so that the
    // device overrunning one never lands in the next unnoticed.
    static constexpr std::uint64_t kGapBetweenBuffers = 64;

    // A queue of `size` (non-zero; otherwise not checked: tests offer bad
    // ones too) with its rings where `rings` says, not checked either.
    // Buffers and indirect tables come from [data, data + data_size).
    // Writes nothing yet.
    VirtqueueDriver(vmm::memory::GuestMemory& memory, std::uint16_t size, const RingLayout& rings,
                    vmm::memory::GuestAddress data, std::uint64_t data_size);

    std::uint16_t size() const noexcept { return size_; }
    vmm::memory::GuestAddress descriptor_table() const noexcept { return descriptor_table_; }
    vmm::memory::GuestAddress avail_ring() const noexcept { return avail_ring_; }
    vmm::memory::GuestAddress used_ring() const noexcept { return used_ring_; }

    // Programs `queue` through its registers, as the transport does for the
    // driver, and enables it.
    void configure(vmm::virtio::Queue& queue, bool event_idx = false) const;
    // The state of a device queue that is ready on these rings and has
    // consumed and completed everything so far (for Queue::restore()).
    vmm::virtio::QueueState queue_state(bool event_idx = false) const;
    // Both rings' indices start at `index`, as after that many requests; the
    // device's queue must then come from queue_state().
    void start_indices_at(std::uint16_t index);

    // A buffer in the data area holding `contents`.
    DriverBuffer readable(std::span<const std::uint8_t> contents);
    // A device-writable buffer in the data area, filled with kUnwrittenByte.
    DriverBuffer writable(std::uint32_t length);
    // `length` bytes of the data area, after the gap that follows the last.
    vmm::memory::GuestAddress allocate(std::uint64_t length, std::uint64_t alignment = 16);
    std::vector<std::uint8_t> contents(const DriverBuffer& buffer) const;

    // Writes `buffers` as a chain into free descriptors and offers it;
    // returns its head.
    std::uint16_t add_chain(std::span<const DriverBuffer> buffers);
    // The same through one descriptor pointing at an indirect table of
    // `buffers` in the data area.
    std::uint16_t add_indirect_chain(std::span<const DriverBuffer> buffers);

    // The steps of the two above, for chains a test assembles itself.
    // Descriptors are handed out in turn, wrapping at the end of the table.
    std::uint16_t take_free_descriptor();
    std::uint16_t write_chain(std::span<const DriverBuffer> buffers);
    vmm::memory::GuestAddress write_indirect_table(std::span<const DriverBuffer> buffers);
    // Puts `head` in the next available ring entry, then publishes avail.idx.
    void offer(std::uint16_t head);

    // Raw fields.
    vmm::virtio::Descriptor descriptor(std::uint16_t index) const;
    void set_descriptor(std::uint16_t index, const vmm::virtio::Descriptor& descriptor);
    void set_avail_entry(std::uint16_t position, std::uint16_t head);  // position modulo size()
    std::uint16_t avail_idx() const;
    void set_avail_idx(std::uint16_t index);
    void set_avail_flags(std::uint16_t flags);
    void set_used_event(std::uint16_t index);
    std::uint16_t used_idx() const;
    std::uint16_t used_flags() const;
    std::uint16_t avail_event() const;
    vmm::virtio::UsedElement used_element(std::uint16_t position) const;  // position modulo size()

    // The used elements the device published since the last call, in order.
    std::vector<vmm::virtio::UsedElement> take_used();

    // Guest-side access to any bytes of guest RAM, marking nothing dirty.
    template <typename T>
    T read(vmm::memory::GuestAddress address) const {
        T value;
        std::memcpy(&value, guest_bytes(address, sizeof(T)).data(), sizeof(T));
        return value;
    }
    template <typename T>
    void write(vmm::memory::GuestAddress address, const T& value) {
        std::memcpy(guest_bytes(address, sizeof(T)).data(), &value, sizeof(T));
    }
    std::span<std::uint8_t> guest_bytes(vmm::memory::GuestAddress address, std::uint64_t length) const;

private:
    vmm::memory::GuestMemory& memory_;
    std::uint16_t size_;
    vmm::memory::GuestAddress descriptor_table_;
    vmm::memory::GuestAddress avail_ring_;
    vmm::memory::GuestAddress used_ring_;
    vmm::memory::GuestAddress data_next_;
    vmm::memory::GuestAddress data_end_;
    std::uint16_t next_free_descriptor_ = 0;
    std::uint16_t last_seen_used_ = 0;
};

}  // namespace vim::testing
