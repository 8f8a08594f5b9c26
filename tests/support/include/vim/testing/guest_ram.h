#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "vmm/memory/guest_memory.h"

namespace vim::testing {

// Guest RAM for tests on plain heap buffers, one page-aligned buffer per
// region: a host access past a region's end is a heap overflow that
// AddressSanitizer reports, and the test needs neither mmap nor a VM.
class GuestRam {
public:
    // `layout` as for GuestMemory::allocate(): page-aligned, non-overlapping.
    explicit GuestRam(std::span<const vmm::memory::RegionLayout> layout);
    // One region of `size` bytes at `start`.
    GuestRam(vmm::memory::GuestAddress start, std::uint64_t size);

    vmm::memory::GuestMemory& memory() noexcept { return memory_; }
    const vmm::memory::GuestMemory& memory() const noexcept { return memory_; }

    // The pages of region `index` written since the last call, as page
    // numbers inside the region (GuestMemory::take_dirty_pages() unpacked).
    std::vector<std::uint64_t> take_dirty_page_numbers(std::size_t index = 0);

private:
    struct PageAlignedDelete {
        void operator()(std::uint8_t* buffer) const noexcept;
    };
    using Buffer = std::unique_ptr<std::uint8_t[], PageAlignedDelete>;

    vmm::memory::GuestMemory over_new_buffers(std::span<const vmm::memory::RegionLayout> layout);

    std::vector<Buffer> buffers_;  // before memory_, which points into them
    vmm::memory::GuestMemory memory_;
};

}  // namespace vim::testing
