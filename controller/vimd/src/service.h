#pragma once

#include <httplib.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "agent_client.h"
#include "controller/api/types.h"
#include "controller/scheduler/placement.h"
#include "controller/store/sqlite_store.h"
#include "controller/vimd/server.h"
#include "image_repository.h"
#include "metrics.h"
#include "operation_runner.h"

namespace vim::controller::vimd {

// A request the API refuses with a given status; what() is the {"error": ...} text.
class HttpError : public std::runtime_error {
public:
    HttpError(int status, const std::string& message) : std::runtime_error(message), status_(status) {}
    int status() const { return status_; }

private:
    int status_;
};

// One request as a handler sees it.
struct Call {
    const httplib::Request& request;
    httplib::Response& response;
    std::vector<std::string> parameters{};           // the path's {id} values, in order
    std::string body{};                              // POST/PATCH/DELETE bodies of JSON routes
    const httplib::ContentReader* reader = nullptr;  // streaming routes (image upload) only
    bool body_read = false;                          // a streaming handler set this once it used reader

    const std::string& parameter(std::size_t index = 0) const { return parameters.at(index); }
    // The body as JSON; an empty body reads as {} where empty_is_object (optional bodies).
    nlohmann::json json_body(bool empty_is_object = false) const;
    // Query parameters: unknown names are refused, so a misspelt filter is not silently ignored.
    void allow_only_query(std::initializer_list<std::string_view> names) const;
    std::optional<std::string> query(const std::string& name) const;
    store::PageRequest page() const;
};

// The controller's API handlers over the store, the placement, the image repository and the agents.
class Service {
public:
    using Handler = void (Service::*)(Call&);
    struct RouteHandler {
        std::string method;
        std::string path;  // OpenAPI form: /v1/vms/{id}
        Handler handler;
        bool streams_body = false;  // the handler reads the body itself (uploads)
    };
    static const std::vector<RouteHandler>& route_table();

    explicit Service(const Config& config);
    ~Service();

    const Config& config() const { return config_; }
    // Renders an error as {"error": ...} with the status.
    static void reply_error(httplib::Response& response, int status, const std::string& message);
    void observe_request(const std::string& route, const std::string& method, int status,
                         std::chrono::nanoseconds duration);
    void set_advertised_url(const std::string& url) { advertise_url_ = url; }
    void stop();

    // Handlers, one per route.
    void healthz(Call& call);
    void metrics(Call& call);
    void register_host(Call& call);
    void list_hosts(Call& call);
    void show_host(Call& call);
    void update_host(Call& call);
    void remove_host(Call& call);
    void host_heartbeat(Call& call);
    void upload_image(Call& call);
    void list_images(Call& call);
    void show_image(Call& call);
    void delete_image(Call& call);
    void download_image(Call& call);
    void create_vm(Call& call);
    void list_vms(Call& call);
    void show_vm(Call& call);
    void delete_vm(Call& call);
    void start_vm(Call& call);
    void stop_vm(Call& call);
    void reboot_vm(Call& call);
    void migrate_vm(Call& call);
    void snapshot_vm(Call& call);
    void adopt_vm(Call& call);
    void create_server_group(Call& call);
    void list_server_groups(Call& call);
    void show_server_group(Call& call);
    void delete_server_group(Call& call);
    void create_network(Call& call);
    void list_networks(Call& call);
    void show_network(Call& call);
    void delete_network(Call& call);
    void list_operations(Call& call);
    void show_operation(Call& call);
    void explain_placement(Call& call);

private:
    // Records found by the id or the name a path or a body names; NotFoundError (404) otherwise.
    store::Host find_host(const std::string& id_or_name);
    store::Image find_image(const std::string& id_or_name);
    store::Vm find_vm(const std::string& id_or_name);
    store::ServerGroup find_server_group(const std::string& id_or_name);
    store::Network find_network(const std::string& id_or_name);

    nlohmann::json host_json(const store::Host& host);
    nlohmann::json vm_json(const store::Vm& vm);
    std::string host_state(const store::Host& host, store::TimeMs now) const;

