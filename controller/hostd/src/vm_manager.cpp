#include "vm_manager.h"

#include <spdlog/spdlog.h>

#include <thread>

#include "controller/api/validation.h"
#include "controller/hostd/disks.h"
#include "vm_entry.h"
#include "vmm/control/client.h"
#include "vmm_client.h"
#include "vmm_command.h"

namespace vim::controller::hostd {

using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr auto kStartTimeout = 15s;
constexpr std::size_t kMaxSocketPath = 107;  // sun_path, its terminating zero excluded

}  // namespace

void check_vm_id(const std::string& field, const std::string& id) {
    const bool plain = std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
               c == '_' || c == '-';
    });
    if (id.empty() || id.size() > 64 || id.front() == '.' || !plain) {
        throw api::ValidationError(field,
                                   "must be 1-64 characters of [A-Za-z0-9._-], not starting with a dot");
    }
}

VmManager::VmManager(const Config& config)
    : config_(config), network_(config.uplink), images_(config.state_dir / "images", config.token) {
    for (const auto& folder : {config.state_dir / "vms", config.disk_dir, config.run_dir}) {
        std::filesystem::create_directories(folder);
    }
}

VmManager::~VmManager() = default;

void VmManager::load() {
    for (const auto& entry : std::filesystem::directory_iterator(config_.state_dir / "vms")) {
        const auto file = entry.path() / "vm.json";
        if (!std::filesystem::exists(file)) {
            continue;
        }
        auto vm = std::make_shared<Vm>();
        try {
            vm->record = load_record(file);
            check_vm_id("id", vm->record.id);
            if (!vm->record.spec.is_null()) {
                vm->spec = api::AgentVmSpec::from_json(vm->record.spec);
            }
        } catch (const std::exception& error) {
            spdlog::error("{}: left alone: {}", file.string(), error.what());
            continue;
        }
        VmRecord& record = vm->record;
        if (auto process = Process::attach(record.pid, record.start_time)) {
            // A vmm waiting for a migration has no control socket yet.
            if (record.incoming_uri.empty() && !answers_status(record.api_socket)) {
                spdlog::warn("vm {}: pid {} runs but does not answer on {}; managed all the same", record.id,
                             record.pid, record.api_socket);
            }
            spdlog::info("vm {}: adopted pid {}", record.id, record.pid);
            vm->process = std::make_shared<const Process>(std::move(*process));
        } else if (record.pid != 0) {
            spdlog::info("vm {}: pid {} has gone; the vm is stopped", record.id, record.pid);
            record.pid = 0;
            record.start_time = 0;
            record.incoming_uri.clear();
            save(*vm);
        }
        std::lock_guard lock(mutex_);
        vms_[record.id] = vm;
    }
}

std::shared_ptr<VmManager::Vm> VmManager::find(const std::string& id) {
    std::lock_guard lock(mutex_);
    const auto found = vms_.find(id);
    if (found == vms_.end()) {
        throw not_known(id);
    }
    return found->second;
}

std::shared_ptr<VmManager::Vm> VmManager::find_or_add(const std::string& id) {
    std::lock_guard lock(mutex_);
    auto& vm = vms_[id];
    if (!vm) {
        vm = std::make_shared<Vm>();
        vm->record.id = id;
    }
    vm->touched = ++generation_;
    return vm;
}

void VmManager::touch(Vm& vm) {
    std::lock_guard lock(mutex_);
    vm.touched = ++generation_;
}

void VmManager::save(Vm& vm) {
    std::lock_guard lock(vm.data);
    save_record(config_.state_dir / "vms" / vm.record.id / "vm.json", vm.record);
}

void VmManager::forget(Vm& vm) {
    const std::string id = vm.record.id;
    for (const std::string& tap : vm.record.taps) {
        try {
            network_.remove_tap(tap);
        } catch (const std::exception& error) {
            spdlog::warn("vm {}: tap {} stays: {}", id, tap, error.what());
        }
    }
    std::error_code ignored;
    std::filesystem::remove_all(config_.state_dir / "vms" / id, ignored);
    if (!vm.record.api_socket.empty() && vm.spec) {
        std::filesystem::remove(vm.record.api_socket, ignored);
    }
    {
        std::lock_guard lock(vm.data);
        vm.forgotten = true;
        vm.process.reset();
    }
    std::lock_guard lock(mutex_);
    if (const auto found = vms_.find(id); found != vms_.end() && found->second.get() == &vm) {
        vms_.erase(found);
    }
}

