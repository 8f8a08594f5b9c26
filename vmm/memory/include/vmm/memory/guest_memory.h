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

namespace vmm::memory {

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
};

}  // namespace vmm::memory
