#pragma once

// How fast a running guest writes its memory, measured without migrating:
// what the controller plans migrations and orders evacuations by. KVM's dirty
// log is sampled at short intervals over a window, so the rate counts a page
// again in each interval it is written (as a migration's rounds would resend
// it), and the working set counts it once.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "migration/pages.h"
#include "vmm/kvm/vm.h"
#include "vmm/memory/guest_memory.h"

namespace vim::migration {

enum class DirtyRateState { None, Measuring, Done, Failed };

struct DirtyRateReport {
    DirtyRateState state = DirtyRateState::None;
    std::uint64_t window_ms = 0;          // asked for
    double measured_ms = 0;               // from the first to the last sample
    std::uint64_t dirty_pages = 0;        // pages written, once per sampling interval
    std::uint64_t working_set_pages = 0;  // distinct pages written in the window
    double dirty_rate_pages_per_s = 0;
    std::string error;  // when failed
};

// The control socket's `dirty-rate` reply: state none, measuring, done or failed.
nlohmann::json to_json(const DirtyRateReport& report);

// The sums over samples of the dirty log.
class DirtyRateTally {
public:
    void add(std::span<const RegionPages> sample);
    std::uint64_t dirty_pages() const { return dirty_pages_; }
    std::uint64_t working_set_pages() const;

private:
    std::uint64_t dirty_pages_ = 0;
    std::vector<std::vector<std::uint64_t>> written_;  // per region, the union of the samples
};

// One measurement, on a thread of its own (the control socket's thread
// answers at once). Dirty logging is on only while it runs; a migration must
// not run at the same time (both switch the log).
class DirtyRateMeter {
public:
    static constexpr std::chrono::milliseconds kSampleInterval{100};

    DirtyRateMeter(vmm::kvm::Vm& vm, vmm::memory::GuestMemory& memory, std::chrono::milliseconds window,
                   std::chrono::milliseconds sample_interval = kSampleInterval);
    DirtyRateMeter(const DirtyRateMeter&) = delete;
    DirtyRateMeter& operator=(const DirtyRateMeter&) = delete;
    // Ends a measurement still running (its logging off) and waits for it.
    ~DirtyRateMeter();

    void start();
    DirtyRateReport report() const;
    bool measuring() const;

private:
    void measure();

    vmm::kvm::Vm& vm_;
    vmm::memory::GuestMemory& memory_;
    std::chrono::milliseconds window_;
    std::chrono::milliseconds sample_interval_;
    mutable std::mutex mutex_;  // guards report_ and stopping_
    std::condition_variable stop_requested_;
    bool stopping_ = false;
    DirtyRateReport report_;
    std::thread thread_;
};

}  // namespace vim::migration
