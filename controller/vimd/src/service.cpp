#include "service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <map>

#include "controller/api/validation.h"
#include "render.h"

namespace vim::controller::vimd {

namespace {

template <typename Record, typename Render>
nlohmann::json page_json(const store::Page<Record>& page, Render render) {
    nlohmann::json items = nlohmann::json::array();
    for (const auto& record : page.items) {
        items.push_back(render(record));
    }
    return {{"items", std::move(items)}, {"next_page_token", page.next_page_token}};
}

void reply_json(httplib::Response& response, int status, const nlohmann::json& body) {
    response.status = status;
    // Error messages may quote a client's bytes, which need not be UTF-8.
    response.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                         "application/json");
}

}  // namespace

nlohmann::json Call::json_body(bool empty_is_object) const {
    if (empty_is_object && body.find_first_not_of(" \t\r\n") == std::string::npos) {
        return nlohmann::json::object();
    }
    return api::parse_body(body);
}

void Call::allow_only_query(std::initializer_list<std::string_view> names) const {
    for (const auto& [name, value] : request.params) {
        if (std::find(names.begin(), names.end(), name) == names.end()) {
            throw api::ValidationError(name, "unknown query parameter");
        }
    }
}

std::optional<std::string> Call::query(const std::string& name) const {
    if (!request.has_param(name)) {
        return std::nullopt;
    }
    return request.get_param_value(name);
}

store::PageRequest Call::page() const {
    store::PageRequest page;
    if (auto limit = query("limit")) {
        std::size_t value = 0;
        const auto [end, error] = std::from_chars(limit->data(), limit->data() + limit->size(), value);
        if (error != std::errc() || end != limit->data() + limit->size() || value < 1 ||
            value > store::kMaxPageLimit) {
            throw api::ValidationError(
                "limit", "must be an integer from 1 to " + std::to_string(store::kMaxPageLimit));
        }
        page.limit = value;
    }
    page.page_token = query("page_token").value_or("");
    return page;
}

const std::vector<Service::RouteHandler>& Service::route_table() {
    static const std::vector<RouteHandler> table = {
        {"GET", "/healthz", &Service::healthz},
        {"GET", "/metrics", &Service::metrics},
        {"POST", "/v1/hosts", &Service::register_host},
        {"GET", "/v1/hosts", &Service::list_hosts},
        {"GET", "/v1/hosts/{id}", &Service::show_host},
        {"PATCH", "/v1/hosts/{id}", &Service::update_host},
        {"DELETE", "/v1/hosts/{id}", &Service::remove_host},
        {"POST", "/v1/hosts/{id}/heartbeat", &Service::host_heartbeat},
        {"POST", "/v1/images", &Service::upload_image, true},
        {"GET", "/v1/images", &Service::list_images},
        {"GET", "/v1/images/{id}", &Service::show_image},
        {"DELETE", "/v1/images/{id}", &Service::delete_image},
        {"GET", "/v1/images/{id}/content", &Service::download_image},
        {"POST", "/v1/vms", &Service::create_vm},
        {"GET", "/v1/vms", &Service::list_vms},
        {"GET", "/v1/vms/{id}", &Service::show_vm},
        {"DELETE", "/v1/vms/{id}", &Service::delete_vm},
        {"POST", "/v1/vms/{id}/start", &Service::start_vm},
        {"POST", "/v1/vms/{id}/stop", &Service::stop_vm},
        {"POST", "/v1/vms/{id}/reboot", &Service::reboot_vm},
        {"POST", "/v1/vms/{id}/migrate", &Service::migrate_vm},
        {"POST", "/v1/vms/{id}/snapshot", &Service::snapshot_vm},
        {"POST", "/v1/vms/{id}/adopt", &Service::adopt_vm},
        {"POST", "/v1/server-groups", &Service::create_server_group},
        {"GET", "/v1/server-groups", &Service::list_server_groups},
        {"GET", "/v1/server-groups/{id}", &Service::show_server_group},
        {"DELETE", "/v1/server-groups/{id}", &Service::delete_server_group},
        {"POST", "/v1/networks", &Service::create_network},
        {"GET", "/v1/networks", &Service::list_networks},
        {"GET", "/v1/networks/{id}", &Service::show_network},
        {"DELETE", "/v1/networks/{id}", &Service::delete_network},
        {"GET", "/v1/operations", &Service::list_operations},
        {"GET", "/v1/operations/{id}", &Service::show_operation},
        {"POST", "/v1/placement/explain", &Service::explain_placement},
    };
    return table;
}

