#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>

#include "controller/store/store.h"

namespace vim::controller::store {

// Group commit for VM creations from many threads: each caller blocks until its creation is committed
// (durably) or refused, while the callers that arrive during one commit share the next one.
// The first caller to find no commit running leads: it takes everything queued, calls
// Store::create_vms once, hands each caller its outcome, and repeats while more arrived.
// No thread of its own; a lone caller pays exactly one transaction.
class ClaimBatcher {
public:
    explicit ClaimBatcher(Store& store, std::size_t max_batch = 4096)
        : store_(store), max_batch_(max_batch) {}
    ClaimBatcher(const ClaimBatcher&) = delete;
    ClaimBatcher& operator=(const ClaimBatcher&) = delete;

    // As Store::create_vm: returns once committed, or throws what that creation threw.
    VmCreated create_vm(VmCreation creation);

private:
    struct Waiter;
    void lead(std::unique_lock<std::mutex>& lock);

    Store& store_;
    const std::size_t max_batch_;
    std::mutex mutex_;
    std::deque<Waiter*> queue_;
    bool leading_ = false;
};

}  // namespace vim::controller::store
