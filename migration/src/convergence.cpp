#include "migration/convergence.h"

#include <algorithm>
#include <cstdio>

#include "vmm/memory/guest_memory.h"

namespace vim::migration {

Decision Convergence::after_round(const RoundResult& round) {
    ++iterations_;
    // A round too short to time says little; a microsecond keeps the rates finite.
    const double seconds = std::max(round.seconds, 1e-6);
    // An empty round measured nothing about the link: keep the last figure.
    if (round.bytes_sent > 0 || bandwidth_bytes_per_s_ == 0) {
        bandwidth_bytes_per_s_ = static_cast<double>(round.bytes_sent) / seconds;
    }
    dirty_rate_pages_per_s_ = static_cast<double>(round.dirty_pages) / seconds;
    const double left_bytes = static_cast<double>(round.dirty_pages * vmm::memory::kPageSize);
    expected_downtime_ms_ = bandwidth_bytes_per_s_ > 0 ? left_bytes / bandwidth_bytes_per_s_ * 1000 : 0;
    const bool out_of_rounds = iterations_ >= max_iterations_;
    if (round.dirty_pages == 0 || expected_downtime_ms_ <= downtime_limit_ms_) {
        // It fits; but while a round still halves what is left, one more
        // costs less time than it takes off the downtime.
        const bool still_halving = round.dirty_pages * 2 <= round.pages_sent;
        const bool worth_another =
            still_halving && expected_downtime_ms_ > kNotWorthARoundMs && !out_of_rounds;
        return worth_another ? Decision::Continue : Decision::FinalCopy;
    }
    return out_of_rounds ? Decision::GiveUp : Decision::Continue;
}

std::string Convergence::give_up_reason() const {
    char reason[300];
    std::snprintf(reason, sizeof reason,
                  "did not converge in %u iterations: the guest dirties %.0f pages/s (%.1f MB/s) against a "
                  "bandwidth of %.1f MB/s; the final copy would take %.0f ms, over the limit of %.0f ms",
                  iterations_, dirty_rate_pages_per_s_,
                  dirty_rate_pages_per_s_ * static_cast<double>(vmm::memory::kPageSize) / 1e6,
                  bandwidth_bytes_per_s_ / 1e6, expected_downtime_ms_, downtime_limit_ms_);
    return reason;
}

}  // namespace vim::migration
