// Guest pages through the stream: data pages land where they belong, zero
// and discarded pages travel as flags, and a hostile batch writes nothing.
#include "migration/pages.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstring>
#include <thread>
#include <vector>

#include "vmm/sys/fd.h"

namespace {

using namespace vim::migration;
using testing::HasSubstr;
using vim::vmm::memory::GuestMemory;
using vim::vmm::memory::kPageSize;
using vim::vmm::sys::Fd;

constexpr std::uint64_t kLowPages = 300;  // more than a batch
constexpr std::uint64_t kHighPages = 20;
constexpr std::uint64_t kHighStart = 0x100000000;

// Guest RAM over plain buffers: 300 pages at 0 and 20 pages at 4 GiB.
struct Ram {
    std::vector<std::uint8_t> low = std::vector<std::uint8_t>(kLowPages * kPageSize);
    std::vector<std::uint8_t> high = std::vector<std::uint8_t>(kHighPages * kPageSize);
    GuestMemory memory =
        GuestMemory::over({{0, low.size(), low.data()}, {kHighStart, high.size(), high.data()}});
};

struct SocketPair {
    Fd sender, receiver;
    SocketPair() {
        int pair[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
        sender.reset(pair[0]);
        receiver.reset(pair[1]);
    }
};

// Sends `pages` of `from` and receives every section into `to` until End.
PageCounts transfer(const GuestMemory& from, const std::vector<RegionPages>& pages, GuestMemory& to) {
    SocketPair sockets;
    PageCounts counts;
    std::thread sending([&] {
        StreamWriter writer(sockets.sender.get());
        PageSender sender(writer, from);
        counts = sender.send(pages);
        writer.write_section(SectionType::End, {});
    });
    StreamReader reader(sockets.receiver.get());
    PageReceiver receiver(to);
    for (SectionHeader section = reader.next_section(); section.type != SectionType::End;
         section = reader.next_section()) {
        receiver.receive(reader, section);
    }
    sending.join();
    return counts;
}

void fill_page(std::vector<std::uint8_t>& buffer, std::uint64_t page, std::uint8_t seed) {
    for (std::uint64_t i = 0; i < kPageSize; ++i) {
        buffer[page * kPageSize + i] = static_cast<std::uint8_t>(seed + i * 7 + 1);
    }
}

TEST(MigrationPages, EveryPageArrivesZeroPagesAsFlags) {
    Ram source, destination;
    for (std::uint64_t page = 0; page < kLowPages; page += 3) {
        fill_page(source.low, page, static_cast<std::uint8_t>(page));
    }
    fill_page(source.high, kHighPages - 1, 9);
    const PageCounts counts = transfer(source.memory, all_pages(source.memory), destination.memory);
    EXPECT_EQ(destination.low, source.low);
    EXPECT_EQ(destination.high, source.high);
    EXPECT_EQ(counts.pages, kLowPages + kHighPages);
    EXPECT_EQ(counts.zero_pages, kLowPages + kHighPages - 100 - 1);
    // Only the 101 data pages travel as data, plus headers and 8 bytes per page.
    EXPECT_LT(counts.bytes, 101 * kPageSize + 8 * (kLowPages + kHighPages) + 4 * 64);
}

TEST(MigrationPages, OnlyTheDirtyPagesAreSent) {
    Ram source, destination;
    fill_page(source.low, 5, 1);
    fill_page(source.low, 200, 2);
    fill_page(source.high, 3, 3);
    std::vector<RegionPages> pages = {{std::vector<std::uint64_t>(5), {}},
                                      {std::vector<std::uint64_t>(1), {}}};
    pages[0].dirty[0] = 1u << 5;
    pages[1].dirty[0] = 1u << 3;
    const PageCounts counts = transfer(source.memory, pages, destination.memory);
    EXPECT_EQ(counts.pages, 2u);
    EXPECT_EQ(
        std::memcmp(destination.low.data() + 5 * kPageSize, source.low.data() + 5 * kPageSize, kPageSize), 0);
    EXPECT_EQ(destination.low[200 * kPageSize], 0);
    EXPECT_EQ(
        std::memcmp(destination.high.data() + 3 * kPageSize, source.high.data() + 3 * kPageSize, kPageSize),
        0);
}

TEST(MigrationPages, DiscardedPagesAreSentAsZeroWithoutBeingRead) {
    Ram source, destination;
    fill_page(source.low, 7, 1);
    auto pages = all_pages(source.memory);
    // Marked discarded though it holds data: the sender must trust the mark
    // (reading a discarded page of a memfd would allocate it).
    pages[0].discarded.assign(pages[0].dirty.size(), 0);
    pages[0].discarded[0] = 1u << 7;
    const PageCounts counts = transfer(source.memory, pages, destination.memory);
    EXPECT_EQ(counts.zero_pages, kLowPages + kHighPages);
    EXPECT_EQ(destination.low[7 * kPageSize], 0);
}

// Bytes a memfd holds in memory (st_blocks counts 512-byte units).
std::uint64_t allocated_bytes(const GuestMemory& memory) {
    struct stat status {};
    EXPECT_EQ(::fstat(memory.fd(), &status), 0);
    return static_cast<std::uint64_t>(status.st_blocks) * 512;
}

TEST(MigrationPages, AFirstRoundSendsOnlyWhatHoldsDataAndReadsNoHole) {
    constexpr std::uint64_t kMiB = 1 << 20;
    const vim::vmm::memory::RegionLayout layout[] = {{0, 64 * kMiB}};
    GuestMemory source = GuestMemory::allocate(layout);
    GuestMemory destination = GuestMemory::allocate(layout);
    // 2 MiB written, whole huge pages or not, and 62 MiB never touched.
    std::vector<std::uint8_t> data(2 * kMiB);
    for (std::size_t i = 0; i < data.size(); ++i) {
        data[i] = static_cast<std::uint8_t>(i * 13 + 5);
    }
    std::memcpy(source.write_span(8 * kMiB, data.size()).data(), data.data(), data.size());
    const std::uint64_t allocated = allocated_bytes(source);

    // Only the 2 MiB that hold data go; the destination's memory is zero elsewhere already.
    const PageCounts counts = transfer(source, all_pages(source), destination);
    EXPECT_EQ(counts.pages, 2 * kMiB / kPageSize);
    EXPECT_EQ(counts.zero_pages, 0u);
    EXPECT_LT(counts.bytes, 2 * kMiB + 64 * 1024);
    EXPECT_EQ(allocated_bytes(source), allocated);
    EXPECT_EQ(std::memcmp(destination.read_span(8 * kMiB, data.size()).data(), data.data(), data.size()), 0);
    EXPECT_LE(allocated_bytes(destination), 2 * allocated);
}

TEST(MigrationPages, ZeroPageClearsAPageReceivedBefore) {
    Ram source, destination;
    fill_page(source.low, 1, 1);
    SocketPair sockets;
    StreamWriter writer(sockets.sender.get());
    StreamReader reader(sockets.receiver.get());
    PageSender sender(writer, source.memory);
    PageReceiver receiver(destination.memory);
    std::vector<RegionPages> page_one = {{{2}, {}}, {{0}, {}}};

    sender.send(page_one);
    receiver.receive(reader, reader.next_section());
    EXPECT_EQ(destination.low[kPageSize], source.low[kPageSize]);
    std::memset(source.low.data() + kPageSize, 0, kPageSize);
    sender.send(page_one);
    receiver.receive(reader, reader.next_section());
    EXPECT_EQ(destination.low, source.low);
}

// A hand-made Pages section: entries as given, `data_pages` pages of 0xAB.
std::vector<std::uint8_t> batch(const std::vector<std::uint64_t>& entries, std::size_t data_pages,
                                std::uint32_t count_field) {
    std::vector<std::uint8_t> payload(8 + entries.size() * 8 + data_pages * kPageSize, 0xAB);
    const std::uint32_t prefix[2] = {count_field, 0};
    std::memcpy(payload.data(), prefix, 8);
    std::memcpy(payload.data() + 8, entries.data(), entries.size() * 8);
    return payload;
}

std::string error_receiving(const std::vector<std::uint8_t>& payload, Ram& destination) {
    SocketPair sockets;
    StreamWriter writer(sockets.sender.get());
    writer.write_section(SectionType::Pages, payload);
    StreamReader reader(sockets.receiver.get());
    PageReceiver receiver(destination.memory);
    try {
        receiver.receive(reader, reader.next_section());
    } catch (const StreamError& error) {
        return error.what();
    }
    return "(accepted)";
}

TEST(MigrationPages, HostileBatchesRejectedWithoutTouchingMemory) {
    Ram destination;
    const Ram untouched;
    const std::uint64_t last_low = (kLowPages - 1) * kPageSize;
    // The first page is fine, the second is not: nothing may be written.
    EXPECT_THAT(error_receiving(batch({0, kLowPages * kPageSize}, 2, 2), destination),
                HasSubstr("section 1 (pages): page at 1228800 is not in guest RAM"));
    EXPECT_THAT(error_receiving(batch({last_low, kHighStart + kHighPages * kPageSize}, 2, 2), destination),
                HasSubstr("is not in guest RAM"));
    EXPECT_THAT(error_receiving(batch({0, ~std::uint64_t{0} & ~(kPageSize - 1)}, 2, 2), destination),
                HasSubstr("is not in guest RAM"));
    EXPECT_THAT(error_receiving(batch({0, kPageSize | 2}, 2, 2), destination),
                HasSubstr("page entry has unknown flags 2"));
    EXPECT_THAT(error_receiving(batch({0}, 1, 0), destination), HasSubstr("batch of 0 pages is not allowed"));
    EXPECT_THAT(error_receiving(batch({0}, 1, kMaxBatchPages + 1), destination),
                HasSubstr("batch of 1025 pages is not allowed"));
    EXPECT_THAT(error_receiving(batch({0, kPageSize}, 1, 2), destination),
                HasSubstr("does not match its 2 pages"));
    EXPECT_THAT(error_receiving(batch({0 | kZeroPageFlag}, 1, 1), destination),
                HasSubstr("does not match its 1 pages"));
    EXPECT_THAT(error_receiving({1, 0, 0}, destination), HasSubstr("too short for a page batch"));
    EXPECT_EQ(destination.low, untouched.low);
    EXPECT_EQ(destination.high, untouched.high);
}

TEST(MigrationPages, CorruptPageDataRejected) {
    Ram source, destination;
    fill_page(source.low, 0, 1);
    SocketPair sockets;
    StreamWriter writer(sockets.sender.get());
    PageSender sender(writer, source.memory);
    sender.send(std::vector<RegionPages>{{{1}, {}}, {{0}, {}}});
    // Flip a bit of the page in flight: read the section, change it, pass it on.
    std::vector<std::uint8_t> section(kSectionHeaderSize + 16 + kPageSize);
    ASSERT_EQ(::read(sockets.receiver.get(), section.data(), section.size()),
              static_cast<ssize_t>(section.size()));
    section.back() ^= 1;
    SocketPair relay;
    ASSERT_EQ(::write(relay.sender.get(), section.data(), section.size()),
              static_cast<ssize_t>(section.size()));
    StreamReader reader(relay.receiver.get());
    PageReceiver receiver(destination.memory);
    try {
        receiver.receive(reader, reader.next_section());
        FAIL() << "corrupt page accepted";
    } catch (const StreamError& error) {
        EXPECT_STREQ(error.what(), "migration stream: section 1 (pages): checksum mismatch");
    }
}

}  // namespace
