#include "controller/store/claim_batcher.h"

#include <optional>
#include <vector>

namespace vim::controller::store {

struct ClaimBatcher::Waiter {
    VmCreation creation;
    std::optional<VmCreationOutcome> outcome;
    std::condition_variable done;
};

VmCreated ClaimBatcher::create_vm(VmCreation creation) {
    Waiter waiter{std::move(creation), std::nullopt, {}};
    std::unique_lock lock(mutex_);
    queue_.push_back(&waiter);
    while (!waiter.outcome) {
        if (!leading_) {
            lead(lock);
        } else {
            waiter.done.wait(lock);
        }
    }
    if (auto* created = std::get_if<VmCreated>(&*waiter.outcome)) {
        return std::move(*created);
    }
    std::rethrow_exception(std::get<std::exception_ptr>(*waiter.outcome));
}

// Commits one batch with the lock released, so that callers keep queueing for the next one. The leader
// leads once: if more queued meanwhile, the first of them takes over, and no caller waits on others'
// batches longer than one commit beyond its own.
void ClaimBatcher::lead(std::unique_lock<std::mutex>& lock) {
    leading_ = true;
    std::vector<Waiter*> batch;
    while (!queue_.empty() && batch.size() < max_batch_) {
        batch.push_back(queue_.front());
        queue_.pop_front();
    }
    lock.unlock();
    std::vector<VmCreation> creations;
    creations.reserve(batch.size());
    for (auto* waiter : batch) {
        creations.push_back(std::move(waiter->creation));
    }
    std::vector<VmCreationOutcome> outcomes;
    try {
        outcomes = store_.create_vms(creations);
    } catch (...) {
        outcomes.assign(batch.size(), std::current_exception());
    }
    lock.lock();
    for (std::size_t i = 0; i < batch.size(); ++i) {
        batch[i]->outcome = std::move(outcomes[i]);
        batch[i]->done.notify_one();
    }
    leading_ = false;
    if (!queue_.empty()) {
        queue_.front()->done.notify_one();
    }
}

}  // namespace vim::controller::store
