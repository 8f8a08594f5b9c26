#include "vmm/virtio/balloon/balloon_device.h"

#include <sys/eventfd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>

#include "vmm/virtio/split_ring.h"

namespace vim::vmm::virtio::balloon {
namespace {

// The index of the region holding the whole page at `address`, if any.
std::optional<std::size_t> region_holding_page(const memory::GuestMemory& memory,
                                               memory::GuestAddress address) {
    const auto& regions = memory.regions();
    for (std::size_t index = 0; index < regions.size(); ++index) {
        if (regions[index].contains(address, kBalloonPageSize)) {
            return index;
        }
    }
    return std::nullopt;
}

bool is_whole_pages(memory::GuestAddress address, std::uint64_t length) {
    return length != 0 && address % memory::kPageSize == 0 && length % memory::kPageSize == 0;
}

}  // namespace

std::vector<QueueRole> BalloonDevice::queue_roles(std::uint64_t features) {
    std::vector<QueueRole> roles{QueueRole::Inflate, QueueRole::Deflate};
    if (features & feature_bit(kFeatureStatsQueue)) {
        roles.push_back(QueueRole::Stats);
    }
    // The free page hint queue would come here; it is never offered.
    if (features & feature_bit(kFeatureFreePageReporting)) {
        roles.push_back(QueueRole::Reporting);
    }
    return roles;
}

std::uint64_t BalloonDevice::device_features() const {
    std::uint64_t features = feature_bit(kFeatureStatsQueue) | feature_bit(kFeatureRingIndirectDesc) |
                             feature_bit(kFeatureRingEventIdx);
    if (options_.deflate_on_oom) {
        features |= feature_bit(kFeatureDeflateOnOom);
    }
    if (options_.free_page_reporting) {
        features |= feature_bit(kFeatureFreePageReporting);
    }
    return features;
}

void BalloonDevice::read_config(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);
    if (offset >= sizeof(Config)) {
        return;
    }
    std::lock_guard lock(config_mutex_);
    const std::size_t length = std::min<std::size_t>(data.size(), sizeof(Config) - offset);
    std::memcpy(data.data(), reinterpret_cast<const std::uint8_t*>(&config_) + offset, length);
}

void BalloonDevice::write_config(std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (offset >= sizeof(Config)) {
        return;
    }
    std::lock_guard lock(config_mutex_);
    auto* bytes = reinterpret_cast<std::uint8_t*>(&config_);
    for (std::size_t i = 0; i < data.size() && i < sizeof(Config) - offset; ++i) {
        // num_pages is the device's: only `actual` takes the driver's bytes.
        if (offset + i >= offsetof(Config, actual)) {
            bytes[offset + i] = data[i];
        }
    }
}

std::uint32_t BalloonDevice::target() const {
    std::lock_guard lock(config_mutex_);
    return config_.num_pages;
}

std::uint32_t BalloonDevice::actual() const {
    std::lock_guard lock(config_mutex_);
    return config_.actual;
}

void BalloonDevice::set_target(std::uint32_t pages) {
    {
        std::lock_guard lock(config_mutex_);
        if (config_.num_pages == pages) {
            return;
        }
        config_.num_pages = pages;
    }
    // An inactive driver reads the target when it starts.
    if (active_) {
        active_->interrupt.config_changed();
    }
}

void BalloonDevice::activate(const Activation& activation) {
    if (activation.queues.size() != kQueueCount || activation.notifications.size() != kQueueCount) {
        throw std::invalid_argument("virtio-balloon: activated with " +
                                    std::to_string(activation.queues.size()) + " queues and " +
                                    std::to_string(activation.notifications.size()) +
                                    " notification fds; it has " + std::to_string(kQueueCount) + " queues");
    }
    active_.emplace(activation);
    broken_ = false;
    negotiated_features_ = activation.features;
    endpoints_.clear();
    const std::vector<QueueRole> roles = queue_roles(activation.features);
    for (std::size_t index = 0; index < roles.size(); ++index) {
        endpoints_.push_back({roles[index], index});
    }
    for (std::size_t endpoint = 0; endpoint < endpoints_.size(); ++endpoint) {
        // Level-triggered, so a notification that came before activation (the
        // eventfd still counts it) is served at once.
        active_->loop.add(active_->notifications[endpoints_[endpoint].index], EPOLLIN,
                          [this, endpoint](std::uint32_t) { serve_notification(endpoint); });
    }
}

