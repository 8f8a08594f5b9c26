#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <vector>

#include "vmm/memory/guest_memory.h"

namespace vim::vmm::virtio {

// One buffer of a chain: a guest range that Queue::pop() found inside one
// guest RAM region.
struct GuestBuffer {
    memory::GuestAddress address;
    std::uint32_t length;

    bool operator==(const GuestBuffer&) const = default;
};

// A descriptor chain the driver made available, with its indirect table (if
// any) already followed: the device's buffers in the driver's order, the
// device-readable ones first (the spec puts them there; pop() refuses a chain
// that does not). The device hands `head` back to Queue::add_used().
struct DescriptorChain {
    std::uint16_t head = 0;
    std::vector<GuestBuffer> readable;
    std::vector<GuestBuffer> writable;

    std::uint64_t readable_length() const noexcept;
    std::uint64_t writable_length() const noexcept;

    // Host views of the buffers, e.g. for io_uring. The readable ones come
    // from read_span() and must only be read; iovec just has no const.
    std::vector<iovec> readable_iovecs(const memory::GuestMemory& memory) const;
    // The writable ones come from write_span(), which marks their pages dirty
    // now: the VMM's writes are invisible to KVM's dirty log, so a migration
    // would otherwise never resend these pages. Get host pointers to buffers
    // the device writes only this way. A write that lands later (io_uring)
    // is marked again when the chain completes through
    // Queue::add_used(memory, chain, written).
    std::vector<iovec> writable_iovecs(memory::GuestMemory& memory) const;

    // Copies the readable bytes from `offset` on (as one stream across the
    // buffers) into `out`; returns how many there were, fewer than out.size()
    // when the chain ends first.
    std::size_t read(const memory::GuestMemory& memory, std::uint64_t offset,
                     std::span<std::uint8_t> out) const;
    // Copies `data` into the writable bytes from `offset` on and marks them
    // dirty; returns how many fitted.
    std::size_t write(memory::GuestMemory& memory, std::uint64_t offset,
                      std::span<const std::uint8_t> data) const;
    // Marks the first `length` writable bytes dirty.
    void mark_written(memory::GuestMemory& memory, std::uint64_t length) const;
};

}  // namespace vim::vmm::virtio
