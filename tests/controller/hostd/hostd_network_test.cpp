// hostd's networks, in a network namespace of the test's own: bridges per VLAN on the uplink's VLAN
// sub-interfaces, a tap per NIC, handed to the vmm. Needs root (label netns).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <system_error>
#include <thread>

#include "controller/common/sha256.h"
#include "hostd_harness.h"
#include "vim/testing/temp_dir.h"
#include "vmm/netlink/netlink.h"

namespace vim::testing {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;
using vmm::netlink::Link;
using vmm::netlink::Netlink;

template <typename Predicate>
bool eventually(Predicate predicate) {
    for (int attempt = 0; attempt < 500 && !predicate(); ++attempt) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return predicate();
}

std::string command_line(pid_t pid) {
    std::ifstream file("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    std::replace(text.begin(), text.end(), '\0', ' ');
    return text;
}

class HostdNetworkTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) {
            GTEST_SKIP() << "needs root: the test makes a network namespace and links in it";
        }
        // hostd, started after this, inherits the namespace.
        static const int error = ::unshare(CLONE_NEWNET) == 0 ? 0 : errno;
        ASSERT_EQ(error, 0) << "unshare(CLONE_NEWNET): " << std::strerror(error);
        netlink.emplace();
        netlink->set_up("lo", true);
        // Made here, not as a member: its socket must be in the test's namespace, where hostd is.
        controller.emplace();
        if (!netlink->find("uplink0")) {
            netlink->create_veth("uplink0", "uplink0p");
        }
        netlink->set_up("uplink0", true);
        std::ofstream(kvm) << "";
    }

    void TearDown() override {
        for (const pid_t pid : processes_holding(kvm)) {
            ::kill(pid, SIGKILL);
        }
        if (!netlink) {
            return;
        }
        for (const Link& link : netlink->links()) {
            if (link.name != "lo" && netlink->find(link.name)) {
                netlink->delete_link(link.name);
            }
        }
    }

    std::vector<Link> ports_of(const std::string& bridge) {
        std::vector<Link> ports;
        for (const Link& link : netlink->links()) {
            if (link.master == bridge) {
                ports.push_back(link);
            }
        }
        return ports;
    }

    std::optional<Netlink> netlink;
    TempDir scratch;
    std::filesystem::path kvm = scratch.path("kvm");
    std::optional<ControllerDouble> controller;
};

json two_nic_spec(ControllerDouble& controller) {
    const std::string image = "image";
    return {
        {"id", "vm-1"},
        {"name", "web-1"},
        {"vcpus", 1},
        {"memory_mib", 128},
        {"image",
         {{"sha256", vim::controller::sha256_hex(image)},
          {"size", image.size()},
          {"url", controller.serve_image("base", image)}}},
        {"nics",
         {{{"network", "front"}, {"vlan", 100}, {"mac", "52:54:00:00:00:01"}, {"address", "10.0.0.2/24"}},
          {{"network", "back"}, {"vlan", 200}, {"mac", "52:54:00:00:00:02"}, {"address", "10.1.0.2/24"}}}}};
}

TEST_F(HostdNetworkTest, EachNicGetsATapOnItsNetworksBridgeHandedToTheVmm) {
    HostdProcess hostd(*controller, kvm, {});
    const Reply created = hostd.post("/agent/v1/vms", two_nic_spec(*controller));
    ASSERT_EQ(created.status, 200) << created.body;
    const std::string command = command_line(created.body["pid"]);
    for (const auto& [vlan, mac] :
         {std::pair{100, "52:54:00:00:00:01"}, std::pair{200, "52:54:00:00:00:02"}}) {
        const std::string bridge = "vb" + std::to_string(vlan);
        const auto found = netlink->find(bridge);
        ASSERT_TRUE(found) << bridge;
        EXPECT_EQ(found->kind, "bridge");
        EXPECT_TRUE(found->up);
        const auto ports = ports_of(bridge);
        ASSERT_EQ(ports.size(), 1u) << bridge << ": no uplink, so the tap only";
        EXPECT_EQ(ports[0].kind, "tun");
        EXPECT_TRUE(ports[0].up);
        EXPECT_THAT(command, HasSubstr("--net tap=" + ports[0].name + ",mac=" + mac));
    }
    EXPECT_THAT(command, HasSubstr("--cmdline console=ttyS0 guest.ip=10.0.0.2/24 --cpus 1 --memory 128M"));

    ASSERT_EQ(hostd.request("DELETE", "/agent/v1/vms/vm-1").status, 200);
    EXPECT_TRUE(ports_of("vb100").empty()) << "the tap goes with its VM";
    EXPECT_TRUE(ports_of("vb200").empty());
}

