#pragma once

#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unordered_map>

#include "controller/scheduler/cluster_view.h"
#include "controller/scheduler/scheduler.h"
#include "controller/store/store.h"

namespace vim::controller::scheduler {

// No host can take the VM: what() is the decision's reason. The API answers 409 with it.
class NoValidHostError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Placement for the controller: decides on an in-memory view and claims in the store, safely from many
// threads. A decision reserves its resources in the view at once, so concurrent decisions do not pile on
// the same slot; the claim is then committed by the store (which shares commits among concurrent callers)
// and, should the store refuse it (the view was stale), the reservation is dropped, the host re-read and
// the decision retried.
//
// The view follows the claims made here; other writes to hosts and VMs must be reported with the
// sync_*/forget_* calls (after the store write), or reload() rebuilds the view. Heartbeats too
// (record_heartbeat): a host the view has not heard from for Config::heartbeat_staleness_ms is not chosen.
class Placement {
public:
    using Clock = std::function<store::TimeMs()>;

    Placement(store::Store& store, Config config, Clock clock = store::now_ms);

    // Places creation.vm (host_id and numa_node chosen here) and creates it with its operation and
    // idempotency record, durably. Throws NoValidHostError, or what the store throws for the creation.
    store::VmCreated create_vm(store::VmCreation creation);
    // Places an existing unplaced VM.
    store::Vm place_vm(const std::string& vm_id);
    // Claims a migration target for a placed VM: `target_host_name` or, when empty, the best host other
    // than its own. Throws NoValidHostError when the named host does not pass the filters.
    store::Vm claim_migration(const std::string& vm_id, const std::string& target_host_name = "");

    // Why each host would be rejected, or how it would score, for a request (POST /v1/placement/explain).
    Explanation explain(const Request& request);

    void sync_host(const store::Host& host);
    void forget_host(const std::string& host_id);
    void record_heartbeat(const std::string& host_id, store::TimeMs at);
    void sync_vm(const store::Vm& vm);
    void forget_vm(const std::string& vm_id);
    void reload();

    // Reads under the view's lock (metrics: capacity used and free).
    void with_view(const std::function<void(const ClusterView&)>& read);

private:
    Request request_for(const store::Vm& vm);
    // Decides under the lock and counts the VM in the view at once (its reservation).
    Decision reserve(const Request& request, store::Vm& vm, bool migration);
    // After a refused claim: the view was stale about this host, so read it (and its VMs) again.
    void refresh_host(const std::string& host_id);
    // Reserves a decision for `vm` (as its host or, for a migration, its target) and hands the reserved
    // record to `claim`, which commits it in the store; a refused claim is retried on a fresh decision.
    // The view gets `vm` back as it was when no claim holds.
    template <typename Claim>
    auto reserve_and_claim(const Request& request, const store::Vm& vm, bool migration, Claim claim)
        -> std::invoke_result_t<Claim&, const store::Vm&>;

    store::Store& store_;
    Scheduler scheduler_;
    Clock clock_;
    std::mutex mutex_;  // guards view_ and policies_
    ClusterView view_;
    std::unordered_map<std::string, store::GroupPolicy> policies_;  // a group's policy never changes
};

}  // namespace vim::controller::scheduler