    // A new pending operation whose deadline leaves agent_timeout for each of its agent calls.
    store::Operation new_operation(const std::string& kind, const std::string& target_id,
                                   int agent_calls = 1) const;
    void reply_accepted(Call& call, const store::Operation& operation, const std::optional<store::Vm>& vm);
    // Starts an operation on a placed VM whose state allows it: state_during while it runs.
    void vm_action(Call& call, const std::string& kind, std::initializer_list<store::VmState> allowed,
                   store::VmState state_during, OperationRunner::Work work);
    // start and stop: asks the VM's agent to `action` it; its answer leaves the VM in state `after`.
    void power_vm(Call& call, const std::string& action, std::initializer_list<store::VmState> allowed,
                  store::VmState after);
    // Moves the VM to `to` only when it is in one of `from` (409 naming its state otherwise).
    store::Vm transition_vm(const std::string& vm_id, std::initializer_list<store::VmState> from,
                            store::VmState to, const std::string& action);

    nlohmann::json call_agent(const std::string& host_id, const std::string& method, const std::string& path,
                              const std::optional<nlohmann::json>& body);
    api::AgentVmSpec agent_spec(const store::Vm& vm);
    OperationRunner::Outcome run_create(const std::string& vm_id);
    nlohmann::json run_delete(const std::string& vm_id);
    nlohmann::json run_migrate(const std::string& vm_id, const OperationRunner::Progress& progress);
    void replay_idempotent(Call& call, const store::IdempotencyRecord& record,
                           const std::string& request_hash);
    void recover_unfinished();
    // After a restart, a VM that an operation of the earlier run was moving is given to one host, and the
    // agents then fence by the heartbeat replies. A live migration (ask_target false) went to the target
    // when the source's agent has let the VM go (it forgets a VM only once it handed it over); an HA
    // restart (ask_target true) when the target's agent runs it. Otherwise it stays, in state_if_kept.
    void settle_interrupted_move(const std::string& vm_id, store::VmState state_if_kept, bool ask_target);

    // Live migration: claims a target (the named host, or the best) for a running VM, which becomes
    // migrating; run_migrate then moves it.
    store::Vm begin_migration(const std::string& vm_id, const std::string& target_host_name);
    // Maintenance: live-migrates the running VMs off a host, least dirty first; nullopt when none runs
    // there. An evacuation of the host already under way is returned rather than started again.
    std::optional<store::Operation> start_evacuation(const store::Host& host);
    nlohmann::json run_evacuation(const std::string& host_id, const OperationRunner::Progress& progress);
    nlohmann::json evacuate_vm(const store::Vm& vm, const std::string& host_id);
    OperationRunner::Outcome run_adopt(const std::string& vm_id);

    // HA: a host not heard from for config_.host_dead_after is down, and its running (or missing) VMs
    // are created again on other hosts, each by an ha-restart operation.
    bool host_down(const store::Host& host, store::TimeMs now) const;
    void watch_hosts();
    void restart_vms_of_down_hosts();
    OperationRunner::Outcome run_ha_restart(const std::string& vm_id);
    std::vector<store::Vm> vms_on_host(const std::string& host_id);

    Config config_;
    std::string advertise_url_;
    std::unique_ptr<store::SqliteStore> store_;
    std::unique_ptr<scheduler::Placement> placement_;
    ImageRepository images_;
    AgentClient agents_;
    LatencyHistograms request_latency_;
    LatencyHistograms placement_latency_;
    Counters operations_finished_;
    std::unique_ptr<OperationRunner> runner_;
    // Heartbeats count from this process's start: hosts are not down merely because vimd was.
    store::TimeMs started_ms_ = store::now_ms();
    std::mutex watch_mutex_;
    std::condition_variable watch_wake_;
    bool watch_stopping_ = false;
    std::set<std::string> down_hosts_;  // as the last check saw them, to log changes
    std::thread watcher_;
};

}  // namespace vim::controller::vimd
