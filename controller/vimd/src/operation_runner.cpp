#include "operation_runner.h"

#include <spdlog/spdlog.h>

namespace vim::controller::vimd {

namespace {

bool finished(store::OperationState state) {
    return state == store::OperationState::succeeded || state == store::OperationState::failed;
}

}  // namespace

OperationRunner::OperationRunner(store::Store& store, std::size_t threads,
                                 std::chrono::milliseconds sweep_interval, Counters& finished)
    : store_(store), finished_(finished), sweep_interval_(sweep_interval) {
    for (std::size_t i = 0; i < threads; ++i) {
        threads_.emplace_back([this] { worker(); });
    }
    threads_.emplace_back([this] { sweeper(); });
}

OperationRunner::~OperationRunner() { stop(); }

void OperationRunner::stop() {
    {
        std::lock_guard lock(mutex_);
        if (stopping_) {
            return;
        }
        stopping_ = true;
    }
    wake_.notify_all();
    sweep_wake_.notify_all();
    for (auto& thread : threads_) {
        thread.join();
    }
}

void OperationRunner::submit(const std::string& operation_id, Work work) {
    {
        std::lock_guard lock(mutex_);
        queue_.push_back({operation_id, std::move(work)});
    }
    wake_.notify_one();
}

void OperationRunner::worker() {
    for (;;) {
        Task task;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) {
                return;
            }
            task = std::move(queue_.front());
            queue_.pop_front();
        }
        try {
            store_.update_operation(task.operation_id, [](store::Operation& operation) {
                if (operation.state == store::OperationState::pending) {
                    operation.state = store::OperationState::running;
                }
            });
            const Progress progress = [this, &task](int percent) {
                store_.update_operation(task.operation_id, [percent](store::Operation& operation) {
                    if (!finished(operation.state)) {
                        operation.progress = percent;
                    }
                });
            };
            const Outcome outcome = task.work(progress);
            finish(task.operation_id, store::OperationState::succeeded, outcome.result, "",
                   outcome.target_vm_change);
        } catch (const std::exception& error) {
            spdlog::warn("operation {} failed: {}", task.operation_id, error.what());
            const auto* failure = dynamic_cast<const OperationFailure*>(&error);
            try {
                finish(task.operation_id, store::OperationState::failed,
                       failure != nullptr ? failure->result() : nlohmann::json::object(), error.what());
            } catch (const std::exception& store_error) {
                spdlog::error("operation {}: recording its failure: {}", task.operation_id,
                              store_error.what());
            }
        }
    }
}

void OperationRunner::finish(const std::string& operation_id, store::OperationState state,
                             const nlohmann::json& result, const std::string& error,
                             const std::function<void(store::Vm&)>& target_vm_change) {
    bool recorded = false;
    std::string kind;
    const auto record = [&](store::Operation& operation) {
        kind = operation.kind;
        if (finished(operation.state)) {
            return;  // the sweeper failed it at its deadline: that verdict stands
        }
        operation.state = state;
        operation.progress = state == store::OperationState::succeeded ? 100 : operation.progress;
        operation.result = result.dump();
        operation.error = error;
        recorded = true;
    };
    if (target_vm_change) {
        store_.update_operation_and_target_vm(operation_id, record, target_vm_change);
    } else {
        store_.update_operation(operation_id, record);
    }
    if (recorded) {
        finished_.add("kind=" + label_value(kind) +
                      ",state=" + label_value(std::string(store::to_string(state))));
    }
}

std::size_t OperationRunner::sweep_deadlines() {
    const store::TimeMs now = store::now_ms();
    std::size_t failed = 0;
    for (const auto state : {store::OperationState::pending, store::OperationState::running}) {
        store::OperationFilter filter;
        filter.state = state;
        filter.deadline_before = now;
        store::PageRequest page;
        page.limit = store::kMaxPageLimit;
        for (;;) {
            auto overdue = store_.list_operations(filter, page);
            for (const auto& operation : overdue.items) {
                const std::string error = "timed out: no result by its deadline, " +
                                          std::to_string(now - operation.deadline_ms) + " ms ago";
                finish(operation.id, store::OperationState::failed, nlohmann::json::object(), error);
                spdlog::warn("operation {} ({} {}) {}", operation.id, operation.kind, operation.target_id,
                             error);
                ++failed;
            }
            if (overdue.next_page_token.empty()) {
                break;
            }
            page.page_token = overdue.next_page_token;
        }
    }
    return failed;
}

std::vector<store::Operation> OperationRunner::fail_unfinished(const std::string& reason) {
    std::vector<store::Operation> left;
    for (const auto state : {store::OperationState::pending, store::OperationState::running}) {
        store::OperationFilter filter;
        filter.state = state;
        store::PageRequest page;
        page.limit = store::kMaxPageLimit;
        for (;;) {
            auto unfinished = store_.list_operations(filter, page);
            left.insert(left.end(), unfinished.items.begin(), unfinished.items.end());
            if (unfinished.next_page_token.empty()) {
                break;
            }
            page.page_token = unfinished.next_page_token;
        }
    }
    for (const auto& operation : left) {
        finish(operation.id, store::OperationState::failed, nlohmann::json::object(), reason);
    }
    return left;
}

void OperationRunner::sweeper() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        sweep_wake_.wait_for(lock, sweep_interval_);
        if (stopping_) {
            break;
        }
        lock.unlock();
        try {
            sweep_deadlines();
        } catch (const std::exception& error) {
            spdlog::error("operation deadlines: {}", error.what());
        }
        lock.lock();
    }
}

}  // namespace vim::controller::vimd
