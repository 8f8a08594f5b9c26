#include "vmm/virtio/queue.h"

#include <atomic>
#include <bit>
#include <utility>

#include "ring_access.h"
#include "vmm/sys/hex.h"

namespace vim::vmm::virtio {
namespace {

using memory::GuestAddress;
using memory::GuestMemory;
using memory::Region;
using std::to_string;
using sys::hex;

// Drivers must not offer a chain longer than 2^32 bytes in total (spec 2.7.5).
constexpr std::uint64_t kMaxChainLength = std::uint64_t{1} << 32;

const Region* region_holding(const GuestMemory& memory, GuestAddress address, std::uint64_t length) {
    for (const Region& region : memory.regions()) {
        if (region.contains(address, length)) {
            return &region;
        }
    }
    return nullptr;
}

std::string range(GuestAddress address, std::uint64_t length) { return hex(address) + "+" + hex(length); }

}  // namespace

Queue::Queue(std::string name, std::uint16_t max_size) : name_(std::move(name)), max_size_(max_size) {
    if (max_size == 0 || max_size > kMaxQueueSize || !std::has_single_bit(max_size)) {
        throw std::invalid_argument(name_ + ": maximum queue size " + to_string(max_size) +
                                    " is not a power of two from 1 to " + to_string(kMaxQueueSize));
    }
    reset();
}

void Queue::set_size(std::uint16_t size) {
    if (!state_.ready) {
        state_.size = size;
    }
}

void Queue::set_descriptor_table(GuestAddress address) {
    if (!state_.ready) {
        state_.descriptor_table = address;
    }
}

void Queue::set_avail_ring(GuestAddress address) {
    if (!state_.ready) {
        state_.avail_ring = address;
    }
}

void Queue::set_used_ring(GuestAddress address) {
    if (!state_.ready) {
        state_.used_ring = address;
    }
}

void Queue::set_event_idx(bool negotiated) {
    if (!state_.ready) {
        state_.event_idx = negotiated;
    }
}

void Queue::enable(const GuestMemory& memory) {
    if (state_.ready) {
        return;
    }
    check_config(state_, memory);
    state_.ready = true;
}

void Queue::reset() {
    state_ = QueueState{};
    state_.size = max_size_;
}

void Queue::restore(const QueueState& state, const GuestMemory& memory) {
    if (state.ready) {
        check_config(state, memory);
    }
    state_ = state;
}

void Queue::check_config(const QueueState& state, const GuestMemory& memory) const {
    if (!std::has_single_bit(state.size)) {
        throw QueueBrokenError(name_ + ": size " + to_string(state.size) + " is not a power of two");
    }
    if (state.size > max_size_) {
        throw QueueBrokenError(name_ + ": size " + to_string(state.size) +
                               " is larger than the device's maximum " + to_string(max_size_));
    }
    struct Ring {
        const char* what;
        GuestAddress address;
        std::uint64_t size;
        std::uint64_t alignment;
    };
    const Ring rings[] = {
        {"descriptor table", state.descriptor_table, DescriptorTable::size(state.size),
         DescriptorTable::kAlignment},
        {"available ring", state.avail_ring, AvailRing::size(state.size), AvailRing::kAlignment},
        {"used ring", state.used_ring, UsedRing::size(state.size), UsedRing::kAlignment},
    };
    for (const Ring& ring : rings) {
        if (ring.address % ring.alignment != 0) {
            throw QueueBrokenError(name_ + ": " + ring.what + " at " + hex(ring.address) + " is not " +
                                   to_string(ring.alignment) + "-byte aligned");
        }
        const Region* region = region_holding(memory, ring.address, ring.size);
        if (region == nullptr) {
            throw QueueBrokenError(name_ + ": " + ring.what + " " + range(ring.address, ring.size) +
                                   " is not in guest RAM");
        }
        // The ring fields are accessed as atomics (ring_access.h). Only
        // GuestMemory::over() on an odd buffer can break this, never the guest.
        const auto host = reinterpret_cast<std::uintptr_t>(region->host) + (ring.address - region->start);
        if (host % ring.alignment != 0) {
            throw std::invalid_argument(name_ + ": guest RAM at " + hex(region->start) +
                                        " is mapped at a host address unfit for the " + ring.what);
        }
    }
}

std::optional<DescriptorChain> Queue::pop(const GuestMemory& memory) {
    if (!state_.ready) {
        return std::nullopt;
    }
    const std::uint16_t avail_idx = load_ring_field(memory, state_.avail_ring + AvailRing::kIdx);
    // Acquire: the driver wrote the ring entry and the descriptors before it
    // published avail.idx; none of them may be read before the index that
    // says they are there, or the device would see stale descriptors.
    std::atomic_thread_fence(std::memory_order_acquire);
    const auto pending = static_cast<std::uint16_t>(avail_idx - state_.next_avail);
    if (pending == 0) {
        return std::nullopt;
    }
    if (pending > state_.size) {
        throw QueueBrokenError(name_ + ": avail.idx " + to_string(avail_idx) + " is " + to_string(pending) +
                               " entries ahead of the device's " + to_string(state_.next_avail) +
                               ", more than the queue size " + to_string(state_.size));
    }
    const auto position = static_cast<std::uint16_t>(state_.next_avail & position_mask());
    const auto head = memory.read_object<std::uint16_t>(state_.avail_ring + AvailRing::entry(position));
    if (head >= state_.size) {
        throw QueueBrokenError(name_ + ": available ring entry " + to_string(position) +
                               " names descriptor " + to_string(head) + " of " + to_string(state_.size));
    }
    ++state_.next_avail;
    return walk_chain(memory, head);
}

DescriptorChain Queue::walk_chain(const GuestMemory& memory, std::uint16_t head) const {
    DescriptorChain chain;
    chain.head = head;
    GuestAddress table = state_.descriptor_table;
    std::uint32_t table_entries = state_.size;
    bool in_indirect_table = false;
    std::uint16_t index = head;
    // Each table is walked with a budget of its size: a loop ends there.
    std::uint32_t visited = 0;
    std::uint64_t total_length = 0;

    auto fail = [&](const std::string& what) {
        throw InvalidChainError(head, name_ + ": chain " + to_string(head) + ": " + what);
    };
    auto descriptor_name = [&] {
        return (in_indirect_table ? "indirect descriptor " : "descriptor ") + to_string(index);
    };
    for (;;) {
        if (visited++ == table_entries) {
            fail("more than " + to_string(table_entries) + " descriptors in " +
                 (in_indirect_table ? "its indirect table" : "the descriptor table") + ": a loop?");
        }
        // One copy, and only the copy is checked and used: a guest rewriting
        // the descriptor meanwhile cannot slip a value past the checks.
        const auto descriptor = memory.read_object<Descriptor>(table + DescriptorTable::entry(index));
        if ((descriptor.flags & kDescriptorIndirect) != 0) {
            // Spec 2.7.5.3: one table per chain, reached by its last
            // descriptor; its WRITE flag means nothing and is ignored.
            if (in_indirect_table) {
                fail(descriptor_name() + " points at another indirect table");
            }
            if ((descriptor.flags & kDescriptorNext) != 0) {
                fail(descriptor_name() + " points at an indirect table and has NEXT set");
            }
            if (descriptor.length == 0 || descriptor.length % sizeof(Descriptor) != 0) {
                fail("indirect table length " + to_string(descriptor.length) +
                     " is not a non-zero multiple of 16");
            }
            const std::uint32_t entries = descriptor.length / sizeof(Descriptor);
            if (entries > state_.size) {
                fail("indirect table of " + to_string(entries) +
                     " descriptors is longer than the queue size " + to_string(state_.size));
            }
            if (region_holding(memory, descriptor.address, descriptor.length) == nullptr) {
                fail("indirect table " + range(descriptor.address, descriptor.length) +
                     " is not in guest RAM");
            }
            table = descriptor.address;
            table_entries = entries;
            in_indirect_table = true;
            index = 0;
            visited = 0;
            continue;
        }
        if (region_holding(memory, descriptor.address, descriptor.length) == nullptr) {
            fail("buffer " + range(descriptor.address, descriptor.length) + " of " + descriptor_name() +
                 " is not in guest RAM");
        }
        total_length += descriptor.length;
        if (total_length > kMaxChainLength) {
            fail("buffers add up to more than 4 GiB");
        }
        const GuestBuffer buffer{descriptor.address, descriptor.length};
        if ((descriptor.flags & kDescriptorWrite) != 0) {
            chain.writable.push_back(buffer);
        } else if (!chain.writable.empty()) {
            fail(descriptor_name() + " is device-readable but follows a device-writable one");
        } else {
            chain.readable.push_back(buffer);
        }
        if ((descriptor.flags & kDescriptorNext) == 0) {
            return chain;
        }
        if (descriptor.next >= table_entries) {
            fail(descriptor_name() + " links to " + to_string(descriptor.next) + ", past the table's " +
                 to_string(table_entries) + " entries");
        }
        index = descriptor.next;
    }
}

void Queue::add_used(GuestMemory& memory, std::uint16_t head, std::uint32_t written) {
    const UsedElement element{head, written};
    add_used(memory, std::span(&element, 1));
}

void Queue::add_used(GuestMemory& memory, std::span<const UsedElement> elements) {
    if (!state_.ready) {
        return;
    }
    for (const UsedElement& element : elements) {
        if (element.id >= state_.size) {
            throw std::invalid_argument(name_ + ": completing descriptor " + to_string(element.id) +
                                        " of a queue of " + to_string(state_.size));
        }
    }
    for (const UsedElement& element : elements) {
        const auto position = static_cast<std::uint16_t>(state_.next_used & position_mask());
        memory.write_object(state_.used_ring + UsedRing::entry(position), element);
        ++state_.next_used;
    }
    // Release: the driver reads the used elements, and the data the device
    // wrote into the chains' buffers, once it sees used.idx move; all of
    // those writes must be visible to it before the new index is.
    std::atomic_thread_fence(std::memory_order_release);
    store_ring_field(memory, state_.used_ring + UsedRing::kIdx, state_.next_used);
}

void Queue::add_used(GuestMemory& memory, const DescriptorChain& chain, std::uint32_t written) {
    chain.mark_written(memory, written);
    add_used(memory, chain.head, written);
}

bool Queue::needs_notification(const GuestMemory& memory) {
    if (!state_.ready) {
        return false;
    }
    // Full barrier: the new used.idx must be visible before used_event (or
    // the flags) is read. The driver writes used_event, then reads used.idx;
    // were our load to pass our store, each side could miss the other's
    // write: no interrupt, and a driver asleep on a used.idx it read stale.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const auto added = static_cast<std::uint16_t>(state_.next_used - state_.next_used_at_last_check);
    state_.next_used_at_last_check = state_.next_used;
    if (added == 0) {
        return false;
    }
    if (state_.event_idx) {
        const std::uint16_t used_event =
            load_ring_field(memory, state_.avail_ring + AvailRing::used_event(state_.size));
        // Whether the driver's used_event is among the entries added since the
        // last check, in the ring's wrapping 16-bit arithmetic (spec 2.7.10).
        return static_cast<std::uint16_t>(state_.next_used - used_event - 1) < added;
    }
    return (load_ring_field(memory, state_.avail_ring + AvailRing::kFlags) & kAvailNoInterrupt) == 0;
}

void Queue::disable_notification(GuestMemory& memory) {
    if (state_.ready && !state_.event_idx) {
        store_ring_field(memory, state_.used_ring + UsedRing::kFlags, kUsedNoNotify);
    }
}

bool Queue::enable_notification(GuestMemory& memory) {
    if (!state_.ready) {
        return false;
    }
    if (state_.event_idx) {
        store_ring_field(memory, state_.used_ring + UsedRing::avail_event(state_.size), state_.next_avail);
    } else {
        store_ring_field(memory, state_.used_ring + UsedRing::kFlags, 0);
    }
    // Full barrier: the request to be notified must be visible before
    // avail.idx is read again. The driver publishes avail.idx, then reads
    // avail_event or the flags; were our load to pass our store, a chain
    // offered in between would be missed by both sides.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return load_ring_field(memory, state_.avail_ring + AvailRing::kIdx) != state_.next_avail;
}

}  // namespace vim::vmm::virtio
