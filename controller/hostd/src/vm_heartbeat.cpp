// What heartbeats need of the VMs: their report, fencing by the reply, the KVM processes nobody manages.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "kvm_processes.h"
#include "vm_entry.h"
#include "vm_manager.h"
#include "vmm/control/client.h"
#include "vmm_client.h"

namespace vim::controller::hostd {

using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr auto kUnmanagedStopTimeout = 10s;
constexpr std::size_t kMaxHeartbeatItems = 4096;  // the contract's limit per list
constexpr std::chrono::milliseconds kDirtyRateWindow = 1s;

}  // namespace

void VmManager::add_dirty_rate(Vm& vm, const std::string& socket, json& figures) {
    try {
        const json last = vmm::control::send_command(socket, {{"cmd", "dirty-rate"}}, kControlTimeout);
        if (last.value("state", "") == "done" && last.contains("dirty_rate_pages_per_s")) {
            figures["dirty_rate_pages_per_s"] = last["dirty_rate_pages_per_s"];
        }
        // Dirty logging slows the guest's writes while it measures: a short window, now and then.
        const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now().time_since_epoch());
        const auto started = vm.dirty_rate_started.load();
        const bool due =
            started == std::chrono::milliseconds::zero() || now >= started + config_.dirty_rate_interval;
        if (last.value("state", "") != "measuring" && due) {
            vm.dirty_rate_started = now;
            vmm::control::send_command(
                socket, {{"cmd", "dirty-rate"}, {"window_ms", kDirtyRateWindow.count()}}, kControlTimeout);
        }
    } catch (const std::exception&) {
        // A vmm without the command, or one that is migrating: the figure is left out.
    }
}

json VmManager::heartbeat_vms() {
    std::vector<std::shared_ptr<Vm>> vms;
    {
        std::lock_guard lock(mutex_);
        for (const auto& [id, vm] : vms_) {
            std::lock_guard data(vm->data);
            if (vm->spec || vm->process) {  // not an entry whose create has only begun
                vms.push_back(vm);
            }
        }
    }
    json list = json::array();
    for (const auto& vm : vms) {
        try {
            json status = status_of(*vm);
            if (status["state"] == "running" && config_.dirty_rate_interval.count() > 0) {
                add_dirty_rate(*vm, status["api_socket"], status["figures"]);
            }
            list.push_back(
                {{"id", status["id"]}, {"state", status["state"]}, {"figures", status["figures"]}});
        } catch (const AgentError&) {
            // forgotten meanwhile
        }
    }
    return list;
}

json VmManager::unmanaged() {
    std::set<pid_t> managed = {::getpid()};
    {
        std::lock_guard lock(mutex_);
        for (const auto& [id, vm] : vms_) {
            std::lock_guard data(vm->data);
            if (vm->process) {
                managed.insert(vm->process->pid());
            }
        }
    }
    json list = json::array();
    for (const KvmProcess& process : find_kvm_processes(config_.kvm_device)) {
        if (!managed.contains(process.pid) && list.size() < kMaxHeartbeatItems) {
            list.push_back(
                {{"pid", process.pid}, {"command", process.command}, {"api_socket", process.api_socket}});
        }
    }
    return list;
}

void VmManager::fence(const std::set<std::string>& placed_here, std::uint64_t sent_at) {
    std::vector<std::shared_ptr<Vm>> candidates;
    {
        std::lock_guard lock(mutex_);
        for (const auto& [id, vm] : vms_) {
            if (!placed_here.contains(id) && vm->touched <= sent_at) {
                candidates.push_back(vm);
            }
        }
    }
    for (const auto& vm : candidates) {
        std::lock_guard action(vm->action);
        // A request for it that came in the meantime is newer than the reply.
        if (vm->forgotten || vm->touched > sent_at) {
            continue;
        }
        spdlog::warn("vm {}: the controller no longer places it here: stopped and forgotten, disks kept",
                     vm->record.id);
        try {
            shut_down(*vm, false);
        } catch (const std::exception& error) {
            spdlog::error("vm {}: fencing: {}", vm->record.id, error.what());
            continue;
        }
        forget(*vm);
    }
}

namespace {

KvmProcess find_unmanaged(pid_t pid, const std::filesystem::path& kvm_device) {
    for (const KvmProcess& process : find_kvm_processes(kvm_device)) {
        if (process.pid == pid) {
            return process;
        }
    }
    throw AgentError(404, "no unmanaged KVM process with pid " + std::to_string(pid));
}

}  // namespace

void VmManager::stop_unmanaged(pid_t pid) {
    for (const auto& vm : [&] {
             std::lock_guard lock(mutex_);
             return vms_;
         }()) {
        std::lock_guard data(vm.second->data);
        if (vm.second->process && vm.second->process->pid() == pid) {
            throw AgentError(404, "pid " + std::to_string(pid) + " is vm " + vm.first + "'s, not unmanaged");
        }
    }
    const KvmProcess found = find_unmanaged(pid, config_.kvm_device);
    const auto start_time = process_start_time(pid);
    const auto process = start_time ? Process::attach(pid, *start_time) : std::nullopt;
    if (!process) {
        throw AgentError(404, "no unmanaged KVM process with pid " + std::to_string(pid));
    }
    bool asked = false;
    if (!found.api_socket.empty()) {
        try {
            asked = vmm::control::send_command(found.api_socket, {{"cmd", "shutdown"}, {"timeout_ms", 10000}},
                                               kControlTimeout)
                        .value("ok", false);
        } catch (const std::exception& error) {
            spdlog::warn("unmanaged pid {}: shutdown over {}: {}", pid, found.api_socket, error.what());
        }
    }
    if (!asked) {
        process->signal(SIGTERM);
    }
    if (!process->wait_exit(kUnmanagedStopTimeout)) {
        process->kill();
        process->wait_exit(kKillTimeout);
    }
    spdlog::info("unmanaged pid {}: stopped", pid);
}

void VmManager::adopt_unmanaged(pid_t pid, const std::string& id) {
    check_vm_id("id", id);
    const KvmProcess found = find_unmanaged(pid, config_.kvm_device);
    if (found.api_socket.empty()) {
        throw AgentError(409, "pid " + std::to_string(pid) + " has no --api-socket: hostd cannot manage it");
    }
    const auto start_time = process_start_time(pid);
    auto process = start_time ? Process::attach(pid, *start_time) : std::nullopt;
    if (!process) {
        throw AgentError(404, "no unmanaged KVM process with pid " + std::to_string(pid));
    }
    if (!answers_status(found.api_socket)) {
        throw AgentError(409, "pid " + std::to_string(pid) + " does not answer on " + found.api_socket);
    }
    const auto vm = find_or_add(id);
    std::lock_guard action(vm->action);
    if (vm->forgotten || vm->spec || vm->process) {
        throw AgentError(409, "vm " + id + ": the id is another VM's on this host");
    }
    std::filesystem::create_directories(config_.state_dir / "vms" / id);
    {
        std::lock_guard lock(vm->data);
        vm->record.pid = pid;
        vm->record.start_time = *start_time;
        vm->record.api_socket = found.api_socket;
        vm->record.owns_disks = false;
        vm->process = std::make_shared<const Process>(std::move(*process));
    }
    save(*vm);
    spdlog::info("vm {}: adopted unmanaged pid {}", id, pid);
}

}  // namespace vim::controller::hostd
