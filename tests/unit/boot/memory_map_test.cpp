#include "vmm/boot/memory_map.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "vmm/boot/layout.h"

namespace vim::vmm::boot {
namespace {

using ::testing::ElementsAre;
using ::testing::StrEq;
using ::testing::ThrowsMessage;

constexpr std::uint64_t kMiB = 1ull << 20;
constexpr std::uint64_t kGiB = 1ull << 30;

bool operator==(const memory::RegionLayout& a, const memory::RegionLayout& b) {
    return a.start == b.start && a.size == b.size;
}

TEST(RamLayout, SmallRamIsOneRegionFromZero) {
    const auto regions = ram_layout(512 * kMiB);
    ASSERT_EQ(regions.size(), 1u);
    EXPECT_TRUE(regions[0] == (memory::RegionLayout{0, 512 * kMiB}));
}

TEST(RamLayout, RamUpToTheHoleStaysBelowIt) {
    const auto regions = ram_layout(3 * kGiB);
    ASSERT_EQ(regions.size(), 1u);
    EXPECT_TRUE(regions[0] == (memory::RegionLayout{0, 3 * kGiB}));
}

TEST(RamLayout, RamBeyondTheHoleContinuesAt4GiB) {
    const auto regions = ram_layout(5 * kGiB);
    ASSERT_EQ(regions.size(), 2u);
    EXPECT_TRUE(regions[0] == (memory::RegionLayout{0, layout::kMmioHoleStart}));
    EXPECT_TRUE(regions[1] == (memory::RegionLayout{layout::kMmioHoleEnd, 2 * kGiB}));
}

TEST(RamLayout, RejectsSizesThatAreNotWholePages) {
    EXPECT_THAT([] { ram_layout(0); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("guest RAM size 0 is not a positive multiple of the 4096-byte page")));
    EXPECT_THAT([] { ram_layout(kMiB + 1); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("guest RAM size 1048577 is not a positive multiple of the 4096-byte page")));
}

TEST(E820Map, For512MiB) {
    EXPECT_THAT(e820_map(ram_layout(512 * kMiB)),
                ElementsAre(E820Entry{0, 0x9fc00, E820Type::Ram},
                            E820Entry{0x9fc00, 0x100000 - 0x9fc00, E820Type::Reserved},
                            E820Entry{0x100000, 511 * kMiB, E820Type::Ram}));
}

TEST(E820Map, For5GiBSplitsAroundTheMmioHole) {
    EXPECT_THAT(e820_map(ram_layout(5 * kGiB)),
                ElementsAre(E820Entry{0, 0x9fc00, E820Type::Ram},
                            E820Entry{0x9fc00, 0x100000 - 0x9fc00, E820Type::Reserved},
                            E820Entry{0x100000, 3 * kGiB - kMiB, E820Type::Ram},
                            E820Entry{4 * kGiB, 2 * kGiB, E820Type::Ram}));
}

TEST(E820Map, ReservesTheBiosAreaWhereAcpiTablesLive) {
    const auto entries = e820_map(ram_layout(512 * kMiB));
    const E820Entry& reserved = entries[1];
    EXPECT_EQ(reserved.type, E820Type::Reserved);
    EXPECT_LE(reserved.address, layout::kAcpiRsdpAddress);
    EXPECT_GE(reserved.address + reserved.size, layout::kBiosAreaEnd);
}

TEST(E820Map, RejectsRamThatDoesNotReachTheKernel) {
    const std::vector<memory::RegionLayout> tiny = {{0, 512 * 1024}};
    EXPECT_THAT([&] { e820_map(tiny); }, ThrowsMessage<std::invalid_argument>(StrEq(
                                             "guest RAM must start at address 0 and extend past 0x100000")));
    const std::vector<memory::RegionLayout> high = {{kGiB, kGiB}};
    EXPECT_THAT([&] { e820_map(high); }, ThrowsMessage<std::invalid_argument>(StrEq(
                                             "guest RAM must start at address 0 and extend past 0x100000")));
}

}  // namespace
}  // namespace vim::vmm::boot
