#include "vmm/virtio/rng/rng_device.h"

#include <sys/eventfd.h>
#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>
#include <string>

#include "vmm/virtio/split_ring.h"

namespace vim::vmm::virtio {
namespace {

// Fills `out` from the host's entropy pool as far as it can; returns how many
// bytes it got. GRND_NONBLOCK: until the host's pool is initialised (early in
// the host's boot) getrandom would block, and with it every device on the
// event loop; the guest gets fewer bytes instead.
std::size_t read_random(std::span<std::uint8_t> out) {
    std::size_t done = 0;
    while (done < out.size()) {
        const ssize_t got = ::getrandom(out.data() + done, out.size() - done, GRND_NONBLOCK);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        done += static_cast<std::size_t>(got);
    }
    return done;
}

}  // namespace

RngDevice::RngDevice() : random_bytes_(kMaxBytesPerRequest) {}

std::uint64_t RngDevice::device_features() const {
    // The queue follows indirect tables and keeps event indices by itself.
    return feature_bit(kFeatureRingIndirectDesc) | feature_bit(kFeatureRingEventIdx);
}

void RngDevice::read_config(std::uint64_t, std::span<std::uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);  // no configuration space: all of it is "past its end"
}

void RngDevice::write_config(std::uint64_t, std::span<const std::uint8_t>) {}

void RngDevice::activate(const Activation& activation) {
    if (activation.queues.size() != 1 || activation.notifications.size() != 1) {
        throw std::invalid_argument("virtio-rng: activated with " + std::to_string(activation.queues.size()) +
                                    " queues and " + std::to_string(activation.notifications.size()) +
                                    " notification fds; it has one queue");
    }
    active_.emplace(activation);
    // Level-triggered, so a notification that came before activation (the
    // eventfd still counts it) is served at once.
    active_->loop.add(active_->notifications[kRequestQueue], EPOLLIN,
                      [this](std::uint32_t) { serve_notification(); });
}

void RngDevice::reset() {
    if (active_) {
        stop_serving();
        active_.reset();
    }
}

void RngDevice::stop_serving() { active_->loop.remove(active_->notifications[kRequestQueue]); }

void RngDevice::serve_notification() {
    const int notification = active_->notifications[kRequestQueue];
    eventfd_t count;
    // Fails only on a counter already drained (the fd is non-blocking); either
    // way it is now 0 and the queue is served below.
    (void)::eventfd_read(notification, &count);
    Queue& queue = active_->queues[kRequestQueue];
    memory::GuestMemory& memory = active_->memory;
    try {
        if (serve_queue(queue, memory)) {
            // Chains are left: come back once the loop's other sources have
            // had their turn, through our own level-triggered notification.
            (void)::eventfd_write(notification, 1);
        }
    } catch (const QueueBrokenError&) {
        // No chain of this queue can be trusted any more: stop touching it
        // until the driver resets the device.
        ++errors_;
        stop_serving();
        active_->interrupt.needs_reset();
        return;
    }
    if (queue.needs_notification(memory)) {
        active_->interrupt.used_buffers(kRequestQueue);
    }
}

bool RngDevice::serve_queue(Queue& queue, memory::GuestMemory& memory) {
    std::size_t budget = kMaxRequestsPerTurn;
    queue.disable_notification(memory);
    do {
        for (; budget > 0; --budget) {
            if (!serve_next_request(queue, memory)) {
                break;
            }
        }
        if (budget == 0) {
            return true;  // notifications stay off: the device comes back by itself
        }
    } while (queue.enable_notification(memory));
    return false;
}

bool RngDevice::serve_next_request(Queue& queue, memory::GuestMemory& memory) {
    std::optional<DescriptorChain> chain;
    try {
        chain = queue.pop(memory);
    } catch (const InvalidChainError& error) {
        // The guest's bad chain gets nothing; the queue goes on.
        ++requests_;
        ++errors_;
        queue.add_used(memory, error.head(), 0);
        return true;
    }
    if (!chain) {
        return false;
    }
    ++requests_;
    queue.add_used(memory, chain->head, fill_with_random(*chain, memory));
    return true;
}

std::uint32_t RngDevice::fill_with_random(const DescriptorChain& chain, memory::GuestMemory& memory) {
    // Spec 5.4.6.1: the driver must not offer device-readable buffers. A
    // chain that has some was laid out by a driver that means something the
    // spec does not describe; it gets nothing rather than a guess, and the
    // error counter shows the driver's bug.
    if (!chain.readable.empty() || chain.writable.empty()) {
        ++errors_;
        return 0;
    }
    const auto wanted =
        static_cast<std::size_t>(std::min<std::uint64_t>(chain.writable_length(), kMaxBytesPerRequest));
    const std::span<std::uint8_t> random = std::span(random_bytes_).first(wanted);
    const std::size_t got = read_random(random);
    if (got < wanted) {
        ++errors_;
    }
    const std::size_t written = chain.write(memory, 0, random.first(got));
    bytes_ += written;
    return static_cast<std::uint32_t>(written);
}

nlohmann::json RngDevice::stats() const {
    return {{"requests", requests_.load()}, {"bytes", bytes_.load()}, {"errors", errors_.load()}};
}

}  // namespace vim::vmm::virtio