std::vector<Route> routes() {
    std::vector<Route> all;
    for (const auto& route : Service::route_table()) {
        all.push_back({route.method, route.path});
    }
    return all;
}

Service::Service(const Config& config)
    : config_(config),
      store_(std::make_unique<store::SqliteStore>(
          config.db_path, store::SqliteStore::Options{.durability = config.durability})),
      images_(config.state_dir / "images"),
      agents_(config.token),
      request_latency_("vim_api_request_duration_seconds",
                       "Time to answer an API request, by route and status."),
      placement_latency_("vim_scheduler_placement_duration_seconds",
                         "Time to place a VM: the decision and its durable claim."),
      operations_finished_("vim_operations_finished_total",
                           "Operations that ended since start, by kind and state.") {
    // A down host must not be chosen either, however long the scheduler lets a host stay quiet.
    if (config_.host_dead_after.count() > 0 &&
        config_.scheduler.heartbeat_staleness_ms > config_.host_dead_after.count()) {
        config_.scheduler.heartbeat_staleness_ms = config_.host_dead_after.count();
    }
    placement_ = std::make_unique<scheduler::Placement>(*store_, config_.scheduler);
    runner_ = std::make_unique<OperationRunner>(*store_, config.operation_threads,
                                                config.operation_sweep_interval, operations_finished_);
    recover_unfinished();
    if (config_.host_dead_after.count() > 0) {
        watcher_ = std::thread([this] { watch_hosts(); });
    }
}

Service::~Service() { stop(); }

void Service::stop() {
    {
        std::lock_guard lock(watch_mutex_);
        watch_stopping_ = true;
    }
    watch_wake_.notify_all();
    if (watcher_.joinable()) {
        watcher_.join();
    }
    if (runner_) {
        runner_->stop();
    }
}

void Service::reply_error(httplib::Response& response, int status, const std::string& message) {
    reply_json(response, status, {{"error", message}});
}

void Service::observe_request(const std::string& route, const std::string& method, int status,
                              std::chrono::nanoseconds duration) {
    request_latency_.observe("route=" + label_value(route) + ",method=" + label_value(method) +
                                 ",code=" + label_value(std::to_string(status)),
                             duration);
}

// ---- lookups and rendering ----

store::Host Service::find_host(const std::string& id_or_name) {
    if (auto host = store_->find_host_by_name(id_or_name)) {
        return *host;
    }
    return store_->get_host(id_or_name);
}

store::Image Service::find_image(const std::string& id_or_name) {
    if (auto image = store_->find_image_by_name(id_or_name)) {
        return *image;
    }
    return store_->get_image(id_or_name);
}

store::Vm Service::find_vm(const std::string& id_or_name) {
    if (auto vm = store_->find_vm_by_name(id_or_name)) {
        return *vm;
    }
    return store_->get_vm(id_or_name);
}

store::ServerGroup Service::find_server_group(const std::string& id_or_name) {
    if (auto group = store_->find_server_group_by_name(id_or_name)) {
        return *group;
    }
    return store_->get_server_group(id_or_name);
}

store::Network Service::find_network(const std::string& id_or_name) {
    if (auto network = store_->find_network_by_name(id_or_name)) {
        return *network;
    }
    return store_->get_network(id_or_name);
}

