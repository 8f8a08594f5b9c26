#pragma once

// What a virtio device implements. A transport (virtio-pci) does the rest:
// feature negotiation, queue registers, notifications, interrupts, reset.
// Keeping the two apart lets one device serve any transport, and lets device
// tests drive a device with a fake interrupt and a plain buffer for RAM.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "vmm/memory/guest_memory.h"
#include "vmm/state/state.h"
#include "vmm/sys/event_loop.h"
#include "vmm/virtio/queue.h"

namespace vim::vmm::virtio {

// Device types (spec 5).
inline constexpr std::uint32_t kDeviceTypeNet = 1;
inline constexpr std::uint32_t kDeviceTypeBlock = 2;
inline constexpr std::uint32_t kDeviceTypeRng = 4;
inline constexpr std::uint32_t kDeviceTypeBalloon = 5;

// Feature bits every device may offer (spec 6); device-specific ones are 0-23.
inline constexpr unsigned kFeatureVersion1 = 32;

// Device status bits (spec 2.1).
inline constexpr std::uint8_t kStatusAcknowledge = 1;
inline constexpr std::uint8_t kStatusDriver = 2;
inline constexpr std::uint8_t kStatusDriverOk = 4;
inline constexpr std::uint8_t kStatusFeaturesOk = 8;
inline constexpr std::uint8_t kStatusNeedsReset = 64;
inline constexpr std::uint8_t kStatusFailed = 128;

constexpr std::uint64_t feature_bit(unsigned bit) { return std::uint64_t{1} << bit; }

// How an active device tells the driver about its work. Safe from the event
// loop's thread, where devices run.
class DeviceInterrupt {
public:
    virtual ~DeviceInterrupt() = default;
    // Queue `queue`'s used ring has new entries worth an interrupt (the
    // device has checked Queue::needs_notification()).
    virtual void used_buffers(std::size_t queue) = 0;
    // The device's configuration space changed (e.g. a disk resized).
    virtual void config_changed() = 0;
    // The device cannot go on (a queue is broken): DEVICE_NEEDS_RESET is set
    // and the driver told; the device must not use its queues until reset().
    virtual void needs_reset() = 0;
};

// What a device gets when the driver sets DRIVER_OK. Everything in it stays
// valid until the device's reset().
struct Activation {
    memory::GuestMemory& memory;
    sys::EventLoop& loop;
    std::uint64_t features;  // what the driver accepted
    // The queues as the driver set them up (a queue the driver did not enable
    // is not ready), and for each the eventfd the driver's notifications
    // signal (an ioeventfd: no exit to the VMM).
    std::span<Queue> queues;
    std::span<const int> notifications;
    DeviceInterrupt& interrupt;
};

class VirtioDevice {
public:
    virtual ~VirtioDevice() = default;

    virtual std::uint32_t device_type() const = 0;
    // The features the device offers: its own (bits 0-23) and the ring
    // features it handles (VERSION_1 is added by the transport).
    virtual std::uint64_t device_features() const = 0;
    // One entry per queue: the largest size the device accepts (a power of two).
    virtual std::vector<std::uint16_t> queue_max_sizes() const = 0;

    // The device-specific configuration space, at `offset` from its start;
    // bytes past its end read as zero and writes to them are ignored. Called
    // from vCPU threads: the device serialises these with its own work.
    virtual void read_config(std::uint64_t offset, std::span<std::uint8_t> data) = 0;
    virtual void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) = 0;

    // Runs on the event loop's thread. The device registers its notification
    // fds (and whatever else it waits on) with the loop and starts serving.
    virtual void activate(const Activation& activation) = 0;
    // Runs on the event loop's thread: stop, unregister from the loop, and
    // forget in-flight work (late completions must touch neither the queues
    // nor guest memory nor the interrupt). Called only after activate().
    virtual void reset() = 0;

    // Counters for `stats` (requests, bytes, errors, ...).
    virtual nlohmann::json stats() const = 0;

    // For a snapshot or a migration, with the vCPUs paused. quiesce() runs on
    // the event loop's thread: the device finishes the work it has in flight
    // (a disk's requests reach the used ring), so that save_device() sees
    // none half done. save_device() holds what the transport does not: the
    // queues and the negotiated features are the transport's.
    virtual void quiesce() {}
    virtual state::State save_device() const { return state::State::object(); }
    // Before activate(), on a device built from the same configuration, with
    // what the transport restored: the features the driver accepted and the
    // queues. Throws state::StateError for a state it cannot take.
    virtual void restore_device(const state::State& /*state*/, std::uint64_t /*features*/,
                                std::span<const Queue> /*queues*/) {}
};

}  // namespace vim::vmm::virtio
