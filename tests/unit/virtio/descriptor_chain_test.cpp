#include "vmm/virtio/descriptor_chain.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "queue_fixture.h"

namespace vim::vmm::virtio {
namespace {

using vim::testing::DriverBuffer;
using vim::testing::GuestRam;
using vim::testing::RingLayout;
using vim::testing::VirtqueueDriver;

class DescriptorChainTest : public QueueTest {
protected:
    void SetUp() override { driver.configure(queue); }
};

TEST_F(DescriptorChainTest, IovecsAreTheGuestBuffers) {
    const auto request = driver.readable(bytes_of("read me"));
    const auto reply = driver.writable(5);
    driver.add_chain(std::array{request, reply});
    const DescriptorChain chain = pop_chain();

    const auto readable = chain.readable_iovecs(memory());
    ASSERT_EQ(readable.size(), 1u);
    EXPECT_EQ(std::string(static_cast<const char*>(readable[0].iov_base), readable[0].iov_len), "read me");
    const auto writable = chain.writable_iovecs(memory());
    ASSERT_EQ(writable.size(), 1u);
    ASSERT_EQ(writable[0].iov_len, 5u);
    std::memcpy(writable[0].iov_base, "hello", 5);
    EXPECT_EQ(driver.contents(reply), bytes_of("hello"));
}

TEST_F(DescriptorChainTest, ReadsTheReadableBuffersAsOneStream) {
    driver.add_chain(std::array{driver.readable(bytes_of("hello")), driver.readable(bytes_of(" world")),
                                driver.writable(8)});
    const DescriptorChain chain = pop_chain();
    std::vector<std::uint8_t> out(6);
    EXPECT_EQ(chain.read(memory(), 3, out), 6u);
    EXPECT_EQ(out, bytes_of("lo wor"));
    // The chain ends before `out` is full.
    EXPECT_EQ(chain.read(memory(), 8, out), 3u);
    EXPECT_EQ(std::string(out.begin(), out.begin() + 3), "rld");
    EXPECT_EQ(chain.read(memory(), 100, out), 0u);
}

TEST_F(DescriptorChainTest, WritesTheWritableBuffersAsOneStreamAndNoFurther) {
    const auto first = driver.writable(3);
    const auto second = driver.writable(5);
    driver.add_chain(std::array{driver.readable(bytes_of("r")), first, second});
    const DescriptorChain chain = pop_chain();
    EXPECT_EQ(chain.write(memory(), 2, bytes_of("abcdef")), 6u);
    EXPECT_EQ(driver.contents(first), (std::vector<std::uint8_t>{0xee, 0xee, 'a'}));
    EXPECT_EQ(driver.contents(second), bytes_of("bcdef"));
    EXPECT_EQ(chain.write(memory(), 6, bytes_of("XYZW")), 2u);
    EXPECT_EQ(driver.contents(second), bytes_of("bcdXY"));
    // The gaps after the buffers are untouched.
    EXPECT_EQ(driver.read<std::uint8_t>(first.address + 3), 0);
    EXPECT_EQ(driver.read<std::uint8_t>(second.address + 5), 0);
}

// Rings on pages of their own, the used ring across a page boundary, and
// buffers that cross pages too: every page the device writes must be in
// the VMM's dirty bitmap, or a migration would leave it stale.
class DirtyTrackingTest : public ::testing::Test {
protected:
    static constexpr memory::GuestAddress kRam = 0x10000;
    static constexpr std::uint64_t kRamSize = 0x10000;
    static constexpr std::uint16_t kSize = 16;

    GuestRam ram{kRam, kRamSize};
    VirtqueueDriver driver{ram.memory(), kSize, RingLayout{0x10000, 0x11000, 0x12ff0}, 0x14f00, 0xb000};
    Queue queue{"dirty queue", kSize};

    memory::GuestMemory& memory() { return ram.memory(); }

    std::vector<std::uint8_t> snapshot() {
        auto bytes = driver.guest_bytes(kRam, kRamSize);
        return {bytes.begin(), bytes.end()};
    }