std::string Service::host_state(const store::Host& host, store::TimeMs now) const {
    if (host_down(host, now)) {
        return "down";
    }
    if (!host.enabled) {
        return "disabled";
    }
    if (host.maintenance) {
        return "maintenance";
    }
    if (now - host.last_heartbeat_ms > config_.scheduler.heartbeat_staleness_ms) {
        return "stale";
    }
    return "ready";
}

nlohmann::json Service::host_json(const store::Host& host) {
    store::Resources used;
    placement_->with_view([&](const scheduler::ClusterView& view) {
        if (const auto* state = view.find_host(host.id)) {
            used = state->used;
        }
    });
    nlohmann::json numa = nlohmann::json::array();
    for (const auto& node : host.numa_nodes) {
        numa.push_back({{"id", node.id}, {"vcpus", node.vcpus}, {"memory_mib", node.memory_mib}});
    }
    return {{"id", host.id},
            {"name", host.name},
            {"agent_url", host.agent_url},
            {"state", host_state(host, store::now_ms())},
            {"enabled", host.enabled},
            {"maintenance", host.maintenance},
            {"last_heartbeat_ms", host.last_heartbeat_ms},
            {"capacity", resources_json(host.capacity)},
            {"reserved", resources_json(host.reserved)},
            {"usable", resources_json(store::usable_capacity(host))},
            {"used", resources_json(used)},
            {"overcommit", {{"cpu", host.ratios.cpu}, {"ram", host.ratios.ram}, {"disk", host.ratios.disk}}},
            {"cpu_features", sorted(host.cpu_features)},
            {"numa_nodes", numa},
            {"tags", sorted(host.tags)},
            {"inventory", parse_stored_json(host.inventory)},
            {"metrics", parse_stored_json(host.metrics)},
            {"created_ms", host.created_ms},
            {"updated_ms", host.updated_ms}};
}

nlohmann::json Service::vm_json(const store::Vm& vm) {
    std::string host_name;
    placement_->with_view([&](const scheduler::ClusterView& view) {
        if (const auto* state = view.find_host(vm.host_id)) {
            host_name = state->host.name;
        }
    });
    nlohmann::json nics = nlohmann::json::array();
    for (const auto& nic : vm.nics) {
        nics.push_back({{"network_id", nic.network_id}, {"mac", nic.mac}, {"ip", nic.ip}});
    }
    nlohmann::json record = {{"id", vm.id},
                             {"name", vm.name},
                             {"vcpus", vm.vcpus},
                             {"memory_mib", vm.memory_mib},
                             {"disk_gib", vm.disk_gib},
                             {"image_id", vm.image_id},
                             {"host_id", vm.host_id},
                             {"host", host_name},
                             {"numa_node", vm.numa_node},
                             {"migration_host_id", vm.migration_host_id},
                             {"state", store::to_string(vm.state)},
                             {"server_group_id", vm.server_group_id},
                             {"host_affinity", vm.host_affinity},
                             {"host_anti_affinity", vm.host_anti_affinity},
                             {"cpu_features", sorted(vm.required_cpu_features)},
                             {"nics", nics},
                             {"figures", parse_stored_json(vm.figures)},
                             {"created_ms", vm.created_ms},
                             {"updated_ms", vm.updated_ms}};
    if (vm.unmanaged_pid != 0) {
        record["unmanaged"] = {{"pid", vm.unmanaged_pid},
                               {"command", vm.unmanaged_command},
                               {"api_socket", vm.unmanaged_api_socket}};
    }
    return record;
}

// ---- service routes ----

void Service::healthz(Call& call) { reply_json(call.response, 200, {{"status", "ok"}}); }

