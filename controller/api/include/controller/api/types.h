#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

// The request bodies of the controller's API and of the controller -> agent API, as the OpenAPI
// document (controller/api/openapi.json) describes them. from_json() is strict: unknown fields,
// wrong types and sizes outside the limits below throw ValidationError naming the field.
// to_json() writes what from_json() reads, for the clients (vimctl, the controller calling agents).
namespace vim::controller::api {

// Limits on what one request may ask for; beyond them a size is a mistake, not a wish.
inline constexpr std::uint64_t kMaxVcpus = 256;
inline constexpr std::uint64_t kMinMemoryMib = 16;
inline constexpr std::uint64_t kMaxMemoryMib = 4ull << 20;  // 4 TiB
inline constexpr std::uint64_t kMaxDiskGib = 64ull << 10;   // 64 TiB
inline constexpr std::size_t kMaxDisks = 16;
inline constexpr std::size_t kMaxNics = 8;
inline constexpr std::uint64_t kMaxHostCpus = 8192;
inline constexpr std::uint64_t kMaxHostMemoryMib = 64ull << 20;  // 64 TiB
inline constexpr std::uint64_t kMaxHostDiskGib = 1ull << 30;
inline constexpr std::size_t kMaxListItems = 64;
inline constexpr std::uint64_t kMaxPageSize = 1000;

// POST /v1/hosts: a host agent registering its host (again after a restart: the same name updates it).
struct HostRegistration {
    struct NumaNode {
        std::uint64_t cpus = 0;
        std::uint64_t memory_mib = 0;
    };
    std::string name;
    std::string agent_url;  // http://HOST:PORT where the agent serves /agent/v1/...
    std::uint64_t cpus = 0;
    std::uint64_t memory_mib = 0;
    std::uint64_t disk_gib = 0;
    std::vector<std::string> cpu_features;
    std::vector<NumaNode> numa_nodes;
    std::optional<double> cpu_overcommit;
    std::optional<double> ram_overcommit;
    std::optional<double> disk_overcommit;
    std::uint64_t reserved_cpus = 0;
    std::uint64_t reserved_memory_mib = 0;
    std::uint64_t reserved_disk_gib = 0;
    std::vector<std::string> tags;
    nlohmann::json inventory = nlohmann::json::object();  // hwprobe's report, kept as sent

    static HostRegistration from_json(const nlohmann::json& body);
    nlohmann::json to_json() const;
};

inline constexpr std::size_t kMaxHeartbeatItems = 4096;  // of vms, and of unmanaged, per heartbeat
inline constexpr std::size_t kMaxFigures = 64;           // per VM
inline constexpr std::uint64_t kMaxPid = 1ull << 22;     // the kernel's highest pid_max
inline constexpr std::size_t kMaxCommandLength = 4096;   // of an unmanaged process's command line
inline constexpr std::size_t kMaxSocketPathLength = 1024;

// POST /v1/hosts/{name}/heartbeat: the host's metrics, the VMs its agent manages, and the KVM processes
// on it that the agent did not start.
struct HostHeartbeat {
    struct Vm {
        enum class State { running, stopped };  // stopped: the guest powered off
        std::string id;
        State state = State::running;
        // resident_mib, vcpu_time_ms, vm_exits, balloon_mib, disk_read_bytes, disk_write_bytes,
        // net_rx_bytes, net_tx_bytes, dirty_rate_pages_per_s, ...: all optional
        std::map<std::string, double> figures;
    };
    struct Unmanaged {
        std::uint64_t pid = 0;
        std::string command;     // its command line, arguments joined by spaces
        std::string api_socket;  // its vmm control socket, "" when unknown
    };
    std::map<std::string, double> metrics;  // e.g. cpu_load, memory_used_mib, running_vms
    std::vector<Vm> vms;                    // ids unique
    std::vector<Unmanaged> unmanaged;       // pids unique

    static HostHeartbeat from_json(const nlohmann::json& body);
    nlohmann::json to_json() const;
};
std::string to_string(HostHeartbeat::Vm::State state);

// The reply to a heartbeat: every VM the controller places on the host (as its host, or as the target of
// a migration under way). The agent stops and forgets the VMs it manages that are not listed (fencing),
// except those it created after it sent the heartbeat.
struct HeartbeatReply {
    std::vector<std::string> vms;

    static HeartbeatReply from_json(const nlohmann::json& body);
    nlohmann::json to_json() const;
};

// PATCH /v1/hosts/{name}: at least one of the two.
struct HostUpdate {
    std::optional<bool> maintenance{};
    std::optional<bool> enabled{};

