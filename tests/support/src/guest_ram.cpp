#include "vim/testing/guest_ram.h"

#include <array>
#include <cstring>
#include <new>
#include <stdexcept>

#include "vmm/sys/hex.h"

namespace vim::testing {

using vmm::memory::GuestAddress;
using vmm::memory::GuestMemory;
using vmm::memory::kPageSize;
using vmm::memory::RegionLayout;

void GuestRam::PageAlignedDelete::operator()(std::uint8_t* buffer) const noexcept {
    ::operator delete[](buffer, std::align_val_t{kPageSize});
}

GuestRam::GuestRam(std::span<const RegionLayout> layout) : memory_(over_new_buffers(layout)) {}

GuestRam::GuestRam(GuestAddress start, std::uint64_t size)
    : GuestRam(std::array{RegionLayout{start, size}}) {}

GuestMemory GuestRam::over_new_buffers(std::span<const RegionLayout> layout) {
    std::vector<vmm::memory::Region> regions;
    for (const RegionLayout& region : layout) {
        if (region.size == 0 || region.size % kPageSize != 0 || region.start % kPageSize != 0) {
            throw std::invalid_argument("test guest RAM region at " + vmm::sys::hex(region.start) +
                                        " of size " + vmm::sys::hex(region.size) + " is not page-aligned");
        }
        auto* bytes = static_cast<std::uint8_t*>(::operator new[](region.size, std::align_val_t{kPageSize}));
        std::memset(bytes, 0, region.size);
        buffers_.emplace_back(bytes);
        regions.push_back({region.start, region.size, bytes});
    }
    return GuestMemory::over(std::move(regions));
}

std::vector<std::uint64_t> GuestRam::take_dirty_page_numbers(std::size_t index) {
    std::vector<std::uint64_t> pages;
    const std::vector<std::uint64_t> bitmap = memory_.take_dirty_pages(index);
    for (std::size_t word = 0; word < bitmap.size(); ++word) {
        for (unsigned bit = 0; bit < 64; ++bit) {
            if ((bitmap[word] >> bit & 1) != 0) {
                pages.push_back(word * 64 + bit);
            }
        }
    }
    return pages;
}

}  // namespace vim::testing