void BalloonDevice::reset() {
    if (active_) {
        stop_serving();
        active_.reset();
    }
    endpoints_.clear();
    stats_buffer_.reset();
    std::lock_guard lock(config_mutex_);
    config_.actual = 0;
}

state::State BalloonDevice::save_device() const {
    std::lock_guard lock(config_mutex_);
    return {{"target_pages", config_.num_pages},
            {"actual_pages", config_.actual},
            {"stats_buffer", stats_buffer_ ? state::State(*stats_buffer_) : state::State(nullptr)}};
}

void BalloonDevice::restore_device(const state::State& state, std::uint64_t features,
                                   std::span<const Queue> queues) {
    const auto target = state::unsigned_field<std::uint32_t>(state, "target_pages");
    const auto actual = state::unsigned_field<std::uint32_t>(state, "actual_pages");
    std::optional<std::uint16_t> stats_buffer;
    if (!state::field(state, "stats_buffer").is_null()) {
        const auto head = state::unsigned_field<std::uint16_t>(state, "stats_buffer");
        // return_stats_buffer() hands it to the stats queue: one must exist
        // and the head lie inside it.
        const std::vector<QueueRole> roles = queue_roles(features);
        const auto stats_queue = std::ranges::find(roles, QueueRole::Stats);
        if (stats_queue == roles.end()) {
            throw state::StateError("stats_buffer: held without a stats queue negotiated");
        }
        const std::size_t index = static_cast<std::size_t>(stats_queue - roles.begin());
        if (index >= queues.size() || !queues[index].ready() || head >= queues[index].state().size) {
            throw state::StateError("stats_buffer: head " + std::to_string(head) +
                                    " is not a descriptor of a ready stats queue");
        }
        stats_buffer = head;
    }
    stats_buffer_ = stats_buffer;
    std::lock_guard lock(config_mutex_);
    config_.num_pages = target;
    config_.actual = actual;
}

void BalloonDevice::stop_serving() {
    for (const QueueEndpoint& endpoint : endpoints_) {
        active_->loop.remove(active_->notifications[endpoint.index]);
    }
}

void BalloonDevice::serve_notification(std::size_t endpoint_number) {
    const QueueEndpoint endpoint = endpoints_[endpoint_number];
    const int notification = active_->notifications[endpoint.index];
    eventfd_t count;
    // Fails only on a counter already drained (the fd is non-blocking); either
    // way it is now 0 and the queue is served below.
    (void)::eventfd_read(notification, &count);
    Queue& queue = active_->queues[endpoint.index];
    try {
        if (serve_queue(endpoint)) {
            // Chains are left: come back once the loop's other sources have
            // had their turn, through our own level-triggered notification.
            (void)::eventfd_write(notification, 1);
        }
    } catch (const QueueBrokenError&) {
        // No chain of this queue can be trusted any more, and the device is
        // one: it stops using all of them until the driver resets it.
        ++broken_queues_;
        broken_ = true;
        stop_serving();
        active_->interrupt.needs_reset();
        return;
    }
    if (queue.needs_notification(active_->memory)) {
        active_->interrupt.used_buffers(endpoint.index);
    }
}

bool BalloonDevice::serve_queue(const QueueEndpoint& endpoint) {
    Queue& queue = active_->queues[endpoint.index];
    memory::GuestMemory& memory = active_->memory;
    std::size_t budget = kMaxChainsPerTurn;
    queue.disable_notification(memory);
    do {
        for (; budget > 0; --budget) {
            if (!serve_next_chain(endpoint)) {
                break;
            }
        }
        if (budget == 0) {
            return true;  // notifications stay off: the device comes back by itself
        }
    } while (queue.enable_notification(memory));
    return false;
}

