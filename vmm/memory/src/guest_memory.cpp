#include "vmm/memory/guest_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <string>

#include "vmm/sys/error.h"
#include "vmm/sys/hex.h"

namespace vim::vmm::memory {
namespace {

using sys::hex;

// Rounded up: a region of a partial page (over() allows any size) still has its bit.
std::size_t bitmap_words(std::uint64_t size) { return ((size + kPageSize - 1) / kPageSize + 63) / 64; }

// KVM maps guest memory with 2 MiB pages where the host backs it with
// transparent huge pages and the guest and host addresses agree modulo 2 MiB.
constexpr std::uint64_t kHugePageSize = 2ull << 20;

using Bitmap = std::unique_ptr<std::atomic<std::uint64_t>[]>;

Bitmap zeroed_bitmap(std::uint64_t region_size) {
    const std::size_t words = bitmap_words(region_size);
    auto bitmap = std::make_unique<std::atomic<std::uint64_t>[]>(words);
    for (std::size_t i = 0; i < words; ++i) {
        bitmap[i].store(0, std::memory_order_relaxed);
    }
    return bitmap;
}

void set_pages(const Bitmap& bitmap, std::uint64_t first, std::uint64_t last) {
    for (std::uint64_t page = first; page <= last; ++page) {
        bitmap[page / 64].fetch_or(std::uint64_t{1} << (page % 64), std::memory_order_relaxed);
    }
}

// `size` bytes of the file from `offset` on, mapped (shared for the memfd,
// private for a snapshot's file: `sharing`) and starting on a
// 2 MiB boundary, advised for transparent huge pages: one fault per 2 MiB
// instead of 512 and fewer TLB misses for the guest, as QEMU's RAM gets. The
// file is sparse, so what the guest never touches costs nothing. The range
// lies inside a larger PROT_NONE reservation (appended to `mappings`, which
// owns it) that makes the alignment possible.
std::uint8_t* map_region(std::vector<sys::Mapping>& mappings, int fd, int sharing, std::uint64_t offset,
                         std::uint64_t size) {
    sys::Mapping reservation = sys::Mapping::map("guest RAM reservation", size + kHugePageSize - kPageSize,
                                                 PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
    const auto start = reinterpret_cast<std::uintptr_t>(reservation.data());
    void* aligned = reinterpret_cast<void*>((start + kHugePageSize - 1) & ~(kHugePageSize - 1));
    if (::mmap(aligned, size, PROT_READ | PROT_WRITE, sharing | MAP_NORESERVE | MAP_FIXED, fd,
               static_cast<off_t>(offset)) == MAP_FAILED) {
        sys::throw_errno("mmap guest RAM of " + std::to_string(size) + " bytes");
    }
    // Only advice: without transparent huge pages in the host kernel the
    // guest runs on 4 KiB pages.
    ::madvise(aligned, size, MADV_HUGEPAGE);
    mappings.push_back(std::move(reservation));
    return static_cast<std::uint8_t*>(aligned);
}

// The bytes a file backing `layout` holds; throws if a region is not page-aligned.
std::uint64_t file_size_for(std::span<const RegionLayout> layout) {
    std::uint64_t total = 0;
    for (const RegionLayout& region : layout) {
        if (region.size == 0 || region.size % kPageSize != 0 || region.start % kPageSize != 0) {
            throw std::invalid_argument("guest memory region at " + hex(region.start) + " of size " +
                                        hex(region.size) + " is not page-aligned");
        }
        total += region.size;
    }
    return total;
}

}  // namespace

GuestMemory GuestMemory::allocate(std::span<const RegionLayout> layout) {
    GuestMemory memory;
    const std::uint64_t total = file_size_for(layout);
    memory.fd_.reset(::memfd_create("guest-ram", MFD_CLOEXEC));
    if (!memory.fd_) {
        sys::throw_errno("memfd_create for guest RAM");
    }
    if (::ftruncate(memory.fd_.get(), static_cast<off_t>(total)) != 0) {
        sys::throw_errno("size guest RAM memfd to " + std::to_string(total) + " bytes");
    }
    std::uint64_t offset = 0;
    for (const RegionLayout& region : layout) {
        std::uint8_t* host = map_region(memory.mappings_, memory.fd_.get(), MAP_SHARED, offset, region.size);
        memory.regions_.push_back({region.start, region.size, host, offset});
        offset += region.size;
    }
    memory.init_dirty_bitmaps();
    return memory;
}

GuestMemory GuestMemory::map_file(std::span<const RegionLayout> layout, int fd) {
    const std::uint64_t total = file_size_for(layout);
    struct stat file {};
    if (::fstat(fd, &file) != 0) {
        sys::throw_errno("stat guest RAM file");
    }
    if (static_cast<std::uint64_t>(file.st_size) < total) {
        throw std::invalid_argument("guest RAM file of " + std::to_string(file.st_size) +
                                    " bytes is shorter than the " + std::to_string(total) +
                                    " bytes of its memory layout");
    }
    GuestMemory memory;
    std::uint64_t offset = 0;
    for (const RegionLayout& region : layout) {
        std::uint8_t* host = map_region(memory.mappings_, fd, MAP_PRIVATE, offset, region.size);
        memory.regions_.push_back({region.start, region.size, host, offset});
        offset += region.size;
    }
    memory.init_dirty_bitmaps();
    return memory;
}

bool GuestMemory::huge_pages_possible() {
    std::ifstream setting("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
    std::string line;
    std::getline(setting, line);
    // The bracketed word is the one in force: "always within_size [advise] never deny force".
    return !line.empty() && line.find("[never]") == std::string::npos &&
           line.find("[deny]") == std::string::npos;
}

GuestMemory GuestMemory::over(std::vector<Region> regions) {
    GuestMemory memory;
    memory.regions_ = std::move(regions);
    memory.init_dirty_bitmaps();
    return memory;
}

void GuestMemory::init_dirty_bitmaps() {
    std::sort(regions_.begin(), regions_.end(),
              [](const Region& a, const Region& b) { return a.start < b.start; });
    for (std::size_t i = 1; i < regions_.size(); ++i) {
        if (regions_[i - 1].start + regions_[i - 1].size > regions_[i].start) {
            throw std::invalid_argument("guest memory regions at " + hex(regions_[i - 1].start) + " and " +
                                        hex(regions_[i].start) + " overlap");
        }
    }
    for (const Region& region : regions_) {
        dirty_.push_back(zeroed_bitmap(region.size));
        discarded_.push_back(zeroed_bitmap(region.size));
    }
}

std::uint64_t GuestMemory::total_size() const noexcept {
    std::uint64_t total = 0;
    for (const Region& region : regions_) {
        total += region.size;
    }
    return total;
}

std::size_t GuestMemory::region_index(GuestAddress address, std::uint64_t length) const {
    for (std::size_t i = 0; i < regions_.size(); ++i) {
        if (regions_[i].contains(address, length)) {
            return i;
        }
    }
    throw GuestMemoryError("guest range " + hex(address) + "+" + hex(length) + " is not in guest RAM");
}

std::span<const std::uint8_t> GuestMemory::read_span(GuestAddress address, std::uint64_t length) const {
    const Region& region = regions_[region_index(address, length)];
    return {region.host + (address - region.start), length};
}

std::span<std::uint8_t> GuestMemory::write_span(GuestAddress address, std::uint64_t length) {
    std::size_t index = region_index(address, length);
    mark_dirty_in(index, address, length);
    const Region& region = regions_[index];
    return {region.host + (address - region.start), length};
}

void GuestMemory::read(GuestAddress address, std::span<std::uint8_t> out) const {
    auto source = read_span(address, out.size());
    std::memcpy(out.data(), source.data(), out.size());
}

void GuestMemory::write(GuestAddress address, std::span<const std::uint8_t> data) {
    auto target = write_span(address, data.size());
    std::memcpy(target.data(), data.data(), data.size());
}

void GuestMemory::mark_dirty(GuestAddress address, std::uint64_t length) {
    if (length != 0) {
        mark_dirty_in(region_index(address, length), address, length);
    }
}

void GuestMemory::mark_dirty_in(std::size_t index, GuestAddress address, std::uint64_t length) {
    if (length == 0) {
        return;
    }
    const Region& region = regions_[index];
    std::uint64_t first = (address - region.start) / kPageSize;
    std::uint64_t last = (address - region.start + length - 1) / kPageSize;
    set_pages(dirty_[index], first, last);
    // Written by the VMM: the page holds data a migration must read. Loaded
    // first, as nearly every page written was never discarded.
    for (std::uint64_t page = first; page <= last; ++page) {
        const std::uint64_t bit = std::uint64_t{1} << (page % 64);
        std::atomic<std::uint64_t>& word = discarded_[index][page / 64];
        if ((word.load(std::memory_order_relaxed) & bit) != 0) {
            word.fetch_and(~bit, std::memory_order_relaxed);
        }
    }
}

std::vector<std::uint64_t> GuestMemory::take_dirty_pages(std::size_t index) {
    const Region& region = regions_.at(index);
    std::vector<std::uint64_t> pages(bitmap_words(region.size));
    for (std::size_t word = 0; word < pages.size(); ++word) {
        pages[word] = dirty_[index][word].exchange(0, std::memory_order_relaxed);
    }
    return pages;
}

void GuestMemory::discard(GuestAddress address, std::uint64_t length) {
    if (length == 0) {
        return;
    }
    const std::string range = "guest range " + hex(address) + "+" + hex(length);
    if (address % kPageSize != 0 || length % kPageSize != 0) {
        throw GuestMemoryError("discard " + range + ": not page-aligned");
    }
    std::size_t index;
    try {
        index = region_index(address, length);
    } catch (const GuestMemoryError&) {
        throw GuestMemoryError("discard " + range + ": not in guest RAM");
    }
    const Region& region = regions_[index];
    const std::uint64_t offset = address - region.start;
    if (fd_) {
        // KEEP_SIZE: the memfd keeps its size, only the pages go. The kernel
        // unmaps them from every mapping, KVM's included (MMU notifiers).
        if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                        static_cast<off_t>(region.file_offset + offset), static_cast<off_t>(length)) != 0) {
            sys::throw_errno("discard " + range + ": punch a hole in the guest RAM memfd");
        }
    } else {
        std::memset(region.host + offset, 0, length);
    }
    const std::uint64_t first = offset / kPageSize;
    const std::uint64_t last = first + length / kPageSize - 1;
    set_pages(dirty_[index], first, last);
    set_pages(discarded_[index], first, last);
}

bool GuestMemory::discarded(GuestAddress address) const {
    const std::size_t index = region_index(address, 1);
    const std::uint64_t page = (address - regions_[index].start) / kPageSize;
    return (discarded_[index][page / 64].load(std::memory_order_relaxed) >> (page % 64) & 1) != 0;
}

std::vector<std::uint64_t> GuestMemory::discarded_pages(std::size_t index) const {
    std::vector<std::uint64_t> pages(bitmap_words(regions_.at(index).size));
    for (std::size_t word = 0; word < pages.size(); ++word) {
        pages[word] = discarded_[index][word].load(std::memory_order_relaxed);
    }
    return pages;
}

std::vector<std::uint64_t> GuestMemory::hole_pages(std::size_t index) const {
    const Region& region = regions_.at(index);
    const std::uint64_t pages = region.size / kPageSize;
    std::vector<std::uint64_t> holes(bitmap_words(region.size));
    if (!fd_) {
        return holes;
    }
    auto mark = [&](std::uint64_t first, std::uint64_t end) {
        for (std::uint64_t page = first; page < end; ++page) {
            holes[page / 64] |= std::uint64_t{1} << (page % 64);
        }
    };
    const std::uint64_t region_end = region.file_offset + region.size;
    std::uint64_t offset = region.file_offset;
    while (offset < region_end) {
        const off_t data = ::lseek(fd_.get(), static_cast<off_t>(offset), SEEK_DATA);
        if (data < 0 && errno == ENXIO) {
            break;  // no data from here to the end of the file
        }
        const off_t hole = data < 0 ? -1 : ::lseek(fd_.get(), data, SEEK_HOLE);
        if (hole < 0) {
            sys::throw_errno("find the data in guest RAM");
        }
        const auto data_start = std::min(static_cast<std::uint64_t>(data), region_end);
        mark((offset - region.file_offset) / kPageSize, (data_start - region.file_offset) / kPageSize);
        // A page holding any data is not a hole.
        offset = std::min((static_cast<std::uint64_t>(hole) + kPageSize - 1) & ~(kPageSize - 1), region_end);
    }
    mark((offset - region.file_offset) / kPageSize, pages);
    return holes;
}

void GuestMemory::clear_discarded(std::size_t index, std::span<const std::uint64_t> pages) {
    const std::size_t words = std::min(pages.size(), bitmap_words(regions_.at(index).size));
    for (std::size_t word = 0; word < words; ++word) {
        if (pages[word] != 0) {
            discarded_[index][word].fetch_and(~pages[word], std::memory_order_relaxed);
        }
    }
}

}  // namespace vim::vmm::memory
