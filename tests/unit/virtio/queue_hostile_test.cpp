// What a hostile or broken driver can put in the queue's configuration and
// rings, and what the device makes of it: a refused configuration, a bad
// chain completed and skipped, or a queue that needs a reset. Never a read or
// write outside guest RAM (the suite runs under AddressSanitizer).
#include <gtest/gtest.h>

#include "queue_fixture.h"
#include "vmm/virtio/queue.h"

namespace vim::vmm::virtio {
namespace {

using vim::testing::DriverBuffer;

// --- Configuration ---------------------------------------------------------

class QueueConfigTest : public QueueTest {
protected:
    void SetUp() override {
        queue.set_size(kSize);
        queue.set_descriptor_table(driver.descriptor_table());
        queue.set_avail_ring(driver.avail_ring());
        queue.set_used_ring(driver.used_ring());
    }
};

TEST_F(QueueConfigTest, SizeMustBeAPowerOfTwo) {
    queue.set_size(24);
    EXPECT_EQ(enable_error(), "test queue: size 24 is not a power of two");
    queue.set_size(0);
    EXPECT_EQ(enable_error(), "test queue: size 0 is not a power of two");
    EXPECT_FALSE(queue.pop(memory()));
}

TEST_F(QueueConfigTest, SizeMustNotExceedTheDevicesMaximum) {
    queue.set_size(512);
    EXPECT_EQ(enable_error(), "test queue: size 512 is larger than the device's maximum 256");
}

TEST_F(QueueConfigTest, RingsMustBeAligned) {
    queue.set_descriptor_table(kLowRam + 8);
    EXPECT_EQ(enable_error(), "test queue: descriptor table at 0x10008 is not 16-byte aligned");
    queue.set_descriptor_table(kLowRam);
    queue.set_avail_ring(driver.avail_ring() + 1);
    EXPECT_EQ(enable_error(), "test queue: available ring at 0x10101 is not 2-byte aligned");
    queue.set_avail_ring(driver.avail_ring());
    queue.set_used_ring(driver.used_ring() + 2);
    EXPECT_EQ(enable_error(), "test queue: used ring at 0x1012a is not 4-byte aligned");
}

TEST_F(QueueConfigTest, RingsMustLieInGuestRam) {
    queue.set_descriptor_table(kHole);
    EXPECT_EQ(enable_error(), "test queue: descriptor table 0x20000+0x100 is not in guest RAM");
    queue.set_descriptor_table(kLowRam);
    // Crossing the end of the region.
    queue.set_used_ring(kHole - 4);
    EXPECT_EQ(enable_error(), "test queue: used ring 0x1fffc+0x86 is not in guest RAM");
    queue.set_used_ring(driver.used_ring());
    queue.set_avail_ring(UINT64_MAX - 1);
    EXPECT_EQ(enable_error(), "test queue: available ring 0xfffffffffffffffe+0x26 is not in guest RAM");
}

TEST_F(QueueConfigTest, GoodConfigurationEnables) {
    queue.enable(memory());
    EXPECT_TRUE(queue.ready());
}

// --- Bad chains: completed with nothing written, the queue goes on -----------

class BadChainTest : public QueueTest {
protected:
    void SetUp() override { driver.configure(queue); }