bool BalloonDevice::serve_next_chain(const QueueEndpoint& endpoint) {
    Queue& queue = active_->queues[endpoint.index];
    memory::GuestMemory& memory = active_->memory;
    std::optional<DescriptorChain> chain;
    try {
        chain = queue.pop(memory);
    } catch (const InvalidChainError& error) {
        ++bad_chains_;
        queue.add_used(memory, error.head(), 0);
        return true;
    }
    if (!chain) {
        return false;
    }
    switch (endpoint.role) {
    case QueueRole::Inflate:
        inflate(*chain);
        break;
    case QueueRole::Deflate:
        deflate(*chain);
        break;
    case QueueRole::Reporting:
        report_free_pages(*chain);
        break;
    case QueueRole::Stats:
        take_stats_buffer(std::move(*chain));
        return true;  // kept until fresh figures are wanted
    }
    // The device writes nothing into any of its buffers.
    queue.add_used(memory, chain->head, 0);
    return true;
}

std::optional<std::vector<std::uint32_t>> BalloonDevice::read_page_numbers(const DescriptorChain& chain) {
    // Spec 5.5.6: an array of page frame numbers in device-readable buffers.
    const std::uint64_t length = chain.readable_length();
    if (!chain.writable.empty() || length == 0 || length % sizeof(std::uint32_t) != 0 ||
        length / sizeof(std::uint32_t) > kMaxPagesPerChain) {
        ++bad_chains_;
        return std::nullopt;
    }
    std::vector<std::uint32_t> page_numbers(length / sizeof(std::uint32_t));
    chain.read(
        active_->memory, 0,
        std::span(reinterpret_cast<std::uint8_t*>(page_numbers.data()), static_cast<std::size_t>(length)));
    return page_numbers;
}

void BalloonDevice::inflate(const DescriptorChain& chain) {
    std::optional<std::vector<std::uint32_t>> page_numbers = read_page_numbers(chain);
    if (!page_numbers) {
        return;
    }
    memory::GuestMemory& memory = active_->memory;
    // Sorted, so that neighbouring pages make one run and one hole punched;
    // a page named twice goes once.
    std::ranges::sort(*page_numbers);
    const auto duplicates = std::ranges::unique(*page_numbers);
    page_numbers->erase(duplicates.begin(), duplicates.end());

    struct Run {
        memory::GuestAddress address;
        std::uint64_t length;
        std::size_t region;
    };
    std::optional<Run> run;
    for (std::uint32_t page_number : *page_numbers) {
        const memory::GuestAddress address = memory::GuestAddress{page_number} << kPfnShift;
        const std::optional<std::size_t> region = region_holding_page(memory, address);
        if (!region) {
            ++invalid_pfns_;
            continue;
        }
        ++inflated_pages_;
        if (run && run->region == *region && run->address + run->length == address) {
            run->length += kBalloonPageSize;
            continue;
        }
        if (run) {
            discard(run->address, run->length);
        }
        run = Run{address, kBalloonPageSize, *region};
    }
    if (run) {
        discard(run->address, run->length);
    }
}

void BalloonDevice::deflate(const DescriptorChain& chain) {
    std::optional<std::vector<std::uint32_t>> page_numbers = read_page_numbers(chain);
    if (!page_numbers) {
        return;
    }
    // The pages are the guest's again; nothing to do for memory: they stay
    // holes, reading as zero, until the guest writes them.
    for (std::uint32_t page_number : *page_numbers) {
        if (region_holding_page(active_->memory, memory::GuestAddress{page_number} << kPfnShift)) {
            ++deflated_pages_;
        } else {
            ++invalid_pfns_;
        }
    }
}

