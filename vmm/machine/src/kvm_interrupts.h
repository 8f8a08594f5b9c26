#pragma once

// Interrupt delivery into a KVM VM: the devices see only the interfaces in
// vmm/devices/interrupts.h.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "vmm/devices/interrupts.h"
#include "vmm/kvm/vm.h"
#include "vmm/sys/event_fd.h"

namespace vmm::machine {

// A wire into the in-kernel PIC and IOAPIC: ISA IRQs and PCI INTx.
class KvmInterruptLine final : public devices::InterruptLine {
public:
    KvmInterruptLine(kvm::Vm& vm, std::uint32_t gsi) : vm_(vm), gsi_(gsi) {}
    void set_level(bool high) override { vm_.set_irq_line(gsi_, high); }

private:
    kvm::Vm& vm_;
    std::uint32_t gsi_;
};

// The VM's MSI routing table. KVM takes it only whole, so one owner hands
// out GSIs to every device's vectors and rewrites the table when the guest
// programs an entry.
class MsiRouter {
public:
    explicit MsiRouter(kvm::Vm& vm) : vm_(vm) {}

    // `count` vectors, each on a GSI of its own with an irqfd registered, so
    // that triggering one is a single eventfd write.
    std::unique_ptr<devices::MsiVectors> create_vectors(std::size_t count);

    // Points `gsi` at `message`; thread-safe (vCPUs program MSI-X tables).
    void set_route(std::uint32_t gsi, const devices::MsiMessage& message);

private:
    kvm::Vm& vm_;
    std::mutex mutex_;
    std::uint32_t next_gsi_ = kvm::kFirstMsiGsi;
    std::map<std::uint32_t, devices::MsiMessage> routes_;
};

}  // namespace vmm::machine
