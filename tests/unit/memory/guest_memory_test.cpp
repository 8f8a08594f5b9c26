#include "vmm/memory/guest_memory.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace {

using vim::vmm::memory::GuestMemory;
using vim::vmm::memory::GuestMemoryError;
using vim::vmm::memory::kPageSize;
using vim::vmm::memory::RegionLayout;

GuestMemory two_regions() {
    // Like an x86 guest: RAM below a hole and again above it.
    const RegionLayout layout[] = {{0, 4 * kPageSize}, {0x100000, 2 * kPageSize}};
    return GuestMemory::allocate(layout);
}

TEST(GuestMemory, AllocatedMemoryIsZeroAndWritable) {
    auto memory = two_regions();
    EXPECT_EQ(memory.total_size(), 6 * kPageSize);
    EXPECT_EQ(memory.read_object<std::uint64_t>(0x1000), 0u);
    memory.write_object<std::uint64_t>(0x100008, 0x1122334455667788);
    EXPECT_EQ(memory.read_object<std::uint64_t>(0x100008), 0x1122334455667788u);
}

TEST(GuestMemory, RegionsStartOnHugePageBoundaries) {
    // So that KVM can map them with 2 MiB pages.
    const RegionLayout layout[] = {{0, 3 * kPageSize}, {0x100000000, 5 << 20}};
    auto memory = GuestMemory::allocate(layout);
    for (const auto& region : memory.regions()) {
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(region.host) % (2 << 20), 0u) << region.start;
    }
    memory.write_object<std::uint64_t>(0x100000000 + (5 << 20) - 8, 42);
    EXPECT_EQ(memory.read_object<std::uint64_t>(0x100000000 + (5 << 20) - 8), 42u);
}

TEST(GuestMemory, AccessesOutsideRamAreRefused) {
    auto memory = two_regions();
    std::array<std::uint8_t, 16> buffer{};
    // In the hole between the regions.
    EXPECT_THROW(memory.read(0x8000, buffer), GuestMemoryError);
    // Straddling the end of the first region.
    EXPECT_THROW(memory.read(4 * kPageSize - 8, buffer), GuestMemoryError);
    // Past the end of RAM, and an address + length that wraps around.
    EXPECT_THROW(memory.write(0x102000, buffer), GuestMemoryError);
    EXPECT_THROW((void)memory.read_span(UINT64_MAX - 4, 16), GuestMemoryError);
    EXPECT_THROW((void)memory.read_span(0, UINT64_MAX), GuestMemoryError);
}

TEST(GuestMemory, ErrorNamesTheRange) {
    auto memory = two_regions();
    try {
        (void)memory.read_span(0x8000, 0x10);
        FAIL();
    } catch (const GuestMemoryError& error) {
        EXPECT_EQ(std::string(error.what()), "guest range 0x8000+0x10 is not in guest RAM");
    }
}

TEST(GuestMemory, VmmWritesAreMarkedDirtyPerRegion) {
    auto memory = two_regions();
    memory.write_object<std::uint32_t>(kPageSize * 2 + 100, 7);
    // A write crossing a page boundary dirties both pages.
    std::array<std::uint8_t, 8> bytes{};
    memory.write(0x100000 + kPageSize - 4, bytes);

    EXPECT_EQ(memory.take_dirty_pages(0), std::vector<std::uint64_t>{0b100});
    EXPECT_EQ(memory.take_dirty_pages(1), std::vector<std::uint64_t>{0b11});
    // Taking clears.
    EXPECT_EQ(memory.take_dirty_pages(0), std::vector<std::uint64_t>{0});
    // Reads never dirty.
    (void)memory.read_object<std::uint32_t>(0);
    EXPECT_EQ(memory.take_dirty_pages(0), std::vector<std::uint64_t>{0});
}

TEST(GuestMemory, ConcurrentMarkingLosesNoPage) {
    const RegionLayout layout[] = {{0, 256 * kPageSize}};
    auto memory = GuestMemory::allocate(layout);
    std::vector<std::thread> writers;
    for (int thread = 0; thread < 4; ++thread) {
        writers.emplace_back([&, thread] {
            for (std::uint64_t page = thread; page < 256; page += 4) {
                memory.mark_dirty(page * kPageSize, 1);
            }
        });
    }
    for (auto& writer : writers) {
        writer.join();
    }
    for (std::uint64_t word : memory.take_dirty_pages(0)) {
        EXPECT_EQ(word, UINT64_MAX);
    }
}

TEST(GuestMemory, OverCallerBuffers) {
    std::vector<std::uint8_t> low(kPageSize), high(kPageSize);
    auto memory = GuestMemory::over({{0x10000, kPageSize, high.data()}, {0, kPageSize, low.data()}});
    memory.write_object<std::uint8_t>(0x10001, 9);
    EXPECT_EQ(high[1], 9);
    EXPECT_EQ(memory.regions().front().start, 0u);  // kept sorted
}

TEST(GuestMemory, OverlappingRegionsAreRefused) {
    std::vector<std::uint8_t> a(2 * kPageSize), b(kPageSize);
    EXPECT_THROW(GuestMemory::over({{0, 2 * kPageSize, a.data()}, {kPageSize, kPageSize, b.data()}}),
                 std::invalid_argument);
}

// What a snapshot or a same-host migration relies on: the file behind guest
// RAM holds what the guest (or the VMM) wrote, region after region.
TEST(GuestMemory, AllocatedMemoryIsSharedThroughItsMemfd) {
    auto memory = two_regions();
    ASSERT_GE(memory.fd(), 0);
    memory.write_object<std::uint32_t>(0x100004, 0xfeedf00d);
    const auto& high = memory.regions()[1];
    EXPECT_EQ(high.file_offset, 4 * kPageSize);
    std::uint32_t seen = 0;
    ASSERT_EQ(::pread(memory.fd(), &seen, sizeof seen, static_cast<off_t>(high.file_offset + 4)),
              static_cast<ssize_t>(sizeof seen));
    EXPECT_EQ(seen, 0xfeedf00du);
    struct stat status {};
    ASSERT_EQ(::fstat(memory.fd(), &status), 0);
    EXPECT_EQ(status.st_size, static_cast<off_t>(6 * kPageSize));
}

TEST(GuestMemory, UnalignedLayoutIsRefused) {
    const RegionLayout layout[] = {{0, 1000}};
    EXPECT_THROW(GuestMemory::allocate(layout), std::invalid_argument);
}

}  // namespace
