// The convergence policy with synthetic rounds: a link of 1 GB/s (1e9 bytes
// per second) and a guest dirtying pages at a set rate.
#include "migration/convergence.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace {

using namespace vim::migration;
using testing::HasSubstr;

constexpr double kBandwidth = 1e9;
constexpr std::uint64_t kPage = 4096;

// One round sending `pages` at kBandwidth while the guest dirties
// `dirty_per_s` pages a second.
RoundResult round_of(std::uint64_t pages, double dirty_per_s) {
    const double seconds = static_cast<double>(pages * kPage) / kBandwidth;
    return {pages, pages * kPage, seconds, static_cast<std::uint64_t>(dirty_per_s * seconds)};
}

// Runs rounds as the source does until a decision other than Continue.
Decision run(Convergence& convergence, std::uint64_t ram_pages, double dirty_per_s) {
    std::uint64_t pages = ram_pages;
    for (;;) {
        const RoundResult round = round_of(pages, dirty_per_s);
        const Decision decision = convergence.after_round(round);
        if (decision != Decision::Continue) {
            return decision;
        }
        pages = round.dirty_pages;
    }
}

TEST(MigrationConvergence, IdleGuestNeedsOneRound) {
    Convergence convergence(300, 30);
    EXPECT_EQ(run(convergence, 1 << 19, 0), Decision::FinalCopy);
    EXPECT_EQ(convergence.iterations(), 1u);
    EXPECT_EQ(convergence.expected_downtime_ms(), 0);
}

TEST(MigrationConvergence, DirtyingSlowerThanTheLinkConverges) {
    // 2 GiB, dirtied at a quarter of the link's speed: each round sends a quarter of the one before.
    Convergence convergence(300, 30);
    EXPECT_EQ(run(convergence, 1 << 19, kBandwidth / kPage / 4), Decision::FinalCopy);
    EXPECT_GT(convergence.iterations(), 1u);
    EXPECT_LE(convergence.expected_downtime_ms(), 300);
    EXPECT_NEAR(convergence.bandwidth_bytes_per_s(), kBandwidth, 1e6);
    EXPECT_NEAR(convergence.dirty_rate_pages_per_s(), kBandwidth / kPage / 4, 100);
}

TEST(MigrationConvergence, KeepsGoingWhileARoundHalvesTheRest) {
    // Each round sends a quarter of the one before: it fits the limit early,
    // but goes on until the rest would take under a millisecond.
    Convergence convergence(300, 30);
    EXPECT_EQ(run(convergence, 1 << 19, kBandwidth / kPage / 4), Decision::FinalCopy);
    EXPECT_LE(convergence.expected_downtime_ms(), Convergence::kNotWorthARoundMs);
    // Out of rounds, it settles for what fits.
    Convergence few(300, 3);
    EXPECT_EQ(run(few, 1 << 19, kBandwidth / kPage / 4), Decision::FinalCopy);
    EXPECT_EQ(few.iterations(), 3u);
}

TEST(MigrationConvergence, StopsAtTheFirstFitWhenARoundNoLongerHalvesTheRest) {
    // Each round sends three quarters of the one before.
    Convergence convergence(300, 30);
    EXPECT_EQ(run(convergence, 1 << 19, kBandwidth / kPage * 3 / 4), Decision::FinalCopy);
    EXPECT_LE(convergence.expected_downtime_ms(), 300);
    EXPECT_GT(convergence.expected_downtime_ms(), 300 * 3 / 4);
}

TEST(MigrationConvergence, TighterDowntimeLimitTakesMoreRounds) {
    Convergence loose(300, 30), tight(5, 30);
    ASSERT_EQ(run(loose, 1 << 19, kBandwidth / kPage * 3 / 4), Decision::FinalCopy);
    ASSERT_EQ(run(tight, 1 << 19, kBandwidth / kPage * 3 / 4), Decision::FinalCopy);
    EXPECT_GT(tight.iterations(), loose.iterations());
    EXPECT_LE(tight.expected_downtime_ms(), 5);
}

TEST(MigrationConvergence, DirtyingFasterThanTheLinkGivesUpAtTheIterationLimit) {
    Convergence convergence(300, 5);
    EXPECT_EQ(run(convergence, 1 << 19, 2 * kBandwidth / kPage), Decision::GiveUp);
    EXPECT_EQ(convergence.iterations(), 5u);
    EXPECT_THAT(convergence.give_up_reason(),
                HasSubstr("did not converge in 5 iterations: the guest dirties 488281 pages/s (2000.0 MB/s) "
                          "against a bandwidth of 1000.0 MB/s"));
    EXPECT_THAT(convergence.give_up_reason(), HasSubstr("over the limit of 300 ms"));
}

TEST(MigrationConvergence, FinalCopyExactlyAtTheLimit) {
    Convergence convergence(100, 30);
    // 1 GB/s, 100 ms of pages left: 1e8 / 4096 pages.
    EXPECT_EQ(convergence.after_round({1000, 4096000, 0.004096, 24414}), Decision::FinalCopy);
    EXPECT_NEAR(convergence.expected_downtime_ms(), 100, 0.01);
    Convergence over(100, 30);
    EXPECT_EQ(over.after_round({1000, 4096000, 0.004096, 24500}), Decision::Continue);
}

}  // namespace
