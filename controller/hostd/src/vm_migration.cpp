// The VM side of migrations and snapshots: the target's vmm waiting with --incoming, the source's migrate.
#include <spdlog/spdlog.h>

#include <thread>

#include "vm_entry.h"
#include "vm_manager.h"
#include "vmm/control/client.h"
#include "vmm_client.h"
#include "vmm_command.h"

namespace vim::controller::hostd {

using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr auto kListenTimeout = 15s;
constexpr auto kMigrationPoll = 50ms;
constexpr auto kSnapshotTimeout = 600s;

}  // namespace

std::string VmManager::prepare_incoming(const api::AgentVmSpec& spec) {
    check_vm_id("id", spec.id);
    for (;;) {
        const auto vm = find_or_add(spec.id);
        std::lock_guard action(vm->action);
        if (vm->forgotten) {
            continue;
        }
        if (vm->process && vm->process->running()) {
            if (vm->record.incoming_uri.empty()) {
                throw AgentError(409, "vm " + spec.id + ": runs on this host already");
            }
            return vm->record.incoming_uri;  // a retried request: the same vmm waits
        }
        const bool known = vm->spec.has_value();
        const VmPaths paths = vm_paths(config_, spec);
        try {
            std::filesystem::create_directories(paths.folder);
            {
                std::lock_guard lock(vm->data);
                vm->record.taps = paths.taps;
            }
            for (std::size_t i = 0; i < spec.nics.size(); ++i) {
                network_.attach_tap(paths.taps[i], spec.nics[i].vlan);
            }
            const std::string address =
                config_.migration_address.empty() ? config_.listen_host : config_.migration_address;
            const auto stderr_offset = file_size_or_zero(paths.vmm_stderr());
            // Port 0: the vmm takes a free port and says which, so no other process can take it between.
            auto process = std::make_shared<const Process>(
                Process::spawn(incoming_command(config_, spec, paths, "tcp:" + address + ":0"),
                               paths.vmm_stdout(), paths.vmm_stderr()));
            {
                std::lock_guard lock(vm->data);
                vm->process = process;
                vm->spec = spec;
                vm->record.spec = spec.to_json();
                vm->record.pid = process->pid();
                vm->record.start_time = process->start_time();
                vm->record.api_socket = paths.api_socket.string();
                vm->record.taps = paths.taps;
            }
            constexpr std::string_view kListening = "waiting for a migration on port ";
            const auto deadline = std::chrono::steady_clock::now() + kListenTimeout;
            for (;;) {
                const std::string said = text_since(paths.vmm_stderr(), stderr_offset);
                if (const auto at = said.find(kListening);
                    at != std::string::npos && said.find('\n', at) != std::string::npos) {
                    const int port = std::stoi(said.substr(at + kListening.size()));
                    std::lock_guard lock(vm->data);
                    vm->record.incoming_uri = "tcp:" + address + ":" + std::to_string(port);
                    break;
                }
                if (!process->running()) {
                    shut_down(*vm, false);
                    throw std::runtime_error("vm " + spec.id +
                                             ": the incoming vmm exited: " + last_line(said));
                }
                if (std::chrono::steady_clock::now() > deadline) {
                    shut_down(*vm, false);
                    throw std::runtime_error("vm " + spec.id + ": the incoming vmm did not listen within " +
                                             std::to_string(kListenTimeout.count()) + " s");
                }
                std::this_thread::sleep_for(10ms);
            }
            save(*vm);
        } catch (...) {
            if (!known) {
                forget(*vm);
            }
            throw;
        }
        touch(*vm);
        spdlog::info("vm {}: waits for a migration on {}", spec.id, vm->record.incoming_uri);
        return vm->record.incoming_uri;
    }
}

json VmManager::migrate(const std::string& id, const api::AgentMigrate& request) {
    const auto vm = find(id);
    std::lock_guard action(vm->action);
    if (vm->forgotten) {
        throw not_known(id);
    }
    const auto process = vm->process;
    if (!process || !process->running() || !vm->record.incoming_uri.empty()) {
        throw AgentError(409, "vm " + id + ": not running here, so it cannot migrate");
    }
    const std::string socket = vm->record.api_socket;
    const std::string failure = "migration of vm " + id + ": ";
    json status;
    try {
        json started =
            vmm::control::send_command(socket, {{"cmd", "migrate"}, {"uri", request.uri}}, kControlTimeout);
        // This agent's own dirty-rate measurement (a second at most) holds the dirty log: wait it out.
        for (int wait = 0;
             wait < 50 && !started.value("ok", false) &&
             started.value("error", "").find("dirty-rate measurement is running") != std::string::npos;
             ++wait) {
            std::this_thread::sleep_for(kMigrationPoll);
            started = vmm::control::send_command(socket, {{"cmd", "migrate"}, {"uri", request.uri}},
                                                 kControlTimeout);
        }
        if (!started.value("ok", false)) {
            throw AgentError(502, failure + started.value("error", "refused"));
        }
        for (;;) {
            std::this_thread::sleep_for(kMigrationPoll);
            status = vmm::control::send_command(socket, {{"cmd", "migrate-status"}}, kControlTimeout);
            const std::string state = status.value("state", "");
            if (state == "completed") {
                break;
            }
            if (state == "failed" || state == "cancelled") {
                throw AgentError(502, failure + status.value("error", state));
            }
            if (!status.value("ok", false) || !process->running()) {
                throw AgentError(502, failure + (process->running() ? status.value("error", "no status")
                                                                    : "the source vmm exited"));
            }
        }
    } catch (const AgentError&) {
        throw;
    } catch (const std::exception& error) {
        throw AgentError(502, failure + error.what());
    }
    // The source stays paused after the hand-over and must never resume; the disks are the target's now.
    process->kill();
    process->wait_exit(kKillTimeout);
    forget(*vm);
    spdlog::info("vm {}: migrated to {}", id, request.uri);
    status.erase("ok");
    return status;
}

std::string VmManager::snapshot(const std::string& id, const std::string& name) {
    const auto vm = find(id);
    std::lock_guard action(vm->action);
    if (vm->forgotten) {
        throw not_known(id);
    }
    if (!vm->process || !vm->process->running() || !vm->record.incoming_uri.empty()) {
        throw AgentError(409, "vm " + id + ": not running, so there is nothing to snapshot");
    }
    const auto folder = config_.state_dir / "snapshots" / id / name;
    std::filesystem::create_directories(folder.parent_path());
    const json reply = vmm::control::send_command(
        vm->record.api_socket, {{"cmd", "snapshot"}, {"dir", folder.string()}}, kSnapshotTimeout);
    if (!reply.value("ok", false)) {
        throw std::runtime_error("snapshot " + name + " of vm " + id + ": " +
                                 reply.value("error", "refused"));
    }
    return folder.string();
}

}  // namespace vim::controller::hostd
