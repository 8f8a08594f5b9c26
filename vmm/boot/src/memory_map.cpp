#include "vmm/boot/memory_map.h"

#include <algorithm>
#include <stdexcept>

#include "bytes.h"
#include "vmm/boot/layout.h"

namespace vim::vmm::boot {

std::vector<memory::RegionLayout> ram_layout(std::uint64_t ram_size) {
    if (ram_size == 0 || ram_size % memory::kPageSize != 0) {
        throw std::invalid_argument("guest RAM size " + std::to_string(ram_size) +
                                    " is not a positive multiple of the " +
                                    std::to_string(memory::kPageSize) + "-byte page");
    }
    constexpr std::uint64_t kBelowHole = layout::kMmioHoleStart;
    if (ram_size <= kBelowHole) {
        return {{0, ram_size}};
    }
    return {{0, kBelowHole}, {layout::kMmioHoleEnd, ram_size - kBelowHole}};
}

std::vector<E820Entry> e820_map(std::span<const memory::RegionLayout> ram) {
    std::vector<memory::RegionLayout> regions(ram.begin(), ram.end());
    std::sort(regions.begin(), regions.end(),
              [](const memory::RegionLayout& a, const memory::RegionLayout& b) { return a.start < b.start; });
    if (regions.empty() || regions.front().start != 0 || regions.front().size <= layout::kKernelLoadAddress) {
        throw std::invalid_argument("guest RAM must start at address 0 and extend past " +
                                    detail::hex(layout::kKernelLoadAddress));
    }
    std::vector<E820Entry> entries;
    for (const memory::RegionLayout& region : regions) {
        const std::uint64_t end = region.start + region.size;
        if (region.start < layout::kEbdaStart) {
            entries.push_back(
                {region.start, std::min(end, layout::kEbdaStart) - region.start, E820Type::Ram});
            entries.push_back(
                {layout::kEbdaStart, layout::kKernelLoadAddress - layout::kEbdaStart, E820Type::Reserved});
        }
        if (end > layout::kKernelLoadAddress) {
            const std::uint64_t start = std::max(region.start, layout::kKernelLoadAddress);
            entries.push_back({start, end - start, E820Type::Ram});
        }
    }
    return entries;
}

}  // namespace vim::vmm::boot
