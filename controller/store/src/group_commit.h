#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <vector>

#include "sqlite.h"

namespace vim::controller::store {

// Runs `work` under a savepoint of the open transaction: when it throws, its changes are undone (the
// transaction's others kept) and its exception returned. An error that ended the whole transaction
// (SQLite rolls back by itself on a full disk or an I/O error) is thrown instead: nothing is kept then.
std::exception_ptr run_in_savepoint(Connection& connection, const std::function<void(Connection&)>& work);

// Group commit for every write of the store: the writes that arrive from many threads while one commit
// is under way share the next transaction, and with it one fsync, each under its own savepoint so that
// each still succeeds or fails alone, as if made alone in order. The first caller to find no commit
// running leads: it takes what is queued, runs it all in one transaction, commits, hands each caller its
// outcome, and passes the lead to the first caller that queued meanwhile. No thread of its own: a lone
// write pays exactly one transaction.
class GroupCommit {
public:
    using Work = std::function<void(Connection&)>;

    GroupCommit(Connection& connection, std::size_t max_batch)
        : connection_(connection), max_batch_(max_batch) {}
    GroupCommit(const GroupCommit&) = delete;
    GroupCommit& operator=(const GroupCommit&) = delete;

    // Returns once `work` is committed durably. Throws what `work` threw (its changes undone) or what
    // ended the shared transaction (nothing of it kept). `work` runs on whichever thread leads.
    void run(const Work& work);

private:
    struct Waiter;
    void lead(std::unique_lock<std::mutex>& lock);
    // Runs the batch in one transaction and sets each waiter's error; never throws.
    void commit(const std::vector<Waiter*>& batch) noexcept;

    Connection& connection_;
    const std::size_t max_batch_;
    std::mutex mutex_;
    std::deque<Waiter*> queue_;
    bool leading_ = false;
};

}  // namespace vim::controller::store
