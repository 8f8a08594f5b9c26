#pragma once

#include "vmm/devices/interrupts.h"
#include "vmm/pci/config_space.h"

namespace vim::vmm::pci {

// A function's INTA# wire. The device states its interrupt condition; the
// status register's interrupt bit shows it to the guest, and the wire goes
// high while it holds and the command register's INTx-disable bit is clear
// (the bit a driver sets once it has switched to MSI-X, or to mask a shared
// line). No lock of its own: the device calls it under the lock that guards
// its ConfigSpace.
class Intx {
public:
    // Declares INTA# in `config`.
    Intx(ConfigSpace& config, devices::InterruptLine& line);

    // The device's interrupt condition now holds (or no longer does).
    void set_pending(ConfigSpace& config, bool pending);
    // After every guest write to `config`: the INTx-disable bit may have
    // changed.
    void sync(const ConfigSpace& config);

private:
    devices::InterruptLine& line_;
    bool level_ = false;
};

}  // namespace vim::vmm::pci
