#include "lifecycle.h"

namespace vim::vmm::machine {

void Lifecycle::end(Outcome outcome) {
    {
        std::lock_guard lock(mutex_);
        if (outcome_) {
            return;
        }
        outcome_ = std::move(outcome);
    }
    if (stop_everything_) {
        stop_everything_();
    }
}

bool Lifecycle::has_ended() const {
    std::lock_guard lock(mutex_);
    return outcome_.has_value();
}

bool Lifecycle::begin_shutdown() {
    std::lock_guard lock(mutex_);
    if (outcome_ || shutting_down_) {
        return false;
    }
    shutting_down_ = true;
    return true;
}

void Lifecycle::mark_migrated() {
    std::lock_guard lock(mutex_);
    migrated_ = true;
}

bool Lifecycle::migrated() const {
    std::lock_guard lock(mutex_);
    return migrated_;
}

const char* Lifecycle::state() const {
    std::lock_guard lock(mutex_);
    return outcome_ ? "stopping" : migrated_ ? "migrated" : shutting_down_ ? "shutting-down" : "running";
}

Outcome Lifecycle::outcome() const {
    std::lock_guard lock(mutex_);
    return outcome_.value_or(Outcome{1, "the VM has not ended"});
}

}  // namespace vim::vmm::machine
