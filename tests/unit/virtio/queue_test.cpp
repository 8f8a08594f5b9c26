#include "vmm/virtio/queue.h"

#include <gtest/gtest.h>

#include "queue_fixture.h"

namespace vim::vmm::virtio {
namespace {

using vim::testing::DriverBuffer;

class QueueNormalTest : public QueueTest {
protected:
    void SetUp() override { driver.configure(queue); }
};

TEST_F(QueueNormalTest, NothingOfferedNothingPopped) { EXPECT_FALSE(queue.pop(memory())); }

TEST_F(QueueNormalTest, ChainGivesReadableThenWritableBuffers) {
    const auto header = driver.readable(bytes_of("header--16-bytes"));
    const auto payload = driver.readable(std::vector<std::uint8_t>(512, 7));
    const auto data = driver.writable(1024);
    const auto status = driver.writable(1);
    const std::uint16_t head = driver.add_chain(std::array{header, payload, data, status});

    const DescriptorChain chain = pop_chain();
    EXPECT_EQ(chain.head, head);
    EXPECT_EQ(chain.readable, (std::vector<GuestBuffer>{{header.address, 16}, {payload.address, 512}}));
    EXPECT_EQ(chain.writable, (std::vector<GuestBuffer>{{data.address, 1024}, {status.address, 1}}));
    EXPECT_EQ(chain.readable_length(), 528u);
    EXPECT_EQ(chain.writable_length(), 1025u);
    EXPECT_FALSE(queue.pop(memory()));
}

TEST_F(QueueNormalTest, CompletionReachesTheDriver) {
    const std::uint16_t first = driver.add_chain(std::array{driver.writable(64)});
    const std::uint16_t second =
        driver.add_chain(std::array{driver.readable(bytes_of("x")), driver.writable(8)});
    const DescriptorChain a = pop_chain();
    const DescriptorChain b = pop_chain();
    // Completed out of order, as a disk may.
    queue.add_used(memory(), b, 8);
    queue.add_used(memory(), a, 3);

    EXPECT_EQ(driver.used_idx(), 2);
    const auto used = driver.take_used();
    ASSERT_EQ(used.size(), 2u);
    EXPECT_EQ(used[0].id, second);
    EXPECT_EQ(used[0].length, 8u);
    EXPECT_EQ(used[1].id, first);
    EXPECT_EQ(used[1].length, 3u);
}

TEST_F(QueueNormalTest, ChainMayUseEveryDescriptorOfTheTable) {
    std::vector<DriverBuffer> buffers;
    for (int i = 0; i < kSize; ++i) {
        buffers.push_back(driver.writable(4));
    }
    driver.add_chain(buffers);
    EXPECT_EQ(pop_chain().writable.size(), kSize);
}

TEST_F(QueueNormalTest, IndirectChain) {
    const auto request = driver.readable(bytes_of("request"));
    const auto reply = driver.writable(32);
    const std::uint16_t head = driver.add_indirect_chain(std::array{request, reply});

    const DescriptorChain chain = pop_chain();
    EXPECT_EQ(chain.head, head);
    EXPECT_EQ(chain.readable, (std::vector<GuestBuffer>{{request.address, 7}}));
    EXPECT_EQ(chain.writable, (std::vector<GuestBuffer>{{reply.address, 32}}));
}

TEST_F(QueueNormalTest, DirectDescriptorsMayLeadToAnIndirectTable) {
    // Spec 2.7.5.3.2: zero or more chained descriptors, then the indirect one.
    const auto header = driver.readable(bytes_of("head"));
    const auto reply = driver.writable(16);
    const auto table = driver.write_indirect_table(std::array{reply});
    const std::uint16_t first = driver.take_free_descriptor();
    const std::uint16_t second = driver.take_free_descriptor();
    driver.set_descriptor(first, {header.address, header.length, kDescriptorNext, second});
    // The WRITE flag of a descriptor pointing at a table means nothing.
    driver.set_descriptor(second, {table, 16, kDescriptorIndirect | kDescriptorWrite, 0});
    driver.offer(first);

    const DescriptorChain chain = pop_chain();
    EXPECT_EQ(chain.readable, (std::vector<GuestBuffer>{{header.address, 4}}));
    EXPECT_EQ(chain.writable, (std::vector<GuestBuffer>{{reply.address, 16}}));
}

TEST_F(QueueNormalTest, ZeroLengthBufferInsideRam) {
    driver.add_chain(std::array{DriverBuffer{kData, 0, false}});
    EXPECT_EQ(pop_chain().readable, (std::vector<GuestBuffer>{{kData, 0}}));
}

TEST_F(QueueNormalTest, BuffersInTheSecondRegion) {
    driver.add_chain(std::array{DriverBuffer{kHighRam, static_cast<std::uint32_t>(kHighRamSize), true}});
    EXPECT_EQ(pop_chain().writable_length(), kHighRamSize);
}

TEST_F(QueueTest, IndicesWrapAroundAt16Bits) {
    // A full ring offered across the wrap of avail.idx and completed across
    // the wrap of used.idx.
    driver.start_indices_at(65530);
    queue.restore(driver.queue_state(), memory());
    const auto buffer = driver.writable(8);
    std::vector<std::uint16_t> heads;
    for (int i = 0; i < kSize; ++i) {
        heads.push_back(driver.add_chain(std::array{buffer}));
    }
    EXPECT_EQ(driver.avail_idx(), static_cast<std::uint16_t>(65530 + kSize));
    for (int i = 0; i < kSize; ++i) {
        const DescriptorChain chain = pop_chain();
        EXPECT_EQ(chain.head, heads[i]);
        queue.add_used(memory(), chain, static_cast<std::uint32_t>(i));
    }
    EXPECT_FALSE(queue.pop(memory()));
    EXPECT_EQ(driver.used_idx(), static_cast<std::uint16_t>(65530 + kSize));
    const auto used = driver.take_used();
    ASSERT_EQ(used.size(), kSize);
    for (int i = 0; i < kSize; ++i) {
        EXPECT_EQ(used[i].id, heads[i]);
        EXPECT_EQ(used[i].length, static_cast<std::uint32_t>(i));
    }
}

TEST_F(QueueNormalTest, LongRunPassesTheWrapSeveralTimes) {
    const auto buffer = driver.writable(8);
    for (int request = 0; request < 3 * 65536 / 2; ++request) {
        const std::uint16_t head = driver.add_chain(std::array{buffer});
        const DescriptorChain chain = pop_chain();
        ASSERT_EQ(chain.head, head);
        queue.add_used(memory(), chain, 1);
        ASSERT_EQ(driver.take_used().size(), 1u);
    }
    EXPECT_EQ(queue.state().next_avail, static_cast<std::uint16_t>(3 * 65536 / 2));
    EXPECT_EQ(driver.used_idx(), queue.state().next_used);
}

TEST_F(QueueNormalTest, StateSavedAndRestoredCarriesOn) {
    driver.add_chain(std::array{driver.writable(8)});
    const std::uint16_t second = driver.add_chain(std::array{driver.writable(8)});
    queue.add_used(memory(), pop_chain(), 8);

    Queue restored{"restored queue", 256};
    restored.restore(queue.state(), memory());
    EXPECT_EQ(restored.state(), queue.state());
    std::optional<DescriptorChain> chain = restored.pop(memory());
    ASSERT_TRUE(chain);
    EXPECT_EQ(chain->head, second);
    restored.add_used(memory(), *chain, 8);
    EXPECT_EQ(driver.used_idx(), 2);
}

TEST_F(QueueTest, RestoringABadReadyStateIsRefused) {
    QueueState state = driver.queue_state();
    state.used_ring = kHole;
    EXPECT_THROW(queue.restore(state, memory()), QueueBrokenError);
    EXPECT_FALSE(queue.ready());
}

TEST_F(QueueNormalTest, ResetStopsTheQueueAndDropsLateCompletions) {
    driver.add_chain(std::array{driver.writable(8)});
    const DescriptorChain chain = pop_chain();
    queue.reset();
    EXPECT_FALSE(queue.ready());
    EXPECT_EQ(queue.state().size, 256);
    EXPECT_EQ(queue.state().next_avail, 0);
    // An I/O that completes after the reset touches nothing.
    queue.add_used(memory(), chain, 8);
    EXPECT_EQ(driver.used_idx(), 0);
    EXPECT_FALSE(queue.pop(memory()));
}

TEST_F(QueueNormalTest, RegisterWritesToALiveQueueAreIgnored) {
    const QueueState before = queue.state();
    queue.set_size(4);
    queue.set_descriptor_table(kHole);
    queue.set_avail_ring(kHole);
    queue.set_used_ring(kHole);
    queue.set_event_idx(true);
    queue.enable(memory());
    EXPECT_EQ(queue.state(), before);
}

TEST_F(QueueNormalTest, CompletingAHeadOutsideTheQueueIsADeviceBug) {
    EXPECT_THROW(queue.add_used(memory(), kSize, 0), std::invalid_argument);
}

TEST(QueueConstruction, MaximumSizeMustBeAPowerOfTwoUpTo32768) {
    EXPECT_THROW(Queue("q", 0), std::invalid_argument);
    EXPECT_THROW(Queue("q", 48), std::invalid_argument);
    EXPECT_NO_THROW(Queue("q", 1));
    EXPECT_NO_THROW(Queue("q", kMaxQueueSize));
    try {
        Queue("virtio-blk0 queue 0", 1000);
        FAIL();
    } catch (const std::invalid_argument& error) {
        EXPECT_STREQ(error.what(),
                     "virtio-blk0 queue 0: maximum queue size 1000 is not a power of two from 1 to 32768");
    }
}

}  // namespace
}  // namespace vim::vmm::virtio
