#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

// The controller's durable records. Ids are UUID strings (new_id()); a record created with an empty id
// gets one from the store, one created with an id keeps it (so a caller can name the id in an
// idempotent response before the write). Times are milliseconds since the Unix epoch.
namespace vim::controller::store {

using TimeMs = std::int64_t;

// A time-ordered random (version 7) UUID, e.g. "018f3a2b-7c4d-7e5f-9a1b-2c3d4e5f6a7b".
std::string new_id();
TimeMs now_ms();

struct Resources {
    std::int64_t vcpus = 0;
    std::int64_t memory_mib = 0;
    std::int64_t disk_gib = 0;
    bool operator==(const Resources&) const = default;
};

// Over-commit: a host offers (capacity - reserved) * ratio of each resource.
struct OvercommitRatios {
    double cpu = 4.0;
    double ram = 1.0;
    double disk = 1.0;
    bool operator==(const OvercommitRatios&) const = default;
};

struct NumaNode {
    int id = 0;
    std::int64_t vcpus = 0;
    std::int64_t memory_mib = 0;
    bool operator==(const NumaNode&) const = default;
};

struct Host {
    std::string id;
    std::string name;  // unique
    std::string agent_url;
    bool enabled = true;
    bool maintenance = false;
    TimeMs last_heartbeat_ms = 0;
    Resources capacity;
    OvercommitRatios ratios;
    Resources reserved;
    std::set<std::string> cpu_features;
    std::vector<NumaNode> numa_nodes;
    std::string inventory = "{}";  // JSON text: the host's hwprobe report
    std::string metrics = "{}";    // JSON text: the last heartbeat's metrics
    std::set<std::string> tags;
    TimeMs created_ms = 0;
    TimeMs updated_ms = 0;
    bool operator==(const Host&) const = default;
};

// What a host can give to VMs: (capacity - reserved) * ratio, rounded down, never negative. The store's
// claim check and the scheduler's capacity filter both use this one definition.
Resources usable_capacity(const Host& host);
// A NUMA node's share under the host's ratios (reservations count against the host's totals only).
Resources usable_capacity(const NumaNode& node, const OvercommitRatios& ratios);

enum class ImageStatus { uploading, ready };

struct Image {
    std::string id;    // sha256 of the content, lower-case hex; for an upload in progress any unique id
    std::string name;  // unique
    std::int64_t size_bytes = 0;
    ImageStatus status = ImageStatus::uploading;
    TimeMs created_ms = 0;
    bool operator==(const Image&) const = default;
};

enum class GroupPolicy { affinity, anti_affinity, soft_affinity, soft_anti_affinity };

struct ServerGroup {
    std::string id;
    std::string name;  // unique
    GroupPolicy policy = GroupPolicy::anti_affinity;
    TimeMs created_ms = 0;
    bool operator==(const ServerGroup&) const = default;
};

struct Network {
    std::string id;
    std::string name;  // unique
    int vlan_id = 0;   // 1..4094, unique per site
    std::string cidr;  // IPv4, e.g. "10.0.0.0/24"; addresses from .2 (.1 is the gateway) to broadcast - 1
    TimeMs created_ms = 0;
    bool operator==(const Network&) const = default;
};

struct Nic {
    std::string network_id;
    std::string mac;  // empty on create: the store derives a stable one (52:54:00:xx:xx:xx)
    std::string ip;   // empty on create: the store allocates the next free address of the network
    bool operator==(const Nic&) const = default;
};

enum class VmState {
    pending,
    scheduled,
    creating,
    running,
    stopped,
    migrating,
    error,
    deleting,
    missing,
    unmanaged
};

struct Vm {
    std::string id;
    std::string name;  // unique
    std::int64_t vcpus = 1;
    std::int64_t memory_mib = 512;
    std::int64_t disk_gib = 0;
    std::string image_id;           // "" for none
    std::string host_id;            // "" while unplaced; a placed VM holds its resources on this host
    int numa_node = -1;             // the node of host_id it was fitted into, -1 when it fits none alone
    std::string migration_host_id;  // while migrating, the target also holds the VM's resources
    int migration_numa_node = -1;
    VmState state = VmState::pending;
    std::string server_group_id;                  // "" for none
    std::vector<std::string> host_affinity;       // host names; non-empty: only these hosts
    std::vector<std::string> host_anti_affinity;  // host names never to use
    std::set<std::string> required_cpu_features;
    std::vector<Nic> nics;
    // The latest figures its agent reported (JSON text, name -> number: resident_mib,
    // dirty_rate_pages_per_s, ...).
    std::string figures = "{}";
    // Found running on a host rather than created by the controller (unmanaged, or adopted since): it has
    // no image, and vcpus and memory_mib are 0 where its command line did not tell them.
    bool found_running = false;
    // Such a VM's process while it is unmanaged, known by its pid on its host; 0 for every other VM.
    std::int64_t unmanaged_pid = 0;
    std::string unmanaged_command;
    std::string unmanaged_api_socket;  // "" when unknown
    TimeMs created_ms = 0;
    TimeMs updated_ms = 0;
    bool operator==(const Vm&) const = default;

    Resources resources() const { return {vcpus, memory_mib, disk_gib}; }
};

enum class OperationState { pending, running, succeeded, failed };

struct Operation {
    std::string id;
    std::string kind;  // create, start, stop, reboot, delete, migrate, snapshot, host-maintenance, ...
    std::string target_id;
    OperationState state = OperationState::pending;
    int progress = 0;           // 0..100
    std::string result = "{}";  // JSON text
    std::string error;
    TimeMs created_ms = 0;
    TimeMs updated_ms = 0;
    TimeMs deadline_ms = 0;  // 0: none; past it, a pending or running operation is to be failed
    bool operator==(const Operation&) const = default;
};

// A response remembered under an Idempotency-Key, so that a retried request returns it again.
struct IdempotencyRecord {
    std::string key;
    std::string request_hash;  // a retry whose hash differs is a different request under a reused key
    int response_status = 0;
    std::string response_body;
    TimeMs created_ms = 0;
    bool operator==(const IdempotencyRecord&) const = default;
};

// Names as the API spells them ("anti-affinity", "host-maintenance" style); parse_* throws
// InvalidArgumentError naming the value, e.g. `vm state "runing" is not valid`.
std::string_view to_string(ImageStatus status);
std::string_view to_string(GroupPolicy policy);
std::string_view to_string(VmState state);
std::string_view to_string(OperationState state);
ImageStatus parse_image_status(std::string_view text);
GroupPolicy parse_group_policy(std::string_view text);
VmState parse_vm_state(std::string_view text);
OperationState parse_operation_state(std::string_view text);

}  // namespace vim::controller::store
