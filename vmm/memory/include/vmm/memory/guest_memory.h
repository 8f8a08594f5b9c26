#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "vmm/sys/fd.h"
#include "vmm/sys/mapping.h"

namespace vim::vmm::memory {

using GuestAddress = std::uint64_t;
inline constexpr std::uint64_t kPageSize = 4096;

// A guest-physical range the VMM was asked to touch that is not guest RAM,
// or a request that would cross the end of a region.
class GuestMemoryError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct RegionLayout {
    GuestAddress start;
    std::uint64_t size;  // a multiple of kPageSize
};

struct Region {
    GuestAddress start;
    std::uint64_t size;
    std::uint8_t* host;
    // Where the region lies in GuestMemory::fd(); 0 for memory without a file.
    std::uint64_t file_offset = 0;

    bool contains(GuestAddress address, std::uint64_t length) const noexcept {
        return address >= start && length <= size && address - start <= size - length;
    }
};

// Guest RAM: a few non-overlapping regions. Every access the VMM makes goes
// through a bounds check, so nothing a guest puts in a descriptor can make the
// VMM read or write outside guest RAM. Writes made here are recorded in a
// dirty bitmap of the VMM's own: KVM's dirty log only sees the guest's writes.
class GuestMemory {
public:
    // One memfd, zero-filled, mapped shared region after region as laid out:
    // a snapshot, a restore, a same-host migration or vhost can then reach
    // guest RAM by file descriptor. Each region starts on a 2 MiB boundary and
    // is advised for transparent huge pages, which back it where the host's
    // shmem_enabled allows (see huge_pages_possible()).
    static GuestMemory allocate(std::span<const RegionLayout> layout);
    // A snapshot's memory file, laid out as allocate() lays out its memfd,
    // mapped private: pages are read from the file when the guest first
    // touches them, and writes stay in this process, never reaching the file.
    // fd() is -1, and discard() zeroes pages in place, as the file is not
    // this memory's to change. Throws if the file is shorter than the layout.
    static GuestMemory map_file(std::span<const RegionLayout> layout, int fd);
    // Over memory the caller owns and keeps alive (tests, plain buffers).
    static GuestMemory over(std::vector<Region> regions);

    GuestMemory(GuestMemory&&) noexcept = default;
    GuestMemory& operator=(GuestMemory&&) noexcept = default;

    const std::vector<Region>& regions() const noexcept { return regions_; }
    // The memfd behind allocate()d memory; -1 for memory made by over().
    int fd() const noexcept { return fd_.get(); }
    std::uint64_t total_size() const noexcept;

    // The `length` bytes at `address`, which must lie inside one region;
    // throws GuestMemoryError otherwise.
    std::span<const std::uint8_t> read_span(GuestAddress address, std::uint64_t length) const;
    // As read_span, and marks the range dirty: the caller is about to write it.
    std::span<std::uint8_t> write_span(GuestAddress address, std::uint64_t length);

    void read(GuestAddress address, std::span<std::uint8_t> out) const;
    void write(GuestAddress address, std::span<const std::uint8_t> data);

    template <typename T>
    T read_object(GuestAddress address) const {
        static_assert(std::is_trivially_copyable_v<T>);
        T value;
        std::memcpy(&value, read_span(address, sizeof(T)).data(), sizeof(T));
        return value;
    }
    template <typename T>
    void write_object(GuestAddress address, const T& value) {
        static_assert(std::is_trivially_copyable_v<T>);
        std::memcpy(write_span(address, sizeof(T)).data(), &value, sizeof(T));
    }

    // Records that the VMM wrote [address, address + length).
    void mark_dirty(GuestAddress address, std::uint64_t length);
    // The pages of region `index` the VMM wrote since the last call, one bit
    // per page; clears them. Safe against concurrent mark_dirty().
    std::vector<std::uint64_t> take_dirty_pages(std::size_t index);

    // Gives the pages of [address, address + length) back to the host (a
    // balloon's pages, free pages the guest reported): a hole punched in the
    // memfd, as MADV_DONTNEED does not free the pages of a shared memfd. They
    // read as zero and cost nothing until written again. Memory made by over()
    // has no file: its bytes are zeroed in place. The range must be
    // page-aligned and inside one region (GuestMemoryError otherwise); a
    // refusal by the kernel throws std::system_error.
    //
    // The pages are marked dirty, as their contents changed and a migration
    // must send them again, and discarded: it may send them as zero pages
    // without reading them (reading a hole would allocate a page again).
    void discard(GuestAddress address, std::uint64_t length);
    // Whether the page holding `address` was discarded and has not been
    // written since, as far as this object knows: mark_dirty() (the VMM's
    // writes) and clear_discarded() (the guest's) end it. Throws
    // GuestMemoryError outside guest RAM.
    bool discarded(GuestAddress address) const;
    // The discarded pages of region `index`, one bit per page, as
    // take_dirty_pages() lays them out; leaves them as they are.
    std::vector<std::uint64_t> discarded_pages(std::size_t index) const;
    // The guest wrote the pages set in `pages` (one bit per page of region
    // `index`, as KVM's dirty log gives them): they hold data again. Dirty
    // tracking calls this with each dirty log before it consults
    // discarded_pages(), so a page written after its discard is read and sent.
    void clear_discarded(std::size_t index, std::span<const std::uint64_t> pages);

    // The pages of region `index` that the memfd holds nothing for (never
    // written, or discarded), one bit per page as take_dirty_pages() lays
    // them out: they read as zero, and reading one would allocate it. What
    // the kernel says now, not a record: a page may fill the moment after.
    // None for memory without a memfd.
    std::vector<std::uint64_t> hole_pages(std::size_t index) const;

    // Whether the host's transparent huge pages can back shared memory (its
    // /sys/kernel/mm/transparent_hugepage/shmem_enabled is not never/deny).
    static bool huge_pages_possible();

private:
    GuestMemory() = default;
    // The index of the region holding the whole range; throws GuestMemoryError.
    std::size_t region_index(GuestAddress address, std::uint64_t length) const;
    // mark_dirty for a range already known to lie in region `index`.
    void mark_dirty_in(std::size_t index, GuestAddress address, std::uint64_t length);
    void init_dirty_bitmaps();

    // Declared before the mappings, so they are unmapped before it closes.
    sys::Fd fd_;
    std::vector<sys::Mapping> mappings_;
    std::vector<Region> regions_;
    std::vector<std::unique_ptr<std::atomic<std::uint64_t>[]>> dirty_;
    std::vector<std::unique_ptr<std::atomic<std::uint64_t>[]>> discarded_;
};

}  // namespace vim::vmm::memory
