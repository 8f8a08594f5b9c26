// HA: the VMs of a host that stopped heartbeating are created again on other hosts. Their disks are on
// shared storage, which the create keeps; the down host's agent, should it come back, no longer finds them
// in its heartbeat replies and stops them (fencing).
#include <spdlog/spdlog.h>

#include <algorithm>

#include "controller/scheduler/placement.h"
#include "service.h"

namespace vim::controller::vimd {

bool Service::host_down(const store::Host& host, store::TimeMs now) const {
    const auto limit = config_.host_dead_after.count();
    return limit > 0 && now - std::max(host.last_heartbeat_ms, started_ms_) > limit;
}

void Service::watch_hosts() {
    const auto interval = std::clamp(config_.host_dead_after / 4, std::chrono::milliseconds(10),
                                     std::chrono::milliseconds(1000));
    std::unique_lock lock(watch_mutex_);
    while (!watch_wake_.wait_for(lock, interval, [this] { return watch_stopping_; })) {
        lock.unlock();
        try {
            restart_vms_of_down_hosts();
        } catch (const std::exception& error) {
            spdlog::error("checking for down hosts: {}", error.what());
        }
        lock.lock();
    }
}

void Service::restart_vms_of_down_hosts() {
    const store::TimeMs now = store::now_ms();
    std::vector<store::Host> hosts;
    placement_->with_view([&](const scheduler::ClusterView& view) {
        for (std::size_t i = 0; i < view.host_count(); ++i) {
            hosts.push_back(view.host(i).host);
        }
    });
    const auto up = std::count_if(hosts.begin(), hosts.end(),
                                  [&](const store::Host& host) { return !host_down(host, now); });
    if (up == 0 && !hosts.empty()) {
        // Every host quiet at once is more likely this controller cut off than every host dead; and
        // with no host to restart on, the restarts could only fail.
        if (down_hosts_.size() != hosts.size()) {
            spdlog::error("no host has heartbeated for {} ms: HA restarts wait for one to come back",
                          config_.host_dead_after.count());
            for (const auto& host : hosts) {
                down_hosts_.insert(host.id);
            }
        }
        return;
    }
    std::set<std::string> down;
    for (const auto& host : hosts) {
        if (!host_down(host, now)) {
            continue;
        }
        down.insert(host.id);
        if (!down_hosts_.contains(host.id)) {
            spdlog::warn("host {} is down: no heartbeat for {} ms", host.name,
                         now - std::max(host.last_heartbeat_ms, started_ms_));
        }
        for (const auto& vm : vms_on_host(host.id)) {
            if ((vm.state != store::VmState::running && vm.state != store::VmState::missing) ||
                !vm.migration_host_id.empty()) {
                continue;
            }
            try {
                // The transition is the check that no other check or action took the VM meanwhile.
                transition_vm(vm.id, {store::VmState::running, store::VmState::missing},
                              store::VmState::creating, "be restarted elsewhere");
            } catch (const HttpError&) {
                continue;
            }
            const auto operation = store_->create_operation(new_operation("ha-restart", vm.id));
            runner_->submit(operation.id, [this, id = vm.id](const OperationRunner::Progress&) {
                return run_ha_restart(id);
            });
            spdlog::warn("vm {}: host {} is down, restarting it elsewhere (operation {})", vm.name, host.name,
                         operation.id);
        }
    }
    down_hosts_ = std::move(down);
}

OperationRunner::Outcome Service::run_ha_restart(const std::string& vm_id) {
    const auto vm = store_->get_vm(vm_id);
    const auto from = store_->get_host(vm.host_id);
    const auto fail = [&](const std::string& why) {
        try {
            store_->update_vm(vm_id, [](store::Vm& record) { record.state = store::VmState::error; });
        } catch (const std::exception& error) {
            spdlog::error("vm {}: recording the failed restart: {}", vm_id, error.what());
        }
        return std::runtime_error("vm " + vm.name + " of down host " + from.name + ": " + why);
    };
    store::Vm claimed;
    try {
        // Like a live migration's target, the new host holds the VM's resources until the create is done;
        // only then does it become the VM's host.
        claimed = placement_->claim_migration(vm_id, "");
    } catch (const std::exception& error) {
        throw fail(std::string("no host can take it: ") + error.what());
    }
    const auto to = store_->get_host(claimed.migration_host_id);
    nlohmann::json agent_reply;
    try {
        agent_reply = call_agent(to.id, "POST", "/agent/v1/vms", agent_spec(claimed).to_json());
    } catch (const std::exception& error) {
        try {
            placement_->sync_vm(store_->finish_migration(vm_id, false));
        } catch (const std::exception& cleanup) {
            spdlog::error("vm {}: dropping the claim on host {}: {}", vm_id, to.name, cleanup.what());
        }
        throw fail("creating it on host " + to.name + ": " + error.what());
    }
    placement_->sync_vm(store_->finish_migration(vm_id, true));
    spdlog::info("vm {} restarted on host {} (host {} is down)", vm.name, to.name, from.name);
    return {nlohmann::json{{"vm_id", vm_id},
                           {"from_host_id", from.id},
                           {"from", from.name},
                           {"to_host_id", to.id},
                           {"to", to.name},
                           {"agent", agent_reply}},
            [](store::Vm& record) { record.state = store::VmState::running; }};
}

}  // namespace vim::controller::vimd
