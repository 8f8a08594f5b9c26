#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>

#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/descriptor_chain.h"
#include "vmm/virtio/split_ring.h"

namespace vim::vmm::virtio {

// Everything a queue is: the registers the driver programmed through the
// transport and where the device stands in the rings. Guest addresses and
// indices only, so saving and restoring a queue is a copy.
struct QueueState {
    std::uint16_t size = 0;
    bool ready = false;  // enabled by the driver and checked by Queue::enable()
    memory::GuestAddress descriptor_table = 0;
    memory::GuestAddress avail_ring = 0;
    memory::GuestAddress used_ring = 0;
    std::uint16_t next_avail = 0;  // the available ring entry the device takes next
    std::uint16_t next_used = 0;   // the used ring entry the device fills next (= used.idx)
    bool event_idx = false;        // VIRTIO_F_RING_EVENT_IDX negotiated
    // next_used when needs_notification() last ran: the entries added since
    // are the ones an interrupt would announce.
    std::uint16_t next_used_at_last_check = 0;

    bool operator==(const QueueState&) const = default;
};

// The chain starting at descriptor `head` breaks the rules. pop() has moved
// past it; the device completes it with add_used(memory, head, 0) (or fails
// the request, when it can tell where to say so) and goes on with the queue.
class InvalidChainError : public std::runtime_error {
public:
    InvalidChainError(std::uint16_t head, const std::string& message)
        : std::runtime_error(message), head_(head) {}
    std::uint16_t head() const noexcept { return head_; }

private:
    std::uint16_t head_;
};

// The driver broke the queue itself (a bad configuration, an available index
// or ring entry no correct driver writes): no chain can be trusted to follow.
// The device stops using the queue and sets DEVICE_NEEDS_RESET in its status
// (spec 2.1.1) until the driver resets it.
class QueueBrokenError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A split virtqueue as the device sees it (spec 2.7). It holds guest
// addresses and indices, never host pointers, and takes guest memory per
// call, so it runs on any GuestMemory. Everything the guest wrote is checked
// before use; a guest can make pop() throw InvalidChainError or
// QueueBrokenError, never read or write outside guest RAM.
//
// One thread uses a queue at a time. A device serves a notification thus, so
// that neither side misses the other (spec 2.7.10):
//     disable_notification(memory);
//     do { while (auto chain = pop(memory)) { ... } } while (enable_notification(memory));
// and, after completing chains, interrupts the driver if needs_notification().
class Queue {
public:
    // `name` starts every error message ("virtio-blk0 queue 0"); `max_size`
    // is the largest queue the device offers, a power of two.
    Queue(std::string name, std::uint16_t max_size);

    const std::string& name() const noexcept { return name_; }
    std::uint16_t max_size() const noexcept { return max_size_; }
    const QueueState& state() const noexcept { return state_; }
    bool ready() const noexcept { return state_.ready; }

    // Register writes through the transport. The driver makes them while the
    // queue is disabled; the spec forbids changing a live queue, so once it is
    // ready they are ignored and the queue runs on as enabled.
    void set_size(std::uint16_t size);
    void set_descriptor_table(memory::GuestAddress address);
    void set_avail_ring(memory::GuestAddress address);
    void set_used_ring(memory::GuestAddress address);
    void set_event_idx(bool negotiated);

    // The driver enables the queue. Checks the configuration: the size a
    // power of two no larger than max_size(), each ring aligned as the spec
    // requires and wholly inside one region of guest RAM. Throws
    // QueueBrokenError naming the first problem and leaves the queue disabled.
    void enable(const memory::GuestMemory& memory);
    // Device reset: the registers' reset values (size reads max_size()).
    void reset();
    // Takes a state saved by state(); a ready one is checked as enable() checks.
    void restore(const QueueState& state, const memory::GuestMemory& memory);

    // The next chain the driver made available, or nothing when there is none
    // (or the queue is not ready). Throws InvalidChainError for a bad chain
    // (already consumed), QueueBrokenError for a broken queue.
    std::optional<DescriptorChain> pop(const memory::GuestMemory& memory);
    // Returns chain `head` to the driver with `written` bytes written into its
    // writable buffers and publishes it. After a reset the queue is no longer
    // ready and a late completion is dropped. Throws std::invalid_argument for
    // a head outside the queue: the device never popped it.
    void add_used(memory::GuestMemory& memory, std::uint16_t head, std::uint32_t written);
    // As above, and first marks the `written` bytes of the chain's writable
    // buffers dirty again, for writes made after writable_iovecs() (a
    // migration may have taken the bitmap in between).
    void add_used(memory::GuestMemory& memory, const DescriptorChain& chain, std::uint32_t written);
    // Returns several chains at once: used.idx moves past all of them in one
    // store, so the driver sees them together or not at all (a packet spread
    // over merged receive buffers must appear whole, spec 5.1.6.4). Throws
    // std::invalid_argument, before writing anything, for a head outside the queue.
    void add_used(memory::GuestMemory& memory, std::span<const UsedElement> elements);

    // Whether the chains added since the last call are worth an interrupt:
    // with event idx, whether used.idx passed the driver's used_event; without,
    // unless the driver set VIRTQ_AVAIL_F_NO_INTERRUPT.
    bool needs_notification(const memory::GuestMemory& memory);
    // Asks the driver not to notify while the device is busy with the queue:
    // VIRTQ_USED_F_NO_NOTIFY without event idx; with it, nothing needs
    // writing, the driver notifies at most once more, when avail.idx passes
    // the avail_event last written.
    void disable_notification(memory::GuestMemory& memory);
    // Asks to be notified of the next chain (avail_event = next_avail, or
    // clears VIRTQ_USED_F_NO_NOTIFY); returns whether chains arrived
    // meanwhile, which the device must then pop itself.
    bool enable_notification(memory::GuestMemory& memory);

private:
    void check_config(const QueueState& state, const memory::GuestMemory& memory) const;
    DescriptorChain walk_chain(const memory::GuestMemory& memory, std::uint16_t head) const;
    std::uint16_t position_mask() const noexcept { return static_cast<std::uint16_t>(state_.size - 1); }

    std::string name_;
    std::uint16_t max_size_;
    QueueState state_;
};

}  // namespace vim::vmm::virtio
