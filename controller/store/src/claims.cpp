#include <algorithm>

#include "sqlite_store_impl.h"

namespace vim::controller::store {

namespace {

// The host fields a claim is checked against.
struct ClaimHost {
    std::string name;
    bool enabled = false;
    bool maintenance = false;
    Resources usable;
    OvercommitRatios ratios;
    std::set<std::string> cpu_features;
    std::vector<NumaNode> numa_nodes;
};

void require_room(const std::string& where, const Resources& usable, const Resources& used,
                  const Resources& wanted) {
    auto check = [&](const char* what, std::int64_t requested, std::int64_t total, std::int64_t taken,
                     const char* unit) {
        std::int64_t free = std::max<std::int64_t>(0, total - taken);
        if (requested > free) {
            throw ClaimRejectedError(where + ": not enough " + what + ": " + std::to_string(requested) +
                                     unit + " requested, " + std::to_string(free) + unit + " free");
        }
    };
    check("vcpus", wanted.vcpus, usable.vcpus, used.vcpus, "");
    check("memory", wanted.memory_mib, usable.memory_mib, used.memory_mib, " MiB");
    check("disk", wanted.disk_gib, usable.disk_gib, used.disk_gib, " GiB");
}

ClaimHost claim_host(Connection& connection, const std::string& host_id) {
    auto statement = connection.prepare(
        "SELECT name, enabled, maintenance, capacity_vcpus, capacity_memory_mib, capacity_disk_gib, "
        "ratio_cpu, "
        "ratio_ram, ratio_disk, reserved_vcpus, reserved_memory_mib, reserved_disk_gib, cpu_features, "
        "numa_nodes FROM hosts WHERE id = ?1");
    statement.bind(1, host_id);
    if (!statement.step()) {
        throw ClaimRejectedError("host " + in_quotes(host_id) + " not found");
    }
    Host host;
    host.capacity = {statement.integer(3), statement.integer(4), statement.integer(5)};
    host.ratios = {statement.real(6), statement.real(7), statement.real(8)};
    host.reserved = {statement.integer(9), statement.integer(10), statement.integer(11)};
    return {statement.text(0),
            statement.integer(1) != 0,
            statement.integer(2) != 0,
            usable_capacity(host),
            host.ratios,
            strings_from_json<std::set<std::string>>(statement.text(12)),
            numa_from_json(statement.text(13))};
}

void check_group(Connection& connection, const Vm& vm, const std::string& host_id, const std::string& where) {
    auto group = select_one<ServerGroup>(connection, "server_groups", kGroupColumns, "id", vm.server_group_id,
                                         read_group);
    if (!group) {
        throw NotFoundError("server_group_id",
                            "server group " + in_quotes(vm.server_group_id) + " not found");
    }
    std::string policy = " (" + std::string(to_string(group->policy)) + ")";
    if (group->policy == GroupPolicy::anti_affinity) {
        auto statement = connection.prepare("SELECT (SELECT COUNT(*) FROM vms WHERE server_group_id = ?1 "
                                            "AND host_id = ?2 AND id != ?3) + "
                                            "(SELECT COUNT(*) FROM vms WHERE server_group_id = ?1 AND "
                                            "migration_host_id = ?2 AND id != ?3)");
        statement.bind(1, vm.server_group_id).bind(2, host_id).bind(3, vm.id);
        statement.step();
        if (statement.integer(0) > 0) {
            throw ClaimRejectedError(where + ": server group " + in_quotes(group->name) + policy +
                                     " already has a vm there");
        }
    } else if (group->policy == GroupPolicy::affinity) {
        auto statement = connection.prepare(
            "SELECT host_id FROM vms WHERE server_group_id = ?1 AND id != ?3 AND host_id IS NOT NULL AND "
            "host_id != ?2 LIMIT 1");
        statement.bind(1, vm.server_group_id).bind(2, host_id).bind(3, vm.id);
        if (statement.step()) {
            std::string other = statement.text(0);
            throw ClaimRejectedError(where + ": server group " + in_quotes(group->name) + policy +
                                     " has its vms on host " + in_quotes(host_name(connection, other)));
        }
    }
}

}  // namespace

void check_claim(Connection& connection, const Vm& vm, const std::string& host_id, int numa_node) {
    ClaimHost host = claim_host(connection, host_id);
    std::string where = "host " + in_quotes(host.name);
    if (!host.enabled) {
        throw ClaimRejectedError(where + " is disabled");
    }
    if (host.maintenance) {
        throw ClaimRejectedError(where + " is in maintenance");
    }
    if (!vm.host_affinity.empty() &&
        std::find(vm.host_affinity.begin(), vm.host_affinity.end(), host.name) == vm.host_affinity.end()) {
        throw ClaimRejectedError(where + " is not in the vm's host affinity");
    }
    if (std::find(vm.host_anti_affinity.begin(), vm.host_anti_affinity.end(), host.name) !=
        vm.host_anti_affinity.end()) {
        throw ClaimRejectedError(where + " is in the vm's host anti-affinity");
    }
    std::string missing;
    for (const auto& feature : vm.required_cpu_features) {
        if (!host.cpu_features.contains(feature)) {
            missing += (missing.empty() ? "" : ", ") + feature;
        }
    }
    if (!missing.empty()) {
        throw ClaimRejectedError(where + " lacks CPU features " + missing);
    }
    Usage usage = sum_usage(connection, host_id, numa_node);
    require_room(where, host.usable, usage.host, vm.resources());
    if (numa_node >= 0) {
        auto node = std::find_if(host.numa_nodes.begin(), host.numa_nodes.end(),
                                 [&](const NumaNode& candidate) { return candidate.id == numa_node; });
        if (node == host.numa_nodes.end()) {
            throw ClaimRejectedError(where + " has no NUMA node " + std::to_string(numa_node));
        }
        require_room(where + " NUMA node " + std::to_string(numa_node), usable_capacity(*node, host.ratios),
                     usage.node, {vm.vcpus, vm.memory_mib, 0});
    }
    if (!vm.server_group_id.empty()) {
        check_group(connection, vm, host_id, where);
    }
}

}  // namespace vim::controller::store
