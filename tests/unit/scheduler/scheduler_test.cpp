#include "controller/scheduler/scheduler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace vim::controller::scheduler {
namespace {

using store::GroupPolicy;
using ::testing::ElementsAre;

constexpr store::TimeMs kNow = 1'000'000;

store::Host make_host(const std::string& name, std::int64_t vcpus = 8, std::int64_t memory_mib = 8192) {
    store::Host host;
    host.id = "id-" + name;
    host.name = name;
    host.capacity = {vcpus, memory_mib, 100};
    host.ratios = {1.0, 1.0, 1.0};
    host.last_heartbeat_ms = kNow;
    return host;
}

store::Vm placed_vm(const std::string& id, const std::string& host_id, std::int64_t vcpus = 1,
                    std::int64_t memory_mib = 1024, const std::string& group = "") {
    store::Vm vm;
    vm.id = id;
    vm.name = id;
    vm.vcpus = vcpus;
    vm.memory_mib = memory_mib;
    vm.disk_gib = 0;
    vm.host_id = host_id;
    vm.server_group_id = group;
    return vm;
}

Request request(std::int64_t vcpus = 1, std::int64_t memory_mib = 1024) {
    Request wanted;
    wanted.vcpus = vcpus;
    wanted.memory_mib = memory_mib;
    return wanted;
}

Config with(Strategy strategy) {
    Config config;
    config.strategy = strategy;
    return config;
}

const HostVerdict& verdict_for(const Explanation& explanation, const std::string& name) {
    for (const auto& verdict : explanation.hosts) {
        if (verdict.host_name == name) {
            return verdict;
        }
    }
    throw std::runtime_error("no verdict for " + name);
}

TEST(SchedulerTest, EachFilterRejectsWithItsReason) {
    ClusterView view;
    store::Host disabled = make_host("a-disabled");
    disabled.enabled = false;
    store::Host maintenance = make_host("b-maintenance");
    maintenance.maintenance = true;
    store::Host stale = make_host("c-stale");
    stale.last_heartbeat_ms = kNow - 60'000;
    store::Host small = make_host("d-small", 1, 512);
    store::Host old_cpu = make_host("e-old-cpu");
    old_cpu.cpu_features = {"sse4_2"};
    store::Host fine = make_host("f-fine");
    fine.cpu_features = {"sse4_2", "avx2"};
    for (const auto& host : {disabled, maintenance, stale, small, old_cpu, fine}) {
        view.sync_host(host);
    }
    Scheduler scheduler;
    Request wanted = request(2, 1024);
    wanted.required_cpu_features = {"avx2"};
    Explanation explanation = scheduler.explain(view, wanted, kNow);
    std::vector<std::string> names;
    for (const auto& verdict : explanation.hosts) {
        names.push_back(verdict.host_name);
    }
    EXPECT_THAT(names,
                ElementsAre("a-disabled", "b-maintenance", "c-stale", "d-small", "e-old-cpu", "f-fine"));
    auto rejection = [&](const std::string& name) {
        const auto& verdict = verdict_for(explanation, name);
        return verdict.rejected_by + ": " + verdict.message;
    };
    EXPECT_EQ(rejection("a-disabled"), "disabled: host is disabled");
    EXPECT_EQ(rejection("b-maintenance"), "maintenance: host is in maintenance");
    EXPECT_EQ(rejection("c-stale"), "stale-heartbeat: last heartbeat 60000 ms ago, limit 30000 ms");
    EXPECT_EQ(rejection("d-small"), "capacity: not enough vcpus: 2 requested, 1 free");
    EXPECT_EQ(rejection("e-old-cpu"), "cpu-features: lacks CPU features avx2");
    EXPECT_TRUE(verdict_for(explanation, "f-fine").passed);
    EXPECT_EQ(explanation.decision.host_name, "f-fine");
    EXPECT_EQ(scheduler.decide(view, wanted, kNow).host_name, "f-fine");

    wanted.required_cpu_features = {"avx512f"};  // no host has ever reported it
    Decision none = scheduler.decide(view, wanted, kNow);
    EXPECT_FALSE(none.placed());
    EXPECT_EQ(none.reason,
              "no host can take the vm: 6 hosts, rejected by disabled 1, maintenance 1, stale-heartbeat 1, "
              "capacity 1, cpu-features 2");
    EXPECT_EQ(verdict_for(scheduler.explain(view, wanted, kNow), "f-fine").message,
              "lacks CPU feature avx512f");
}

TEST(SchedulerTest, NoHostsAtAll) {
    EXPECT_EQ(Scheduler().decide(ClusterView(), request(), kNow).reason,
              "no host can take the vm: no hosts are registered");
}

TEST(SchedulerTest, CapacityCountsRatiosReservationsAndPlacedVms) {
    ClusterView view;
    store::Host host = make_host("h1", 4, 8192);
    host.ratios.cpu = 4.0;
    host.reserved = {1, 1024, 0};
    view.sync_host(host);  // 12 vcpus, 7168 MiB usable
    view.sync_vm(placed_vm("a", host.id, 10, 4096));
    Scheduler scheduler;
    EXPECT_TRUE(scheduler.decide(view, request(2, 3072), kNow).placed());
    EXPECT_EQ(verdict_for(scheduler.explain(view, request(3, 1024), kNow), "h1").message,
              "not enough vcpus: 3 requested, 2 free");
    EXPECT_EQ(verdict_for(scheduler.explain(view, request(1, 4096), kNow), "h1").message,
              "not enough memory: 4096 MiB requested, 3072 MiB free");
    view.forget_vm("a");
    EXPECT_TRUE(scheduler.decide(view, request(12, 7168), kNow).placed());
    EXPECT_FALSE(scheduler.decide(view, request(13, 1024), kNow).placed());
}

TEST(SchedulerTest, SpreadPicksTheEmptiestAndPackTheFullestThatFits) {
    ClusterView view;
    for (const auto& name : {"h1", "h2", "h3"}) {
        view.sync_host(make_host(name));
    }
    view.sync_vm(placed_vm("a", "id-h1", 4, 4096));
    view.sync_vm(placed_vm("b", "id-h2", 7, 7168));
    Scheduler spread(with(Strategy::spread));
    Scheduler pack(with(Strategy::pack));
    EXPECT_EQ(spread.decide(view, request(), kNow).host_name, "h3");
    EXPECT_EQ(pack.decide(view, request(), kNow).host_name, "h2");
    EXPECT_EQ(pack.decide(view, request(2, 1024), kNow).host_name, "h1");  // h2 has one vcpu left
}

TEST(SchedulerTest, TiesGoToTheFirstName) {
    ClusterView view;
    for (const auto& name : {"zeta", "alpha", "mid"}) {
        view.sync_host(make_host(name));
    }
    EXPECT_EQ(Scheduler(with(Strategy::spread)).decide(view, request(), kNow).host_name, "alpha");
    EXPECT_EQ(Scheduler(with(Strategy::pack)).decide(view, request(), kNow).host_name, "alpha");
}

TEST(SchedulerTest, HardGroupPolicies) {
    ClusterView view;
    for (const auto& name : {"h1", "h2", "h3"}) {
        view.sync_host(make_host(name));
    }
    view.sync_vm(placed_vm("db-1", "id-h1", 1, 1024, "db"));
    view.sync_vm(placed_vm("db-2", "id-h2", 1, 1024, "db"));
    Scheduler scheduler;
    Request member = request();
    member.server_group_id = "db";
    member.group_policy = GroupPolicy::anti_affinity;
    EXPECT_EQ(scheduler.decide(view, member, kNow).host_name, "h3");
    view.sync_vm(placed_vm("db-3", "id-h3", 1, 1024, "db"));
    Decision none = scheduler.decide(view, member, kNow);
    EXPECT_EQ(none.reason, "no host can take the vm: 3 hosts, rejected by anti-affinity 3");
    EXPECT_EQ(verdict_for(scheduler.explain(view, member, kNow), "h2").message,
              "the server group already has a vm here");

    // Affinity: the first member goes anywhere (the emptiest), the others follow it.
    member.server_group_id = "web";
    member.group_policy = GroupPolicy::affinity;
    view.sync_vm(placed_vm("x", "id-h1", 4, 4096));
    EXPECT_EQ(scheduler.decide(view, member, kNow).host_name, "h2");
    view.sync_vm(placed_vm("web-1", "id-h1", 1, 1024, "web"));
    EXPECT_EQ(scheduler.decide(view, member, kNow).host_name, "h1");
    Decision roomy = scheduler.decide(view, request(7), kNow);  // h2 still has 7 free
    member.vcpus = 8;
    EXPECT_EQ(scheduler.decide(view, member, kNow).reason,
              "no host can take the vm: 3 hosts, rejected by affinity 2, capacity 1");
    EXPECT_EQ(roomy.host_name, "h2");
}

TEST(SchedulerTest, SoftGroupPoliciesWeighButNeverRefuse) {
    ClusterView view;
    view.sync_host(make_host("h1"));
    view.sync_host(make_host("h2"));
    view.sync_vm(placed_vm("s-1", "id-h1", 1, 1024, "s"));
    Request member = request();
    member.server_group_id = "s";
    member.group_policy = GroupPolicy::soft_affinity;
    Config config;
    config.soft_affinity_weight = 2.0;
    // Spread alone would pick h2 (emptier); the affinity bonus outweighs that.
    EXPECT_EQ(Scheduler(config).decide(view, member, kNow).host_name, "h1");
    Explanation explanation = Scheduler(config).explain(view, member, kNow);
    const auto& score = verdict_for(explanation, "h1").score;
    EXPECT_DOUBLE_EQ(score.group, 2.0);
    EXPECT_DOUBLE_EQ(score.total, score.resource + score.group);
    config.soft_affinity_weight = 0;
    EXPECT_EQ(Scheduler(config).decide(view, member, kNow).host_name, "h2");

    member.group_policy = GroupPolicy::soft_anti_affinity;
    Scheduler packer(with(Strategy::pack));
    EXPECT_EQ(packer.decide(view, member, kNow).host_name, "h2");  // the penalty beats pack's pull to h1
    view.sync_vm(placed_vm("s-2", "id-h2", 1, 1024, "s"));
    EXPECT_TRUE(packer.decide(view, member, kNow).placed());  // both have a member: still placed
}

TEST(SchedulerTest, HostAffinityAndAntiAffinityByName) {
    ClusterView view;
    for (const auto& name : {"h1", "h2", "h3"}) {
        view.sync_host(make_host(name));
    }
    Scheduler scheduler;
    Request wanted = request();
    wanted.host_affinity = {"h2", "no-such-host"};
    EXPECT_EQ(scheduler.decide(view, wanted, kNow).host_name, "h2");
    wanted.host_anti_affinity = {"h2"};
    EXPECT_EQ(scheduler.decide(view, wanted, kNow).reason,
              "no host can take the vm: 3 hosts, rejected by host-affinity 2, host-anti-affinity 1");
    wanted.host_affinity.clear();
    wanted.host_anti_affinity = {"h1"};
    EXPECT_EQ(scheduler.decide(view, wanted, kNow).host_name, "h2");
    Explanation explanation = scheduler.explain(view, wanted, kNow);
    EXPECT_EQ(verdict_for(explanation, "h1").rejected_by, "host-anti-affinity");
    wanted.exclude_host_id = "id-h2";
    EXPECT_EQ(scheduler.decide(view, wanted, kNow).host_name, "h3");
}

TEST(SchedulerTest, NumaFitUsesOneNodeWhenTheVmFitsOne) {
    ClusterView view;
    store::Host host = make_host("h1", 8, 16384);
    host.numa_nodes = {{0, 4, 8192}, {1, 4, 8192}};
    view.sync_host(host);
    Scheduler spread;
    Decision first = spread.decide(view, request(3, 4096), kNow);
    ASSERT_TRUE(first.placed());
    EXPECT_EQ(first.numa_node, 0);  // equal nodes: the first
    store::Vm a = placed_vm("a", host.id, 3, 4096);
    a.numa_node = 0;
    view.sync_vm(a);
    EXPECT_EQ(spread.decide(view, request(3, 4096), kNow).numa_node, 1);
    store::Vm b = placed_vm("b", host.id, 3, 4096);
    b.numa_node = 1;
    view.sync_vm(b);
    // 2 vcpus remain on the host, but only one on each node.
    EXPECT_EQ(verdict_for(spread.explain(view, request(2, 1024), kNow), "h1").message,
              "no NUMA node has 2 vcpus and 1024 MiB free");
    EXPECT_EQ(spread.decide(view, request(1, 1024), kNow).numa_node, 0);
    // Bigger than any node: placed on the host's totals, no node.
    view.forget_vm("a");
    view.forget_vm("b");
    Decision wide = spread.decide(view, request(6, 4096), kNow);
    EXPECT_TRUE(wide.placed());
    EXPECT_EQ(wide.numa_node, -1);
    // Pack takes the fuller node that fits.
    store::Vm c = placed_vm("c", host.id, 1, 1024);
    c.numa_node = 1;
    view.sync_vm(c);
    EXPECT_EQ(Scheduler(with(Strategy::pack)).decide(view, request(1, 1024), kNow).numa_node, 1);
    EXPECT_EQ(spread.decide(view, request(1, 1024), kNow).numa_node, 0);
}

TEST(ClusterViewTest, CountsFollowSyncAndForget) {
    ClusterView view;
    view.sync_host(make_host("h1"));
    view.sync_host(make_host("h2"));
    store::Vm vm = placed_vm("a", "id-h1", 2, 2048, "g");
    view.sync_vm(vm);
    EXPECT_EQ(view.find_host("id-h1")->used, (store::Resources{2, 2048, 0}));
    EXPECT_EQ(view.group_members_on("g", "id-h1"), 1);
    vm.migration_host_id = "id-h2";  // a migration holds both ends
    view.sync_vm(vm);
    EXPECT_EQ(view.find_host("id-h2")->used.vcpus, 2);
    EXPECT_EQ(view.find_host("id-h1")->used.vcpus, 2);
    vm.host_id = "id-h2";
    vm.migration_host_id.clear();
    view.sync_vm(vm);
    EXPECT_EQ(view.find_host("id-h1")->used.vcpus, 0);
    EXPECT_EQ(view.group_members_on("g", "id-h1"), 0);
    EXPECT_EQ(view.group_size("g"), 1);
    vm.host_id.clear();
    view.sync_vm(vm);  // unplaced: no longer counted anywhere
    EXPECT_EQ(view.find_host("id-h2")->vm_count, 0);
    EXPECT_EQ(view.group_size("g"), 0);
}

TEST(ClusterViewTest, ForgettingAHostKeepsTheOthersCounts) {
    ClusterView view;
    for (const auto& name : {"h1", "h2", "h3"}) {
        view.sync_host(make_host(name));
    }
    view.sync_vm(placed_vm("a", "id-h3", 2, 2048, "g"));
    view.forget_host("id-h1");
    EXPECT_EQ(view.host_count(), 2u);
    EXPECT_EQ(view.find_host("id-h1"), nullptr);
    EXPECT_EQ(view.find_host_by_name("h3")->used.vcpus, 2);
    EXPECT_EQ(view.group_members_on("g", "id-h3"), 1);
    Request member = request();
    member.server_group_id = "g";
    EXPECT_EQ(Scheduler().decide(view, member, kNow).host_name, "h2");
    view.forget_vm("a");
    EXPECT_EQ(view.find_host_by_name("h3")->used.vcpus, 0);
}

TEST(ClusterViewTest, RenamingAndReshapingAHostKeepsItsVms) {
    ClusterView view;
    store::Host host = make_host("h1", 8, 16384);
    host.numa_nodes = {{0, 8, 16384}};
    view.sync_host(host);
    store::Vm vm = placed_vm("a", host.id, 2, 2048);
    vm.numa_node = 1;  // a node the host did not report yet
    view.sync_vm(vm);
    host.name = "renamed";
    host.numa_nodes = {{0, 4, 8192}, {1, 4, 8192}};
    view.sync_host(host);
    EXPECT_EQ(view.find_host_by_name("h1"), nullptr);
    const HostState* state = view.find_host_by_name("renamed");
    ASSERT_NE(state, nullptr);
    EXPECT_EQ(state->used.vcpus, 2);
    EXPECT_EQ(state->numa_used[1].vcpus, 2);
    EXPECT_EQ(state->numa_used[0].vcpus, 0);
}

}  // namespace
}  // namespace vim::controller::scheduler
