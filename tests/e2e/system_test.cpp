// The whole system as a user drives it with vimctl: a controller, three hosts
// (network namespaces with their own hostd), real guests booting Debian's
// kernel in our vmm, isolated networks, live migration, a host evacuated for
// patching, agents and the controller killed and restarted, a host lost.
// The steps share one cluster and run in order: each starts from what the
// one before left, as an operator's day would.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "cluster.h"

namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using vim::testing::Cluster;
using vim::testing::eventually;
using vim::testing::read_file;

constexpr auto kBootTimeout = 180s;

struct DirtierLine {
    long count = -1;
    long mismatches = 0;
};

// The last "dirtier count N ... mismatches M" line of a console.
DirtierLine last_count(const std::string& console) {
    static const std::regex line(R"(dirtier count (\d+) realtime_ms \d+ mismatches (\d+))");
    DirtierLine last;
    for (auto it = std::sregex_iterator(console.begin(), console.end(), line); it != std::sregex_iterator();
         ++it) {
        last = {std::stol((*it)[1]), std::stol((*it)[2])};
    }
    return last;
}

// The last "VIM-NEIGHBOURS ..." set of a console.
std::set<std::string> neighbours(const std::string& console) {
    const auto at = console.rfind("VIM-NEIGHBOURS ");
    std::set<std::string> found;
    if (at == std::string::npos) {
        return found;
    }
    std::istringstream words(console.substr(at + 15, console.find('\n', at) - at - 15));
    for (std::string word; words >> word;) {
        if (word != "none") {
            found.insert(word);
        }
    }
    return found;
}

class System : public ::testing::Test {
protected:
    static void SetUpTestSuite() { cluster = new Cluster(3); }
    static void TearDownTestSuite() {
        delete cluster;
        cluster = nullptr;
    }

    static json vm(const std::string& name) { return cluster->vimctl_json({"vm", "show", name}); }
    static std::string host_of(const std::string& name) { return vm(name).value("host", ""); }
    static int host_index(const std::string& host_name) { return std::stoi(host_name.substr(1)) - 1; }

    // The guest counts on past `after` with its memory intact.
    static void expect_counting_past(const std::string& name, long after) {
        const std::string id = vm(name)["id"];
        DirtierLine line;
        const bool counted = eventually(
            [&] {
                line = last_count(cluster->console(id));
                return line.count > after + 20;
            },
            kBootTimeout);
        EXPECT_TRUE(counted) << name << " stopped counting at " << line.count << "\n" << cluster->console(id);
        EXPECT_EQ(line.mismatches, 0) << cluster->console(id);
    }

    static inline Cluster* cluster = nullptr;
};

TEST_F(System, ProvisionsVmsOnTheHostsTheirGroupAllows) {
    const auto image = cluster->root() / "base.raw";
    {
        std::ofstream out(image, std::ios::binary);
        std::string block(1 << 20, '\0');
        block.replace(0, 16, "vim-e2e-image-01");
        for (int mib = 0; mib < 8; ++mib) {
            out << block;
        }
    }
    cluster->vimctl_json({"image", "upload", image.string(), "--name", "base"});
    cluster->vimctl_json({"network", "create", "blue", "--vlan", "100", "--cidr", "10.100.0.0/24"});
    // Red's addresses lie inside blue's range: only the VLAN keeps them apart.
    cluster->vimctl_json({"network", "create", "red", "--vlan", "200", "--cidr", "10.100.0.8/29"});
    cluster->vimctl_json({"group", "create", "pair", "--policy", "anti-affinity"});
    for (const auto& [name, network, group] : std::vector<std::tuple<std::string, std::string, bool>>{
             {"vm-a", "blue", true}, {"vm-b", "blue", true}, {"vm-c", "red", false}}) {
        std::vector<std::string> create{"vm",  "create",  name,   "--vcpus", "1",     "--memory-mib",
                                        "128", "--image", "base", "--nic",   network, "--wait"};
        if (group) {
            create.insert(create.end(), {"--group", "pair"});
        }
        const auto result = cluster->vimctl(create);
        ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
    }
    EXPECT_NE(host_of("vm-a"), host_of("vm-b")) << "anti-affinity";
    for (const char* name : {"vm-a", "vm-b", "vm-c"}) {
        EXPECT_EQ(vm(name).value("state", ""), "running") << vm(name).dump();
        expect_counting_past(name, 0);
    }
}

TEST_F(System, GuestsReachTheirNetworkAndNotTheOther) {
    const std::string a = vm("vm-a")["id"], b = vm("vm-b")["id"];
    const std::string b_ip = vm("vm-b")["nics"][0]["ip"], a_ip = vm("vm-a")["nics"][0]["ip"];
    const std::string c_ip = vm("vm-c")["nics"][0]["ip"];
    EXPECT_TRUE(eventually([&] { return neighbours(cluster->console(a)).count(b_ip) == 1; }, 120s))
        << cluster->console(a);
    EXPECT_TRUE(eventually([&] { return neighbours(cluster->console(b)).count(a_ip) == 1; }, 60s))
        << cluster->console(b);
    // vm-c's address is inside blue's subnet, yet on another VLAN.
    EXPECT_EQ(neighbours(cluster->console(a)).count(c_ip), 0u) << cluster->console(a);
    EXPECT_EQ(cluster->console(a).find(" " + c_ip), std::string::npos) << cluster->console(a);
}

TEST_F(System, LiveMigratesACountingGuestToAnotherHost) {
    const std::string from = host_of("vm-c");
    const std::string to = from == "h1" ? "h2" : "h1";
    const long before = last_count(cluster->console(vm("vm-c")["id"])).count;
    const auto result = cluster->vimctl({"vm", "migrate", "vm-c", "--host", to, "--wait"});
    ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
    EXPECT_EQ(host_of("vm-c"), to);
    EXPECT_EQ(vm("vm-c").value("state", ""), "running");
    expect_counting_past("vm-c", before);
}

