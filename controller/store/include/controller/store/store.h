#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "controller/store/errors.h"
#include "controller/store/records.h"

namespace vim::controller::store {

// Keyset pagination: items come in creation order; next_page_token is "" on the last page.
struct PageRequest {
    std::size_t limit = 100;  // 1..kMaxPageLimit, else InvalidArgumentError
    std::string page_token;   // "" for the first page; otherwise a next_page_token from before
};
inline constexpr std::size_t kMaxPageLimit = 1000;

template <typename Record>
struct Page {
    std::vector<Record> items;
    std::string next_page_token;
};

// Filters: an empty string or an empty optional does not filter.
struct HostFilter {
    std::optional<bool> enabled;
    std::optional<bool> maintenance;
};

struct VmFilter {
    std::optional<VmState> state;
    std::string host_id;  // matches host_id or migration_host_id
    std::string image_id;
    std::string server_group_id;
    std::string network_id;
    std::string name_prefix;
};

struct OperationFilter {
    std::optional<OperationState> state;
    std::string kind;
    std::string target_id;
    std::optional<TimeMs> deadline_before;  // deadline_ms != 0 and < this
    bool newest_first = false;              // "recent operations"
};

// What a host's agent reported in one heartbeat.
struct HostReport {
    struct VmReport {
        std::string id;
        bool running = true;  // false: the guest powered off
        std::string figures = "{}";
    };
    struct Process {  // a KVM process on the host that its agent did not start
        std::int64_t pid = 0;
        std::string command;
        std::string api_socket;
        std::int64_t vcpus = 0;  // 0 when unknown
        std::int64_t memory_mib = 0;
    };
    TimeMs at = 0;
    std::string metrics = "{}";
    std::vector<VmReport> vms;
    std::vector<Process> unmanaged;
};

struct HostReportOutcome {
    // Every VM placed on the host (host_id or migration_host_id), whatever its state.
    std::vector<std::string> placed_vm_ids;
    std::vector<Vm> changed;  // VMs whose state the report changed, and the unmanaged ones it added
    std::vector<Vm> removed;  // unmanaged VMs it no longer lists
};

// A VM to create, with what must be written in the same transaction as it.
struct VmCreation {
    // vm.host_id "": inserted unplaced. Otherwise a claim: the store re-checks, inside its write
    // transaction, that the host exists, is enabled and not in maintenance, has usable capacity (and
    // room on vm.numa_node when >= 0), and that the server group's hard policy and the VM's host
    // (anti-)affinity allow it; it throws ClaimRejectedError when not.
    Vm vm;
    std::optional<Operation> operation;            // e.g. the "create" operation returned with 202
    std::optional<IdempotencyRecord> idempotency;  // a key already present -> ConflictError("key")
};

struct VmCreated {
    Vm vm;  // as stored: ids, MACs, IPs and times filled in
    std::optional<Operation> operation;
};

// One result per VmCreation of a batch: the created VM, or the error that creation alone threw.
using VmCreationOutcome = std::variant<VmCreated, std::exception_ptr>;

// The controller's durable state, behind an interface so that a replicated store (etcd, PostgreSQL)
// can take SqliteStore's place. Every method is atomic: it happens whole or not at all, and when it
// returns the change is durable. All methods are safe to call from many threads at once, and writes made
// at once should share commits (group commit, as SqliteStore does): Placement commits each claim alone.
//
// update_* methods run `change` on the current record inside the write transaction (a read-modify-write
// that no other writer can interleave with); `change` must not call the store. What identifies a record
// (id, created_ms) is kept from the stored one, and so, for a VM, is its placement (host_id, numa_node,
// migration_*, nics) and, while it is placed, what its claim was checked against (vcpus, memory_mib,
// disk_gib, server_group_id, host affinities, required_cpu_features): placement changes go through the
// claim methods.
class Store {
public:
    virtual ~Store() = default;

    // Hosts. delete_host refuses (ConflictError "host_id") while a VM is placed on or migrating to it; the
    // unmanaged VMs found on it go with it.
    virtual Host create_host(Host host) = 0;
    virtual Host get_host(const std::string& id) = 0;
    virtual std::optional<Host> find_host_by_name(const std::string& name) = 0;
    virtual Page<Host> list_hosts(const HostFilter& filter, const PageRequest& page) = 0;
    virtual Host update_host(const std::string& id, const std::function<void(Host&)>& change) = 0;
    virtual void record_heartbeat(const std::string& id, TimeMs at, const std::string& metrics) = 0;
    // record_heartbeat, and what the report says of the host's VMs, in one transaction. Only VMs that no
    // operation is moving (host_id is the host, no migration) change: running and not reported -> missing;
    // running, missing, stopped or error and reported -> running or stopped as reported; each reported VM's
    // figures are kept. Unmanaged processes (known by their pid on the host) become VMs in state unmanaged
    // named "unmanaged-<host name>-<pid>" (refreshed when listed again, removed when no longer listed);
    // they hold their host's resources but are not claims: no check refuses them.
    virtual HostReportOutcome record_host_report(const std::string& id, const HostReport& report) = 0;
    virtual void delete_host(const std::string& id) = 0;
    // What the VMs placed on (or migrating to) a host hold.
    virtual Resources host_usage(const std::string& id) = 0;

