#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <vector>

#include "vmm/virtio/balloon/guest_stats.h"
#include "vmm/virtio/balloon/protocol.h"
#include "vmm/virtio/device.h"

namespace vim::vmm::virtio::balloon {

// What a queue of the device is for. Which index plays which part depends on
// the negotiated features (queue_roles()).
enum class QueueRole { Inflate, Deflate, Stats, Reporting };

// The memory balloon (spec 5.5), with its statistics queue, deflate on OOM
// and free page reporting. The host sets a target (set_target()); the guest's
// driver inflates towards it by handing pages over on the inflate queue and
// takes them back on the deflate queue, and the device gives every page it
// gets back to the host (GuestMemory::discard(): a hole in the guest RAM
// memfd). With free page reporting the guest also hands over blocks it has
// just freed (usually 2 or 4 MiB), which the device discards the same way
// before returning them: the host gets idle memory back without any command.
//
// A guest cannot make the device touch memory outside guest RAM: a page frame
// number outside it is skipped and counted, a report buffer that is not
// whole pages is skipped and counted, a chain with the wrong kind of buffers
// is returned untouched and counted, and a broken queue stops the device
// until the driver resets it. One turn on the loop serves at most
// kMaxChainsPerTurn chains of a queue before the others get their turn.
//
// set_target() and request_guest_stats() run on the event loop's thread, as
// the device does (the control commands run there too).
class BalloonDevice final : public VirtioDevice {
public:
    // Inflate, deflate, stats, reporting: the queues when every offered
    // feature is negotiated.
    static constexpr std::size_t kQueueCount = 4;
    static constexpr std::uint16_t kQueueSize = 128;
    // Linux sends at most 256 page frame numbers per chain; a longer array is
    // refused rather than spent the loop's time on.
    static constexpr std::uint64_t kMaxPagesPerChain = 4096;
    // Linux's stats buffer has 10-16 entries.
    static constexpr std::uint64_t kMaxStatsBytes = 256 * kStatEntryBytes;
    static constexpr std::size_t kMaxChainsPerTurn = 64;
    // Targets and sizes count 4 KiB pages; users count MiB.
    static constexpr std::uint64_t kPagesPerMiB = (1 << 20) / kBalloonPageSize;

    // What the device offers beyond the stats queue.
    struct Options {
        bool free_page_reporting = true;
        bool deflate_on_oom = true;
    };

    explicit BalloonDevice(Options options) : options_(options) {}
    BalloonDevice(const BalloonDevice&) = delete;
    BalloonDevice& operator=(const BalloonDevice&) = delete;

    // The role of each queue index when the driver accepted `features`
    // (spec 5.5.2): inflate and deflate first, then the stats queue and the
    // reporting queue, each only when its feature was negotiated; an absent
    // queue takes no index, so the later ones move up.
    static std::vector<QueueRole> queue_roles(std::uint64_t features);

    std::uint32_t device_type() const override { return kDeviceTypeBalloon; }
    // STATS_VQ, DEFLATE_ON_OOM and REPORTING as the options say, and the
    // ring's INDIRECT_DESC and EVENT_IDX.
    std::uint64_t device_features() const override;
    std::vector<std::uint16_t> queue_max_sizes() const override {
        return std::vector<std::uint16_t>(kQueueCount, kQueueSize);
    }