void Service::metrics(Call& call) {
    const store::TimeMs now = store::now_ms();
    std::map<std::string, double> hosts_by_state;
    std::map<std::string, double> capacity;
    for (const char* state : {"ready", "maintenance", "disabled", "stale", "down"}) {
        hosts_by_state["state=" + label_value(state)] = 0;
    }
    placement_->with_view([&](const scheduler::ClusterView& view) {
        store::Resources usable;
        store::Resources used;
        for (std::size_t i = 0; i < view.host_count(); ++i) {
            const auto& state = view.host(i);
            hosts_by_state["state=" + label_value(host_state(state.host, now))] += 1;
            usable.vcpus += state.usable.vcpus;
            usable.memory_mib += state.usable.memory_mib;
            usable.disk_gib += state.usable.disk_gib;
            used.vcpus += state.used.vcpus;
            used.memory_mib += state.used.memory_mib;
            used.disk_gib += state.used.disk_gib;
        }
        const auto put = [&](const char* resource, std::int64_t total, std::int64_t taken) {
            capacity["resource=" + label_value(resource) + ",kind=\"used\""] = static_cast<double>(taken);
            capacity["resource=" + label_value(resource) + ",kind=\"free\""] =
                static_cast<double>(std::max<std::int64_t>(total - taken, 0));
        };
        put("vcpus", usable.vcpus, used.vcpus);
        put("memory_mib", usable.memory_mib, used.memory_mib);
        put("disk_gib", usable.disk_gib, used.disk_gib);
    });
    std::map<std::string, double> vms_by_state;
    store::PageRequest page;
    page.limit = store::kMaxPageLimit;
    for (;;) {
        auto vms = store_->list_vms({}, page);
        for (const auto& vm : vms.items) {
            vms_by_state["state=" + label_value(std::string(store::to_string(vm.state)))] += 1;
        }
        if (vms.next_page_token.empty()) {
            break;
        }
        page.page_token = vms.next_page_token;
    }
    std::map<std::string, double> operations_in_progress;
    for (const auto state : {store::OperationState::pending, store::OperationState::running}) {
        std::size_t count = 0;
        store::PageRequest operation_page;
        operation_page.limit = store::kMaxPageLimit;
        store::OperationFilter filter;
        filter.state = state;
        for (;;) {
            auto operations = store_->list_operations(filter, operation_page);
            count += operations.items.size();
            if (operations.next_page_token.empty()) {
                break;
            }
            operation_page.page_token = operations.next_page_token;
        }
        operations_in_progress["state=" + label_value(std::string(store::to_string(state)))] =
            static_cast<double>(count);
    }
    std::string text;
    text += render_gauges("vim_hosts", "Hosts by state.", hosts_by_state);
    text += render_gauges("vim_vms", "VMs by state.", vms_by_state);
    text += render_gauges("vim_capacity", "Usable capacity of all hosts (after over-commit), used and free.",
                          capacity);
    text += render_gauges("vim_operations", "Operations not finished yet, by state.", operations_in_progress);
    text += operations_finished_.render();
    text += placement_latency_.render();
    text += request_latency_.render();
    call.response.status = 200;
    call.response.set_content(text, "text/plain; version=0.0.4");
}

// ---- hosts ----

