// GuestMemory::discard(): pages given back to the host by punching holes in
// the guest RAM memfd, and the bookkeeping a migration relies on.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "vmm/memory/guest_memory.h"

namespace {

using vim::vmm::memory::GuestAddress;
using vim::vmm::memory::GuestMemory;
using vim::vmm::memory::GuestMemoryError;
using vim::vmm::memory::kPageSize;
using vim::vmm::memory::Region;
using vim::vmm::memory::RegionLayout;

constexpr std::uint64_t kMiB = 1 << 20;
constexpr GuestAddress kHighRam = 0x100000000;

GuestMemory two_regions() {
    const RegionLayout layout[] = {{0, 4 * kMiB}, {kHighRam, 2 * kMiB}};
    return GuestMemory::allocate(layout);
}

// Bytes the memfd holds in memory (st_blocks counts 512-byte units).
std::uint64_t allocated_bytes(const GuestMemory& memory) {
    struct stat status {};
    EXPECT_EQ(::fstat(memory.fd(), &status), 0);
    return static_cast<std::uint64_t>(status.st_blocks) * 512;
}

void fill(GuestMemory& memory, GuestAddress address, std::uint64_t length, std::uint8_t value) {
    auto bytes = memory.write_span(address, length);
    std::fill(bytes.begin(), bytes.end(), value);
}

bool all_bytes_are(const GuestMemory& memory, GuestAddress address, std::uint64_t length,
                   std::uint8_t value) {
    auto bytes = memory.read_span(address, length);
    return std::all_of(bytes.begin(), bytes.end(), [value](std::uint8_t byte) { return byte == value; });
}

std::string discard_error(GuestMemory& memory, GuestAddress address, std::uint64_t length) {
    try {
        memory.discard(address, length);
    } catch (const GuestMemoryError& error) {
        return error.what();
    }
    return "no error";
}

std::vector<std::uint64_t> set_pages(const std::vector<std::uint64_t>& bitmap) {
    std::vector<std::uint64_t> pages;
    for (std::size_t word = 0; word < bitmap.size(); ++word) {
        for (unsigned bit = 0; bit < 64; ++bit) {
            if ((bitmap[word] >> bit & 1) != 0) {
                pages.push_back(word * 64 + bit);
            }
        }
    }
    return pages;
}

TEST(GuestMemoryDiscard, GivesThePagesBackToTheHostAndTheyReadAsZero) {
    auto memory = two_regions();
    fill(memory, 0, 4 * kMiB, 0x5a);
    fill(memory, kHighRam, 2 * kMiB, 0xa5);
    const std::uint64_t before = allocated_bytes(memory);
    ASSERT_GE(before, 6 * kMiB);

    memory.discard(kMiB, 2 * kMiB);
    memory.discard(kHighRam + kMiB, kMiB);

    EXPECT_EQ(allocated_bytes(memory), before - 3 * kMiB);
    EXPECT_TRUE(all_bytes_are(memory, kMiB, 2 * kMiB, 0));
    EXPECT_TRUE(all_bytes_are(memory, kHighRam + kMiB, kMiB, 0));
    // Only the range: its neighbours keep their data.
    EXPECT_TRUE(all_bytes_are(memory, 0, kMiB, 0x5a));
    EXPECT_TRUE(all_bytes_are(memory, 3 * kMiB, kMiB, 0x5a));
    EXPECT_TRUE(all_bytes_are(memory, kHighRam, kMiB, 0xa5));
}

TEST(GuestMemoryDiscard, ADiscardedPageCanBeWrittenAgain) {
    auto memory = two_regions();
    fill(memory, 0x3000, kPageSize, 1);
    memory.discard(0x3000, kPageSize);
    memory.write_object<std::uint64_t>(0x3008, 42);
    EXPECT_EQ(memory.read_object<std::uint64_t>(0x3008), 42u);
    EXPECT_EQ(memory.read_object<std::uint64_t>(0x3000), 0u);
}

TEST(GuestMemoryDiscard, RecordsThePagesAsDiscardedAndDirty) {
    auto memory = two_regions();
    (void)memory.take_dirty_pages(1);
    memory.discard(kHighRam + 2 * kPageSize, 3 * kPageSize);

    EXPECT_THAT(set_pages(memory.discarded_pages(1)), ::testing::ElementsAre(2, 3, 4));
    EXPECT_TRUE(set_pages(memory.discarded_pages(0)).empty());
    EXPECT_TRUE(memory.discarded(kHighRam + 2 * kPageSize + 17));
    EXPECT_FALSE(memory.discarded(kHighRam + kPageSize));
    EXPECT_FALSE(memory.discarded(kHighRam + 5 * kPageSize));
    // Their contents changed: a migration must send them (as zero pages).
    EXPECT_THAT(set_pages(memory.take_dirty_pages(1)), ::testing::ElementsAre(2, 3, 4));
    // Asking does not clear.
    EXPECT_THAT(set_pages(memory.discarded_pages(1)), ::testing::ElementsAre(2, 3, 4));
}

TEST(GuestMemoryDiscard, AWriteByTheVmmEndsThePagesDiscardedState) {
    auto memory = two_regions();
    memory.discard(0, 4 * kPageSize);
    memory.write_object<std::uint32_t>(kPageSize + 100, 7);
    memory.mark_dirty(3 * kPageSize, 1);
    EXPECT_THAT(set_pages(memory.discarded_pages(0)), ::testing::ElementsAre(0, 2));
}

TEST(GuestMemoryDiscard, TheGuestsWritesFromTheDirtyLogEndIt) {
    auto memory = two_regions();
    memory.discard(0, 130 * kPageSize);
    std::vector<std::uint64_t> dirty_log(memory.discarded_pages(0).size());
    dirty_log[0] = 0b101;                  // pages 0 and 2
    dirty_log[2] = std::uint64_t{1} << 1;  // page 129
    memory.clear_discarded(0, dirty_log);
    const auto discarded = set_pages(memory.discarded_pages(0));
    EXPECT_EQ(discarded.size(), 127u);
    EXPECT_THAT(discarded, ::testing::Not(::testing::Contains(0u)));
    EXPECT_THAT(discarded, ::testing::Not(::testing::Contains(2u)));
    EXPECT_THAT(discarded, ::testing::Not(::testing::Contains(129u)));
    EXPECT_THAT(discarded, ::testing::Contains(1u));
}

TEST(GuestMemoryDiscard, RefusesRangesThatAreNotWholePagesOfOneRegion) {
    auto memory = two_regions();
    fill(memory, 0, 4 * kMiB, 0x11);
    EXPECT_EQ(discard_error(memory, 0x1001, kPageSize),
              "discard guest range 0x1001+0x1000: not page-aligned");
    EXPECT_EQ(discard_error(memory, 0x1000, 100), "discard guest range 0x1000+0x64: not page-aligned");
    EXPECT_EQ(discard_error(memory, 4 * kMiB - kPageSize, 2 * kPageSize),
              "discard guest range 0x3ff000+0x2000: not in guest RAM");
    EXPECT_EQ(discard_error(memory, 0x800000, kPageSize),
              "discard guest range 0x800000+0x1000: not in guest RAM");
    EXPECT_EQ(discard_error(memory, 0xfffffffffffff000, 0x2000),
              "discard guest range 0xfffffffffffff000+0x2000: not in guest RAM");
    // Nothing was touched.
    EXPECT_TRUE(all_bytes_are(memory, 0, 4 * kMiB, 0x11));
    EXPECT_TRUE(set_pages(memory.discarded_pages(0)).empty());
    EXPECT_THROW((void)memory.discarded(0x800000), GuestMemoryError);
}

TEST(GuestMemoryDiscard, MemoryWithoutAFileIsZeroedInPlace) {
    std::vector<std::uint8_t> bytes(8 * kPageSize, 0x77);
    auto memory = GuestMemory::over({Region{0x10000, bytes.size(), bytes.data()}});
    memory.discard(0x11000, 2 * kPageSize);
    EXPECT_TRUE(std::all_of(bytes.begin() + kPageSize, bytes.begin() + 3 * kPageSize,
                            [](std::uint8_t byte) { return byte == 0; }));
    EXPECT_EQ(bytes[0], 0x77);
    EXPECT_EQ(bytes[3 * kPageSize], 0x77);
    EXPECT_TRUE(memory.discarded(0x12000));
}

TEST(GuestMemoryHoles, AreThePagesTheMemfdHoldsNothingFor) {
    auto memory = two_regions();
    // Nothing written yet: every page is a hole.
    EXPECT_EQ(set_pages(memory.hole_pages(0)).size(), 4 * kMiB / kPageSize);
    EXPECT_EQ(set_pages(memory.hole_pages(1)).size(), 2 * kMiB / kPageSize);

    // Whole 2 MiB pieces, so the answer is the same whether or not huge pages back the memfd.
    fill(memory, 0, 4 * kMiB, 0x33);
    memory.discard(2 * kMiB, 2 * kMiB);
    const auto holes = set_pages(memory.hole_pages(0));
    ASSERT_EQ(holes.size(), 2 * kMiB / kPageSize);
    EXPECT_EQ(holes.front(), 2 * kMiB / kPageSize);
    EXPECT_EQ(holes.back(), 4 * kMiB / kPageSize - 1);
    // A byte written makes its page data, wherever it lands.
    memory.write_object<std::uint8_t>(kHighRam + 5 * kPageSize + 9, 1);
    EXPECT_THAT(set_pages(memory.hole_pages(1)), ::testing::Not(::testing::Contains(5u)));
}

TEST(GuestMemoryHoles, MemoryWithoutAFileReportsNone) {
    std::vector<std::uint8_t> buffer(16 * kPageSize);
    auto memory = GuestMemory::over({Region{0, buffer.size(), buffer.data()}});
    EXPECT_TRUE(set_pages(memory.hole_pages(0)).empty());
}

}  // namespace
