#pragma once

#include <atomic>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <vector>

#include "vmm/virtio/device.h"

namespace vim::vmm::virtio {

// The entropy device (spec 5.4): one queue of device-writable buffers, which
// it fills from the host's getrandom(2). No device features, no configuration
// space.
//
// Its work is bounded so that a guest cannot stall the event loop it shares
// with the other devices: a request gets at most kMaxBytesPerRequest bytes
// (the spec lets the device fill less than the whole buffer), and one turn on
// the loop serves at most kMaxRequestsPerTurn requests before the device
// re-signals its notification and lets the loop's other sources run.
class RngDevice final : public VirtioDevice {
public:
    static constexpr std::size_t kRequestQueue = 0;
    static constexpr std::uint16_t kQueueSize = 256;
    static constexpr std::uint32_t kMaxBytesPerRequest = 64 * 1024;
    static constexpr std::size_t kMaxRequestsPerTurn = 64;

    RngDevice();

    std::uint32_t device_type() const override { return kDeviceTypeRng; }
    std::uint64_t device_features() const override;
    std::vector<std::uint16_t> queue_max_sizes() const override { return {kQueueSize}; }

    void read_config(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    void activate(const Activation& activation) override;
    void reset() override;

    // requests: chains completed; bytes: random bytes handed to the guest;
    // errors: chains that got nothing or less than they could have (a chain
    // pop() refused, one with device-readable buffers or no writable ones,
    // getrandom failing), and broken queues.
    nlohmann::json stats() const override;

private:
    void serve_notification();
    // Serves requests until the queue is empty or the turn's budget is spent;
    // returns whether it stopped for the budget (chains may be left).
    bool serve_queue(Queue& queue, memory::GuestMemory& memory);
    // Serves the next available chain; returns false when there is none.
    bool serve_next_request(Queue& queue, memory::GuestMemory& memory);
    // Fills the chain's writable buffers; returns the bytes written.
    std::uint32_t fill_with_random(const DescriptorChain& chain, memory::GuestMemory& memory);
    void stop_serving();

    std::optional<Activation> active_;
    // Where getrandom(2) puts a request's bytes before DescriptorChain::write()
    // copies them into the guest's buffers, marking their pages dirty.
    std::vector<std::uint8_t> random_bytes_;

    // Read by stats() from whichever thread asks.
    std::atomic<std::uint64_t> requests_ = 0;
    std::atomic<std::uint64_t> bytes_ = 0;
    std::atomic<std::uint64_t> errors_ = 0;
};

}  // namespace vim::vmm::virtio