void Service::register_host(Call& call) {
    const auto registration = api::HostRegistration::from_json(call.json_body());
    const store::TimeMs now = store::now_ms();
    const auto fill = [&](store::Host& host) {
        host.agent_url = registration.agent_url;
        host.capacity = {static_cast<std::int64_t>(registration.cpus),
                         static_cast<std::int64_t>(registration.memory_mib),
                         static_cast<std::int64_t>(registration.disk_gib)};
        host.reserved = {static_cast<std::int64_t>(registration.reserved_cpus),
                         static_cast<std::int64_t>(registration.reserved_memory_mib),
                         static_cast<std::int64_t>(registration.reserved_disk_gib)};
        const store::OvercommitRatios defaults;
        host.ratios = {registration.cpu_overcommit.value_or(defaults.cpu),
                       registration.ram_overcommit.value_or(defaults.ram),
                       registration.disk_overcommit.value_or(defaults.disk)};
        host.cpu_features = {registration.cpu_features.begin(), registration.cpu_features.end()};
        host.numa_nodes.clear();
        for (std::size_t i = 0; i < registration.numa_nodes.size(); ++i) {
            host.numa_nodes.push_back({static_cast<int>(i),
                                       static_cast<std::int64_t>(registration.numa_nodes[i].cpus),
                                       static_cast<std::int64_t>(registration.numa_nodes[i].memory_mib)});
        }
        host.tags = {registration.tags.begin(), registration.tags.end()};
        host.inventory = registration.inventory.dump();
        host.last_heartbeat_ms = now;
    };
    int status = 200;
    store::Host host;
    if (auto existing = store_->find_host_by_name(registration.name)) {
        host = store_->update_host(existing->id, fill);
    } else {
        host.name = registration.name;
        fill(host);
        host = store_->create_host(host);
        status = 201;
    }
    placement_->sync_host(host);
    spdlog::info("host {} registered ({} vCPUs, {} MiB) at {}", host.name, host.capacity.vcpus,
                 host.capacity.memory_mib, host.agent_url);
    reply_json(call.response, status, host_json(host));
}

void Service::list_hosts(Call& call) {
    call.allow_only_query({"enabled", "maintenance", "limit", "page_token"});
    store::HostFilter filter;
    const auto flag = [&](const std::string& name) -> std::optional<bool> {
        auto text = call.query(name);
        if (!text) {
            return std::nullopt;
        }
        if (*text != "true" && *text != "false") {
            throw api::ValidationError(name, "must be true or false");
        }
        return *text == "true";
    };
    filter.enabled = flag("enabled");
    filter.maintenance = flag("maintenance");
    const auto page = store_->list_hosts(filter, call.page());
    reply_json(call.response, 200,
               page_json(page, [this](const store::Host& host) { return host_json(host); }));
}

void Service::show_host(Call& call) {
    reply_json(call.response, 200, host_json(find_host(call.parameter())));
}

void Service::update_host(Call& call) {
    const auto update = api::HostUpdate::from_json(call.json_body());
    const auto host = store_->update_host(find_host(call.parameter()).id, [&](store::Host& record) {
        if (update.maintenance) {
            record.maintenance = *update.maintenance;
        }
        if (update.enabled) {
            record.enabled = *update.enabled;
        }
    });
    placement_->sync_host(host);
    spdlog::info("host {}: enabled {}, maintenance {}", host.name, host.enabled, host.maintenance);
    if (update.maintenance.value_or(false)) {
        if (auto evacuation = start_evacuation(host)) {
            call.response.set_header("Location", "/v1/operations/" + evacuation->id);
            reply_json(call.response, 202,
                       {{"operation", operation_json(*evacuation)}, {"host", host_json(host)}});
            return;
        }
    }
    reply_json(call.response, 200, host_json(host));
}

void Service::remove_host(Call& call) {
    const auto host = find_host(call.parameter());
    store_->delete_host(host.id);
    placement_->forget_host(host.id);
    spdlog::info("host {} removed", host.name);
    call.response.status = 204;
}

// ---- server groups, networks, operations, placement ----

void Service::create_server_group(Call& call) {
    const auto request = api::ServerGroupCreate::from_json(call.json_body());
    store::ServerGroup group;
    group.name = request.name;
    group.policy = store::parse_group_policy(api::to_string(request.policy));
    reply_json(call.response, 201, group_json(store_->create_server_group(group)));
}

void Service::list_server_groups(Call& call) {
    call.allow_only_query({"limit", "page_token"});
    reply_json(call.response, 200, page_json(store_->list_server_groups(call.page()), group_json));
}

void Service::show_server_group(Call& call) {
    reply_json(call.response, 200, group_json(find_server_group(call.parameter())));
}

void Service::delete_server_group(Call& call) {
    store_->delete_server_group(find_server_group(call.parameter()).id);
    call.response.status = 204;
}

