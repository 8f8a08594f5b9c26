#pragma once

#include <memory>

#include "vmm/config/vm_config.h"

namespace vim::vmm::machine {

// One virtual machine: KVM VM, guest RAM, the booted kernel, legacy devices,
// vCPU threads, console and control socket.
//
// Lifecycle: create() checks the configuration and builds everything;
// run() starts the vCPUs and returns the process exit code once the guest
// powers off or resets (0), is stopped on request (0), or fails (1).
class Machine {
public:
    // Throws config::UsageError for a configuration problem (the caller exits
    // 2) and other exceptions for failures of the host.
    static std::unique_ptr<Machine> create(const config::VmConfig& config);
    ~Machine();

    int run();

    struct Parts;  // opaque: everything the machine owns, defined in machine.cpp

private:
    explicit Machine(std::unique_ptr<Parts> parts);

    std::unique_ptr<Parts> parts_;
};

}  // namespace vim::vmm::machine
