#include "group_commit.h"

namespace vim::controller::store {

std::exception_ptr run_in_savepoint(Connection& connection, const std::function<void(Connection&)>& work) {
    connection.prepare("SAVEPOINT write").run();
    try {
        work(connection);
        connection.prepare("RELEASE write").run();
        return nullptr;
    } catch (...) {
        if (!connection.in_transaction()) {
            throw;
        }
        auto error = std::current_exception();
        connection.prepare("ROLLBACK TO write").run();
        connection.prepare("RELEASE write").run();
        return error;
    }
}

struct GroupCommit::Waiter {
    const Work& work;
    std::exception_ptr error;
    bool done = false;
    std::condition_variable wake;
};

void GroupCommit::run(const Work& work) {
    Waiter waiter{work, nullptr, false, {}};
    std::unique_lock lock(mutex_);
    queue_.push_back(&waiter);
    while (!waiter.done) {
        if (!leading_) {
            lead(lock);
        } else {
            waiter.wake.wait(lock);
        }
    }
    if (waiter.error) {
        std::rethrow_exception(waiter.error);
    }
}

// Commits one batch with the lock released, so that callers keep queueing for the next one. The leader
// leads once: if more queued meanwhile, the first of them takes over, and no caller waits on others'
// batches longer than one commit beyond its own.
void GroupCommit::lead(std::unique_lock<std::mutex>& lock) {
    leading_ = true;
    std::vector<Waiter*> batch;
    while (!queue_.empty() && batch.size() < max_batch_) {
        batch.push_back(queue_.front());
        queue_.pop_front();
    }
    lock.unlock();
    commit(batch);
    lock.lock();
    for (auto* waiter : batch) {
        waiter->done = true;
        waiter->wake.notify_one();
    }
    leading_ = false;
    if (!queue_.empty()) {
        queue_.front()->wake.notify_one();
    }
}

void GroupCommit::commit(const std::vector<Waiter*>& batch) noexcept {
    try {
        // BEGIN IMMEDIATE takes the write lock first, so what a write reads stays true until COMMIT: the
        // claim checks depend on it.
        connection_.exec("BEGIN IMMEDIATE");
        for (auto* waiter : batch) {
            waiter->error = run_in_savepoint(connection_, waiter->work);
        }
        connection_.exec("COMMIT");
    } catch (...) {
        const auto error = std::current_exception();
        for (auto* waiter : batch) {
            if (!waiter->error) {
                waiter->error = error;
            }
        }
        try {
            if (connection_.in_transaction()) {
                connection_.exec("ROLLBACK");
            }
        } catch (...) {
            // The connection is unusable either way; the next BEGIN reports why.
        }
    }
}

}  // namespace vim::controller::store
