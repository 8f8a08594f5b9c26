// Dirty tracking over a fake VM: KVM's log merged with the VMM's own writes,
// cleared in chunks, and logging on only between start() and stop().
#include "migration/dirty_tracker.h"

#include <gtest/gtest.h>

#include <vector>

#include "fakes/fake_vm.h"

namespace {

using namespace vim::migration;
using vim::testing::FakeVm;
using vim::vmm::memory::GuestMemory;
using vim::vmm::memory::kPageSize;

constexpr std::uint64_t kChunkPages = 128;
constexpr std::uint64_t kLowPages = 3 * kChunkPages + 100;  // chunks and a partial one
constexpr std::uint64_t kHighStart = 0x100000000;

struct Machine {
    std::vector<std::uint8_t> low = std::vector<std::uint8_t>(kLowPages * kPageSize);
    std::vector<std::uint8_t> high = std::vector<std::uint8_t>(64 * kPageSize);
    GuestMemory memory =
        GuestMemory::over({{0, low.size(), low.data()}, {kHighStart, high.size(), high.data()}});
    FakeVm vm;

    Machine() {
        std::uint32_t slot = 0;
        for (const auto& region : memory.regions()) {
            vm.set_memory_slot({slot++, region.start, region.size, region.host});
        }
    }
};

bool is_set(const std::vector<std::uint64_t>& bitmap, std::uint64_t page) {
    return (bitmap[page / 64] >> (page % 64) & 1) != 0;
}

TEST(MigrationDirtyTracker, LoggingOnOnlyWhileTracking) {
    Machine machine;
    {
        DirtyTracker tracker(machine.vm, machine.memory, kChunkPages);
        tracker.start();
        EXPECT_TRUE(machine.vm.slots[0].log_dirty);
        EXPECT_TRUE(machine.vm.slots[1].log_dirty);
        EXPECT_EQ(machine.vm.slots[1].guest_address, kHighStart);
        tracker.stop();
        EXPECT_FALSE(machine.vm.slots[0].log_dirty);
        tracker.start();
    }
    EXPECT_FALSE(machine.vm.slots[0].log_dirty) << "the destructor turns logging off";
    EXPECT_FALSE(machine.vm.slots[1].log_dirty);
}

TEST(MigrationDirtyTracker, GuestAndVmmWritesMergedAndClearedInChunks) {
    Machine machine;
    DirtyTracker tracker(machine.vm, machine.memory, kChunkPages);
    machine.memory.mark_dirty(0, 1);  // before start: belongs to the first, full round
    tracker.start();
    auto& guest_log = machine.vm.injected_dirty[0];
    guest_log.assign((kLowPages + 63) / 64, 0);
    guest_log[0] = 1u << 3;
    const std::uint64_t far_page = 2 * kChunkPages + 65;
    guest_log[far_page / 64] |= std::uint64_t{1} << (far_page % 64);
    machine.memory.write_object<std::uint32_t>(kHighStart + 5 * kPageSize, 7);  // a device's write

    const auto pages = tracker.collect();
    ASSERT_EQ(pages.size(), 2u);
    EXPECT_TRUE(is_set(pages[0].dirty, 3));
    EXPECT_TRUE(is_set(pages[0].dirty, far_page));
    EXPECT_FALSE(is_set(pages[0].dirty, 0));
    EXPECT_TRUE(is_set(pages[1].dirty, 5));
    EXPECT_EQ(count_pages(pages), 3u);
    // Cleared in KVM (chunk by chunk, each at its own first page): the next round is empty.
    EXPECT_EQ(count_pages(tracker.collect()), 0u);
}

TEST(MigrationDirtyTracker, DiscardedPagesReportedUnlessTheGuestWroteThemSince) {
    Machine machine;
    DirtyTracker tracker(machine.vm, machine.memory, kChunkPages);
    tracker.start();
    machine.memory.discard(10 * kPageSize, 2 * kPageSize);
    machine.vm.injected_dirty[0].assign((kLowPages + 63) / 64, 0);
    machine.vm.injected_dirty[0][0] = 1u << 11;  // the guest wrote page 11 after the discard

    const auto pages = tracker.collect();
    EXPECT_TRUE(is_set(pages[0].dirty, 10));
    EXPECT_TRUE(is_set(pages[0].dirty, 11));
    EXPECT_TRUE(is_set(pages[0].discarded, 10));
    EXPECT_FALSE(is_set(pages[0].discarded, 11));
}

}  // namespace

namespace {

TEST(MigrationDirtyTracker, FinalCollectAddsEveryPageTheVmmWroteSinceStart) {
    Machine machine;
    DirtyTracker tracker(machine.vm, machine.memory, kChunkPages);
    machine.memory.mark_dirty(kPageSize, 1);  // before start: not counted
    tracker.start();
    machine.memory.mark_dirty(2 * kPageSize, 1);  // marked, its bytes still to come
    EXPECT_EQ(count_pages(tracker.collect()), 1u);
    const auto pages = tracker.collect_final();
    EXPECT_EQ(count_pages(pages), 1u);
    EXPECT_TRUE(is_set(pages[0].dirty, 2));
}

TEST(MigrationDirtyTracker, FinalCollectLeavesKvmsLogUncleared) {
    // Nothing is collected after it: clearing would only write-protect pages for nothing.
    Machine machine;
    DirtyTracker tracker(machine.vm, machine.memory, kChunkPages);
    tracker.start();
    auto& guest_log = machine.vm.injected_dirty[0];
    guest_log.assign((kLowPages + 63) / 64, 0);
    guest_log[0] = 1u << 9;
    EXPECT_TRUE(is_set(tracker.collect_final()[0].dirty, 9));
    EXPECT_EQ(guest_log[0], 1u << 9);
}

TEST(MigrationDirtyTracker, FinalCollectLeavesOutPagesOnlyDiscarded) {
    // A discard is done when it marks its pages (the hole is punched first):
    // sent once as zero pages, they need not go again.
    Machine machine;
    DirtyTracker tracker(machine.vm, machine.memory, kChunkPages);
    tracker.start();
    machine.memory.discard(4 * kPageSize, 2 * kPageSize);
    machine.memory.mark_dirty(8 * kPageSize, 1);
    EXPECT_EQ(count_pages(tracker.collect()), 3u);
    const auto pages = tracker.collect_final();
    EXPECT_EQ(count_pages(pages), 1u);
    EXPECT_TRUE(is_set(pages[0].dirty, 8));
}

TEST(MigrationDirtyTracker, ChunkMustBeAMultipleOf64) {
    Machine machine;
    EXPECT_THROW(DirtyTracker(machine.vm, machine.memory, 100), std::invalid_argument);
}

}  // namespace
