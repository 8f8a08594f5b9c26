#pragma once

// The state KVM keeps for the VM: each vCPU's registers, MSRs, LAPIC and
// pending events, and the in-kernel PICs, IOAPIC, PIT and kvmclock. Saved
// with the vCPUs paused; restored into a VM built with the same shape before
// any vCPU runs.

#include <cstdint>
#include <span>

#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/vm.h"
#include "vmm/state/state.h"

namespace vim::vmm::machine {

// `msr_indexes`: Kvm::msr_index_list(), the MSRs KVM can save.
state::State save_vcpu(const kvm::Vcpu& vcpu, std::span<const std::uint32_t> msr_indexes);
// Throws StateError (or KVM's refusal) naming the vCPU.
void restore_vcpu(kvm::Vcpu& vcpu, const state::State& state);

state::State save_vm(const kvm::KvmVm& vm);
void restore_vm(kvm::KvmVm& vm, const state::State& state);

}  // namespace vim::vmm::machine
