#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "controller/store/store.h"
#include "metrics.h"

namespace vim::controller::vimd {

// What a work throws when it failed but has a result to keep (an evacuation: which VMs moved, which did not).
class OperationFailure : public std::runtime_error {
public:
    OperationFailure(const std::string& message, nlohmann::json result)
        : std::runtime_error(message), result_(std::move(result)) {}
    const nlohmann::json& result() const { return result_; }

private:
    nlohmann::json result_;
};

// Runs operations (already stored as pending) on a pool of threads: each goes running, then succeeded
// with its work's result or failed with what the work threw. A sweeper fails every pending or running
// operation past its deadline, so an operation whose agent never answers ends as failed on time even
// while its thread is still waiting; the late result of such an operation is then dropped.
class OperationRunner {
public:
    // Reports progress (0-100) of the running operation.
    using Progress = std::function<void(int)>;
    // What a work that succeeded leaves.
    struct Outcome {
        Outcome(nlohmann::json result, std::function<void(store::Vm&)> target_vm_change = {})
            : result(std::move(result)), target_vm_change(std::move(target_vm_change)) {}
        nlohmann::json result;
        // Applied to the VM the operation targets in the transaction that records the success (one commit
        // rather than two, and no crash between them), whatever the operation's record says by then.
        std::function<void(store::Vm&)> target_vm_change;
    };
    using Work = std::function<Outcome(const Progress&)>;

    OperationRunner(store::Store& store, std::size_t threads, std::chrono::milliseconds sweep_interval,
                    Counters& finished);
    ~OperationRunner();
    OperationRunner(const OperationRunner&) = delete;
    OperationRunner& operator=(const OperationRunner&) = delete;

    void submit(const std::string& operation_id, Work work);
    // Fails the pending and running operations past their deadline; returns how many.
    std::size_t sweep_deadlines();
    // At start-up: nothing runs yet, so every pending or running operation was left by an earlier run.
    // Fails them and returns their records as they were.
    std::vector<store::Operation> fail_unfinished(const std::string& reason);
    // Waits for the queued work to finish and the threads to end.
    void stop();

private:
    struct Task {
        std::string operation_id;
        Work work;
    };
    void worker();
    void sweeper();
    void finish(const std::string& operation_id, store::OperationState state, const nlohmann::json& result,
                const std::string& error, const std::function<void(store::Vm&)>& target_vm_change = {});

    store::Store& store_;
    Counters& finished_;
    std::chrono::milliseconds sweep_interval_;
    std::mutex mutex_;
    std::condition_variable wake_;        // workers
    std::condition_variable sweep_wake_;  // the sweeper, at stop
    std::deque<Task> queue_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace vim::controller::vimd
