#include "vmm/virtio/descriptor_chain.h"

#include <algorithm>

namespace vim::vmm::virtio {
namespace {

std::uint64_t total_length(const std::vector<GuestBuffer>& buffers) {
    std::uint64_t total = 0;
    for (const GuestBuffer& buffer : buffers) {
        total += buffer.length;
    }
    return total;
}

// Calls `part(address, length, done)` for each piece of the stream of
// `buffers` from `offset` on, up to `length` bytes; `done` counts the bytes
// before the piece. Returns the bytes covered.
template <typename Part>
std::uint64_t for_each_part(const std::vector<GuestBuffer>& buffers, std::uint64_t offset,
                            std::uint64_t length, Part&& part) {
    std::uint64_t done = 0;
    for (const GuestBuffer& buffer : buffers) {
        if (done == length) {
            break;
        }
        if (offset >= buffer.length) {
            offset -= buffer.length;
            continue;
        }
        const std::uint64_t piece = std::min<std::uint64_t>(buffer.length - offset, length - done);
        part(buffer.address + offset, piece, done);
        done += piece;
        offset = 0;
    }
    return done;
}

}  // namespace

std::uint64_t DescriptorChain::readable_length() const noexcept { return total_length(readable); }

std::uint64_t DescriptorChain::writable_length() const noexcept { return total_length(writable); }

std::vector<iovec> DescriptorChain::readable_iovecs(const memory::GuestMemory& memory) const {
    std::vector<iovec> iovecs;
    iovecs.reserve(readable.size());
    for (const GuestBuffer& buffer : readable) {
        auto bytes = memory.read_span(buffer.address, buffer.length);
        iovecs.push_back({const_cast<std::uint8_t*>(bytes.data()), bytes.size()});
    }
    return iovecs;
}

std::vector<iovec> DescriptorChain::writable_iovecs(memory::GuestMemory& memory) const {
    std::vector<iovec> iovecs;
    iovecs.reserve(writable.size());
    for (const GuestBuffer& buffer : writable) {
        auto bytes = memory.write_span(buffer.address, buffer.length);
        iovecs.push_back({bytes.data(), bytes.size()});
    }
    return iovecs;
}

std::size_t DescriptorChain::read(const memory::GuestMemory& memory, std::uint64_t offset,
                                  std::span<std::uint8_t> out) const {
    return for_each_part(readable, offset, out.size(),
                         [&](memory::GuestAddress address, std::uint64_t length, std::uint64_t done) {
                             memory.read(address, out.subspan(done, length));
                         });
}

std::size_t DescriptorChain::write(memory::GuestMemory& memory, std::uint64_t offset,
                                   std::span<const std::uint8_t> data) const {
    return for_each_part(writable, offset, data.size(),
                         [&](memory::GuestAddress address, std::uint64_t length, std::uint64_t done) {
                             memory.write(address, data.subspan(done, length));
                         });
}

void DescriptorChain::mark_written(memory::GuestMemory& memory, std::uint64_t length) const {
    for_each_part(writable, 0, length, [&](memory::GuestAddress address, std::uint64_t piece, std::uint64_t) {
        memory.mark_dirty(address, piece);
    });
}

}  // namespace vim::vmm::virtio