TEST_F(HostdNetworkTest, WithAnUplinkEachBridgeJoinsItsVlanSubInterface) {
    try {
        netlink->create_vlan("uplink0.4000", "uplink0", 4000);
        netlink->delete_link("uplink0.4000");
    } catch (const std::system_error& error) {
        GTEST_SKIP() << "the kernel has no 802.1Q VLANs (CONFIG_VLAN_8021Q): " << error.what();
    }
    HostdProcess hostd(*controller, kvm, {.extra_arguments = {"--uplink", "uplink0"}});
    const Reply created = hostd.post("/agent/v1/vms", two_nic_spec(*controller));
    ASSERT_EQ(created.status, 200) << created.body;
    for (const int vlan : {100, 200}) {
        const std::string bridge = "vb" + std::to_string(vlan);
        EXPECT_EQ(ports_of(bridge).size(), 2u) << bridge << ": the uplink's VLAN and one tap";
        const auto vlan_link = netlink->find("uplink0." + std::to_string(vlan));
        ASSERT_TRUE(vlan_link);
        EXPECT_EQ(vlan_link->vlan_id, vlan);
        EXPECT_EQ(vlan_link->parent, "uplink0");
        EXPECT_EQ(vlan_link->master, bridge);
        EXPECT_TRUE(vlan_link->up);
    }
}

TEST_F(HostdNetworkTest, OnlyKvmProcessesOfItsOwnNetworkNamespaceAreItsUnmanagedOnes) {
    // Hosts played by network namespaces of one kernel see each other's processes in /proc.
    const auto start_by_hand = [&](bool other_namespace) {
        const pid_t pid = ::fork();
        if (pid == 0) {
            if (other_namespace && ::unshare(CLONE_NEWNET) != 0) {
                ::_exit(126);
            }
            ::setenv("FAKE_VMM_KVM_DEVICE", kvm.c_str(), 1);
            const std::string binary = fake_vmm_binary().string();
            ::execl(binary.c_str(), binary.c_str(), "--kernel", "/vmlinuz", static_cast<char*>(nullptr));
            ::_exit(127);
        }
        return pid;
    };
    HostdProcess hostd(*controller, kvm, {});
    const pid_t here = start_by_hand(false);
    const pid_t elsewhere = start_by_hand(true);
    ASSERT_TRUE(eventually([&] { return processes_holding(kvm).size() == 2; }));
    const json heartbeat =
        controller->wait_for_heartbeat([&](const json& beat) { return !beat["unmanaged"].empty(); });
    ASSERT_EQ(heartbeat["unmanaged"].size(), 1u) << heartbeat;
    EXPECT_EQ(heartbeat["unmanaged"][0]["pid"], here);
    EXPECT_EQ(hostd.post("/agent/v1/unmanaged/" + std::to_string(elsewhere) + "/stop").status, 404);
}

TEST_F(HostdNetworkTest, ARetriedCreateKeepsTheTaps) {
    const std::string image = "image";
    const json spec = {
        {"id", "vm-2"},
        {"name", "db-1"},
        {"vcpus", 1},
        {"memory_mib", 128},
        {"image",
         {{"sha256", vim::controller::sha256_hex(image)},
          {"size", image.size()},
          {"url", controller->serve_image("base", image)}}},
        {"nics",
         {{{"network", "front"}, {"vlan", 100}, {"mac", "52:54:00:00:00:03"}, {"address", "10.0.0.3/24"}}}}};
    HostdProcess hostd(*controller, kvm, {});
    ASSERT_EQ(hostd.post("/agent/v1/vms", spec).status, 200);
    ASSERT_EQ(hostd.post("/agent/v1/vms/vm-2/stop").status, 200);
    ASSERT_EQ(hostd.post("/agent/v1/vms", spec).status, 200) << "a create of a stopped VM starts it";
    EXPECT_EQ(ports_of("vb100").size(), 1u) << "no uplink: the bridge holds the tap only";
}

}  // namespace
}  // namespace vim::testing
