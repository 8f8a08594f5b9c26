#pragma once

// Interrupt delivery into a KVM VM: the devices see only the interfaces in
// vmm/devices/interrupts.h.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "vmm/devices/interrupts.h"
#include "vmm/kvm/vm.h"
#include "vmm/sys/event_fd.h"

namespace vim::vmm::machine {

// The level of one GSI of the in-kernel PIC and IOAPIC. KVM keeps a single
// level per GSI for all of userspace, but PCI INTx lines are shared (slots
// S and S + 8 meet at one GSI): the GSI is high while any of its lines is.
class GsiLevel {
public:
    GsiLevel(kvm::Vm& vm, std::uint32_t gsi) : vm_(vm), gsi_(gsi) {}
    // One line went high (or low).
    void change(bool high);

private:
    kvm::Vm& vm_;
    const std::uint32_t gsi_;
    std::mutex mutex_;
    unsigned high_lines_ = 0;
};

// One device's wire to a GSI: ISA IRQs and PCI INTx.
class KvmInterruptLine final : public devices::InterruptLine {
public:
    explicit KvmInterruptLine(std::shared_ptr<GsiLevel> gsi) : gsi_(std::move(gsi)) {}
    void set_level(bool high) override;

private:
    std::shared_ptr<GsiLevel> gsi_;
    std::atomic<bool> high_ = false;
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

}  // namespace vim::vmm::machine
