#include "migration/dirty_rate.h"

#include <algorithm>
#include <stdexcept>

#include "migration/dirty_tracker.h"

namespace vim::migration {
namespace {

const char* state_name(DirtyRateState state) {
    switch (state) {
    case DirtyRateState::None:
        return "none";
    case DirtyRateState::Measuring:
        return "measuring";
    case DirtyRateState::Done:
        return "done";
    case DirtyRateState::Failed:
        return "failed";
    }
    return "none";
}

}  // namespace

nlohmann::json to_json(const DirtyRateReport& report) {
    nlohmann::json reply{{"state", state_name(report.state)}};
    if (report.state == DirtyRateState::None) {
        return reply;
    }
    reply["window_ms"] = report.window_ms;
    if (report.state == DirtyRateState::Done) {
        reply["measured_ms"] = report.measured_ms;
        reply["dirty_pages"] = report.dirty_pages;
        reply["working_set_pages"] = report.working_set_pages;
        reply["dirty_rate_pages_per_s"] = report.dirty_rate_pages_per_s;
    }
    if (report.state == DirtyRateState::Failed) {
        reply["error"] = report.error;
    }
    return reply;
}

void DirtyRateTally::add(std::span<const RegionPages> sample) {
    written_.resize(std::max(written_.size(), sample.size()));
    for (std::size_t region = 0; region < sample.size(); ++region) {
        const auto& dirty = sample[region].dirty;
        auto& written = written_[region];
        written.resize(std::max(written.size(), dirty.size()));
        for (std::size_t word = 0; word < dirty.size(); ++word) {
            dirty_pages_ += static_cast<std::uint64_t>(__builtin_popcountll(dirty[word]));
            written[word] |= dirty[word];
        }
    }
}

std::uint64_t DirtyRateTally::working_set_pages() const {
    std::uint64_t pages = 0;
    for (const auto& region : written_) {
        for (const std::uint64_t word : region) {
            pages += static_cast<std::uint64_t>(__builtin_popcountll(word));
        }
    }
    return pages;
}

DirtyRateMeter::DirtyRateMeter(vmm::kvm::Vm& vm, vmm::memory::GuestMemory& memory,
                               std::chrono::milliseconds window, std::chrono::milliseconds sample_interval)
    : vm_(vm), memory_(memory), window_(window), sample_interval_(sample_interval) {
    if (window.count() <= 0 || sample_interval.count() <= 0) {
        throw std::invalid_argument("dirty rate: the window and the sampling interval must be positive");
    }
    report_.window_ms = static_cast<std::uint64_t>(window.count());
}

DirtyRateMeter::~DirtyRateMeter() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    stop_requested_.notify_all();
    if (thread_.joinable()) {
        thread_.join();
    }
}

void DirtyRateMeter::start() {
    {
        std::lock_guard lock(mutex_);
        report_.state = DirtyRateState::Measuring;
    }
    thread_ = std::thread([this] { measure(); });
}

DirtyRateReport DirtyRateMeter::report() const {
    std::lock_guard lock(mutex_);
    return report_;
}

bool DirtyRateMeter::measuring() const {
    std::lock_guard lock(mutex_);
    return report_.state == DirtyRateState::Measuring;
}

void DirtyRateMeter::measure() {
    DirtyRateTally tally;
    const auto started = std::chrono::steady_clock::now();
    const auto deadline = started + window_;
    try {
        DirtyTracker tracker(vm_, memory_);
        tracker.start();
        // KVM starts a log with every page set (KVM_DIRTY_LOG_INITIALLY_SET);
        // this first collection only clears it, write-protecting the pages.
        tracker.collect();
        for (auto now = started; now < deadline; now = std::chrono::steady_clock::now()) {
            std::unique_lock lock(mutex_);
            if (stop_requested_.wait_until(lock, std::min(now + sample_interval_, deadline),
                                           [this] { return stopping_; })) {
                report_.state = DirtyRateState::Failed;
                report_.error = "the measurement was stopped";
                return;
            }
            lock.unlock();
            tally.add(tracker.collect());
        }
        tracker.stop();
    } catch (const std::exception& error) {
        std::lock_guard lock(mutex_);
        report_.state = DirtyRateState::Failed;
        report_.error = std::string("dirty rate: ") + error.what();
        return;
    }
    const double measured_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    std::lock_guard lock(mutex_);
    report_.state = DirtyRateState::Done;
    report_.measured_ms = measured_ms;
    report_.dirty_pages = tally.dirty_pages();
    report_.working_set_pages = tally.working_set_pages();
    report_.dirty_rate_pages_per_s = static_cast<double>(tally.dirty_pages()) * 1000.0 / measured_ms;
}

}  // namespace vim::migration
