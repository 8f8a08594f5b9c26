#include "vim/testing/virtio_driver.h"

#include <algorithm>
#include <stdexcept>

#include "vmm/sys/hex.h"

namespace vim::testing {

using vmm::memory::GuestAddress;
using vmm::sys::hex;
using namespace vim::vmm::virtio;

namespace {

std::uint64_t align_up(std::uint64_t value, std::uint64_t alignment) {
    return (value + alignment - 1) / alignment * alignment;
}

Descriptor descriptor_for(const DriverBuffer& buffer) {
    return {buffer.address, buffer.length, buffer.device_writable ? kDescriptorWrite : std::uint16_t{0}, 0};
}

}  // namespace

RingLayout RingLayout::packed(GuestAddress start, std::uint16_t queue_size) {
    RingLayout rings{};
    rings.descriptor_table = align_up(start, DescriptorTable::kAlignment);
    rings.avail_ring =
        align_up(rings.descriptor_table + DescriptorTable::size(queue_size), AvailRing::kAlignment);
    rings.used_ring = align_up(rings.avail_ring + AvailRing::size(queue_size), UsedRing::kAlignment);
    return rings;
}

VirtqueueDriver::VirtqueueDriver(vmm::memory::GuestMemory& memory, std::uint16_t size,
                                 const RingLayout& rings, GuestAddress data, std::uint64_t data_size)
    : memory_(memory),
      size_(size),
      descriptor_table_(rings.descriptor_table),
      avail_ring_(rings.avail_ring),
      used_ring_(rings.used_ring),
      data_next_(data),
      data_end_(data + data_size) {
    if (size == 0) {
        throw std::invalid_argument("test virtio driver: a queue of size 0 has no descriptor to offer");
    }
}

void VirtqueueDriver::configure(Queue& queue, bool event_idx) const {
    queue.set_size(size_);
    queue.set_descriptor_table(descriptor_table_);
    queue.set_avail_ring(avail_ring_);
    queue.set_used_ring(used_ring_);
    queue.set_event_idx(event_idx);
    queue.enable(memory_);
}

QueueState VirtqueueDriver::queue_state(bool event_idx) const {
    QueueState state;
    state.size = size_;
    state.ready = true;
    state.descriptor_table = descriptor_table_;
    state.avail_ring = avail_ring_;
    state.used_ring = used_ring_;
    state.next_avail = avail_idx();
    state.next_used = used_idx();
    state.next_used_at_last_check = state.next_used;
    state.event_idx = event_idx;
    return state;
}

void VirtqueueDriver::start_indices_at(std::uint16_t index) {
    set_avail_idx(index);
    write<std::uint16_t>(used_ring_ + UsedRing::kIdx, index);
    last_seen_used_ = index;
}

GuestAddress VirtqueueDriver::allocate(std::uint64_t length, std::uint64_t alignment) {
    const GuestAddress address = align_up(data_next_, alignment);
    if (address > data_end_ || length > data_end_ - address) {
        throw std::length_error("test virtio driver: no room for " + hex(length) + " bytes in its data area");
    }
    data_next_ = address + length + kGapBetweenBuffers;
    return address;
}

DriverBuffer VirtqueueDriver::readable(std::span<const std::uint8_t> contents) {
    const DriverBuffer buffer{allocate(contents.size()), static_cast<std::uint32_t>(contents.size()), false};
    std::ranges::copy(contents, guest_bytes(buffer.address, buffer.length).begin());
    return buffer;
}

DriverBuffer VirtqueueDriver::writable(std::uint32_t length) {
    const DriverBuffer buffer{allocate(length), length, true};
    std::ranges::fill(guest_bytes(buffer.address, length), kUnwrittenByte);
    return buffer;
}

std::vector<std::uint8_t> VirtqueueDriver::contents(const DriverBuffer& buffer) const {
    auto bytes = guest_bytes(buffer.address, buffer.length);
    return {bytes.begin(), bytes.end()};
}

std::uint16_t VirtqueueDriver::add_chain(std::span<const DriverBuffer> buffers) {
    const std::uint16_t head = write_chain(buffers);
    offer(head);
    return head;
}

std::uint16_t VirtqueueDriver::add_indirect_chain(std::span<const DriverBuffer> buffers) {
    const GuestAddress table = write_indirect_table(buffers);
    const std::uint16_t head = take_free_descriptor();
    set_descriptor(head, {table, static_cast<std::uint32_t>(buffers.size() * sizeof(Descriptor)),
                          kDescriptorIndirect, 0});
    offer(head);
    return head;
}

std::uint16_t VirtqueueDriver::take_free_descriptor() {
    const std::uint16_t index = next_free_descriptor_;
    next_free_descriptor_ = static_cast<std::uint16_t>((next_free_descriptor_ + 1) % size_);
    return index;
}

std::uint16_t VirtqueueDriver::write_chain(std::span<const DriverBuffer> buffers) {
    if (buffers.empty()) {
        throw std::invalid_argument("test virtio driver: a chain needs a buffer");
    }
    std::vector<std::uint16_t> indices(buffers.size());
    std::ranges::generate(indices, [this] { return take_free_descriptor(); });
    for (std::size_t i = 0; i < buffers.size(); ++i) {
        Descriptor descriptor = descriptor_for(buffers[i]);
        if (i + 1 < buffers.size()) {
            descriptor.flags |= kDescriptorNext;
            descriptor.next = indices[i + 1];
        }
        set_descriptor(indices[i], descriptor);
    }
    return indices.front();
}

GuestAddress VirtqueueDriver::write_indirect_table(std::span<const DriverBuffer> buffers) {
    const GuestAddress table = allocate(buffers.size() * sizeof(Descriptor), DescriptorTable::kAlignment);
    for (std::size_t i = 0; i < buffers.size(); ++i) {
        Descriptor descriptor = descriptor_for(buffers[i]);
        if (i + 1 < buffers.size()) {
            descriptor.flags |= kDescriptorNext;
            descriptor.next = static_cast<std::uint16_t>(i + 1);
        }
        write(table + DescriptorTable::entry(static_cast<std::uint16_t>(i)), descriptor);
    }
    return table;
}

void VirtqueueDriver::offer(std::uint16_t head) {
    const std::uint16_t index = avail_idx();
    set_avail_entry(index, head);
    set_avail_idx(static_cast<std::uint16_t>(index + 1));
}

Descriptor VirtqueueDriver::descriptor(std::uint16_t index) const {
    return read<Descriptor>(descriptor_table_ + DescriptorTable::entry(index));
}

void VirtqueueDriver::set_descriptor(std::uint16_t index, const Descriptor& descriptor) {
    write(descriptor_table_ + DescriptorTable::entry(index), descriptor);
}

void VirtqueueDriver::set_avail_entry(std::uint16_t position, std::uint16_t head) {
    write(avail_ring_ + AvailRing::entry(static_cast<std::uint16_t>(position % size_)), head);
}

std::uint16_t VirtqueueDriver::avail_idx() const {
    return read<std::uint16_t>(avail_ring_ + AvailRing::kIdx);
}

void VirtqueueDriver::set_avail_idx(std::uint16_t index) { write(avail_ring_ + AvailRing::kIdx, index); }

void VirtqueueDriver::set_avail_flags(std::uint16_t flags) { write(avail_ring_ + AvailRing::kFlags, flags); }

void VirtqueueDriver::set_used_event(std::uint16_t index) {
    write(avail_ring_ + AvailRing::used_event(size_), index);
}

std::uint16_t VirtqueueDriver::used_idx() const { return read<std::uint16_t>(used_ring_ + UsedRing::kIdx); }

std::uint16_t VirtqueueDriver::used_flags() const {
    return read<std::uint16_t>(used_ring_ + UsedRing::kFlags);
}

std::uint16_t VirtqueueDriver::avail_event() const {
    return read<std::uint16_t>(used_ring_ + UsedRing::avail_event(size_));
}

UsedElement VirtqueueDriver::used_element(std::uint16_t position) const {
    return read<UsedElement>(used_ring_ + UsedRing::entry(static_cast<std::uint16_t>(position % size_)));
}

std::vector<UsedElement> VirtqueueDriver::take_used() {
    std::vector<UsedElement> used;
    for (const std::uint16_t end = used_idx(); last_seen_used_ != end; ++last_seen_used_) {
        used.push_back(used_element(last_seen_used_));
    }
    return used;
}

std::span<std::uint8_t> VirtqueueDriver::guest_bytes(GuestAddress address, std::uint64_t length) const {
    for (const vmm::memory::Region& region : memory_.regions()) {
        if (region.contains(address, length)) {
            return {region.host + (address - region.start), length};
        }
    }
    throw std::out_of_range("test virtio driver: guest range " + hex(address) + "+" + hex(length) +
                            " is not in guest RAM");
}

}  // namespace vim::testing
