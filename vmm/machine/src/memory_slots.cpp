#include "vmm/machine/memory_slots.h"

namespace vim::vmm::machine {

void register_guest_memory(kvm::Vm& vm, const memory::GuestMemory& memory, bool log_dirty) {
    std::uint32_t slot = 0;
    for (const memory::Region& region : memory.regions()) {
        vm.set_memory_slot({.slot = slot++,
                            .guest_address = region.start,
                            .size = region.size,
                            .host_address = region.host,
                            .log_dirty = log_dirty});
    }
}

}  // namespace vim::vmm::machine