void VmManager::shut_down(Vm& vm, bool graceful) {
    std::shared_ptr<const Process> process;
    std::string socket;
    bool incoming = false;
    {
        std::lock_guard lock(vm.data);
        process = vm.process;
        socket = vm.record.api_socket;
        incoming = !vm.record.incoming_uri.empty();
    }
    if (process && process->running()) {
        bool exited = false;
        // A vmm still waiting for a migration has no guest (and no socket) to ask.
        if (graceful && !incoming) {
            try {
                vmm::control::send_command(
                    socket, {{"cmd", "shutdown"}, {"timeout_ms", config_.stop_timeout.count()}},
                    kControlTimeout);
            } catch (const std::exception& error) {
                spdlog::warn("vm {}: shutdown: {}", vm.record.id, error.what());
            }
            // The vmm stops the guest itself at the timeout; the margin is its time to exit.
            exited = process->wait_exit(config_.stop_timeout + 2s);
        }
        if (!exited) {
            process->kill();
            if (!process->wait_exit(kKillTimeout)) {
                throw std::runtime_error("vm " + vm.record.id + ": pid " + std::to_string(process->pid()) +
                                         " survives SIGKILL");
            }
        }
    }
    {
        std::lock_guard lock(vm.data);
        vm.process.reset();
        vm.record.pid = 0;
        vm.record.start_time = 0;
        vm.record.incoming_uri.clear();
    }
    if (std::filesystem::exists(config_.state_dir / "vms" / vm.record.id)) {
        save(vm);
    }
}

void VmManager::boot(Vm& vm, const api::AgentVmSpec& spec) {
    const VmPaths paths = vm_paths(config_, spec);
    if (paths.api_socket.string().size() > kMaxSocketPath) {
        throw std::runtime_error("vm " + spec.id + ": api socket " + paths.api_socket.string() +
                                 " is longer than a Unix socket path may be");
    }
    {
        std::lock_guard lock(vm.data);
        vm.record.taps = paths.taps;  // before they exist: a failure from here on removes them
    }
    for (std::size_t i = 0; i < spec.nics.size(); ++i) {
        network_.attach_tap(paths.taps[i], spec.nics[i].vlan);
    }
    const auto stderr_offset = file_size_or_zero(paths.vmm_stderr());
    auto process = std::make_shared<const Process>(
        Process::spawn(boot_command(config_, spec, paths), paths.vmm_stdout(), paths.vmm_stderr()));
    {
        std::lock_guard lock(vm.data);
        vm.process = process;
        vm.spec = spec;
        vm.record.spec = spec.to_json();
        vm.record.pid = process->pid();
        vm.record.start_time = process->start_time();
        vm.record.api_socket = paths.api_socket.string();
        vm.record.taps = paths.taps;
        vm.record.incoming_uri.clear();
    }
    // Recorded before it is ready: a hostd that dies now finds it again.
    save(vm);
    const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    for (;;) {
        if (!process->running()) {
            shut_down(vm, false);
            throw std::runtime_error("vm " + spec.id + ": the vmm exited: " +
                                     last_line(text_since(paths.vmm_stderr(), stderr_offset)));
        }
        if (answers_status(paths.api_socket)) {
            return;
        }
        if (std::chrono::steady_clock::now() > deadline) {
            shut_down(vm, false);
            throw std::runtime_error("vm " + spec.id + ": the vmm did not answer on " +
                                     paths.api_socket.string() + " within " +
                                     std::to_string(kStartTimeout.count()) + " s");
        }
        std::this_thread::sleep_for(20ms);
    }
}

