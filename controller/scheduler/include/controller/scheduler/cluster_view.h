#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "controller/store/records.h"
#include "controller/store/store.h"

namespace vim::controller::scheduler {

// What placement knows of one host: its record and what the VMs on it hold, in total and per NUMA node.
struct HostState {
    store::Host host;
    store::Resources usable;  // store::usable_capacity(host)
    store::Resources used;
    std::vector<store::Resources> numa_usable;  // one per host.numa_nodes entry, in that order
    std::vector<store::Resources> numa_used;
    std::int64_t vm_count = 0;
};

// The cluster in memory, for the scheduler: hosts, the usage of every placed VM, and where each server
// group's members are. Not thread-safe: Placement guards its view with a mutex; tests and benchmarks own
// theirs. Keep it in step with the store by calling sync_* after each write (Placement does so for the
// claims it makes). A VM counts on host_id and, while migrating, on migration_host_id too.
class ClusterView {
public:
    // Every host and every placed VM of the store.
    static ClusterView load(store::Store& store);

    void sync_host(const store::Host& host);  // added or replaced; its VMs stay counted
    void forget_host(const std::string& host_id);
    void record_heartbeat(const std::string& host_id, store::TimeMs at);
    // Counts the VM where its record places it, replacing what was counted for the same id before;
    // an unplaced VM is forgotten.
    void sync_vm(const store::Vm& vm);
    void forget_vm(const std::string& vm_id);

    std::size_t host_count() const { return hosts_.size(); }
    const HostState& host(std::size_t index) const { return hosts_[index]; }
    const HostState* find_host(const std::string& host_id) const;
    const HostState* find_host_by_name(const std::string& name) const;
    // Members of the group placed on the host; and placed in all (a migrating member counts twice).
    std::int64_t group_members_on(const std::string& group_id, const std::string& host_id) const;
    std::int64_t group_size(const std::string& group_id) const;

private:
    friend class Evaluator;  // the scheduler's per-host loop

    struct Placed {
        std::string group_id;
        store::Resources resources;
        std::int64_t host_index = -1;
        int numa_node = -1;
        std::int64_t migration_host_index = -1;
        int migration_numa_node = -1;
    };
    // The fields the filters and weighers read for every host they look at, packed together.
    struct Hot {
        std::int64_t free_vcpus = 0;
        std::int64_t free_memory_mib = 0;
        std::int64_t free_disk_gib = 0;
        store::TimeMs last_heartbeat_ms = 0;
        // The mean over vcpus, memory and disk (those the host has) of free / usable: what spread and pack
        // weigh, so that hosts can be kept in its order.
        double free_share = 0;
        bool schedulable = false;  // enabled and not in maintenance
        bool ordered = false;      // in by_free_share_
    };
    // Hosts by (free_share, name): a decision walks them best-first and usually stops after a few,
    // instead of scoring every host. Only hosts that could take some VM are in it: schedulable, with
    // a vcpu and a MiB free.
    struct OrderKey {
        double free_share;
        std::string name;
        std::size_t index;
        bool operator<(const OrderKey& other) const {
            return free_share != other.free_share ? free_share < other.free_share : name < other.name;
        }
    };

    void count(const Placed& vm, int sign);
    void count_on(std::int64_t host_index, int numa_node, const Placed& vm, int sign);
    void add_usage(std::size_t index, int numa_node, const store::Resources& resources, int sign);
    void refresh_hot(std::size_t index);
    void unorder(std::size_t index);
    void reindex();
    std::uint32_t feature_bit(const std::string& feature);

    std::vector<HostState> hosts_;
    std::vector<Hot> hot_;  // parallel to hosts_
    std::set<OrderKey> by_free_share_;
    std::vector<std::vector<std::uint64_t>> feature_bits_;  // parallel to hosts_
    std::unordered_map<std::string, std::uint32_t> feature_ids_;
    std::unordered_map<std::string, std::size_t> index_by_id_;
    std::unordered_map<std::string, std::size_t> index_by_name_;
    std::unordered_map<std::string, Placed> vms_;
    // group id -> (host index -> members there)
    std::unordered_map<std::string, std::unordered_map<std::size_t, std::int64_t>> groups_;
};

}  // namespace vim::controller::scheduler
