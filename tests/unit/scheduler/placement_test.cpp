#include "controller/scheduler/placement.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "controller/store/sqlite_store.h"
#include "vim/testing/temp_dir.h"

namespace vim::controller::scheduler {
namespace {

store::Host make_host(const std::string& name, std::int64_t vcpus) {
    store::Host host;
    host.name = name;
    host.capacity = {vcpus, 1 << 20, 1000};
    host.ratios = {1.0, 1.0, 1.0};
    host.last_heartbeat_ms = store::now_ms();
    return host;
}

store::VmCreation creation(const std::string& name, std::int64_t vcpus = 1, const std::string& group = "") {
    store::Vm vm;
    vm.name = name;
    vm.vcpus = vcpus;
    vm.memory_mib = 256;
    vm.server_group_id = group;
    return {vm, std::nullopt, std::nullopt};
}

class PlacementTest : public ::testing::Test {
protected:
    vim::testing::TempDir directory_;
    store::SqliteStore store_{std::filesystem::path(directory_.path("vimd.db"))};
};

TEST_F(PlacementTest, CreatesPlacedVmsAndKeepsTheViewInStep) {
    store::Host h1 = store_.create_host(make_host("h1", 4));
    store::Host h2 = store_.create_host(make_host("h2", 4));
    Placement placement(store_, Config{});
    store::VmCreated created = placement.create_vm(creation("a", 3));
    EXPECT_EQ(created.vm.state, store::VmState::scheduled);
    EXPECT_EQ(store_.get_vm(created.vm.id).host_id, created.vm.host_id);
    store::VmCreated second = placement.create_vm(creation("b", 3));
    EXPECT_NE(second.vm.host_id, created.vm.host_id);  // spread
    try {
        placement.create_vm(creation("c", 2));
        FAIL() << "a host was over-booked";
    } catch (const NoValidHostError& error) {
        EXPECT_STREQ(error.what(), "no host can take the vm: 2 hosts, rejected by capacity 2");
    }
    EXPECT_EQ(store_.find_vm_by_name("c"), std::nullopt);
    placement.with_view([&](const ClusterView& view) {
        EXPECT_EQ(view.find_host(h1.id)->used.vcpus, 3);
        EXPECT_EQ(view.find_host(h2.id)->used.vcpus, 3);
    });
    // A VM deleted elsewhere frees its room once reported.
    store_.delete_vm(created.vm.id);
    placement.forget_vm(created.vm.id);
    EXPECT_EQ(placement.create_vm(creation("c", 2)).vm.host_id, created.vm.host_id);
}

TEST_F(PlacementTest, StaleViewIsCorrectedByTheStoresRefusal) {
    store::Host h1 = store_.create_host(make_host("h1", 4));
    store::Host h2 = store_.create_host(make_host("h2", 2));
    Placement placement(store_, Config{});
    // Another writer fills h1 behind the view's back.
    store::VmCreation other = creation("other", 4);
    other.vm.host_id = h1.id;
    store_.create_vm(other);
    // The view still thinks h1 is empty and picks it; the store refuses; the retry lands on h2.
    store::VmCreated created = placement.create_vm(creation("a", 2));
    EXPECT_EQ(created.vm.host_id, h2.id);
    placement.with_view([&](const ClusterView& view) { EXPECT_EQ(view.find_host(h1.id)->used.vcpus, 4); });
}

TEST_F(PlacementTest, SixtyFourConcurrentCreatesRaceForSixteenSlots) {
    std::vector<store::Host> hosts;
    for (int i = 0; i < 4; ++i) {
        hosts.push_back(store_.create_host(make_host("h" + std::to_string(i), 4)));
    }
    store::ServerGroup group = store_.create_server_group({"", "db", store::GroupPolicy::anti_affinity, 0});
    Placement placement(store_, Config{});
    std::atomic<int> placed{0};
    std::atomic<int> refused{0};
    std::atomic<int> group_placed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 64; ++t) {
        threads.emplace_back([&, t] {
            // Every eighth also joins the anti-affinity group: at most one per host of those.
            bool member = t % 8 == 0;
            try {
                placement.create_vm(creation("vm-" + std::to_string(t), 1, member ? group.id : ""));
                ++placed;
                group_placed += member ? 1 : 0;
            } catch (const NoValidHostError&) {
                ++refused;
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    EXPECT_EQ(placed.load(), 16);
    EXPECT_EQ(refused.load(), 48);
    std::map<std::string, int> members;
    for (const auto& host : hosts) {
        EXPECT_EQ(store_.host_usage(host.id).vcpus, 4) << host.name;
    }
    store::VmFilter in_group;
    in_group.server_group_id = group.id;
    for (const auto& vm : store_.list_vms(in_group, {}).items) {
        EXPECT_EQ(++members[vm.host_id], 1) << "anti-affinity broken on " << vm.host_id;
    }
    EXPECT_EQ(static_cast<int>(members.size()), group_placed.load());
}

TEST_F(PlacementTest, MigrationClaimsTheNamedOrTheBestOtherHost) {
    store::Host h1 = store_.create_host(make_host("h1", 8));
    store::Host h2 = store_.create_host(make_host("h2", 8));
    store::Host h3 = store_.create_host(make_host("h3", 2));
    Placement placement(store_, Config{});
    store::VmCreation first = creation("a", 4);
    first.vm.host_affinity = {"h1", "h2"};
    store::Vm vm = placement.create_vm(first).vm;
    EXPECT_EQ(vm.host_id, h1.id);
    try {
        placement.claim_migration(vm.id, "h3");
        FAIL();
    } catch (const NoValidHostError& error) {
        EXPECT_STREQ(error.what(), "host \"h3\" is not in the vm's host affinity");
    }
    try {
        placement.claim_migration(vm.id, "h1");
        FAIL();
    } catch (const NoValidHostError& error) {
        EXPECT_STREQ(error.what(), "host \"h1\" rejected by excluded: the vm is already on this host");
    }
    EXPECT_THROW(placement.claim_migration(vm.id, "nope"), store::NotFoundError);
    store::Vm moving = placement.claim_migration(vm.id);
    EXPECT_EQ(moving.migration_host_id, h2.id);
    placement.with_view([&](const ClusterView& view) { EXPECT_EQ(view.find_host(h2.id)->used.vcpus, 4); });
    store::Vm moved = store_.finish_migration(vm.id, true);
    placement.sync_vm(moved);
    placement.with_view([&](const ClusterView& view) {
        EXPECT_EQ(view.find_host(h1.id)->used.vcpus, 0);
        EXPECT_EQ(view.find_host(h2.id)->used.vcpus, 4);
    });
    (void)h3;
}

TEST_F(PlacementTest, PlacesAPendingVmAndExplains) {
    store::Host h1 = store_.create_host(make_host("h1", 2));
    store::Vm pending = store_.create_vm(creation("a", 2)).vm;
    Placement placement(store_, Config{});
    store::Vm placed = placement.place_vm(pending.id);
    EXPECT_EQ(placed.host_id, h1.id);
    EXPECT_EQ(placed.state, store::VmState::scheduled);
    Request more;
    more.vcpus = 1;
    Explanation explanation = placement.explain(more);
    ASSERT_EQ(explanation.hosts.size(), 1u);
    EXPECT_EQ(explanation.hosts[0].rejected_by, "capacity");
    EXPECT_EQ(explanation.hosts[0].message, "not enough vcpus: 1 requested, 0 free");
    // The maintenance flag reaches placement through sync_host.
    placement.sync_host(store_.update_host(h1.id, [](store::Host& host) { host.maintenance = true; }));
    EXPECT_EQ(placement.explain(more).hosts[0].rejected_by, "maintenance");
    // A reload sees the same as the kept view.
    placement.reload();
    EXPECT_EQ(placement.explain(more).hosts[0].rejected_by, "maintenance");
}

}  // namespace
}  // namespace vim::controller::scheduler
