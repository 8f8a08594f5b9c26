#pragma once

// The control commands that take the VM elsewhere: `snapshot` (to files),
// `migrate`, `migrate-status`, `migrate-cancel` (live, over TCP), and
// `dirty-rate`, which measures what a migration would face. They run on the
// event loop's thread; a migration or a measurement runs on a thread of its
// own, and a migration reaches the machine through migration::SourceMachine.

#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "device_manager.h"
#include "lifecycle.h"
#include "machine_state.h"
#include "migration/dirty_rate.h"
#include "migration/source.h"
#include "vmm/config/vm_config.h"
#include "vmm/control/command.h"
#include "vmm/kvm/vm.h"
#include "vmm/machine/vcpu_pool.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/sys/event_loop.h"
#include "vmm/sys/fd.h"

namespace vim::vmm::machine {

struct MovableMachine {
    const config::VmConfig& config;
    Lifecycle& lifecycle;
    VcpuPool& vcpus;
    kvm::KvmVm& vm;
    memory::GuestMemory& memory;
    DeviceManager& devices;
    sys::EventLoop& loop;
    std::span<const std::uint32_t> msr_indexes;
    // Lets the disks' locks go, for the destination to take.
    std::function<void()> release_disks;
};

class MigrationCommands final : private migration::SourceMachine {
public:
    // After a migration hands the guest over, the vmm answers for it (its
    // migrate-status has the final figures) for this long, or until told to
    // shut down, and then exits.
    static constexpr std::chrono::seconds kLingerAfterHandOver{30};
    static constexpr std::chrono::milliseconds kMaxDirtyRateWindow{60'000};

    explicit MigrationCommands(MovableMachine machine) : machine_(machine) {}
    // Waits for a migration that handed the guest over to hear that it runs.
    ~MigrationCommands() override;

    // The table refers to this object, which must outlive the server using it.
    control::CommandTable table();

private:
    nlohmann::json snapshot(const nlohmann::json& request);
    nlohmann::json migrate(const nlohmann::json& request);
    nlohmann::json dirty_rate(const nlohmann::json& request);
    bool migrating() const;

    // migration::SourceMachine, for the migration's thread.
    memory::GuestMemory& memory() override { return machine_.memory; }
    kvm::Vm& vm() override { return machine_.vm; }
    nlohmann::json config() override;
    void pause() override;
    void resume() override;
    std::vector<std::uint8_t> save_state() override;
    void hand_over() override;

    MachineParts parts() const { return {machine_.vcpus, machine_.vm, machine_.devices}; }

    MovableMachine machine_;
    std::unique_ptr<migration::Source> migration_;           // the last one started
    std::unique_ptr<migration::DirtyRateMeter> dirty_rate_;  // the last measurement started
    bool was_paused_ = false;  // the user had paused the guest before the final copy
    sys::Fd linger_timer_;     // on the loop after a hand-over
};

}  // namespace vim::vmm::machine