    // num_pages (the target, read-only to the driver) and actual (written by
    // the driver); vCPU threads read and write them under a lock of their own.
    void read_config(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    void activate(const Activation& activation) override;
    // Unregisters from the loop and forgets the stats buffer it holds; the
    // driver's balloon is gone with the reset, so `actual` reads 0.
    void reset() override;

    // Asks the driver to bring the balloon to `pages` 4 KiB pages: the new
    // target is in the configuration space, and an active driver is told by
    // a configuration change interrupt.
    void set_target(std::uint32_t pages);
    std::uint32_t target() const;
    // The balloon's size as the driver last wrote it, in 4 KiB pages.
    std::uint32_t actual() const;

    // Returns the stats buffer the driver left with the device, which makes
    // the driver fill it with fresh figures and hand it over again (spec
    // 5.5.6.3). Does nothing while the driver still has it, or without a
    // stats queue; stats() shows the figures once they come.
    void request_guest_stats();

    // target_mib, actual_mib (and in pages); inflated_pages, deflated_pages:
    // pages taken by the inflate and deflate queues; reported_bytes, reports:
    // free memory the guest reported and the buffers it came in;
    // bad_chains: chains returned untouched (refused by the queue, wrong kind
    // of buffers, a page array that is not whole numbers or too long, a stats
    // buffer that is not whole entries); invalid_pfns: page frame numbers
    // outside guest RAM; unaligned_reports: report buffers that are not whole
    // pages; discard_errors: ranges the host refused to discard;
    // broken_queues; features: what the driver negotiated; guest_stats: the
    // driver's latest figures by name, and guest_stats_age_ms since they
    // came (null before any).
    nlohmann::json stats() const override;

    // The target and actual sizes and the stats buffer the device holds (its
    // head, given back on the next request_guest_stats()).
    state::State save_device() const override;
    void restore_device(const state::State& state, std::uint64_t features,
                        std::span<const Queue> queues) override;

private:
    const Options options_;

    struct QueueEndpoint {
        QueueRole role;
        std::size_t index;
    };

    void serve_notification(std::size_t endpoint);
    // Serves chains until the queue is empty or the turn's budget is spent;
    // returns whether it stopped for the budget (chains may be left).
    bool serve_queue(const QueueEndpoint& endpoint);
    // Takes the next available chain; returns false when there is none.
    bool serve_next_chain(const QueueEndpoint& endpoint);
    // The page frame numbers of an inflate or deflate chain; nothing (and the
    // chain counted bad) when it is not an array of them.
    std::optional<std::vector<std::uint32_t>> read_page_numbers(const DescriptorChain& chain);
    void inflate(const DescriptorChain& chain);
    void deflate(const DescriptorChain& chain);
    void report_free_pages(const DescriptorChain& chain);
    // Keeps the driver's stats buffer after reading its figures.
    void take_stats_buffer(DescriptorChain chain);
    // Returns the stats buffer it holds, if any, to the driver.
    void return_stats_buffer();
    // Gives the range back to the host; false (and counted) when it refused.
    bool discard(memory::GuestAddress address, std::uint64_t length);
    void stop_serving();

    // Set while active; everything below it belongs to the loop's thread.
    std::optional<Activation> active_;
    std::vector<QueueEndpoint> endpoints_;
    std::optional<std::uint16_t> stats_buffer_;  // the head of the stats chain the device holds
    bool broken_ = false;                        // a queue broke: nothing is served until reset

    mutable std::mutex config_mutex_;
    Config config_{};

    // Read by stats() from whichever thread asks.
    std::atomic<std::uint64_t> negotiated_features_ = 0;
    std::atomic<std::uint64_t> inflated_pages_ = 0;
    std::atomic<std::uint64_t> deflated_pages_ = 0;
    std::atomic<std::uint64_t> reported_bytes_ = 0;
    std::atomic<std::uint64_t> reports_ = 0;
    std::atomic<std::uint64_t> bad_chains_ = 0;
    std::atomic<std::uint64_t> invalid_pfns_ = 0;
    std::atomic<std::uint64_t> unaligned_reports_ = 0;
    std::atomic<std::uint64_t> discard_errors_ = 0;
    std::atomic<std::uint64_t> broken_queues_ = 0;
    mutable std::mutex guest_stats_mutex_;
    std::optional<GuestStats> guest_stats_;
    std::chrono::steady_clock::time_point guest_stats_time_;
};

}  // namespace vim::vmm::virtio::balloon