    // After a refused chain, the next good one still comes through.
    void expect_queue_goes_on(std::uint16_t bad_head) {
        queue.add_used(memory(), bad_head, 0);
        const std::uint16_t good = driver.add_chain(std::array{driver.writable(4)});
        EXPECT_EQ(pop_chain().head, good);
        const auto used = driver.take_used();
        ASSERT_EQ(used.size(), 1u);
        EXPECT_EQ(used[0].id, bad_head);
        EXPECT_EQ(used[0].length, 0u);
    }
};

TEST_F(BadChainTest, BufferInTheHoleBetweenRegions) {
    const std::uint16_t head =
        driver.add_chain(std::array{driver.readable(bytes_of("ok")), DriverBuffer{kHole + 0x100, 16, true}});
    EXPECT_EQ(chain_error(head),
              "test queue: chain 0: buffer 0x20100+0x10 of descriptor 1 is not in guest RAM");
    expect_queue_goes_on(head);
}

TEST_F(BadChainTest, BufferCrossingTheEndOfARegion) {
    const std::uint16_t head = driver.add_chain(std::array{DriverBuffer{kHole - 8, 16, false}});
    EXPECT_EQ(chain_error(head),
              "test queue: chain 0: buffer 0x1fff8+0x10 of descriptor 0 is not in guest RAM");
    expect_queue_goes_on(head);
}

TEST_F(BadChainTest, BufferPastTheEndOfRam) {
    const std::uint16_t head = driver.add_chain(std::array{DriverBuffer{kHighRam + kHighRamSize, 1, true}});
    EXPECT_EQ(chain_error(head),
              "test queue: chain 0: buffer 0x44000+0x1 of descriptor 0 is not in guest RAM");
}

TEST_F(BadChainTest, AddressPlusLengthOverflows) {
    const std::uint16_t head = driver.add_chain(std::array{DriverBuffer{UINT64_MAX - 0xf, 0x100, false}});
    EXPECT_EQ(chain_error(head),
              "test queue: chain 0: buffer 0xfffffffffffffff0+0x100 of descriptor 0 is not in guest RAM");
    expect_queue_goes_on(head);
}

TEST_F(BadChainTest, ZeroLengthBufferOutsideRam) {
    const std::uint16_t head = driver.add_chain(std::array{DriverBuffer{kHole + 0x10, 0, false}});
    EXPECT_EQ(chain_error(head),
              "test queue: chain 0: buffer 0x20010+0x0 of descriptor 0 is not in guest RAM");
}

TEST_F(BadChainTest, LinkPastTheTable) {
    const std::uint16_t head = driver.add_chain(std::array{driver.readable(bytes_of("a"))});
    driver.set_descriptor(head, {kData, 1, kDescriptorNext, kSize});
    EXPECT_EQ(chain_error(head),
              "test queue: chain 0: descriptor 0 links to 16, past the table's 16 entries");
    expect_queue_goes_on(head);
}

TEST_F(BadChainTest, LoopEndsWithinTheQueueSize) {
    const std::uint16_t head = driver.add_chain(std::array{driver.writable(4), driver.writable(4)});
    Descriptor last = driver.descriptor(1);
    last.flags |= kDescriptorNext;
    last.next = head;
    driver.set_descriptor(1, last);
    EXPECT_EQ(chain_error(head),
              "test queue: chain 0: more than 16 descriptors in the descriptor table: a loop?");
    expect_queue_goes_on(head);
}

TEST_F(BadChainTest, DescriptorLinkingToItself) {
    const std::uint16_t head = driver.take_free_descriptor();
    driver.set_descriptor(head, {kData, 8, kDescriptorNext, head});
    driver.offer(head);
    EXPECT_EQ(chain_error(head),
              "test queue: chain 0: more than 16 descriptors in the descriptor table: a loop?");
}

TEST_F(BadChainTest, ReadableAfterWritable) {
    const std::uint16_t head =
        driver.add_chain(std::array{driver.writable(4), driver.readable(bytes_of("late"))});
    EXPECT_EQ(chain_error(head),
              "test queue: chain 0: descriptor 1 is device-readable but follows a device-writable one");
    expect_queue_goes_on(head);
}

TEST_F(BadChainTest, ReadableInTheIndirectTableAfterWritableBeforeIt) {
    const auto table = driver.write_indirect_table(std::array{driver.readable(bytes_of("late"))});
    const auto reply = driver.writable(4);
    driver.set_descriptor(0, {reply.address, 4, kDescriptorWrite | kDescriptorNext, 1});
    driver.set_descriptor(1, {table, 16, kDescriptorIndirect, 0});
    driver.offer(0);
    EXPECT_EQ(
        chain_error(0),
        "test queue: chain 0: indirect descriptor 0 is device-readable but follows a device-writable one");
}

TEST_F(BadChainTest, TotalLengthOver4GiB) {
    // Spec 2.7.5: no chain is longer than 2^32 bytes. Buffers can overlap, so
    // a small guest can describe that many: 4096 descriptors of 1 MiB + 1.
    constexpr std::uint16_t kBigSize = 4096;
    constexpr std::uint64_t kRamSize = 2 << 20;
    vim::testing::GuestRam big_ram(0, kRamSize);
    vim::testing::VirtqueueDriver big_driver(big_ram.memory(), kBigSize,
                                             vim::testing::RingLayout::packed(0, kBigSize), 0x20000,
                                             kRamSize - 0x20000);
    Queue big_queue("big queue", kBigSize);
    big_driver.configure(big_queue);
    std::vector<DriverBuffer> buffers(kBigSize, DriverBuffer{0xfffff, (1 << 20) + 1, true});
    big_driver.add_chain(buffers);
    try {
        (void)big_queue.pop(big_ram.memory());
        FAIL();
    } catch (const InvalidChainError& error) {
        EXPECT_STREQ(error.what(), "big queue: chain 0: buffers add up to more than 4 GiB");
    }
}

// --- Indirect tables -----------------------------------------------------------

TEST_F(BadChainTest, IndirectTableInsideAnIndirectTable) {
    const auto inner = driver.write_indirect_table(std::array{driver.writable(4)});
    const auto outer = driver.allocate(16);
    driver.write(outer, Descriptor{inner, 16, kDescriptorIndirect, 0});
    const std::uint16_t head = driver.take_free_descriptor();
    driver.set_descriptor(head, {outer, 16, kDescriptorIndirect, 0});
    driver.offer(head);
    EXPECT_EQ(chain_error(head),
              "test queue: chain 0: indirect descriptor 0 points at another indirect table");
    expect_queue_goes_on(head);
}

TEST_F(BadChainTest, IndirectDescriptorWithNext) {
    const std::uint16_t head = driver.add_indirect_chain(std::array{driver.writable(4)});
    Descriptor indirect = driver.descriptor(head);
    indirect.flags |= kDescriptorNext;
    indirect.next = 5;
    driver.set_descriptor(head, indirect);
    EXPECT_EQ(chain_error(head),
              "test queue: chain 0: descriptor 0 points at an indirect table and has NEXT set");
    expect_queue_goes_on(head);
}

TEST_F(BadChainTest, IndirectTableLengthNotAMultipleOf16) {
    const std::uint16_t head = driver.add_indirect_chain(std::array{driver.writable(4), driver.writable(4)});
    Descriptor indirect = driver.descriptor(head);
    indirect.length = 20;
    driver.set_descriptor(head, indirect);
    EXPECT_EQ(chain_error(head),
              "test queue: chain 0: indirect table length 20 is not a non-zero multiple of 16");
    expect_queue_goes_on(head);
}

TEST_F(BadChainTest, EmptyIndirectTable) {
    const std::uint16_t head = driver.take_free_descriptor();
    driver.set_descriptor(head, {kData, 0, kDescriptorIndirect, 0});
    driver.offer(head);
    EXPECT_EQ(chain_error(head),
              "test queue: chain 0: indirect table length 0 is not a non-zero multiple of 16");
}

TEST_F(BadChainTest, IndirectTableLongerThanTheQueue) {
    // Spec 2.7.5.3.1: no chain is longer than the queue size, tables included.
    std::vector<DriverBuffer> buffers(kSize + 1, driver.writable(4));
    const std::uint16_t head = driver.add_indirect_chain(buffers);
    EXPECT_EQ(chain_error(head),
              "test queue: chain 0: indirect table of 17 descriptors is longer than the queue size 16");
    expect_queue_goes_on(head);
}

TEST_F(BadChainTest, IndirectTableOutsideRam) {
    const std::uint16_t head = driver.take_free_descriptor();
    driver.set_descriptor(head, {kHole - 16, 32, kDescriptorIndirect, 0});
    driver.offer(head);
    EXPECT_EQ(chain_error(head), "test queue: chain 0: indirect table 0x1fff0+0x20 is not in guest RAM");
    expect_queue_goes_on(head);
}

TEST_F(BadChainTest, LoopInsideAnIndirectTable) {
    const auto buffer = driver.writable(4);
    const auto table = driver.write_indirect_table(std::array{buffer, buffer, buffer});
    driver.write(table + 2 * sizeof(Descriptor),
                 Descriptor{buffer.address, 4, kDescriptorWrite | kDescriptorNext, 1});
    const std::uint16_t head = driver.take_free_descriptor();
    driver.set_descriptor(head, {table, 3 * sizeof(Descriptor), kDescriptorIndirect, 0});
    driver.offer(head);
    EXPECT_EQ(chain_error(head),
              "test queue: chain 0: more than 3 descriptors in its indirect table: a loop?");
    expect_queue_goes_on(head);
}

TEST_F(BadChainTest, LinkPastTheIndirectTable) {
    const auto buffer = driver.writable(4);
    const auto table = driver.write_indirect_table(std::array{buffer, buffer});
    driver.write(table + sizeof(Descriptor),
                 Descriptor{buffer.address, 4, kDescriptorWrite | kDescriptorNext, 2});
    const std::uint16_t head = driver.take_free_descriptor();
    driver.set_descriptor(head, {table, 2 * sizeof(Descriptor), kDescriptorIndirect, 0});
    driver.offer(head);
    EXPECT_EQ(chain_error(head),
              "test queue: chain 0: indirect descriptor 1 links to 2, past the table's 2 entries");
}

TEST_F(BadChainTest, IndirectBufferOutsideRam) {
    const std::uint16_t head =
        driver.add_indirect_chain(std::array{driver.readable(bytes_of("ok")), DriverBuffer{kHole, 4, true}});
    EXPECT_EQ(chain_error(head),
              "test queue: chain 0: buffer 0x20000+0x4 of indirect descriptor 1 is not in guest RAM");
    expect_queue_goes_on(head);
}

// --- A broken queue: the device needs a reset ------------------------------

TEST_F(BadChainTest, AvailIdxJumpingPastTheQueueSizeBreaksTheQueue) {
    driver.set_avail_idx(kSize + 1);
    EXPECT_EQ(broken_queue_error(),
              "test queue: avail.idx 17 is 17 entries ahead of the device's 0, more than the queue size 16");
    // It stays broken: nothing is taken from a ring that makes no sense.
    EXPECT_THROW((void)queue.pop(memory()), QueueBrokenError);
    EXPECT_EQ(queue.state().next_avail, 0);
}

TEST_F(BadChainTest, AvailIdxGoingBackwardsBreaksTheQueue) {
    driver.add_chain(std::array{driver.writable(4)});
    (void)pop_chain();
    driver.set_avail_idx(0);
    EXPECT_EQ(
        broken_queue_error(),
        "test queue: avail.idx 0 is 65535 entries ahead of the device's 1, more than the queue size 16");
}

TEST_F(BadChainTest, AFullRingIsNotAJump) {
    for (int i = 0; i < kSize; ++i) {
        driver.add_chain(std::array{driver.writable(4)});
    }
    for (int i = 0; i < kSize; ++i) {
        (void)pop_chain();
    }
}

TEST_F(BadChainTest, AvailableEntryNamingNoDescriptorBreaksTheQueue) {
    driver.offer(kSize);
    EXPECT_EQ(broken_queue_error(), "test queue: available ring entry 0 names descriptor 16 of 16");
}

TEST_F(BadChainTest, BrokenQueueAndBadChainAreDistinctErrors) {
    driver.add_chain(std::array{DriverBuffer{kHole, 4, false}});
    EXPECT_THROW((void)queue.pop(memory()), InvalidChainError);
    driver.set_avail_idx(100);
    EXPECT_THROW((void)queue.pop(memory()), QueueBrokenError);
}

}  // namespace
}  // namespace vim::vmm::virtio
