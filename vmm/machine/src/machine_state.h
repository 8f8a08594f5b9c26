#pragma once

// The whole machine's state, as a snapshot or a migration carries it: every
// vCPU, the in-kernel interrupt controllers and clocks, and every device.

#include <cstdint>
#include <span>
#include <vector>

#include "device_manager.h"
#include "vmm/kvm/vm.h"
#include "vmm/machine/vcpu_pool.h"
#include "vmm/state/state.h"

namespace vim::vmm::machine {

struct MachineParts {
    VcpuPool& vcpus;
    kvm::KvmVm& vm;
    DeviceManager& devices;
};

// With the vCPUs paused and the devices quiesced. CBOR.
std::vector<std::uint8_t> save_machine_state(const MachineParts& machine,
                                             std::span<const std::uint32_t> msr_indexes);
// Into a machine built from the same shape, before its vCPUs and event loop
// run. Throws state::StateError (or KVM's refusal) saying what is wrong.
void restore_machine_state(const MachineParts& machine, std::span<const std::uint8_t> cbor);

}  // namespace vim::vmm::machine