    static HostUpdate from_json(const nlohmann::json& body);
    nlohmann::json to_json() const;
};

// POST /v1/vms, and POST /v1/placement/explain (where the name may be left out).
struct VmCreate {
    struct Disk {
        std::uint64_t size_gib = 0;
    };
    struct Nic {
        std::string network;
    };
    std::string name;
    std::uint64_t vcpus = 0;
    std::uint64_t memory_mib = 0;
    std::string image;
    std::vector<Disk> disks;
    std::vector<Nic> nics;
    std::optional<std::string> server_group;
    std::vector<std::string> host_affinity;       // the VM must land on one of these hosts
    std::vector<std::string> host_anti_affinity;  // and on none of these
    std::vector<std::string> cpu_features;

    enum class NameRule { required, optional };
    static VmCreate from_json(const nlohmann::json& body, NameRule name_rule = NameRule::required);
    nlohmann::json to_json() const;
};

// POST /v1/vms/{name}/migrate: to the named host, or to the best one when host is absent.
struct VmMigrate {
    std::optional<std::string> host;

    static VmMigrate from_json(const nlohmann::json& body);
    nlohmann::json to_json() const;
};

// POST /v1/vms/{name}/snapshot
struct VmSnapshot {
    std::optional<std::string> name;

    static VmSnapshot from_json(const nlohmann::json& body);
    nlohmann::json to_json() const;
};

enum class GroupPolicy { affinity, anti_affinity, soft_affinity, soft_anti_affinity };
std::string to_string(GroupPolicy policy);
// Throws ValidationError on field for an unknown policy.
GroupPolicy parse_group_policy(const std::string& field, const std::string& text);

// POST /v1/server-groups
struct ServerGroupCreate {
    std::string name;
    GroupPolicy policy = GroupPolicy::anti_affinity;

    static ServerGroupCreate from_json(const nlohmann::json& body);
    nlohmann::json to_json() const;
};

// POST /v1/networks: an isolated network on its own VLAN, with an IPv4 pool for its NICs.
struct NetworkCreate {
    std::string name;
    std::uint64_t vlan = 0;  // 1-4094, unique per site
    std::string cidr;        // a.b.c.d/prefix with prefix 8-30 and no host bits set

    static NetworkCreate from_json(const nlohmann::json& body);
    nlohmann::json to_json() const;
};

// An IPv4 network parsed from CIDR text; throws ValidationError on field when it is not one.
struct Ipv4Network {
    std::uint32_t address = 0;  // host byte order
    unsigned prefix = 0;

    static Ipv4Network parse(const std::string& field, const std::string& cidr);
    // The usable host addresses: the network and broadcast addresses and the first host (the gateway)
    // excluded.
    std::uint64_t host_count() const;
    // The n-th usable address (0-based) as dotted text.
    std::string host_address(std::uint64_t index) const;
    // The first host address, which the network's gateway takes.
    std::string gateway() const;
};

// ---- controller -> agent (served by hostd under /agent/v1/) ----

// POST /agent/v1/vms, and inside POST /agent/v1/vms/{id}/incoming-migration.
struct AgentVmSpec {
    struct Image {
        std::string sha256;
        std::uint64_t size = 0;
        std::string url;  // where the agent downloads it from (the controller, with Range)
    };
    struct Disk {
        std::uint64_t size_gib = 0;
    };
    struct Nic {
        std::string network;
        std::uint64_t vlan = 0;
        std::string mac;
        std::string address;  // a.b.c.d/prefix
    };
    std::string id;
    std::string name;
    std::uint64_t vcpus = 0;
    std::uint64_t memory_mib = 0;
    Image image;
    std::vector<Disk> disks;
    std::vector<Nic> nics;

    static AgentVmSpec from_json(const nlohmann::json& body);
    nlohmann::json to_json() const;
};

// POST /agent/v1/vms/{id}/migrate: send the VM to a destination prepared by incoming-migration.
struct AgentMigrate {
    std::string uri;  // tcp:HOST:PORT

    static AgentMigrate from_json(const nlohmann::json& body);
    nlohmann::json to_json() const;
};

// POST /agent/v1/unmanaged/{pid}/adopt: the agent manages that process from now on under this id.
struct AgentAdopt {
    std::string id;

    static AgentAdopt from_json(const nlohmann::json& body);
    nlohmann::json to_json() const;
};

// POST /agent/v1/vms/{id}/snapshot
struct AgentSnapshot {
    std::string name;

    static AgentSnapshot from_json(const nlohmann::json& body);
    nlohmann::json to_json() const;
};

}  // namespace vim::controller::api
