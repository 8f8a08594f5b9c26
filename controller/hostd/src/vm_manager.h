#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "controller/api/types.h"
#include "controller/hostd/config.h"
#include "controller/hostd/process.h"
#include "controller/hostd/vm_record.h"
#include "host_network.h"
#include "image_cache.h"

namespace vim::controller::hostd {

// Throws api::ValidationError on field unless id can name a folder and a socket file: 1-64 characters of
// [A-Za-z0-9._-], not starting with a dot.
void check_vm_id(const std::string& field, const std::string& id);

// The VMs of this host, one vmm process each. Every action holds the VM's own lock for its whole length,
// so a retried or concurrent request for one VM waits for the first and then finds its result (a running
// VM is never started twice); readers (status, heartbeats) take only a short lock on the VM's data and
// never wait for an action such as a migration. Errors that a caller made are AgentError with the HTTP
// status to answer.
class VmManager {
public:
    explicit VmManager(const Config& config);
    ~VmManager();

    // Reads <state-dir>/vms/*/vm.json: a vmm still alive (same pid, same start time) whose control socket
    // answers is adopted, unnoticed by its guest; the VM of a dead one is kept as stopped.
    void load();

    nlohmann::json create(const api::AgentVmSpec& spec);
    nlohmann::json status(const std::string& id);
    nlohmann::json start(const std::string& id);
    nlohmann::json stop(const std::string& id);
    nlohmann::json reboot(const std::string& id);
    nlohmann::json remove(const std::string& id);
    // Returns the uri tcp:ADDR:PORT the target's vmm listens on.
    std::string prepare_incoming(const api::AgentVmSpec& spec);
    // Returns the final migrate-status; throws AgentError 502 when the migration failed.
    nlohmann::json migrate(const std::string& id, const api::AgentMigrate& request);
    // Returns the snapshot's folder.
    std::string snapshot(const std::string& id, const std::string& name);

    // Heartbeats: a counter that every create, start and prepare moves on, so a heartbeat reply can be
    // told from VMs that came after its request.
    std::uint64_t generation() const { return generation_.load(); }
    // [{"id", "state", "figures"}] for every VM.
    nlohmann::json heartbeat_vms();
    // [{"pid", "command", "api_socket"}] for every KVM process hostd does not manage.
    nlohmann::json unmanaged();
    // Kills and forgets (disks kept) every VM not in placed_here that was last created, started or
    // prepared (that request's arrival and its end both count) at or before generation sent_at.
    void fence(const std::set<std::string>& placed_here, std::uint64_t sent_at);
    void stop_unmanaged(pid_t pid);
    void adopt_unmanaged(pid_t pid, const std::string& id);

private:
    struct Vm;
    std::shared_ptr<Vm> find(const std::string& id);
    // The VM, made (empty) when unknown; marks it as touched now.
    std::shared_ptr<Vm> find_or_add(const std::string& id);
    // Marks the VM as created, started or prepared now: at the request and again when done, since a
    // heartbeat sent while the action ran did not list it.
    void touch(Vm& vm);
    void forget(Vm& vm);
    nlohmann::json status_of(Vm& vm);
    void boot(Vm& vm, const api::AgentVmSpec& spec);
    void shut_down(Vm& vm, bool graceful);
    void save(Vm& vm);
    // Adds the last dirty rate the vmm measured to figures, and starts a new measurement when one is due.
    void add_dirty_rate(Vm& vm, const std::string& socket, nlohmann::json& figures);

    const Config& config_;
    HostNetwork network_;
    ImageCache images_;
    std::atomic<std::uint64_t> generation_{0};
    std::mutex mutex_;  // guards vms_
    std::map<std::string, std::shared_ptr<Vm>> vms_;
};

}  // namespace vim::controller::hostd
