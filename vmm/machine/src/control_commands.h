#pragma once

// The control socket's commands, over the parts of a running machine they
// act on. They run on the event loop's thread.

#include <atomic>
#include <chrono>
#include <cstdint>

#include "device_manager.h"
#include "lifecycle.h"
#include "vmm/config/vm_config.h"
#include "vmm/control/command.h"
#include "vmm/machine/vcpu_pool.h"
#include "vmm/sys/event_loop.h"
#include "vmm/sys/fd.h"

namespace vim::vmm::machine {

struct RunningMachine {
    const config::VmConfig& config;
    Lifecycle& lifecycle;
    VcpuPool& vcpus;
    DeviceManager& devices;
    sys::EventLoop& loop;
    const std::atomic<std::uint64_t>& serial_output_bytes;
    bool huge_pages_possible;
    std::chrono::steady_clock::time_point started;
};

class ControlCommands {
public:
    explicit ControlCommands(RunningMachine machine) : machine_(machine) {}
    ~ControlCommands();
    ControlCommands(const ControlCommands&) = delete;
    ControlCommands& operator=(const ControlCommands&) = delete;

    // The table refers to this object, which must outlive the server using it.
    control::CommandTable table();

private:
    nlohmann::json status();
    nlohmann::json stats();
    // Asks the guest to power off (Ctrl-Alt-Del, which init turns into an
    // orderly shutdown, and the ACPI power button), and stops the VM if it
    // has not gone by `timeout`.
    nlohmann::json shutdown(std::chrono::milliseconds timeout);
    // Sets the balloon's target size, the memory taken from the guest.
    nlohmann::json balloon(const nlohmann::json& request);

    RunningMachine machine_;
    sys::Fd shutdown_timer_;  // a timerfd on the event loop while a shutdown is under way
};

}  // namespace vim::vmm::machine
