#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <thread>

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

    // Every thread tries the hosts in its own random order until one takes its VM; half create one VM at
    // a time, half as a batch of one (the store shares commits among them all). Returns how many VMs were
    // created.
    int race(const std::vector<Host>& hosts, const std::string& group_id) {
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
                        const VmCreation creation{vm, std::nullopt, std::nullopt};
                        if (t % 2 == 0) {
                            auto outcome = store_.create_vms({&creation, 1}).at(0);
                            if (auto* error = std::get_if<std::exception_ptr>(&outcome)) {
                                std::rethrow_exception(*error);
                            }
                        } else {
                            store_.create_vm(creation);
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

// Writes from many threads share commits: one refused in a shared transaction takes none of the others
// with it, and each caller hears only its own outcome.
TEST(GroupCommitTest, ARefusedWriteInASharedCommitLeavesTheOthersStored) {
    vim::testing::TempDir directory;
    SqliteStore store{std::filesystem::path(directory.path("vimd.db"))};
    std::atomic<int> duplicates_stored{0};
    std::atomic<int> duplicates_refused{0};
    std::atomic<int> unexpected{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            Host host;
            host.name = t % 2 == 0 ? "same" : "unique-";
            if (t % 2 != 0) {
                host.name += std::to_string(t);
            }
            try {
                store.create_host(host);
                if (t % 2 == 0) {
                    ++duplicates_stored;
                }
            } catch (const ConflictError& error) {
                if (t % 2 == 0 && error.field() == "name") {
                    ++duplicates_refused;
                } else {
                    ++unexpected;
                }
            } catch (...) {
                ++unexpected;
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    EXPECT_EQ(unexpected.load(), 0);
    EXPECT_EQ(duplicates_stored.load(), 1);
    EXPECT_EQ(duplicates_refused.load(), kThreads / 2 - 1);
    EXPECT_EQ(store.list_hosts({}, {}).items.size(), static_cast<std::size_t>(kThreads / 2 + 1));
}

}  // namespace
}  // namespace vim::controller::store
