#pragma once

#include <cstdint>
#include <span>

namespace vmm::devices {

// A device on the port-I/O bus. `offset` is relative to the first port of the
// range the device was registered at; accesses are 1, 2 or 4 bytes.
// Several vCPU threads may call a device at once: each device serialises its
// own state (see PioBus for why the bus does not).
class PioDevice {
public:
    virtual ~PioDevice() = default;
    virtual void read(std::uint16_t offset, std::span<std::uint8_t> data) = 0;
    virtual void write(std::uint16_t offset, std::span<const std::uint8_t> data) = 0;
};

// An interrupt wire from a device to the interrupt controller. ISA devices
// drive it like a level: high while an interrupt is pending, low once the
// guest has dealt with it (the controller sees the rising edge).
class InterruptLine {
public:
    virtual ~InterruptLine() = default;
    virtual void set_level(bool high) = 0;
};

}  // namespace vmm::devices
