#include "vmm/pci/intx.h"

namespace vim::vmm::pci {

Intx::Intx(ConfigSpace& config, devices::InterruptLine& line) : line_(line) {
    config.set_interrupt_pin(kInterruptPinA);
}

void Intx::set_pending(ConfigSpace& config, bool pending) {
    config.set_interrupt_status(pending);
    sync(config);
}

void Intx::sync(const ConfigSpace& config) {
    // The line is level-triggered and may be shared: report changes only, so
    // the interrupt controller never sees a spurious edge.
    const bool level = (config.status() & kStatusInterrupt) && !(config.command() & kCommandIntxDisable);
    if (level != level_) {
        level_ = level;
        line_.set_level(level);
    }
}

}  // namespace vim::vmm::pci
