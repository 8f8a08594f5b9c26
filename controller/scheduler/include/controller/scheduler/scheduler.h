#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "controller/scheduler/cluster_view.h"
#include "controller/store/records.h"

namespace vim::controller::scheduler {

// Both weigh a host's free share: the mean over vcpus, memory and disk of free / usable, before the VM.
enum class Strategy {
    spread,  // the most free share: even load
    pack,    // the least free share that fits: empties hosts so they can be powered down
};

struct Config {
    Strategy strategy = Strategy::spread;
    double resource_weight = 1.0;            // times the spread/pack score (0..1 per host)
    double soft_affinity_weight = 1.0;       // times the share of the group already on the host
    double soft_anti_affinity_weight = 1.0;  // times (minus) the share of the group already on the host
    store::TimeMs heartbeat_staleness_ms = 30'000;  // a host not heard from for longer is not chosen
};

// What a VM needs of its host.
struct Request {
    std::int64_t vcpus = 1;
    std::int64_t memory_mib = 512;
    std::int64_t disk_gib = 0;
    std::string server_group_id;  // "" for none
    store::GroupPolicy group_policy = store::GroupPolicy::anti_affinity;
    std::vector<std::string> host_affinity;       // host names; non-empty: only these
    std::vector<std::string> host_anti_affinity;  // host names never to use
    std::vector<std::string> required_cpu_features;
    std::string exclude_host_id;  // a migration's source; "" for none

    // The request for a VM record (group policy from `group` when the VM has one).
    static Request for_vm(const store::Vm& vm, const std::optional<store::ServerGroup>& group);
};

struct Decision {
    std::string host_id;  // "" when no host passed every filter
    std::string host_name;
    int numa_node = -1;  // the node the VM fits in alone, -1 when it fits none alone (or the host has none)
    double score = 0;
    // For no host: why, e.g. `no host has room: 12 hosts, 3 rejected by capacity, 9 by anti-affinity`.
    std::string reason;
    bool placed() const { return !host_id.empty(); }
};

struct ScoreBreakdown {
    double resource = 0;  // spread or pack score of the host after placement, 0..1, times resource_weight
    double group = 0;     // soft affinity bonus or soft anti-affinity penalty, already weighted
    double total = 0;
};

struct HostVerdict {
    std::string host_id;
    std::string host_name;
    bool passed = false;
    // When not passed: the filter ("disabled", "maintenance", "stale-heartbeat", "capacity", "numa",
    // "affinity", "anti-affinity", "host-affinity", "host-anti-affinity", "cpu-features", "excluded")
    // and what it saw, e.g. `not enough memory: 4096 MiB requested, 1024 MiB free`.
    std::string rejected_by;
    std::string message;
    ScoreBreakdown score;  // when passed
    int numa_node = -1;    // when passed
};

struct Explanation {
    Decision decision;
    std::vector<HostVerdict> hosts;  // every host, by name
};

// Filters then weighs the hosts of a view. Pure: the same view, request and time give the same
// decision; ties go to the host whose name sorts first. Thread-safe for concurrent const use.
// decide() chooses exactly as explain() does, which scores every host, but it walks the hosts best-first
// (ClusterView keeps them ordered by free share) and usually stops after a few.
//
// NUMA fit: a VM whose vcpus and memory fit within the usable size of one of a host's NUMA nodes must
// land on a host where some node still has that much free, and is counted on that node (Vm::numa_node);
// a VM bigger than every node of a host is counted on the host's totals only. A host that reports no
// NUMA nodes is treated as one node the size of the host.
class Scheduler {
public:
    explicit Scheduler(Config config = {}) : config_(config) {}

    Decision decide(const ClusterView& view, const Request& request, store::TimeMs now) const;
    Explanation explain(const ClusterView& view, const Request& request, store::TimeMs now) const;

    const Config& config() const { return config_; }

private:
    Config config_;
};

}  // namespace vim::controller::scheduler
