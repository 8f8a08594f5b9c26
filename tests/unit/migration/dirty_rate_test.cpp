// The dirty-rate measurement over a fake VM: pages counted once per sample
// for the rate and once in all for the working set, logging on only while it
// measures, and a measurement ended early reported as such.
#include "migration/dirty_rate.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "fakes/fake_vm.h"

namespace {

using namespace std::chrono_literals;
using namespace vim::migration;
using vim::testing::FakeVm;
using vim::vmm::memory::GuestMemory;
using vim::vmm::memory::kPageSize;

RegionPages region_with(std::initializer_list<std::uint64_t> pages) {
    RegionPages region;
    region.dirty.assign(4, 0);
    region.discarded.assign(4, 0);
    for (const auto page : pages) {
        region.dirty[page / 64] |= std::uint64_t{1} << (page % 64);
    }
    return region;
}

TEST(MigrationDirtyRate, TallyCountsEachSampleForTheRateAndEachPageOnceForTheWorkingSet) {
    DirtyRateTally tally;
    const std::vector<RegionPages> first{region_with({1, 2, 100}), region_with({7})};
    const std::vector<RegionPages> second{region_with({2, 100, 200}), region_with({})};
    tally.add(first);
    tally.add(second);
    EXPECT_EQ(tally.dirty_pages(), 7u);
    EXPECT_EQ(tally.working_set_pages(), 5u);  // 1, 2, 100, 200 and the other region's 7
}

struct Machine {
    std::vector<std::uint8_t> ram = std::vector<std::uint8_t>(256 * kPageSize);
    GuestMemory memory = GuestMemory::over({{0, ram.size(), ram.data()}});
    FakeVm vm;

    Machine() { vm.set_memory_slot({0, 0, ram.size(), ram.data()}); }
};

DirtyRateReport wait_until_done(const DirtyRateMeter& meter) {
    while (meter.measuring()) {
        std::this_thread::sleep_for(5ms);
    }
    return meter.report();
}

TEST(MigrationDirtyRate, MeasuresTheWritesOfTheWindowWithLoggingOnMeanwhile) {
    Machine machine;
    // What KVM's log holds when logging starts (every page, with
    // KVM_DIRTY_LOG_INITIALLY_SET) is no write of the window.
    machine.vm.injected_dirty[0].assign(4, ~std::uint64_t{0});
    DirtyRateMeter meter(machine.vm, machine.memory, 200ms, 20ms);
    EXPECT_EQ(to_json(meter.report())["state"], "none");
    meter.start();
    EXPECT_EQ(to_json(meter.report())["state"], "measuring");
    std::this_thread::sleep_for(50ms);
    // A device's writes, mid-window (GuestMemory's log, safe from any thread).
    machine.memory.write_object<std::uint32_t>(9 * kPageSize, 1);
    machine.memory.write_object<std::uint32_t>(10 * kPageSize, 1);
    const auto report = wait_until_done(meter);
    ASSERT_EQ(report.state, DirtyRateState::Done) << report.error;
    EXPECT_EQ(report.dirty_pages, 2u);
    EXPECT_EQ(report.working_set_pages, 2u);
    EXPECT_GE(report.measured_ms, 200.0);
    EXPECT_NEAR(report.dirty_rate_pages_per_s, 2 * 1000.0 / report.measured_ms, 1e-9);
    EXPECT_FALSE(machine.vm.slots[0].log_dirty) << "logging stays off after the measurement";
    const auto reply = to_json(report);
    EXPECT_EQ(reply["state"], "done");
    EXPECT_EQ(reply["working_set_pages"], 2u);
    EXPECT_EQ(reply["window_ms"], 200u);
}

TEST(MigrationDirtyRate, AMeasurementEndedEarlyIsReportedFailedWithLoggingOff) {
    Machine machine;
    {
        DirtyRateMeter meter(machine.vm, machine.memory, 60s);
        meter.start();
        std::this_thread::sleep_for(20ms);
        EXPECT_TRUE(meter.measuring());
    }  // the destructor ends it at once, not after a minute
    EXPECT_FALSE(machine.vm.slots[0].log_dirty);
}

TEST(MigrationDirtyRate, RefusesAnEmptyWindow) {
    Machine machine;
    EXPECT_THROW(DirtyRateMeter(machine.vm, machine.memory, 0ms), std::invalid_argument);
}

}  // namespace