TEST_F(System, MaintenanceEvacuatesAHostWithoutStoppingItsGuests) {
    const std::string host = host_of("vm-a");
    const std::string peer_host = host_of("vm-b");
    const long before = last_count(cluster->console(vm("vm-a")["id"])).count;
    const auto result = cluster->vimctl({"host", "maintenance", host, "on", "--wait"});
    ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
    const auto left = cluster->vimctl_json({"vm", "list", "--host", host});
    EXPECT_TRUE(left["items"].empty()) << left.dump();
    EXPECT_NE(host_of("vm-a"), host);
    EXPECT_NE(host_of("vm-a"), peer_host) << "the group's anti-affinity holds during an evacuation";
    expect_counting_past("vm-a", before);
    ASSERT_EQ(cluster->vimctl({"host", "maintenance", host, "off"}).exit_code, 0);
}

TEST_F(System, ARestartedAgentAdoptsItsRunningGuests) {
    const std::string host = host_of("vm-b");
    const long before = last_count(cluster->console(vm("vm-b")["id"])).count;
    cluster->kill_and_restart_hostd(host_index(host));
    expect_counting_past("vm-b", before);
    // Its heartbeats list the guest again: still running, not missing.
    std::this_thread::sleep_for(3s);
    EXPECT_EQ(vm("vm-b").value("state", ""), "running");
    EXPECT_EQ(host_of("vm-b"), host);
}

TEST_F(System, AVmmStartedByHandShowsUpAsUnmanagedAndCanBeStopped) {
    const int host = 0;
    const auto socket = cluster->root() / "by-hand.sock";
    vim::testing::Process by_hand({"ip", "netns", "exec", cluster->host_namespace(host), VIM_TEST_VMM_BINARY,
                                   "--kernel", VIM_TEST_GUEST_KERNEL, "--initrd", VIM_GUEST_INITRAMFS,
                                   "--cmdline", "console=ttyS0 quiet guest.mode=idle", "--memory", "128M",
                                   "--serial", "none", "--api-socket", socket.string()},
                                  cluster->root() / "by-hand.log");
    const std::string name = "unmanaged-" + Cluster::host_name(host) + "-" + std::to_string(by_hand.pid());
    json shown;
    EXPECT_TRUE(eventually(
        [&] {
            const auto result = cluster->vimctl({"--json", "vm", "show", name});
            shown = result.exit_code == 0 ? json::parse(result.out) : json();
            return shown.is_object();
        },
        30s))
        << cluster->vimctl({"vm", "list"}).out << read_file(cluster->root() / "by-hand.log.err")
        << read_file(cluster->host_state_dir(host) / "hostd.log.err");
    ASSERT_TRUE(shown.is_object());
    EXPECT_EQ(shown.value("state", ""), "unmanaged") << shown.dump();
    EXPECT_EQ(shown.value("host", ""), Cluster::host_name(host)) << shown.dump();
    const auto stopped = cluster->vimctl({"vm", "delete", name, "--wait"});
    EXPECT_EQ(stopped.exit_code, 0) << stopped.out << stopped.err;
    EXPECT_TRUE(by_hand.wait_exit(30s)) << "the operator's stop ended the process";
}

TEST_F(System, ALostHostsGuestsRestartElsewhereWithinTheirGroupsRules) {
    const std::string lost = host_of("vm-b");
    const std::string peer = host_of("vm-a");
    cluster->crash_host(host_index(lost));
    std::string moved_to;
    EXPECT_TRUE(eventually(
        [&] {
            const auto shown = vm("vm-b");
            moved_to = shown.value("host", "");
            return moved_to != lost && shown.value("state", "") == "running";
        },
        120s))
        << vm("vm-b").dump() << cluster->vimctl({"operation", "list"}).out;
    EXPECT_NE(moved_to, peer) << "the group's anti-affinity holds";
    expect_counting_past("vm-b", 0);  // booted again from its disk on shared storage
    // The host comes back (a reboot): it learns that vm-b runs elsewhere now.
    cluster->start_host(host_index(lost));
    EXPECT_TRUE(eventually(
        [&] {
            const auto hosts = cluster->vimctl_json({"host", "list"});
            for (const auto& host : hosts["items"]) {
                if (host.value("name", "") == lost) {
                    return host.value("state", "") == "ready";
                }
            }
            return false;
        },
        60s))
        << cluster->vimctl({"host", "list"}).out;
    EXPECT_EQ(host_of("vm-b"), moved_to);
    EXPECT_EQ(vm("vm-b").value("state", ""), "running");
}

TEST_F(System, ARestartedControllerKeepsWhatItKnew) {
    const auto before = cluster->vimctl_json({"vm", "list"});
    cluster->kill_and_restart_vimd();
    const auto after = cluster->vimctl_json({"vm", "list"});
    ASSERT_EQ(after["items"].size(), before["items"].size()) << after.dump();
    for (std::size_t i = 0; i < before["items"].size(); ++i) {
        EXPECT_EQ(after["items"][i].value("name", ""), before["items"][i].value("name", ""));
        EXPECT_EQ(after["items"][i].value("host", ""), before["items"][i].value("host", ""));
    }
    // The agents heartbeat to it again, and it acts: a live migration after the restart.
    const std::string from = host_of("vm-c");
    const long count = last_count(cluster->console(vm("vm-c")["id"])).count;
    const auto result = cluster->vimctl({"vm", "migrate", "vm-c", "--wait"});
    ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
    EXPECT_NE(host_of("vm-c"), from);
    expect_counting_past("vm-c", count);
}

}  // namespace
