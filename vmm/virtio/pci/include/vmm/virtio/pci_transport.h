#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "vmm/devices/interrupts.h"
#include "vmm/kvm/vm.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/pci/config_space.h"
#include "vmm/pci/intx.h"
#include "vmm/pci/msix.h"
#include "vmm/pci/pci_device.h"
#include "vmm/state/state.h"
#include "vmm/sys/event_fd.h"
#include "vmm/sys/event_loop.h"
#include "vmm/virtio/device.h"
#include "vmm/virtio/queue.h"

namespace vim::vmm::virtio {

// The virtio 1.x modern PCI transport (spec 4.1) around one VirtioDevice:
// the vendor-specific capabilities, and one 32-bit memory BAR holding the
// common configuration, the ISR, the device configuration, the notification
// area and the MSI-X table and PBA.
//
// Data path: a driver's notification is a write to the queue's own address
// in the notification area, which KVM turns into an eventfd signal (an
// ioeventfd, moved with the BAR); the device serves it on the event loop and
// interrupts through an MSI-X vector (an irqfd), so a request costs the vmm
// no VM exit. INTx is the fallback for a driver that does not enable MSI-X.
//
// Threads: vCPUs make the register accesses; the device runs on the event
// loop. Activation (DRIVER_OK) and reset (status 0) are handed to the loop,
// and the status register reads its old value until a reset is done there,
// as the driver waits for it to read 0 (spec 4.1.4.3.2).
class PciTransport final : public pci::PciDevice, public state::Stateful, private DeviceInterrupt {
public:
    // BAR 0's layout.
    static constexpr std::uint64_t kBarSize = 0x8000;
    static constexpr std::uint64_t kCommonConfigOffset = 0x0000;
    static constexpr std::uint64_t kCommonConfigSize = 0x38;
    static constexpr std::uint64_t kIsrOffset = 0x1000;
    static constexpr std::uint64_t kDeviceConfigOffset = 0x2000;
    static constexpr std::uint64_t kDeviceConfigSize = 0x1000;
    static constexpr std::uint64_t kNotifyOffset = 0x3000;
    static constexpr std::uint32_t kNotifyOffsetMultiplier = 4;  // each queue its own address
    static constexpr std::uint32_t kMsixTableOffset = 0x4000;
    static constexpr std::uint32_t kMsixPbaOffset = 0x6000;
    static constexpr std::uint16_t kNoVector = 0xffff;

    // `name` names the device in messages ("virtio-blk0"). `vectors` has
    // one vector per queue plus one for configuration changes.
    PciTransport(std::string name, std::shared_ptr<VirtioDevice> device, memory::GuestMemory& memory,
                 sys::EventLoop& loop, kvm::Vm& vm, std::unique_ptr<devices::MsiVectors> vectors,
                 devices::InterruptLine& intx_line);
    ~PciTransport() override;

    // How many MSI-X vectors a device with `queues` queues gets.
    static std::size_t vector_count(std::size_t queues) { return queues + 1; }

    std::uint32_t read_config(std::size_t index) override;
    void write_config(std::size_t index, std::size_t offset, std::span<const std::uint8_t> data) override;
    void read_bar(std::size_t bar, std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write_bar(std::size_t bar, std::uint64_t offset, std::span<const std::uint8_t> data) override;
    void bar_moved(std::size_t bar, std::optional<std::uint64_t> from,
                   std::optional<std::uint64_t> to) override;

    const std::string& name() const { return name_; }
    // The device's counters and the transport's state (status, interrupts).
    nlohmann::json stats() const;

    // On the event loop's thread, vCPUs paused: finishes a reset the driver
    // asked for, then lets the device finish its work in flight.
    void quiesce() override;
    // Config space, MSI-X, the common configuration registers, the ISR, each
    // queue's QueueState and the device's own state.
    state::State save() const override;
    // On a transport never activated, before the loop runs. A device the
    // driver had set going (DRIVER_OK) is activated again with the restored
    // queues, through the loop as on DRIVER_OK, and each ready queue's
    // notification is signalled once, so a request the driver queued before
    // the source paused is served. Queue addresses are checked as
    // Queue::enable() checks them.
    void restore(const state::State& state) override;

private:
    // DeviceInterrupt, for the device on the event loop.
    void used_buffers(std::size_t queue) override;
    void config_changed() override;
    void needs_reset() override;

    std::uint64_t read_common(std::uint64_t offset, std::size_t size);
    void write_common(std::uint64_t offset, std::size_t size, std::uint64_t value);
    void write_status(std::uint8_t status);
    // Hands the device its activation, to run on the loop.
    void activate();
    void enable_queue(Queue& queue);
    std::uint16_t checked_vector(std::uint64_t vector) const;
    // Raises `vector` through MSI-X or, where MSI-X is off, INTx with `isr_bit`.
    void raise(std::uint16_t vector, std::uint8_t isr_bit);
    void register_notifications(std::uint64_t bar_address);
    void unregister_notifications();
    // On the event loop: the device stops; the transport's registers return
    // to their reset values.
    void finish_reset();

    const std::string name_;
    const std::shared_ptr<VirtioDevice> device_;
    memory::GuestMemory& memory_;
    sys::EventLoop& loop_;
    kvm::Vm& vm_;
    std::unique_ptr<devices::MsiVectors> vectors_;
    const std::uint64_t offered_features_;

    // Guards everything below but the Msix (which has its own lock).
    mutable std::mutex mutex_;
    pci::ConfigSpace config_;
    pci::Intx intx_;
    pci::Msix msix_;
    std::uint32_t device_feature_select_ = 0;
    std::uint32_t driver_feature_select_ = 0;
    std::uint64_t driver_features_ = 0;
    std::uint8_t status_ = 0;
    std::uint8_t config_generation_ = 0;
    std::uint16_t config_vector_ = kNoVector;
    std::uint16_t queue_select_ = 0;
    std::vector<Queue> queues_;
    std::vector<std::uint16_t> queue_vectors_;
    std::vector<std::unique_ptr<sys::EventFd>> notifications_;
    std::vector<int> notification_fds_;
    std::optional<std::uint64_t> notify_base_;  // where the ioeventfds are registered
    bool active_ = false;                       // the device has been (or is being) activated
    bool reset_pending_ = false;                // status 0 written; the loop has not finished the reset
    std::uint8_t isr_ = 0;                      // bit 0: used buffers, bit 1: configuration change

    std::atomic<std::uint64_t> interrupts_ = 0;
    std::atomic<std::uint64_t> resets_ = 0;
};

}  // namespace vim::vmm::virtio
