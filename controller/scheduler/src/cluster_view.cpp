#include "controller/scheduler/cluster_view.h"

#include <algorithm>

namespace vim::controller::scheduler {

namespace {

store::Resources times(const store::Resources& resources, int sign) {
    return {resources.vcpus * sign, resources.memory_mib * sign, resources.disk_gib * sign};
}

void add(store::Resources& total, const store::Resources& delta) {
    total.vcpus += delta.vcpus;
    total.memory_mib += delta.memory_mib;
    total.disk_gib += delta.disk_gib;
}

}  // namespace

ClusterView ClusterView::load(store::Store& store) {
    ClusterView view;
    store::PageRequest page{store::kMaxPageLimit, ""};
    do {
        auto hosts = store.list_hosts({}, page);
        for (const auto& host : hosts.items) {
            view.sync_host(host);
        }
        page.page_token = hosts.next_page_token;
    } while (!page.page_token.empty());
    do {
        auto vms = store.list_vms({}, page);
        for (const auto& vm : vms.items) {
            view.sync_vm(vm);
        }
        page.page_token = vms.next_page_token;
    } while (!page.page_token.empty());
    return view;
}

std::uint32_t ClusterView::feature_bit(const std::string& feature) {
    return feature_ids_.try_emplace(feature, static_cast<std::uint32_t>(feature_ids_.size())).first->second;
}

void ClusterView::sync_host(const store::Host& host) {
    auto [found, added] = index_by_id_.try_emplace(host.id, hosts_.size());
    std::size_t index = found->second;
    if (added) {
        hosts_.emplace_back();
        hot_.emplace_back();
        feature_bits_.emplace_back();
    } else {
        unorder(index);  // its key has the old name
        index_by_name_.erase(hosts_[index].host.name);
    }
    index_by_name_[host.name] = index;
    HostState& state = hosts_[index];
    bool numa_layout_changed = added || state.host.numa_nodes != host.numa_nodes;
    state.host = host;
    state.usable = store::usable_capacity(host);
    state.numa_usable.clear();
    for (const auto& node : host.numa_nodes) {
        state.numa_usable.push_back(store::usable_capacity(node, host.ratios));
    }
    auto& bits = feature_bits_[index];
    bits.clear();
    for (const auto& feature : host.cpu_features) {
        std::uint32_t bit = feature_bit(feature);
        if (bits.size() <= bit / 64) {
            bits.resize(bit / 64 + 1);
        }
        bits[bit / 64] |= std::uint64_t{1} << (bit % 64);
    }
    if (numa_layout_changed) {
        // Which node a VM's numa_node names may have changed: count the host's VMs again.
        state.numa_used.assign(host.numa_nodes.size(), {});
        if (!added) {
            state.used = {};
            state.vm_count = 0;
            for (const auto& [id, vm] : vms_) {
                if (vm.host_index == static_cast<std::int64_t>(index)) {
                    add_usage(index, vm.numa_node, vm.resources, 1);
                }
                if (vm.migration_host_index == static_cast<std::int64_t>(index)) {
                    add_usage(index, vm.migration_numa_node, vm.resources, 1);
                }
            }
        }
    }
    refresh_hot(index);
}

void ClusterView::forget_host(const std::string& host_id) {
    auto found = index_by_id_.find(host_id);
    if (found == index_by_id_.end()) {
        return;
    }
    auto removed = static_cast<std::int64_t>(found->second);
    hosts_.erase(hosts_.begin() + removed);
    hot_.erase(hot_.begin() + removed);
    feature_bits_.erase(feature_bits_.begin() + removed);
    // Hosts are removed rarely (and the store refuses while VMs are on one): renumbering is fine.
    std::erase_if(vms_, [&](const auto& entry) { return entry.second.host_index == removed; });
    groups_.clear();
    for (auto& [id, vm] : vms_) {
        if (vm.host_index > removed) {
            --vm.host_index;
        }
        if (vm.migration_host_index == removed) {
            vm.migration_host_index = -1;
        } else if (vm.migration_host_index > removed) {
            --vm.migration_host_index;
        }
        for (auto index : {vm.host_index, vm.migration_host_index}) {
            if (!vm.group_id.empty() && index >= 0) {
                ++groups_[vm.group_id][static_cast<std::size_t>(index)];
            }
        }
    }
    reindex();
}

void ClusterView::reindex() {
    index_by_id_.clear();
    index_by_name_.clear();
    by_free_share_.clear();
    for (std::size_t i = 0; i < hosts_.size(); ++i) {
        index_by_id_[hosts_[i].host.id] = i;
        index_by_name_[hosts_[i].host.name] = i;
        hot_[i].ordered = false;
        refresh_hot(i);
    }
}

void ClusterView::record_heartbeat(const std::string& host_id, store::TimeMs at) {
    auto found = index_by_id_.find(host_id);
    if (found != index_by_id_.end()) {
        hosts_[found->second].host.last_heartbeat_ms = at;
        hot_[found->second].last_heartbeat_ms = at;
    }
}

void ClusterView::sync_vm(const store::Vm& vm) {
    forget_vm(vm.id);
    auto index_of = [&](const std::string& host_id) -> std::int64_t {
        auto found = index_by_id_.find(host_id);
        return found == index_by_id_.end() ? -1 : static_cast<std::int64_t>(found->second);
    };
    Placed placed{vm.server_group_id,
                  vm.resources(),
                  index_of(vm.host_id),
                  vm.numa_node,
                  index_of(vm.migration_host_id),
                  vm.migration_numa_node};
    if (placed.host_index < 0 && placed.migration_host_index < 0) {
        return;
    }
    count(placed, 1);
    vms_.emplace(vm.id, std::move(placed));
}

void ClusterView::forget_vm(const std::string& vm_id) {
    auto found = vms_.find(vm_id);
    if (found == vms_.end()) {
        return;
    }
    count(found->second, -1);
    vms_.erase(found);
}

void ClusterView::count(const Placed& vm, int sign) {
    count_on(vm.host_index, vm.numa_node, vm, sign);
    count_on(vm.migration_host_index, vm.migration_numa_node, vm, sign);
}

void ClusterView::count_on(std::int64_t host_index, int numa_node, const Placed& vm, int sign) {
    if (host_index < 0) {
        return;
    }
    auto index = static_cast<std::size_t>(host_index);
    add_usage(index, numa_node, vm.resources, sign);
    if (!vm.group_id.empty()) {
        auto& members = groups_[vm.group_id];
        if ((members[index] += sign) == 0) {
            members.erase(index);
            if (members.empty()) {
                groups_.erase(vm.group_id);
            }
        }
    }
}

void ClusterView::add_usage(std::size_t index, int numa_node, const store::Resources& resources, int sign) {
    HostState& state = hosts_[index];
    add(state.used, times(resources, sign));
    state.vm_count += sign;
    for (std::size_t node = 0; node < state.host.numa_nodes.size(); ++node) {
        if (state.host.numa_nodes[node].id == numa_node) {
            add(state.numa_used[node], times({resources.vcpus, resources.memory_mib, 0}, sign));
        }
    }
    refresh_hot(index);
}

void ClusterView::unorder(std::size_t index) {
    Hot& hot = hot_[index];
    if (hot.ordered) {
        by_free_share_.erase({hot.free_share, hosts_[index].host.name, index});
        hot.ordered = false;
    }
}

void ClusterView::refresh_hot(std::size_t index) {
    unorder(index);
    const HostState& state = hosts_[index];
    Hot& hot = hot_[index];
    hot.free_vcpus = state.usable.vcpus - state.used.vcpus;
    hot.free_memory_mib = state.usable.memory_mib - state.used.memory_mib;
    hot.free_disk_gib = state.usable.disk_gib - state.used.disk_gib;
    hot.last_heartbeat_ms = state.host.last_heartbeat_ms;
    hot.schedulable = state.host.enabled && !state.host.maintenance;
    double shares = 0;
    int resources = 0;
    for (auto [free, usable] : {std::pair{hot.free_vcpus, state.usable.vcpus},
                                std::pair{hot.free_memory_mib, state.usable.memory_mib},
                                std::pair{hot.free_disk_gib, state.usable.disk_gib}}) {
        if (usable > 0) {
            shares += static_cast<double>(free) / static_cast<double>(usable);
            ++resources;
        }
    }
    hot.free_share = resources > 0 ? shares / resources : 0;
    if (hot.schedulable && hot.free_vcpus >= 1 && hot.free_memory_mib >= 1) {
        by_free_share_.insert({hot.free_share, state.host.name, index});
        hot.ordered = true;
    }
}

const HostState* ClusterView::find_host(const std::string& host_id) const {
    auto found = index_by_id_.find(host_id);
    return found == index_by_id_.end() ? nullptr : &hosts_[found->second];
}

const HostState* ClusterView::find_host_by_name(const std::string& name) const {
    auto found = index_by_name_.find(name);
    return found == index_by_name_.end() ? nullptr : &hosts_[found->second];
}

std::int64_t ClusterView::group_members_on(const std::string& group_id, const std::string& host_id) const {
    auto group = groups_.find(group_id);
    auto host = index_by_id_.find(host_id);
    if (group == groups_.end() || host == index_by_id_.end()) {
        return 0;
    }
    auto members = group->second.find(host->second);
    return members == group->second.end() ? 0 : members->second;
}

std::int64_t ClusterView::group_size(const std::string& group_id) const {
    auto group = groups_.find(group_id);
    if (group == groups_.end()) {
        return 0;
    }
    std::int64_t size = 0;
    for (const auto& [host, members] : group->second) {
        size += members;
    }
    return size;
}

}  // namespace vim::controller::scheduler
