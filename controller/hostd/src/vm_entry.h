#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "agent_error.h"
#include "controller/api/types.h"
#include "controller/hostd/process.h"
#include "controller/hostd/vm_record.h"
#include "vm_manager.h"

namespace vim::controller::hostd {

// One VM of the manager; shared by the map and the requests acting on it.
struct VmManager::Vm {
    std::mutex action;  // held by an action (create, stop, migrate...) for its whole length
    std::mutex data;    // guards the fields below, briefly
    VmRecord record;
    std::optional<api::AgentVmSpec> spec;  // nullopt for a process adopted from outside
    std::shared_ptr<const Process> process;
    bool forgotten = false;  // deleted, migrated away or fenced: a new request starts afresh
    // The generation of its last create, start or prepare: a heartbeat reply older than that cannot fence it.
    std::atomic<std::uint64_t> touched{0};
    // When its last dirty-rate measurement was started (steady clock); zero: never.
    std::atomic<std::chrono::milliseconds> dirty_rate_started{std::chrono::milliseconds::zero()};
};

inline AgentError not_known(const std::string& id) {
    return AgentError(404, "vm " + id + ": not known on this host");
}

}  // namespace vim::controller::hostd