    // Images. delete_image refuses (ConflictError "image_id") while a VM uses it.
    virtual Image create_image(Image image) = 0;
    virtual Image get_image(const std::string& id) = 0;
    virtual std::optional<Image> find_image_by_name(const std::string& name) = 0;
    virtual Page<Image> list_images(const PageRequest& page) = 0;
    virtual Image update_image(const std::string& id, const std::function<void(Image&)>& change) = 0;
    // Renames the record of a finished upload to its content address (the id may change once, from
    // the upload's id to the sha256), marking it ready. ConflictError("id") when that content exists.
    virtual Image finish_image_upload(const std::string& upload_id, const std::string& sha256,
                                      std::int64_t size_bytes) = 0;
    virtual void delete_image(const std::string& id) = 0;

    // Server groups. delete_server_group refuses while it has members.
    virtual ServerGroup create_server_group(ServerGroup group) = 0;
    virtual ServerGroup get_server_group(const std::string& id) = 0;
    virtual std::optional<ServerGroup> find_server_group_by_name(const std::string& name) = 0;
    virtual Page<ServerGroup> list_server_groups(const PageRequest& page) = 0;
    virtual void delete_server_group(const std::string& id) = 0;

    // Networks. create_network checks vlan_id (1..4094) and the CIDR (InvalidArgumentError);
    // delete_network refuses while a NIC is on it.
    virtual Network create_network(Network network) = 0;
    virtual Network get_network(const std::string& id) = 0;
    virtual std::optional<Network> find_network_by_name(const std::string& name) = 0;
    virtual Page<Network> list_networks(const PageRequest& page) = 0;
    virtual void delete_network(const std::string& id) = 0;
    // The next free address of the network, held for the VM until released (or the VM is deleted).
    // ConflictError("network_id") when the pool is exhausted.
    virtual std::string allocate_address(const std::string& network_id, const std::string& vm_id) = 0;
    virtual void release_address(const std::string& network_id, const std::string& ip) = 0;

    // VMs. create_vm/create_vms check references (NotFoundError naming image_id, server_group_id,
    // network_id) and allocate NIC addresses in the same transaction.
    virtual VmCreated create_vm(const VmCreation& creation) = 0;
    // Group commit: every creation in one transaction (one fsync); each succeeds or fails on its own,
    // as if made alone in order.
    virtual std::vector<VmCreationOutcome> create_vms(std::span<const VmCreation> creations) = 0;
    virtual Vm get_vm(const std::string& id) = 0;
    virtual std::optional<Vm> find_vm_by_name(const std::string& name) = 0;
    virtual Page<Vm> list_vms(const VmFilter& filter, const PageRequest& page) = 0;
    virtual Vm update_vm(const std::string& id, const std::function<void(Vm&)>& change) = 0;
    // Places an unplaced VM, with the checks of a creation claim; a pending VM becomes scheduled.
    virtual Vm place_vm(const std::string& id, const std::string& host_id, int numa_node) = 0;
    // Frees the VM's host (host_id "", state pending), e.g. before rescheduling it elsewhere.
    virtual Vm unplace_vm(const std::string& id) = 0;
    // Claims the VM's resources on a migration target (with the checks of a creation claim; the VM's own
    // host does not count against anti-affinity). finish: the target becomes the host (or, with
    // succeeded false, the claim is dropped).
    virtual Vm claim_migration(const std::string& id, const std::string& target_host_id, int numa_node) = 0;
    virtual Vm finish_migration(const std::string& id, bool succeeded) = 0;
    // Deletes the VM and its addresses.
    virtual void delete_vm(const std::string& id) = 0;

    // Operations.
    virtual Operation create_operation(Operation operation) = 0;
    virtual Operation get_operation(const std::string& id) = 0;
    virtual Page<Operation> list_operations(const OperationFilter& filter, const PageRequest& page) = 0;
    virtual Operation update_operation(const std::string& id,
                                       const std::function<void(Operation&)>& change) = 0;
    // update_operation and update_vm of the VM the operation targets, in one transaction: an operation's
    // outcome and the VM state it leaves are never seen, nor found after a crash, apart.
    virtual Operation update_operation_and_target_vm(const std::string& id,
                                                     const std::function<void(Operation&)>& change,
                                                     const std::function<void(Vm&)>& target_vm_change) = 0;

    // Idempotency keys.
    virtual std::optional<IdempotencyRecord> find_idempotency(const std::string& key) = 0;
    // ConflictError("key") when the key is already there (a racing duplicate: read it back).
    virtual void put_idempotency(const IdempotencyRecord& record) = 0;
    // Forgets the records created before `before`; returns how many.
    virtual std::size_t expire_idempotency(TimeMs before) = 0;
};

}  // namespace vim::controller::store
