#pragma once

// How devices raise interrupts, apart from how a bus reaches them. The KVM
// implementations live with the machine; devices and their tests see only
// these interfaces.

#include <cstddef>
#include <cstdint>

namespace vim::vmm::devices {

// An interrupt wire from a device to the interrupt controller, driven like a
// level: high while an interrupt is pending, low once the guest has dealt with
// it. ISA devices (the controller sees the rising edge) and PCI INTx (level-
// triggered, shared) both use it.
class InterruptLine {
public:
    virtual ~InterruptLine() = default;
    virtual void set_level(bool high) = 0;
};

// What the guest programs into an MSI or MSI-X table entry: a write of `data`
// to `address` is the interrupt.
struct MsiMessage {
    std::uint64_t address = 0;
    std::uint32_t data = 0;
    bool operator==(const MsiMessage&) const = default;
};

// A device's MSI vectors, each wired to the guest through its own route (a
// GSI routed to the message) and an irqfd, so that raising one is a single
// eventfd write with no exit to the VMM. Masking and pending bits are the
// MSI-X table's business: it simply does not trigger a masked vector.
class MsiVectors {
public:
    virtual ~MsiVectors() = default;
    virtual std::size_t size() const = 0;
    // Points `vector` at `message`, as the guest programmed it.
    virtual void set_route(std::size_t vector, const MsiMessage& message) = 0;
    // Raises `vector`; safe from any thread.
    virtual void trigger(std::size_t vector) = 0;
};

}  // namespace vim::vmm::devices
