// Notification suppression in both directions (spec 2.7.7, 2.7.10), with and
// without VIRTIO_F_RING_EVENT_IDX.
#include <gtest/gtest.h>

#include "queue_fixture.h"
#include "vmm/virtio/queue.h"

namespace vim::vmm::virtio {
namespace {

class NotificationTest : public QueueTest {
protected:
    void complete_one() {
        driver.add_chain(std::array{driver.writable(4)});
        queue.add_used(memory(), pop_chain(), 4);
    }
};

TEST_F(NotificationTest, WithoutEventIdxEveryCompletionInterrupts) {
    driver.configure(queue);
    EXPECT_FALSE(queue.needs_notification(memory()));  // nothing completed yet
    complete_one();
    EXPECT_TRUE(queue.needs_notification(memory()));
    EXPECT_FALSE(queue.needs_notification(memory()));  // nothing new since
}

TEST_F(NotificationTest, WithoutEventIdxTheDriverCanAskForNoInterrupt) {
    driver.configure(queue);
    driver.set_avail_flags(kAvailNoInterrupt);
    complete_one();
    EXPECT_FALSE(queue.needs_notification(memory()));
    driver.set_avail_flags(0);
    complete_one();
    EXPECT_TRUE(queue.needs_notification(memory()));
}

TEST_F(NotificationTest, EventIdxInterruptsOnlyWhenUsedIdxPassesUsedEvent) {
    driver.configure(queue, true);
    // "Interrupt me once the entry at used index 2 is written."
    driver.set_used_event(2);
    complete_one();
    EXPECT_FALSE(queue.needs_notification(memory()));
    complete_one();
    EXPECT_FALSE(queue.needs_notification(memory()));
    complete_one();
    EXPECT_TRUE(queue.needs_notification(memory()));
    // used_event now lies behind: the driver has not asked again.
    complete_one();
    EXPECT_FALSE(queue.needs_notification(memory()));
}

TEST_F(NotificationTest, EventIdxCountsEveryCompletionSinceTheLastCheck) {
    driver.configure(queue, true);
    driver.set_used_event(1);
    // Three completed in one batch; used_event is the second of them.
    complete_one();
    complete_one();
    complete_one();
    EXPECT_TRUE(queue.needs_notification(memory()));
}

TEST_F(NotificationTest, EventIdxAcrossTheWrapOfUsedIdx) {
    driver.start_indices_at(65534);
    queue.restore(driver.queue_state(true), memory());
    driver.set_used_event(65535);
    complete_one();  // used.idx 65535
    EXPECT_FALSE(queue.needs_notification(memory()));
    complete_one();  // used.idx 0: entry 65535 written
    EXPECT_EQ(driver.used_idx(), 0);
    EXPECT_TRUE(queue.needs_notification(memory()));
}

TEST_F(NotificationTest, WithoutEventIdxDeviceNotificationsTurnOffAndOnByFlag) {
    driver.configure(queue);
    queue.disable_notification(memory());
    EXPECT_EQ(driver.used_flags(), kUsedNoNotify);
    EXPECT_FALSE(queue.enable_notification(memory()));
    EXPECT_EQ(driver.used_flags(), 0);
}

TEST_F(NotificationTest, EventIdxAsksToBeNotifiedFromTheNextChain) {
    driver.configure(queue, true);
    driver.add_chain(std::array{driver.writable(4)});
    driver.add_chain(std::array{driver.writable(4)});
    queue.disable_notification(memory());
    EXPECT_EQ(driver.used_flags(), 0);  // event idx: the flag is not used
    (void)pop_chain();
    (void)pop_chain();
    EXPECT_FALSE(queue.enable_notification(memory()));
    EXPECT_EQ(driver.avail_event(), 2);
}

TEST_F(NotificationTest, EnablingReportsChainsThatArrivedMeanwhile) {
    // The race the re-check closes: a chain offered while notifications were
    // off must not wait for a notification that never comes.
    for (bool event_idx : {false, true}) {
        queue.reset();
        driver.start_indices_at(0);
        driver.configure(queue, event_idx);
        queue.disable_notification(memory());
        driver.add_chain(std::array{driver.writable(4)});
        EXPECT_TRUE(queue.enable_notification(memory())) << "event idx " << event_idx;
        (void)pop_chain();
        EXPECT_FALSE(queue.enable_notification(memory())) << "event idx " << event_idx;
    }
}

TEST_F(NotificationTest, QueueNotReadyNeverNotifies) {
    EXPECT_FALSE(queue.needs_notification(memory()));
    EXPECT_FALSE(queue.enable_notification(memory()));
    queue.disable_notification(memory());
    EXPECT_EQ(driver.used_flags(), 0);
}

}  // namespace
}  // namespace vim::vmm::virtio