json VmManager::create(const api::AgentVmSpec& spec) {
    check_vm_id("id", spec.id);
    for (;;) {
        const auto vm = find_or_add(spec.id);
        std::lock_guard action(vm->action);
        if (vm->forgotten) {
            continue;  // deleted while this request waited: start afresh
        }
        if (vm->process && vm->process->running()) {
            if (!vm->record.incoming_uri.empty()) {
                throw AgentError(409, "vm " + spec.id + ": waits for an incoming migration");
            }
            return status_of(*vm);  // a retried create
        }
        const bool known = vm->spec.has_value();
        const VmPaths paths = vm_paths(config_, spec);
        const auto disk_folder = config_.disk_dir / spec.id;
        const bool made_disk_folder = !std::filesystem::exists(disk_folder);
        try {
            // The image first: a bad one leaves nothing behind.
            const bool need_image = !std::filesystem::exists(paths.disks.front());
            const auto image = need_image ? images_.fetch(spec.image) : std::filesystem::path();
            std::filesystem::create_directories(paths.folder);
            std::filesystem::create_directories(disk_folder);
            if (need_image) {
                clone_file(image, paths.disks.front());
            }
            for (std::size_t i = 0; i < spec.disks.size(); ++i) {
                if (!std::filesystem::exists(paths.disks[i + 1])) {
                    create_sparse_file(paths.disks[i + 1], spec.disks[i].size_gib << 30);
                }
            }
            {
                std::lock_guard lock(vm->data);
                vm->record.owns_disks = true;
            }
            boot(*vm, spec);
        } catch (...) {
            if (!known) {
                std::error_code ignored;
                if (made_disk_folder) {
                    std::filesystem::remove_all(disk_folder, ignored);
                }
                forget(*vm);
            }
            throw;
        }
        touch(*vm);
        spdlog::info("vm {}: running, pid {}", spec.id, vm->record.pid);
        return status_of(*vm);
    }
}

json VmManager::status_of(Vm& vm) {
    VmRecord record;
    std::shared_ptr<const Process> process;
    bool adopted_from_outside = false;
    {
        std::lock_guard lock(vm.data);
        if (vm.forgotten) {
            throw not_known(vm.record.id);
        }
        record = vm.record;
        process = vm.process;
        adopted_from_outside = !vm.spec;
    }
    const bool running = process && process->running();
    // The guest of a migration runs here once the vmm serves its control socket; the VM and its disks are
    // this host's from then on. Only when no action is under way (a DELETE of it, for one).
    if (running && !record.incoming_uri.empty() && answers_status(record.api_socket)) {
        std::unique_lock action(vm.action, std::try_to_lock);
        if (action.owns_lock() && !vm.forgotten) {
            {
                std::lock_guard lock(vm.data);
                vm.record.incoming_uri.clear();
                vm.record.owns_disks = true;
            }
            save(vm);
            spdlog::info("vm {}: the migrated guest runs here", record.id);
        }
    }
    json status = {
        {"id", record.id},
        {"state", running ? "running" : "stopped"},
        {"pid", running ? record.pid : 0},
        {"api_socket", record.api_socket},
        {"console", adopted_from_outside ? std::string()
                                         : (config_.state_dir / "vms" / record.id / "console.log").string()},
        {"figures", running ? vm_figures(*process, record.api_socket) : json::object()}};
    return status;
}

json VmManager::status(const std::string& id) { return status_of(*find(id)); }

json VmManager::start(const std::string& id) {
    const auto vm = find(id);
    touch(*vm);
    std::lock_guard action(vm->action);
    if (vm->forgotten) {
        throw not_known(id);
    }
    if (vm->process && vm->process->running()) {
        return status_of(*vm);
    }
    if (!vm->spec) {
        throw AgentError(409,
                         "vm " + id + ": hostd did not start it and does not know how to start it again");
    }
    boot(*vm, *vm->spec);
    touch(*vm);
    return status_of(*vm);
}

json VmManager::stop(const std::string& id) {
    const auto vm = find(id);
    std::lock_guard action(vm->action);
    if (vm->forgotten) {
        throw not_known(id);
    }
    shut_down(*vm, true);
    return status_of(*vm);
}

json VmManager::reboot(const std::string& id) {
    stop(id);
    return start(id);
}

json VmManager::remove(const std::string& id) {
    const auto vm = find(id);
    std::lock_guard action(vm->action);
    if (vm->forgotten) {
        throw not_known(id);
    }
    shut_down(*vm, true);
    if (vm->record.owns_disks) {
        std::filesystem::remove_all(config_.disk_dir / id);
    }
    forget(*vm);
    spdlog::info("vm {}: deleted", id);
    return {{"id", id}, {"state", "gone"}};
}

}  // namespace vim::controller::hostd
