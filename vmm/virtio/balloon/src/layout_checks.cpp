// protocol.h against the kernel's own definitions, so a typo in a constant
// fails the build instead of a guest's balloon.
#include <linux/virtio_balloon.h>

#include <cstddef>

#include "vmm/virtio/balloon/protocol.h"

namespace vim::vmm::virtio::balloon {

static_assert(kFeatureStatsQueue == VIRTIO_BALLOON_F_STATS_VQ);
static_assert(kFeatureDeflateOnOom == VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
static_assert(kFeatureFreePageHint == VIRTIO_BALLOON_F_FREE_PAGE_HINT);
static_assert(kFeatureFreePageReporting == VIRTIO_BALLOON_F_REPORTING);
static_assert(kPfnShift == VIRTIO_BALLOON_PFN_SHIFT);

static_assert(offsetof(Config, num_pages) == offsetof(virtio_balloon_config, num_pages));
static_assert(offsetof(Config, actual) == offsetof(virtio_balloon_config, actual));
static_assert(kStatEntryBytes == sizeof(virtio_balloon_stat));

static_assert(VIRTIO_BALLOON_S_SWAP_IN == 0 && kStatNames[0] == "swap_in");
static_assert(VIRTIO_BALLOON_S_MAJFLT == 2 && kStatNames[2] == "major_faults");
static_assert(VIRTIO_BALLOON_S_MEMFREE == 4 && kStatNames[4] == "free_memory");
static_assert(VIRTIO_BALLOON_S_MEMTOT == 5 && kStatNames[5] == "total_memory");
static_assert(VIRTIO_BALLOON_S_AVAIL == 6 && kStatNames[6] == "available_memory");
static_assert(VIRTIO_BALLOON_S_CACHES == 7 && kStatNames[7] == "disk_caches");
static_assert(VIRTIO_BALLOON_S_HTLB_PGFAIL == 9 && kStatNames[9] == "hugetlb_failures");

}  // namespace vim::vmm::virtio::balloon
