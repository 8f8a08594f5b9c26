#pragma once

#include <cstdint>
#include <string>

namespace vim::migration {

// What one round of pre-copy did and left behind.
struct RoundResult {
    std::uint64_t pages_sent;
    std::uint64_t bytes_sent;
    double seconds;
    // Pages written during the round: the next round's work.
    std::uint64_t dirty_pages;
};

enum class Decision {
    Continue,   // another round
    FinalCopy,  // pause the guest and send the rest: it fits the downtime limit
    GiveUp,     // the iteration limit is reached without converging
};

// When pre-copy has done enough: the pages left, sent at the bandwidth the last
// round measured, would keep the guest paused no longer than the downtime
// limit, and another round would not halve them (or they would take under a
// millisecond). Stopping at the first round that fits, as QEMU does, pauses
// the guest for up to the whole limit when a few more short rounds would
// shrink the rest to almost nothing. Pure: fed the rounds, it decides; tests
// feed it synthetic ones.
class Convergence {
public:
    Convergence(double downtime_limit_ms, std::uint32_t max_iterations)
        : downtime_limit_ms_(downtime_limit_ms), max_iterations_(max_iterations) {}

    Decision after_round(const RoundResult& round);

    std::uint32_t iterations() const noexcept { return iterations_; }
    double bandwidth_bytes_per_s() const noexcept { return bandwidth_bytes_per_s_; }
    double dirty_rate_pages_per_s() const noexcept { return dirty_rate_pages_per_s_; }
    double expected_downtime_ms() const noexcept { return expected_downtime_ms_; }
    // Why it gave up, in numbers a user can act on.
    std::string give_up_reason() const;

    // A final copy expected to take less than this is not worth another round.
    static constexpr double kNotWorthARoundMs = 1;

private:
    double downtime_limit_ms_;
    std::uint32_t max_iterations_;
    std::uint32_t iterations_ = 0;
    double bandwidth_bytes_per_s_ = 0;
    double dirty_rate_pages_per_s_ = 0;
    double expected_downtime_ms_ = 0;
};

}  // namespace vim::migration