    static std::set<std::uint64_t> pages_changed(const std::vector<std::uint8_t>& before,
                                                 const std::vector<std::uint8_t>& after) {
        std::set<std::uint64_t> pages;
        for (std::size_t i = 0; i < before.size(); ++i) {
            if (before[i] != after[i]) {
                pages.insert(i / memory::kPageSize);
            }
        }
        return pages;
    }

    DescriptorChain pop_chain() {
        auto chain = queue.pop(memory());
        EXPECT_TRUE(chain);
        return chain.value_or(DescriptorChain{});
    }
};

TEST_F(DirtyTrackingTest, EveryPageTheQueueWritesIsMarkedDirty) {
    driver.configure(queue, true);
    const auto request = driver.readable(std::vector<std::uint8_t>(0x300, 1));
    const auto big_reply = driver.writable(0x1800);  // across two page boundaries
    const auto small_reply = driver.writable(16);
    for (int i = 0; i < 3; ++i) {
        driver.add_chain(std::array{request, big_reply});
        driver.add_chain(std::array{request, small_reply});
    }
    driver.set_used_event(5);
    EXPECT_TRUE(ram.take_dirty_page_numbers().empty()) << "the driver's own writes are not the VMM's";
    const auto before = snapshot();

    // Six completions reach the used ring's second page; written three ways:
    // through iovecs, through DescriptorChain::write, and not at all.
    for (int i = 0; i < 3; ++i) {
        const DescriptorChain big = pop_chain();
        for (const iovec& part : big.writable_iovecs(memory())) {
            std::memset(part.iov_base, 0x40 + i, part.iov_len);
        }
        queue.add_used(memory(), big, 0x1800);
        const DescriptorChain small = pop_chain();
        if (i == 1) {
            EXPECT_EQ(small.write(memory(), 0, bytes_of("status")), 6u);
        }
        queue.add_used(memory(), small, i == 1 ? 6 : 0);
    }
    EXPECT_TRUE(queue.needs_notification(memory()));
    EXPECT_FALSE(queue.enable_notification(memory()));  // avail_event, on the used ring's second page

    const auto changed = pages_changed(before, snapshot());
    const auto dirty = ram.take_dirty_page_numbers();
    const std::set<std::uint64_t> dirty_set(dirty.begin(), dirty.end());
    EXPECT_TRUE(std::ranges::includes(dirty_set, changed))
        << "changed: " << ::testing::PrintToString(changed)
        << ", dirty: " << ::testing::PrintToString(dirty_set);
    EXPECT_TRUE(changed.contains(2) && changed.contains(3)) << "the used ring spans pages 2 and 3";
    // The device only read the descriptor table (page 0), the available ring
    // (page 1) and the request.
    EXPECT_FALSE(dirty_set.contains(0));
    EXPECT_FALSE(dirty_set.contains(1));
    EXPECT_FALSE(dirty_set.contains((request.address - kRam) / memory::kPageSize));
}

TEST_F(DirtyTrackingTest, UsedFlagsWriteIsMarkedDirty) {
    driver.configure(queue);
    queue.disable_notification(memory());
    EXPECT_EQ(ram.take_dirty_page_numbers(), std::vector<std::uint64_t>{2});
}

TEST_F(DirtyTrackingTest, CompletionMarksAgainWhatWasWrittenAfterTheIovecsWereTaken) {
    // A migration pass may take the bitmap while an I/O is writing into the
    // buffers; the completion must mark them again.
    driver.configure(queue);
    const auto reply = driver.writable(0x1800);
    driver.add_chain(std::array{reply});
    const DescriptorChain chain = pop_chain();
    const auto iovecs = chain.writable_iovecs(memory());
    (void)ram.take_dirty_page_numbers();
    std::memset(iovecs[0].iov_base, 1, 0x1100);
    queue.add_used(memory(), chain, 0x1100);

    const auto first_page = (reply.address - kRam) / memory::kPageSize;  // the reply starts at 0x14f00
    // The written 0x1100 bytes cover 0x14f00..0x16000; not the third page.
    EXPECT_EQ(ram.take_dirty_page_numbers(), (std::vector<std::uint64_t>{2, first_page, first_page + 1}));
}

}  // namespace
}  // namespace vim::vmm::virtio
