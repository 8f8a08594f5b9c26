#pragma once

#include <cstdint>
#include <span>

namespace vim::vmm::devices {

// A device on a bus (port I/O or MMIO). `offset` is relative to the start of
// the range the device was registered at; accesses are 1, 2, 4 or 8 bytes.
// Several vCPU threads may call a device at once: each device serialises its
// own state (see Bus for why the bus does not).
class BusDevice {
public:
    virtual ~BusDevice() = default;
    virtual void read(std::uint64_t offset, std::span<std::uint8_t> data) = 0;
    virtual void write(std::uint64_t offset, std::span<const std::uint8_t> data) = 0;
};

}  // namespace vim::vmm::devices
