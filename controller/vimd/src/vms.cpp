#include <spdlog/spdlog.h>

#include "controller/api/validation.h"
#include "controller/common/sha256.h"
#include "service.h"

namespace vim::controller::vimd {

namespace {

constexpr std::size_t kMaxIdempotencyKeyLength = 128;

std::string vm_state_list(std::initializer_list<store::VmState> states) {
    std::string text;
    for (const auto state : states) {
        text += (text.empty() ? "" : " or ") + std::string(store::to_string(state));
    }
    return text;
}

// A reference in a request body that names no record: 404 naming the body's field.
template <typename Find>
auto resolve(const std::string& field, const std::string& kind, const std::string& name, Find find) {
    try {
        return find(name);
    } catch (const store::NotFoundError&) {
        throw HttpError(404, field + ": no " + kind + " named \"" + name + "\"");
    }
}

}  // namespace

nlohmann::json Service::call_agent(const std::string& host_id, const std::string& method,
                                   const std::string& path, const std::optional<nlohmann::json>& body) {
    const auto host = store_->get_host(host_id);
    return agents_.call(host.agent_url, method, path, body, config_.agent_timeout);
}

api::AgentVmSpec Service::agent_spec(const store::Vm& vm) {
    if (vm.found_running) {
        throw HttpError(409,
                        "vm \"" + vm.name +
                            "\" was found running on its host: the controller does not know its image and "
                            "disks, so no agent can create it elsewhere");
    }
    api::AgentVmSpec spec;
    spec.id = vm.id;
    spec.name = vm.name;
    spec.vcpus = static_cast<std::uint64_t>(vm.vcpus);
    spec.memory_mib = static_cast<std::uint64_t>(vm.memory_mib);
    const auto image = store_->get_image(vm.image_id);
    spec.image = {.sha256 = image.id,
                  .size = static_cast<std::uint64_t>(image.size_bytes),
                  .url = advertise_url_ + "/v1/images/" + image.id + "/content"};
    // The store keeps a VM's disk space as one total; the agent gets it as one data disk.
    if (vm.disk_gib > 0) {
        spec.disks.push_back({.size_gib = static_cast<std::uint64_t>(vm.disk_gib)});
    }
    for (const auto& nic : vm.nics) {
        const auto network = store_->get_network(nic.network_id);
        const auto parsed = api::Ipv4Network::parse("cidr", network.cidr);
        spec.nics.push_back({.network = network.name,
                             .vlan = static_cast<std::uint64_t>(network.vlan_id),
                             .mac = nic.mac,
                             .address = nic.ip + "/" + std::to_string(parsed.prefix)});
    }
    return spec;
}

void Service::replay_idempotent(Call& call, const store::IdempotencyRecord& record,
                                const std::string& request_hash) {
    if (record.request_hash != request_hash) {
        throw HttpError(409, "Idempotency-Key: \"" + record.key + "\" was used for a different request");
    }
    const auto first = nlohmann::json::parse(record.response_body);
    const auto operation = store_->get_operation(first.at("operation_id").get<std::string>());
    std::optional<store::Vm> vm;
    try {
        vm = store_->get_vm(first.at("vm_id").get<std::string>());
    } catch (const store::NotFoundError&) {
        // deleted since: the operation still tells what the first request did
    }
    call.response.set_header("Idempotent-Replayed", "true");
    reply_accepted(call, operation, vm);
}

void Service::create_vm(Call& call) {
    const auto body = call.json_body();
    const auto request = api::VmCreate::from_json(body);
    const std::string key = call.request.get_header_value("Idempotency-Key");
    std::string request_hash;
    if (call.request.has_header("Idempotency-Key")) {
        if (key.empty() || key.size() > kMaxIdempotencyKeyLength) {
            throw api::ValidationError("Idempotency-Key", "must be 1 to 128 characters long");
        }
        request_hash = sha256_hex(body.dump());
        if (auto previous = store_->find_idempotency(key)) {
            replay_idempotent(call, *previous, request_hash);
            return;
        }
    }

    store::Vm vm;
    vm.id = store::new_id();
    vm.name = request.name;
    vm.vcpus = static_cast<std::int64_t>(request.vcpus);
    vm.memory_mib = static_cast<std::int64_t>(request.memory_mib);
    for (const auto& disk : request.disks) {
        vm.disk_gib += static_cast<std::int64_t>(disk.size_gib);
    }
    const auto image =
        resolve("image", "image", request.image, [this](const auto& name) { return find_image(name); });
    if (image.status != store::ImageStatus::ready) {
        throw HttpError(409, "image: image \"" + image.name + "\" is still uploading");
    }
    vm.image_id = image.id;
    for (std::size_t i = 0; i < request.nics.size(); ++i) {
        const auto network =
            resolve("nics[" + std::to_string(i) + "].network", "network", request.nics[i].network,
                    [this](const auto& name) { return find_network(name); });
        store::Nic nic;
        nic.network_id = network.id;
        vm.nics.push_back(nic);
    }
    if (request.server_group) {
        vm.server_group_id =
            resolve("server_group", "server group", *request.server_group, [this](const auto& name) {
                return find_server_group(name);
            }).id;
    }
    vm.host_affinity = request.host_affinity;
    vm.host_anti_affinity = request.host_anti_affinity;
    vm.required_cpu_features = {request.cpu_features.begin(), request.cpu_features.end()};
    vm.state = store::VmState::creating;

    const auto operation = new_operation("create", vm.id);
    store::VmCreation creation{.vm = vm, .operation = operation, .idempotency = std::nullopt};
    if (!key.empty()) {
        creation.idempotency = store::IdempotencyRecord{
            .key = key,
            .request_hash = request_hash,
            .response_status = 202,
            .response_body = nlohmann::json{{"vm_id", vm.id}, {"operation_id", operation.id}}.dump(),
            .created_ms = store::now_ms()};
    }
    store::VmCreated created;
    const auto started = std::chrono::steady_clock::now();
    try {
        created = placement_->create_vm(std::move(creation));
        placement_latency_.observe("", std::chrono::steady_clock::now() - started);
    } catch (const store::ConflictError& error) {
        placement_latency_.observe("", std::chrono::steady_clock::now() - started);
        // A racing retry under the same key committed first (its VM, with the same name, may be what
        // collided): answer as it was answered.
        if (!key.empty()) {
            if (auto first = store_->find_idempotency(key)) {
                replay_idempotent(call, *first, request_hash);
                return;
            }
        }
        throw;
    } catch (...) {
        placement_latency_.observe("", std::chrono::steady_clock::now() - started);
        throw;
    }
    const std::string vm_id = created.vm.id;
    runner_->submit(created.operation->id,
                    [this, vm_id](const OperationRunner::Progress&) { return run_create(vm_id); });
    spdlog::info("vm {} ({}) placed on host {}", created.vm.name, vm_id, created.vm.host_id);
    reply_accepted(call, *created.operation, created.vm);
}

OperationRunner::Outcome Service::run_create(const std::string& vm_id) {
    try {
        const auto vm = store_->get_vm(vm_id);
        const auto reply = call_agent(vm.host_id, "POST", "/agent/v1/vms", agent_spec(vm).to_json());
        return {nlohmann::json{{"vm_id", vm_id}, {"host_id", vm.host_id}, {"agent", reply}},
                [](store::Vm& record) { record.state = store::VmState::running; }};
    } catch (...) {
        // The VM keeps its host's resources: the agent may yet have built it, and only a delete
        // (which asks the agent to destroy it) gives them back.
        try {
            store_->update_vm(vm_id, [](store::Vm& record) { record.state = store::VmState::error; });
        } catch (const std::exception& error) {
            spdlog::error("vm {}: recording the failed create: {}", vm_id, error.what());
        }
        throw;
    }
}

void Service::list_vms(Call& call) {
    call.allow_only_query(
        {"state", "host", "image", "server_group", "network", "name_prefix", "limit", "page_token"});
    store::VmFilter filter;
    if (auto state = call.query("state")) {
        try {
            filter.state = store::parse_vm_state(*state);
        } catch (const store::InvalidArgumentError& error) {
            throw api::ValidationError("state", error.what());
        }
    }
    if (auto host = call.query("host")) {
        filter.host_id =
            resolve("host", "host", *host, [this](const auto& name) { return find_host(name); }).id;
    }
    if (auto image = call.query("image")) {
        filter.image_id =
            resolve("image", "image", *image, [this](const auto& name) { return find_image(name); }).id;
    }
    if (auto group = call.query("server_group")) {
        filter.server_group_id = resolve("server_group", "server group", *group, [this](const auto& name) {
                                     return find_server_group(name);
                                 }).id;
    }
    if (auto network = call.query("network")) {
        filter.network_id = resolve("network", "network", *network, [this](const auto& name) {
                                return find_network(name);
                            }).id;
    }
    filter.name_prefix = call.query("name_prefix").value_or("");
    const auto page = store_->list_vms(filter, call.page());
    nlohmann::json items = nlohmann::json::array();
    for (const auto& vm : page.items) {
        items.push_back(vm_json(vm));
    }
    call.response.status = 200;
    call.response.set_content(
        nlohmann::json{{"items", items}, {"next_page_token", page.next_page_token}}.dump(),
        "application/json");
}

void Service::show_vm(Call& call) {
    call.response.status = 200;
    call.response.set_content(vm_json(find_vm(call.parameter())).dump(), "application/json");
}

store::Vm Service::transition_vm(const std::string& vm_id, std::initializer_list<store::VmState> from,
                                 store::VmState to, const std::string& action) {
    return store_->update_vm(vm_id, [&](store::Vm& vm) {
        if (std::find(from.begin(), from.end(), vm.state) == from.end()) {
            throw HttpError(409, "vm \"" + vm.name + "\" is " + std::string(store::to_string(vm.state)) +
                                     ": it can " + action + " only when " + vm_state_list(from));
        }
        vm.state = to;
    });
}

void Service::vm_action(Call& call, const std::string& kind, std::initializer_list<store::VmState> allowed,
                        store::VmState state_during, OperationRunner::Work work) {
    auto vm = find_vm(call.parameter());
    if (vm.host_id.empty()) {
        throw HttpError(409, "vm \"" + vm.name + "\" is on no host");
    }
    vm = transition_vm(vm.id, allowed, state_during, kind);
    const auto operation = store_->create_operation(new_operation(kind, vm.id));
    runner_->submit(operation.id, std::move(work));
    reply_accepted(call, operation, vm);
}

void Service::power_vm(Call& call, const std::string& action, std::initializer_list<store::VmState> allowed,
                       store::VmState after) {
    call.json_body(true);
    const auto vm = find_vm(call.parameter());
    vm_action(
        call, action, allowed, vm.state, [this, id = vm.id, action, after](const OperationRunner::Progress&) {
            auto reply =
                call_agent(store_->get_vm(id).host_id, "POST", "/agent/v1/vms/" + id + "/" + action, {});
            return OperationRunner::Outcome(std::move(reply),
                                            [after](store::Vm& record) { record.state = after; });
        });
}

void Service::start_vm(Call& call) {
    power_vm(call, "start", {store::VmState::stopped, store::VmState::error}, store::VmState::running);
}

void Service::stop_vm(Call& call) {
    power_vm(call, "stop", {store::VmState::running, store::VmState::error}, store::VmState::stopped);
}

void Service::reboot_vm(Call& call) {
    call.json_body(true);
    const auto vm = find_vm(call.parameter());
    vm_action(call, "reboot", {store::VmState::running}, store::VmState::running,
              [this, id = vm.id](const OperationRunner::Progress&) {
                  return call_agent(store_->get_vm(id).host_id, "POST", "/agent/v1/vms/" + id + "/reboot",
                                    {});
              });
}

void Service::snapshot_vm(Call& call) {
    const auto request = api::VmSnapshot::from_json(call.json_body(true));
    const auto vm = find_vm(call.parameter());
    const std::string name = request.name.value_or("snapshot-" + std::to_string(store::now_ms()));
    vm_action(call, "snapshot", {store::VmState::running, store::VmState::stopped}, vm.state,
              [this, id = vm.id, name](const OperationRunner::Progress&) {
                  return call_agent(store_->get_vm(id).host_id, "POST", "/agent/v1/vms/" + id + "/snapshot",
                                    api::AgentSnapshot{.name = name}.to_json());
              });
}

void Service::delete_vm(Call& call) {
    call.json_body(true);
    auto vm = find_vm(call.parameter());
    vm = transition_vm(
        vm.id,
        {store::VmState::pending, store::VmState::scheduled, store::VmState::running, store::VmState::stopped,
         store::VmState::error, store::VmState::missing, store::VmState::unmanaged},
        store::VmState::deleting, "be deleted");
    const auto operation = store_->create_operation(new_operation("delete", vm.id));
    runner_->submit(operation.id,
                    [this, id = vm.id](const OperationRunner::Progress&) { return run_delete(id); });
    reply_accepted(call, operation, vm);
}

nlohmann::json Service::run_delete(const std::string& vm_id) {
    try {
        const auto vm = store_->get_vm(vm_id);
        // A process the agent does not manage is stopped rather than deleted: its disks are not the agent's.
        const std::string path = vm.unmanaged_pid != 0
                                     ? "/agent/v1/unmanaged/" + std::to_string(vm.unmanaged_pid) + "/stop"
                                     : "/agent/v1/vms/" + vm_id;
        if (!vm.host_id.empty()) {
            try {
                call_agent(vm.host_id, vm.unmanaged_pid != 0 ? "POST" : "DELETE", path, {});
            } catch (const AgentError& error) {
                if (error.status() != 404) {  // 404: the agent has no such VM, which is what we want
                    throw;
                }
            }
        }
        store_->delete_vm(vm_id);
        placement_->forget_vm(vm_id);
        return {{"vm_id", vm_id}};
    } catch (...) {
        try {
            store_->update_vm(vm_id, [](store::Vm& record) { record.state = store::VmState::error; });
        } catch (const std::exception& error) {
            spdlog::error("vm {}: recording the failed delete: {}", vm_id, error.what());
        }
        throw;
    }
}

void Service::migrate_vm(Call& call) {
    const auto request = api::VmMigrate::from_json(call.json_body(true));
    auto vm = find_vm(call.parameter());
    if (request.host) {
        resolve("host", "host", *request.host, [this](const auto& name) { return find_host(name); });
    }
    vm = begin_migration(vm.id, request.host.value_or(""));
    const auto operation = store_->create_operation(new_operation("migrate", vm.id, 2));
    runner_->submit(operation.id, [this, id = vm.id](const OperationRunner::Progress& progress) {
        return run_migrate(id, progress);
    });
    reply_accepted(call, operation, vm);
}

store::Vm Service::begin_migration(const std::string& vm_id, const std::string& target_host_name) {
    const auto vm = transition_vm(vm_id, {store::VmState::running}, store::VmState::migrating, "migrate");
    try {
        return placement_->claim_migration(vm.id, target_host_name);
    } catch (...) {
        store_->update_vm(vm.id, [](store::Vm& record) { record.state = store::VmState::running; });
        throw;
    }
}

nlohmann::json Service::run_migrate(const std::string& vm_id, const OperationRunner::Progress& progress) {
    const auto vm = store_->get_vm(vm_id);
    try {
        const auto incoming =
            call_agent(vm.migration_host_id, "POST", "/agent/v1/vms/" + vm_id + "/incoming-migration",
                       agent_spec(vm).to_json());
        if (!incoming.contains("uri") || !incoming["uri"].is_string()) {
            throw AgentError("agent of host " + vm.migration_host_id + ": incoming-migration gave no uri",
                             200);
        }
        progress(20);
        const auto migrated =
            call_agent(vm.host_id, "POST", "/agent/v1/vms/" + vm_id + "/migrate",
                       api::AgentMigrate{.uri = incoming["uri"].get<std::string>()}.to_json());
        auto moved = store_->finish_migration(vm_id, true);
        moved = store_->update_vm(vm_id, [](store::Vm& record) { record.state = store::VmState::running; });
        placement_->sync_vm(moved);
        nlohmann::json result{{"vm_id", vm_id}, {"from_host_id", vm.host_id}, {"to_host_id", moved.host_id}};
        // The source vmm's own figures, what a user of live migration looks at first.
        for (const char* figure : {"downtime_ms", "total_ms", "bytes"}) {
            if (migrated.contains(figure) && migrated[figure].is_number()) {
                result[figure] = migrated[figure];
            }
        }
        return result;
    } catch (...) {
        // The source VM still runs: drop the target's claim and whatever the target prepared.
        try {
            auto kept = store_->finish_migration(vm_id, false);
            kept =
                store_->update_vm(vm_id, [](store::Vm& record) { record.state = store::VmState::running; });
            placement_->sync_vm(kept);
            call_agent(vm.migration_host_id, "DELETE", "/agent/v1/vms/" + vm_id, {});
        } catch (const std::exception& error) {
            spdlog::warn("vm {}: cleaning up the failed migration: {}", vm_id, error.what());
        }
        throw;
    }
}

void Service::settle_interrupted_move(const std::string& vm_id, store::VmState state_if_kept,
                                      bool ask_target) {
    auto vm = store_->get_vm(vm_id);
    if (vm.migration_host_id.empty()) {
        // The move had not claimed a target yet.
        vm = store_->update_vm(vm_id, [&](store::Vm& record) { record.state = state_if_kept; });
        placement_->sync_vm(vm);
        return;
    }
    bool handed_over = false;
    try {
        const auto status =
            call_agent(ask_target ? vm.migration_host_id : vm.host_id, "GET", "/agent/v1/vms/" + vm_id, {});
        handed_over = ask_target && status.value("state", "") == "running";
    } catch (const AgentError& error) {
        handed_over = !ask_target && error.status() == 404;
    } catch (const std::exception& error) {
        spdlog::warn("vm {}: asking an agent where it runs: {}", vm_id, error.what());
    }
    vm = store_->finish_migration(vm_id, handed_over);
    vm = store_->update_vm(vm_id, [&](store::Vm& record) {
        record.state = handed_over ? store::VmState::running : state_if_kept;
    });
    placement_->sync_vm(vm);
    spdlog::warn("vm {}: an interrupted move leaves it on host {}", vm.name, vm.host_id);
}

void Service::recover_unfinished() {
    const auto left = runner_->fail_unfinished("the controller restarted before the operation finished");
    for (const auto& operation : left) {
        try {
            if (operation.kind == "migrate") {
                settle_interrupted_move(operation.target_id, store::VmState::running, false);
            } else if (operation.kind == "ha-restart") {
                // Kept on its down host, it is missing there: the next check restarts it again.
                settle_interrupted_move(operation.target_id, store::VmState::missing, true);
            } else if (operation.kind == "evacuate") {
                for (const auto& vm : vms_on_host(operation.target_id)) {
                    if (vm.state == store::VmState::migrating && !vm.migration_host_id.empty()) {
                        settle_interrupted_move(vm.id, store::VmState::running, false);
                    }
                }
            } else if (operation.kind == "adopt") {
                // Whether the agent took the process over is unknown: it stays as found, and a heartbeat
                // that no longer lists it as unmanaged (adopted after all) removes the record.
                store_->update_vm(operation.target_id,
                                  [](store::Vm& record) { record.state = store::VmState::unmanaged; });
            } else if (operation.kind == "create" || operation.kind == "delete") {
                store_->update_vm(operation.target_id,
                                  [](store::Vm& record) { record.state = store::VmState::error; });
            }
        } catch (const std::exception& error) {
            spdlog::warn("operation {} ({}) left by an earlier run: {}", operation.id, operation.kind,
                         error.what());
        }
    }
    if (!left.empty()) {
        spdlog::warn("failed {} operations an earlier run left unfinished", left.size());
    }
    // An upload in progress died with the process that received it.
    std::vector<std::string> uploads;
    store::PageRequest page;
    page.limit = store::kMaxPageLimit;
    for (;;) {
        auto images = store_->list_images(page);
        for (const auto& image : images.items) {
            if (image.status == store::ImageStatus::uploading) {
                uploads.push_back(image.id);
            }
        }
        if (images.next_page_token.empty()) {
            break;
        }
        page.page_token = images.next_page_token;
    }
    for (const auto& id : uploads) {
        store_->delete_image(id);
    }
}

}  // namespace vim::controller::vimd
