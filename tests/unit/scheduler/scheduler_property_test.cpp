// Random clusters, random requests: the scheduler's choices checked against a plain model of the rules,
// written here independently of the scheduler's own code.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "controller/scheduler/scheduler.h"

namespace vim::controller::scheduler {
namespace {

using store::GroupPolicy;

constexpr store::TimeMs kNow = 10'000'000;
constexpr int kClusters = 200;
constexpr int kRequestsPerCluster = 60;
const std::vector<std::string> kFeatures{"a", "b", "c", "d"};

struct Model {
    std::vector<store::Host> hosts;
    std::map<std::string, store::Resources> used;                       // by host id
    std::map<std::pair<std::string, int>, store::Resources> numa_used;  // (host id, node id)
    std::map<std::string, std::map<std::string, int>> members;          // group -> host id -> count
    std::map<std::string, GroupPolicy> policies;
};

class RandomCluster {
public:
    explicit RandomCluster(unsigned seed) : random_(seed) {}

    template <typename T>
    T pick(const std::vector<T>& choices) {
        return choices[std::uniform_int_distribution<std::size_t>(0, choices.size() - 1)(random_)];
    }
    bool chance(double probability) { return std::bernoulli_distribution(probability)(random_); }
    std::int64_t between(std::int64_t low, std::int64_t high) {
        return std::uniform_int_distribution<std::int64_t>(low, high)(random_);
    }