void Service::create_network(Call& call) {
    const auto request = api::NetworkCreate::from_json(call.json_body());
    store::Network network;
    network.name = request.name;
    network.vlan_id = static_cast<int>(request.vlan);
    network.cidr = request.cidr;
    reply_json(call.response, 201, network_json(store_->create_network(network)));
}

void Service::list_networks(Call& call) {
    call.allow_only_query({"limit", "page_token"});
    reply_json(call.response, 200, page_json(store_->list_networks(call.page()), network_json));
}

void Service::show_network(Call& call) {
    reply_json(call.response, 200, network_json(find_network(call.parameter())));
}

void Service::delete_network(Call& call) {
    store_->delete_network(find_network(call.parameter()).id);
    call.response.status = 204;
}

void Service::list_operations(Call& call) {
    call.allow_only_query({"state", "kind", "target", "limit", "page_token"});
    store::OperationFilter filter;
    filter.newest_first = true;
    if (auto state = call.query("state")) {
        try {
            filter.state = store::parse_operation_state(*state);
        } catch (const store::InvalidArgumentError&) {
            throw api::ValidationError("state", "must be pending, running, succeeded or failed");
        }
    }
    filter.kind = call.query("kind").value_or("");
    filter.target_id = call.query("target").value_or("");
    reply_json(call.response, 200, page_json(store_->list_operations(filter, call.page()), operation_json));
}

void Service::show_operation(Call& call) {
    reply_json(call.response, 200, operation_json(store_->get_operation(call.parameter())));
}

void Service::explain_placement(Call& call) {
    const auto request = api::VmCreate::from_json(call.json_body(), api::VmCreate::NameRule::optional);
    store::Vm vm;
    vm.vcpus = static_cast<std::int64_t>(request.vcpus);
    vm.memory_mib = static_cast<std::int64_t>(request.memory_mib);
    for (const auto& disk : request.disks) {
        vm.disk_gib += static_cast<std::int64_t>(disk.size_gib);
    }
    vm.host_affinity = request.host_affinity;
    vm.host_anti_affinity = request.host_anti_affinity;
    vm.required_cpu_features = {request.cpu_features.begin(), request.cpu_features.end()};
    std::optional<store::ServerGroup> group;
    if (request.server_group) {
        group = find_server_group(*request.server_group);
        vm.server_group_id = group->id;
    }
    const auto explanation = placement_->explain(scheduler::Request::for_vm(vm, group));
    nlohmann::json hosts = nlohmann::json::array();
    for (const auto& verdict : explanation.hosts) {
        nlohmann::json entry = {{"host", verdict.host_name}, {"accepted", verdict.passed}};
        if (verdict.passed) {
            entry["score"] = verdict.score.total;
            entry["score_resource"] = verdict.score.resource;
            entry["score_group"] = verdict.score.group;
            entry["numa_node"] = verdict.numa_node;
        } else {
            entry["rejected_by"] = verdict.rejected_by;
            entry["reason"] = verdict.message;
        }
        hosts.push_back(std::move(entry));
    }
    reply_json(call.response, 200,
               {{"chosen", explanation.decision.host_name},
                {"reason", explanation.decision.reason},
                {"hosts", hosts}});
}

// ---- operations ----

store::Operation Service::new_operation(const std::string& kind, const std::string& target_id,
                                        int agent_calls) const {
    store::Operation operation;
    operation.id = store::new_id();
    operation.kind = kind;
    operation.target_id = target_id;
    operation.created_ms = store::now_ms();
    operation.deadline_ms = operation.created_ms + agent_calls * config_.agent_timeout.count();
    return operation;
}

void Service::reply_accepted(Call& call, const store::Operation& operation,
                             const std::optional<store::Vm>& vm) {
    nlohmann::json body = {{"operation", operation_json(operation)}};
    if (vm) {
        body["vm"] = vm_json(*vm);
    }
    call.response.set_header("Location", "/v1/operations/" + operation.id);
    reply_json(call.response, 202, body);
}

}  // namespace vim::controller::vimd
