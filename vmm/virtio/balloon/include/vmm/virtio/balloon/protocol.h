#pragma once

// What a virtio-balloon driver and device exchange (spec 5.5): feature bits,
// page frame numbers, memory statistics, configuration space. Little-endian,
// read as native integers (split_ring.h checks the host is little-endian).

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace vim::vmm::virtio::balloon {

// Device feature bits (spec 5.5.3).
inline constexpr unsigned kFeatureStatsQueue = 1;
inline constexpr unsigned kFeatureDeflateOnOom = 2;
inline constexpr unsigned kFeatureFreePageHint = 3;  // not offered: its queue only shifts indices
inline constexpr unsigned kFeatureFreePageReporting = 5;

// The inflate and deflate queues carry arrays of 32-bit page frame numbers
// of 4 KiB pages, whatever the guest's own page size.
inline constexpr unsigned kPfnShift = 12;
inline constexpr std::uint64_t kBalloonPageSize = std::uint64_t{1} << kPfnShift;

// struct virtio_balloon_config (spec 5.5.4), as far as the offered features
// reach: the target the device sets and the size the driver reached.
struct Config {
    std::uint32_t num_pages;
    std::uint32_t actual;
};
static_assert(sizeof(Config) == 8);

// One entry of the stats queue's buffer (spec 5.5.6.3): packed, 10 bytes.
inline constexpr std::size_t kStatEntryBytes = 10;

// The statistics' names by tag: the spec's 0-9 in bytes or counts, and the
// reclaim figures Linux 6.12 added as 10-15. A driver may send fewer, and a
// newer one tags the device does not know.
inline constexpr std::array<std::string_view, 16> kStatNames{
    "swap_in",           // bytes swapped in
    "swap_out",          // bytes swapped out
    "major_faults",      // count
    "minor_faults",      // count
    "free_memory",       // bytes
    "total_memory",      // bytes
    "available_memory",  // bytes, as MemAvailable in /proc/meminfo
    "disk_caches",       // bytes
    "hugetlb_allocations",
    "hugetlb_failures",
    "oom_kills",
    "alloc_stalls",
    "async_scans",
    "direct_scans",
    "async_reclaims",
    "direct_reclaims",
};

}  // namespace vim::vmm::virtio::balloon