    Model make_model() {
        Model model;
        int count = static_cast<int>(between(1, 30));
        for (int i = 0; i < count; ++i) {
            store::Host host;
            host.id = "id-" + std::to_string(i);
            host.name = "host-" + std::to_string(between(0, 9)) + "-" + std::to_string(i);
            host.capacity = {pick<std::int64_t>({2, 4, 8, 16}),
                             pick<std::int64_t>({2048, 4096, 16384, 32768}), between(10, 200)};
            host.ratios = {pick<double>({1.0, 2.0, 4.0}), pick<double>({1.0, 1.5}), 1.0};
            host.reserved = {between(0, 1), between(0, 1024), between(0, 5)};
            host.enabled = chance(0.9);
            host.maintenance = chance(0.1);
            host.last_heartbeat_ms =
                chance(0.85) ? kNow - between(0, 29'000) : kNow - between(31'000, 100'000);
            for (const auto& feature : kFeatures) {
                if (chance(0.6)) {
                    host.cpu_features.insert(feature);
                }
            }
            if (chance(0.5)) {
                int nodes = static_cast<int>(between(1, 2));
                for (int node = 0; node < nodes; ++node) {
                    host.numa_nodes.push_back(
                        {node * 3, host.capacity.vcpus / nodes, host.capacity.memory_mib / nodes});
                }
            }
            model.hosts.push_back(host);
        }
        for (int group = 0; group < 3; ++group) {
            std::string name = "g";  // then +=: GCC 12 at -O3 sees a false overlap in "g" + std::string
            name += std::to_string(group);
            model.policies[name] =
                pick<GroupPolicy>({GroupPolicy::affinity, GroupPolicy::anti_affinity,
                                   GroupPolicy::soft_affinity, GroupPolicy::soft_anti_affinity});
        }
        return model;
    }

    Request make_request(const Model& model) {
        Request request;
        request.vcpus = between(1, 8);
        request.memory_mib = between(1, 32) * 256;
        request.disk_gib = between(0, 20);
        if (chance(0.5)) {
            request.server_group_id = "g" + std::to_string(between(0, 2));
            request.group_policy = model.policies.at(request.server_group_id);
        }
        if (chance(0.1)) {
            for (int i = 0; i < between(1, 3); ++i) {
                request.host_affinity.push_back(pick(model.hosts).name);
            }
        }
        if (chance(0.1)) {
            request.host_anti_affinity.push_back(pick(model.hosts).name);
        }
        if (chance(0.2)) {
            request.required_cpu_features.push_back(pick<std::string>({"a", "b", "c", "d", "never-seen"}));
        }
        return request;
    }

private:
    std::mt19937 random_;
};

bool fits(const store::Resources& wanted, const store::Resources& usable, const store::Resources& used) {
    return used.vcpus + wanted.vcpus <= usable.vcpus &&
           used.memory_mib + wanted.memory_mib <= usable.memory_mib &&
           used.disk_gib + wanted.disk_gib <= usable.disk_gib;
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}

// The rules, stated plainly.
bool may_take(const Model& model, const store::Host& host, const Request& request) {
    if (!host.enabled || host.maintenance ||
        kNow - host.last_heartbeat_ms > Config{}.heartbeat_staleness_ms) {
        return false;
    }
    if ((!request.host_affinity.empty() && !contains(request.host_affinity, host.name)) ||
        contains(request.host_anti_affinity, host.name)) {
        return false;
    }
    if (!request.server_group_id.empty()) {
        auto group = model.members.find(request.server_group_id);
        int here = 0;
        bool any = false;
        if (group != model.members.end()) {
            for (const auto& [host_id, count] : group->second) {
                any = any || count > 0;
                here += host_id == host.id ? count : 0;
            }
        }
        if (request.group_policy == GroupPolicy::anti_affinity && here > 0) {
            return false;
        }
        if (request.group_policy == GroupPolicy::affinity && any && here == 0) {
            return false;
        }
    }
    store::Resources wanted{request.vcpus, request.memory_mib, request.disk_gib};
    auto used = model.used.find(host.id);
    if (!fits(wanted, store::usable_capacity(host),
              used == model.used.end() ? store::Resources{} : used->second)) {
        return false;
    }
    for (const auto& feature : request.required_cpu_features) {
        if (!host.cpu_features.contains(feature)) {
            return false;
        }
    }
    bool fits_a_node = false;
    bool room_on_a_node = false;
    for (const auto& node : host.numa_nodes) {
        auto size = store::usable_capacity(node, host.ratios);
        if (request.vcpus <= size.vcpus && request.memory_mib <= size.memory_mib) {
            fits_a_node = true;
            auto node_used = model.numa_used.find({host.id, node.id});
            room_on_a_node = room_on_a_node || fits({request.vcpus, request.memory_mib, 0}, size,
                                                    node_used == model.numa_used.end() ? store::Resources{}
                                                                                       : node_used->second);
        }
    }
    return !fits_a_node || room_on_a_node;
}

struct Tally {
    int placed = 0;
    int refused = 0;
};

void check_cluster(unsigned seed, Strategy strategy, Tally& tally) {
    RandomCluster random(seed);
    Model model = random.make_model();
    ClusterView view;
    for (const auto& host : model.hosts) {
        view.sync_host(host);
    }
    Config config;
    config.strategy = strategy;
    Scheduler scheduler(config);
    for (int step = 0; step < kRequestsPerCluster; ++step) {
        Request request = random.make_request(model);
        std::set<std::string> allowed;
        for (const auto& host : model.hosts) {
            if (may_take(model, host, request)) {
                allowed.insert(host.id);
            }
        }
        Decision decision = scheduler.decide(view, request, kNow);
        ASSERT_EQ(decision.placed(), !allowed.empty())
            << "seed " << seed << " step " << step << ": " << decision.reason;

        Explanation explanation = scheduler.explain(view, request, kNow);
        ASSERT_EQ(explanation.hosts.size(), model.hosts.size());
        EXPECT_EQ(explanation.decision.host_id, decision.host_id) << "seed " << seed << " step " << step;
        EXPECT_EQ(explanation.decision.numa_node, decision.numa_node);
        EXPECT_EQ(explanation.decision.score, decision.score);
        EXPECT_EQ(explanation.decision.reason, decision.reason);
        for (const auto& verdict : explanation.hosts) {
            ASSERT_EQ(verdict.passed, allowed.contains(verdict.host_id))
                << "seed " << seed << " step " << step << " host " << verdict.host_name << ": "
                << verdict.rejected_by << " " << verdict.message;
            if (verdict.passed && verdict.host_id != decision.host_id) {
                // The chosen host scores highest; a tie goes to the first name.
                EXPECT_TRUE(verdict.score.total < decision.score ||
                            (verdict.score.total == decision.score && decision.host_name < verdict.host_name))
                    << "seed " << seed << " step " << step;
            }
        }
        if (!decision.placed()) {
            ++tally.refused;
            continue;
        }
        ++tally.placed;
        ASSERT_TRUE(allowed.contains(decision.host_id));
        const store::Host& host = view.find_host(decision.host_id)->host;
        if (decision.numa_node >= 0) {
            auto node = std::find_if(host.numa_nodes.begin(), host.numa_nodes.end(),
                                     [&](const store::NumaNode& n) { return n.id == decision.numa_node; });
            ASSERT_NE(node, host.numa_nodes.end());
            auto& node_used = model.numa_used[{host.id, node->id}];
            ASSERT_TRUE(fits({request.vcpus, request.memory_mib, 0},
                             store::usable_capacity(*node, host.ratios), node_used));
            node_used.vcpus += request.vcpus;
            node_used.memory_mib += request.memory_mib;
        }
        store::Vm vm;
        vm.id = "vm-" + std::to_string(step);
        vm.vcpus = request.vcpus;
        vm.memory_mib = request.memory_mib;
        vm.disk_gib = request.disk_gib;
        vm.host_id = decision.host_id;
        vm.numa_node = decision.numa_node;
        vm.server_group_id = request.server_group_id;
        view.sync_vm(vm);
        auto& used = model.used[host.id];
        used = {used.vcpus + vm.vcpus, used.memory_mib + vm.memory_mib, used.disk_gib + vm.disk_gib};
        if (!request.server_group_id.empty()) {
            ++model.members[request.server_group_id][host.id];
        }
    }
    // What the cluster ended up as: within capacity everywhere, hard groups kept.
    for (const auto& host : model.hosts) {
        const HostState* state = view.find_host(host.id);
        EXPECT_LE(state->used.vcpus, state->usable.vcpus);
        EXPECT_LE(state->used.memory_mib, state->usable.memory_mib);
        EXPECT_LE(state->used.disk_gib, state->usable.disk_gib);
        bool chosen_once = state->vm_count > 0;
        EXPECT_TRUE(!chosen_once || (host.enabled && !host.maintenance &&
                                     kNow - host.last_heartbeat_ms <= config.heartbeat_staleness_ms));
    }
    for (const auto& [group, hosts] : model.members) {
        if (model.policies.at(group) == GroupPolicy::anti_affinity) {
            for (const auto& [host_id, count] : hosts) {
                EXPECT_LE(count, 1) << "seed " << seed << ": anti-affinity group " << group << " doubled up";
            }
        }
        if (model.policies.at(group) == GroupPolicy::affinity) {
            EXPECT_LE(hosts.size(), 1u) << "seed " << seed << ": affinity group " << group << " split";
        }
    }
}

TEST(SchedulerPropertyTest, SpreadFollowsTheRulesOnRandomClusters) {
    Tally tally;
    for (unsigned seed = 1; seed <= kClusters; ++seed) {
        check_cluster(seed, Strategy::spread, tally);
        if (HasFatalFailure()) {
            return;
        }
    }
    // Both outcomes are exercised plenty, or the checks above prove little.
    EXPECT_GT(tally.placed, kClusters * kRequestsPerCluster / 5);
    EXPECT_GT(tally.refused, kClusters * kRequestsPerCluster / 5);
}

TEST(SchedulerPropertyTest, PackFollowsTheRulesOnRandomClusters) {
    Tally tally;
    for (unsigned seed = 1; seed <= kClusters; ++seed) {
        check_cluster(seed, Strategy::pack, tally);
        if (HasFatalFailure()) {
            return;
        }
    }
    // Both outcomes are exercised plenty, or the checks above prove little.
    EXPECT_GT(tally.placed, kClusters * kRequestsPerCluster / 5);
    EXPECT_GT(tally.refused, kClusters * kRequestsPerCluster / 5);
}

TEST(SchedulerPropertyTest, PackFillsFewerHostsThanSpread) {
    for (unsigned seed = 1; seed <= 20; ++seed) {
        std::map<Strategy, std::size_t> hosts_used;
        for (Strategy strategy : {Strategy::spread, Strategy::pack}) {
            RandomCluster requests(seed);
            ClusterView view;
            for (int i = 0; i < 40; ++i) {
                store::Host host;
                host.id = "id-" + std::to_string(i);
                host.name = "host-" + std::to_string(i);
                host.capacity = {16, 32768, 500};
                host.ratios = {1.0, 1.0, 1.0};
                host.last_heartbeat_ms = kNow;
                view.sync_host(host);
            }
            Config config;
            config.strategy = strategy;
            Scheduler scheduler(config);
            for (int i = 0; i < 120; ++i) {
                Request request;
                request.vcpus = requests.between(1, 2);
                request.memory_mib = requests.between(1, 8) * 256;
                Decision decision = scheduler.decide(view, request, kNow);
                ASSERT_TRUE(decision.placed());
                store::Vm vm;
                vm.id = "vm-" + std::to_string(i);
                vm.vcpus = request.vcpus;
                vm.memory_mib = request.memory_mib;
                vm.disk_gib = 0;
                vm.host_id = decision.host_id;
                view.sync_vm(vm);
            }
            for (std::size_t i = 0; i < view.host_count(); ++i) {
                hosts_used[strategy] += view.host(i).vm_count > 0 ? 1 : 0;
            }
        }
        EXPECT_EQ(hosts_used[Strategy::spread], 40u) << "seed " << seed;
        // 120 VMs of at most 2 vcpus: pack needs at most 15 hosts of 16.
        EXPECT_LE(hosts_used[Strategy::pack], 15u) << "seed " << seed;
    }
}

}  // namespace
}  // namespace vim::controller::scheduler
