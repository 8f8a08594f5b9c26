#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "controller/store/claim_batcher.h"
#include "controller/store/sqlite_store.h"
#include "vim/testing/temp_dir.h"

namespace vim::controller::store {
namespace {

constexpr int kThreads = 64;

class RacingClaimsTest : public ::testing::Test {
protected:
    std::vector<Host> add_hosts(int count, std::int64_t vcpus) {
        std::vector<Host> hosts;
        for (int i = 0; i < count; ++i) {
            Host host;
            host.name = "h";  // then +=: GCC 12 at -O3 sees a false overlap in "h" + std::string
            host.name += std::to_string(i);
            host.capacity = {vcpus, 1 << 20, 1000};
            host.ratios = {1.0, 1.0, 1.0};
            hosts.push_back(store_.create_host(host));
        }
        return hosts;
    }

    // Every thread tries the hosts in its own random order until one takes its VM; half go through the
    // group-commit batcher, half commit alone. Returns how many VMs were created.
    int race(const std::vector<Host>& hosts, const std::string& group_id) {
        ClaimBatcher batcher(store_);
        std::atomic<int> created{0};
        std::atomic<int> unexpected{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t) {
            threads.emplace_back([&, t] {
                std::vector<Host> order = hosts;
                std::shuffle(order.begin(), order.end(), std::mt19937(static_cast<unsigned>(t)));
                for (const auto& host : order) {
                    Vm vm;
                    vm.name = "vm-" + std::to_string(t);
                    vm.vcpus = 1;
                    vm.memory_mib = 64;
                    vm.host_id = host.id;
                    vm.server_group_id = group_id;
                    vm.state = VmState::scheduled;
                    try {
                        if (t % 2 == 0) {
                            batcher.create_vm({vm, std::nullopt, std::nullopt});
                        } else {
                            store_.create_vm({vm, std::nullopt, std::nullopt});
                        }
                        ++created;
                        return;
                    } catch (const ClaimRejectedError&) {
                    } catch (...) {
                        ++unexpected;
                        return;
                    }
                }
            });
        }
        for (auto& thread : threads) {
            thread.join();
        }
        EXPECT_EQ(unexpected.load(), 0);
        return created.load();
    }

    vim::testing::TempDir directory_;
    SqliteStore store_{std::filesystem::path(directory_.path("vimd.db"))};
};

TEST_F(RacingClaimsTest, SixtyFourCreatesForSixteenSlotsFillThemExactly) {
    auto hosts = add_hosts(4, 4);
    EXPECT_EQ(race(hosts, ""), 16);
    for (const auto& host : hosts) {
        EXPECT_EQ(store_.host_usage(host.id).vcpus, 4) << host.name;
    }
    EXPECT_EQ(store_.list_vms({}, {}).items.size(), 16u);
}

TEST_F(RacingClaimsTest, RacingAntiAffinityMembersNeverShareAHost) {
    auto hosts = add_hosts(8, 64);
    ServerGroup group = store_.create_server_group({"", "db", GroupPolicy::anti_affinity, 0});
    EXPECT_EQ(race(hosts, group.id), 8);
    std::map<std::string, int> members_per_host;
    for (const auto& vm : store_.list_vms({}, {}).items) {
        ++members_per_host[vm.host_id];
    }
    EXPECT_EQ(members_per_host.size(), 8u);
    for (const auto& [host, members] : members_per_host) {
        EXPECT_EQ(members, 1) << host;
    }
}

TEST_F(RacingClaimsTest, RacingAffinityMembersAllLandOnOneHost) {
    auto hosts = add_hosts(8, 64);
    ServerGroup group = store_.create_server_group({"", "web", GroupPolicy::affinity, 0});
    EXPECT_EQ(race(hosts, group.id), kThreads);
    std::set<std::string> used_hosts;
    for (const auto& vm : store_.list_vms({}, {kMaxPageLimit, ""}).items) {
        used_hosts.insert(vm.host_id);
    }
    EXPECT_EQ(used_hosts.size(), 1u);
}

}  // namespace
}  // namespace vim::controller::store
