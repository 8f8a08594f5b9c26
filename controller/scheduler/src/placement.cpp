#include "controller/scheduler/placement.h"

#include <algorithm>

namespace vim::controller::scheduler {

namespace {

// A refused claim means the view was stale; after this many the cluster is changing faster than we
// can follow, and the caller hears why the last one was refused.
constexpr int kClaimAttempts = 4;

}  // namespace

Placement::Placement(store::Store& store, Config config, Clock clock)
    : store_(store), scheduler_(config), clock_(std::move(clock)), view_(ClusterView::load(store)) {}

Request Placement::request_for(const store::Vm& vm) {
    std::optional<store::ServerGroup> group;
    if (!vm.server_group_id.empty()) {
        std::unique_lock lock(mutex_);
        auto known = policies_.find(vm.server_group_id);
        if (known != policies_.end()) {
            group = store::ServerGroup{vm.server_group_id, "", known->second, 0};
        } else {
            lock.unlock();
            group = store_.get_server_group(vm.server_group_id);  // NotFoundError names the group
            lock.lock();
            policies_.emplace(group->id, group->policy);
        }
    }
    return Request::for_vm(vm, group);
}

Decision Placement::reserve(const Request& request, store::Vm& vm, bool migration) {
    std::lock_guard lock(mutex_);
    Decision decision = scheduler_.decide(view_, request, clock_());
    if (!decision.placed()) {
        throw NoValidHostError(decision.reason);
    }
    if (migration) {
        vm.migration_host_id = decision.host_id;
        vm.migration_numa_node = decision.numa_node;
    } else {
        vm.host_id = decision.host_id;
        vm.numa_node = decision.numa_node;
    }
    view_.sync_vm(vm);
    return decision;
}

void Placement::refresh_host(const std::string& host_id) {
    std::optional<store::Host> host;
    std::vector<store::Vm> vms;
    try {
        host = store_.get_host(host_id);
        store::VmFilter on_host;
        on_host.host_id = host_id;
        store::PageRequest page{store::kMaxPageLimit, ""};
        do {
            auto found = store_.list_vms(on_host, page);
            vms.insert(vms.end(), found.items.begin(), found.items.end());
            page.page_token = found.next_page_token;
        } while (!page.page_token.empty());
    } catch (const store::NotFoundError&) {
    }
    std::lock_guard lock(mutex_);
    if (!host) {
        view_.forget_host(host_id);
        return;
    }
    view_.sync_host(*host);
    for (const auto& vm : vms) {
        view_.sync_vm(vm);
    }
}

template <typename Claim>
auto Placement::reserve_and_claim(const Request& request, const store::Vm& vm, bool migration, Claim claim)
    -> std::invoke_result_t<Claim&, const store::Vm&> {
    std::string refusal;
    for (int attempt = 0; attempt < kClaimAttempts; ++attempt) {
        store::Vm reserved = vm;
        Decision decision = reserve(request, reserved, migration);
        try {
            return claim(reserved);
        } catch (const store::ClaimRejectedError& error) {
            refusal = error.what();
            sync_vm(vm);
            refresh_host(decision.host_id);
        } catch (...) {
            sync_vm(vm);
            throw;
        }
    }
    throw NoValidHostError("no host can take the vm: the last claim was refused: " + refusal);
}

store::VmCreated Placement::create_vm(store::VmCreation creation) {
    store::Vm& vm = creation.vm;
    if (vm.id.empty()) {
        vm.id = store::new_id();  // the view counts the reservation under it before the store sees the VM
    }
    if (vm.state == store::VmState::pending) {
        vm.state = store::VmState::scheduled;
    }
    const store::Vm unplaced = vm;
    // The reservation already counts the VM where the store puts it.
    return reserve_and_claim(request_for(unplaced), unplaced, false, [&](const store::Vm& reserved) {
        creation.vm = reserved;
        return store_.create_vm(creation);
    });
}

store::Vm Placement::place_vm(const std::string& vm_id) {
    store::Vm vm = store_.get_vm(vm_id);
    if (!vm.host_id.empty()) {
        throw store::ConflictError("host_id", "vm \"" + vm.name + "\" is already placed");
    }
    return reserve_and_claim(request_for(vm), vm, false, [&](const store::Vm& reserved) {
        store::Vm placed = store_.place_vm(vm_id, reserved.host_id, reserved.numa_node);
        sync_vm(placed);
        return placed;
    });
}

store::Vm Placement::claim_migration(const std::string& vm_id, const std::string& target_host_name) {
    store::Vm vm = store_.get_vm(vm_id);
    if (vm.host_id.empty()) {
        throw store::ConflictError("host_id", "vm \"" + vm.name + "\" is not placed on a host");
    }
    Request request = request_for(vm);
    request.exclude_host_id = vm.host_id;
    if (!target_host_name.empty()) {
        std::lock_guard lock(mutex_);
        if (view_.find_host_by_name(target_host_name) == nullptr) {
            throw store::NotFoundError("host", "host \"" + target_host_name + "\" not found");
        }
        if (!request.host_affinity.empty() &&
            std::find(request.host_affinity.begin(), request.host_affinity.end(), target_host_name) ==
                request.host_affinity.end()) {
            throw NoValidHostError("host \"" + target_host_name + "\" is not in the vm's host affinity");
        }
        request.host_affinity = {target_host_name};
        // Say why the named host is refused, rather than counting filters over one host.
        for (const auto& verdict : scheduler_.explain(view_, request, clock_()).hosts) {
            if (verdict.host_name == target_host_name && !verdict.passed) {
                throw NoValidHostError("host \"" + target_host_name + "\" rejected by " +
                                       verdict.rejected_by + ": " + verdict.message);
            }
        }
    }
    return reserve_and_claim(request, vm, true, [&](const store::Vm& reserved) {
        store::Vm claimed =
            store_.claim_migration(vm_id, reserved.migration_host_id, reserved.migration_numa_node);
        sync_vm(claimed);
        return claimed;
    });
}

Explanation Placement::explain(const Request& request) {
    std::lock_guard lock(mutex_);
    return scheduler_.explain(view_, request, clock_());
}

void Placement::sync_host(const store::Host& host) {
    std::lock_guard lock(mutex_);
    view_.sync_host(host);
}

void Placement::forget_host(const std::string& host_id) {
    std::lock_guard lock(mutex_);
    view_.forget_host(host_id);
}

void Placement::record_heartbeat(const std::string& host_id, store::TimeMs at) {
    std::lock_guard lock(mutex_);
    view_.record_heartbeat(host_id, at);
}

void Placement::sync_vm(const store::Vm& vm) {
    std::lock_guard lock(mutex_);
    view_.sync_vm(vm);
}

void Placement::forget_vm(const std::string& vm_id) {
    std::lock_guard lock(mutex_);
    view_.forget_vm(vm_id);
}

void Placement::reload() {
    ClusterView fresh = ClusterView::load(store_);
    std::lock_guard lock(mutex_);
    view_ = std::move(fresh);
}

void Placement::with_view(const std::function<void(const ClusterView&)>& read) {
    std::lock_guard lock(mutex_);
    read(view_);
}

}  // namespace vim::controller::scheduler
