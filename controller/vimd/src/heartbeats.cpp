// What the host agents report (heartbeats) and the VMs they found that nobody asked for (unmanaged).
#include <spdlog/spdlog.h>

#include <charconv>
#include <sstream>

#include "controller/api/validation.h"
#include "service.h"

namespace vim::controller::vimd {

namespace {

std::int64_t leading_number(const std::string& text) {
    std::int64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    return error == std::errc() && value > 0 ? value : 0;
}

// What a vmm's command line says of its size (--cpus N, --memory N[M|G]); 0 where it says nothing.
store::Resources size_from_command(const std::string& command) {
    store::Resources size;
    std::istringstream words(command);
    std::string word;
    std::string previous;
    while (words >> word) {
        if (previous == "--cpus") {
            size.vcpus = leading_number(word);
        } else if (previous == "--memory") {
            const std::int64_t amount = leading_number(word);
            const bool gib = word.ends_with("G") || word.ends_with("g");
            size.memory_mib = gib ? amount * 1024 : amount;
        }
        previous = word;
    }
    return size;
}

}  // namespace

void Service::host_heartbeat(Call& call) {
    const auto heartbeat = api::HostHeartbeat::from_json(call.json_body(true));
    const auto host = find_host(call.parameter());
    store::HostReport report;
    report.at = store::now_ms();
    report.metrics = nlohmann::json(heartbeat.metrics).dump();
    for (const auto& vm : heartbeat.vms) {
        report.vms.push_back({.id = vm.id,
                              .running = vm.state == api::HostHeartbeat::Vm::State::running,
                              .figures = nlohmann::json(vm.figures).dump()});
    }
    for (const auto& process : heartbeat.unmanaged) {
        const auto size = size_from_command(process.command);
        report.unmanaged.push_back({.pid = static_cast<std::int64_t>(process.pid),
                                    .command = process.command,
                                    .api_socket = process.api_socket,
                                    .vcpus = size.vcpus,
                                    .memory_mib = size.memory_mib});
    }
    const bool was_down = host_down(host, report.at);
    const auto outcome = store_->record_host_report(host.id, report);
    placement_->record_heartbeat(host.id, report.at);
    if (was_down) {
        spdlog::warn("host {} heartbeats again: it is no longer down", host.name);
    }
    for (const auto& vm : outcome.changed) {
        placement_->sync_vm(vm);
        spdlog::info("vm {} on host {}: {} (its agent's heartbeat)", vm.name, host.name,
                     store::to_string(vm.state));
    }
    for (const auto& vm : outcome.removed) {
        placement_->forget_vm(vm.id);
        spdlog::info("vm {} on host {}: the unmanaged process is gone", vm.name, host.name);
    }
    call.response.status = 200;
    call.response.set_content(api::HeartbeatReply{.vms = outcome.placed_vm_ids}.to_json().dump(),
                              "application/json");
}

void Service::adopt_vm(Call& call) {
    call.json_body(true);
    auto vm = find_vm(call.parameter());
    if (vm.state == store::VmState::unmanaged && vm.unmanaged_api_socket.empty()) {
        throw HttpError(
            409, "vm \"" + vm.name + "\": its control socket is unknown, so its agent cannot manage it");
    }
    vm = transition_vm(vm.id, {store::VmState::unmanaged}, store::VmState::creating, "be adopted");
    const auto operation = store_->create_operation(new_operation("adopt", vm.id));
    runner_->submit(operation.id,
                    [this, id = vm.id](const OperationRunner::Progress&) { return run_adopt(id); });
    reply_accepted(call, operation, vm);
}

OperationRunner::Outcome Service::run_adopt(const std::string& vm_id) {
    const auto vm = store_->get_vm(vm_id);
    try {
        const auto reply = call_agent(vm.host_id, "POST",
                                      "/agent/v1/unmanaged/" + std::to_string(vm.unmanaged_pid) + "/adopt",
                                      api::AgentAdopt{.id = vm_id}.to_json());
        return {nlohmann::json{
                    {"vm_id", vm_id}, {"host_id", vm.host_id}, {"pid", vm.unmanaged_pid}, {"agent", reply}},
                [](store::Vm& record) {
                    record.state = store::VmState::running;
                    record.unmanaged_pid = 0;  // managed from now on: its agent reports it by id
                }};
    } catch (...) {
        try {
            store_->update_vm(vm_id, [](store::Vm& record) { record.state = store::VmState::unmanaged; });
        } catch (const std::exception& error) {
            spdlog::error("vm {}: recording the failed adoption: {}", vm_id, error.what());
        }
        throw;
    }
}

}  // namespace vim::controller::vimd