void BalloonDevice::report_free_pages(const DescriptorChain& chain) {
    // Linux offers the free blocks as device-writable buffers, which the
    // device never writes: the returned chain says 0 bytes written.
    if (!chain.readable.empty() || chain.writable.empty()) {
        ++bad_chains_;
        return;
    }
    for (const GuestBuffer& buffer : chain.writable) {
        // pop() found the buffer inside one region; only whole pages can go.
        if (!is_whole_pages(buffer.address, buffer.length)) {
            ++unaligned_reports_;
            continue;
        }
        if (discard(buffer.address, buffer.length)) {
            ++reports_;
            reported_bytes_ += buffer.length;
        }
    }
}

void BalloonDevice::take_stats_buffer(DescriptorChain chain) {
    // The driver keeps one buffer with the device; a second one makes the
    // device give the first back rather than hold both.
    return_stats_buffer();
    stats_buffer_ = chain.head;
    const std::uint64_t length = chain.readable_length();
    if (!chain.writable.empty() || length > kMaxStatsBytes) {
        ++bad_chains_;
        return;
    }
    std::vector<std::uint8_t> bytes(length);
    chain.read(active_->memory, 0, bytes);
    GuestStats figures;
    try {
        figures = parse_guest_stats(bytes);
    } catch (const std::invalid_argument&) {
        ++bad_chains_;
        return;
    }
    std::lock_guard lock(guest_stats_mutex_);
    guest_stats_ = figures;
    guest_stats_time_ = std::chrono::steady_clock::now();
}

void BalloonDevice::return_stats_buffer() {
    if (!stats_buffer_) {
        return;
    }
    const auto stats_queue = std::ranges::find(endpoints_, QueueRole::Stats, &QueueEndpoint::role);
    active_->queues[stats_queue->index].add_used(active_->memory, *stats_buffer_, 0);
    stats_buffer_.reset();
}

void BalloonDevice::request_guest_stats() {
    if (!active_ || broken_ || !stats_buffer_) {
        return;
    }
    return_stats_buffer();
    const auto stats_queue = std::ranges::find(endpoints_, QueueRole::Stats, &QueueEndpoint::role);
    if (active_->queues[stats_queue->index].needs_notification(active_->memory)) {
        active_->interrupt.used_buffers(stats_queue->index);
    }
}

bool BalloonDevice::discard(memory::GuestAddress address, std::uint64_t length) {
    try {
        active_->memory.discard(address, length);
        return true;
    } catch (const std::exception&) {
        // The pages stay with the guest's memory as they were; the host just
        // does not get them back.
        ++discard_errors_;
        return false;
    }
}

nlohmann::json BalloonDevice::stats() const {
    Config config;
    {
        std::lock_guard lock(config_mutex_);
        config = config_;
    }
    const std::uint64_t features = negotiated_features_.load();
    nlohmann::json result = {
        {"target_pages", config.num_pages},
        {"target_mib", config.num_pages / kPagesPerMiB},
        {"actual_pages", config.actual},
        {"actual_mib", config.actual / kPagesPerMiB},
        {"inflated_pages", inflated_pages_.load()},
        {"deflated_pages", deflated_pages_.load()},
        {"reported_bytes", reported_bytes_.load()},
        {"reports", reports_.load()},
        {"bad_chains", bad_chains_.load()},
        {"invalid_pfns", invalid_pfns_.load()},
        {"unaligned_reports", unaligned_reports_.load()},
        {"discard_errors", discard_errors_.load()},
        {"broken_queues", broken_queues_.load()},
        {"features",
         {{"stats_queue", (features & feature_bit(kFeatureStatsQueue)) != 0},
          {"deflate_on_oom", (features & feature_bit(kFeatureDeflateOnOom)) != 0},
          {"free_page_reporting", (features & feature_bit(kFeatureFreePageReporting)) != 0}}},
    };
    std::lock_guard lock(guest_stats_mutex_);
    if (guest_stats_) {
        result["guest_stats"] = guest_stats_->to_json();
        result["guest_stats_age_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::steady_clock::now() - guest_stats_time_)
                                           .count();
    } else {
        result["guest_stats"] = nlohmann::json::object();
        result["guest_stats_age_ms"] = nullptr;
    }
    return result;
}

}  // namespace vim::vmm::virtio::balloon
