#pragma once

#include "vmm/kvm/vm.h"
#include "vmm/memory/guest_memory.h"

namespace vim::vmm::machine {

// Hands every region of guest RAM to the VM, one memory slot per region,
// numbered from 0 in address order.
void register_guest_memory(kvm::Vm& vm, const memory::GuestMemory& memory, bool log_dirty);

}  // namespace vim::vmm::machine
