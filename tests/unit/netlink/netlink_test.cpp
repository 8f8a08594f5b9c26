#include "vmm/netlink/netlink.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::StrEq;
using ::testing::ThrowsMessage;
using ::testing::UnorderedElementsAre;
using vim::vmm::netlink::Link;
using vim::vmm::netlink::Netlink;

// Moves the test process, once, into a network namespace of its own, so that the links the tests make
// and break never touch the host's. Returns the errno of unshare(), 0 on success.
int enter_private_network_namespace() {
    static const int error = ::unshare(CLONE_NEWNET) == 0 ? 0 : errno;
    return error;
}

class NetlinkTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) {
            GTEST_SKIP() << "needs root: the tests create a network namespace and links in it";
        }
        int error = enter_private_network_namespace();
        ASSERT_EQ(error, 0) << "unshare(CLONE_NEWNET): " << std::strerror(error);
        netlink.emplace();
    }

    // Everything but loopback in the namespace was made by a test: remove it so the next test, run in
    // the same process, starts from an empty namespace.
    void TearDown() override {
        if (!netlink) {
            return;
        }
        for (const Link& link : netlink->links()) {
            if (link.name != "lo" && netlink->find(link.name)) {  // deleting a veth takes its peer along
                netlink->delete_link(link.name);
            }
        }
    }

    Link must_find(const std::string& name) {
        std::optional<Link> link = netlink->find(name);
        if (!link) {
            ADD_FAILURE() << "link " << name << " not found";
            return {};
        }
        return *link;
    }

    // Carrier changes reach the operational state through the kernel's link watch, up to a second late.
    std::string wait_for_operational_state(const std::string& name, const std::string& state) {
        std::string seen;
        for (int attempt = 0; attempt < 50; ++attempt) {
            seen = must_find(name).operational_state;
            if (seen == state) {
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        return seen;
    }

    std::optional<Netlink> netlink;
};

TEST_F(NetlinkTest, ListsLoopbackWithoutKindOrMac) {
    std::optional<Link> loopback = netlink->find("lo");
    ASSERT_TRUE(loopback);
    EXPECT_EQ(loopback->kind, "");
    EXPECT_EQ(loopback->mac, "");
    EXPECT_EQ(loopback->master, "");
    EXPECT_GT(loopback->index, 0);
    EXPECT_FALSE(loopback->up);  // a fresh namespace's loopback is down
    EXPECT_EQ(netlink->find("nosuch0"), std::nullopt);
}

TEST_F(NetlinkTest, CreatesABridgeAndChangesItsMtuMacAndState) {
    netlink->create_bridge("br-test");
    Link bridge = must_find("br-test");
    EXPECT_EQ(bridge.kind, "bridge");
    EXPECT_EQ(bridge.mtu, 1500u);
    EXPECT_EQ(bridge.mac.size(), 17u);
    EXPECT_FALSE(bridge.up);
    EXPECT_EQ(bridge.operational_state, "down");

    netlink->set_mtu("br-test", 9000);
    netlink->set_mac("br-test", "52:54:00:AB:cd:01");
    netlink->set_up("br-test", true);
    bridge = must_find("br-test");
    EXPECT_EQ(bridge.mtu, 9000u);
    EXPECT_EQ(bridge.mac, "52:54:00:ab:cd:01");
    EXPECT_TRUE(bridge.up);

    netlink->set_up("br-test", false);
    EXPECT_FALSE(must_find("br-test").up);

    netlink->delete_link("br-test");
    EXPECT_EQ(netlink->find("br-test"), std::nullopt);
}

TEST_F(NetlinkTest, CreatesAVethPairWhoseEndsComeUpTogether) {
    netlink->create_veth("veth0", "veth1");
    Link end = must_find("veth0");
    Link peer = must_find("veth1");
    EXPECT_EQ(end.kind, "veth");
    EXPECT_EQ(peer.kind, "veth");
    EXPECT_EQ(end.parent, "");
    EXPECT_NE(end.mac, peer.mac);

    netlink->set_up("veth0", true);
    netlink->set_up("veth1", true);
    EXPECT_EQ(wait_for_operational_state("veth0", "up"), "up");
    EXPECT_EQ(wait_for_operational_state("veth1", "up"), "up");

    netlink->delete_link("veth0");
    EXPECT_EQ(netlink->find("veth0"), std::nullopt);
    EXPECT_EQ(netlink->find("veth1"), std::nullopt);  // a veth's ends go together
}

TEST_F(NetlinkTest, CreatesAVlanOnAVeth) {
    netlink->create_veth("veth0", "veth1");
    try {
        netlink->create_vlan("veth0.5", "veth0", 5);
    } catch (const std::system_error& error) {
        if (error.code() == std::errc::operation_not_supported) {
            GTEST_SKIP() << "the kernel has no 802.1Q VLANs (CONFIG_VLAN_8021Q): " << error.what();
        }
        throw;
    }
    Link vlan = must_find("veth0.5");
    EXPECT_EQ(vlan.kind, "vlan");
    EXPECT_EQ(vlan.vlan_id, 5);
    EXPECT_EQ(vlan.parent, "veth0");
    EXPECT_EQ(vlan.mtu, 1500u);
    EXPECT_EQ(vlan.mac, must_find("veth0").mac);

    netlink->set_mtu("veth0.5", 1400);
    EXPECT_EQ(must_find("veth0.5").mtu, 1400u);

    netlink->delete_link("veth0.5");
    EXPECT_EQ(netlink->find("veth0.5"), std::nullopt);
    EXPECT_TRUE(netlink->find("veth0"));
}

TEST_F(NetlinkTest, CreatesAPersistentTap) {
    netlink->create_tap("tap0");
    Link tap = must_find("tap0");  // still there once create_tap has closed /dev/net/tun
    EXPECT_EQ(tap.kind, "tun");
    EXPECT_EQ(tap.mac.size(), 17u);
    EXPECT_EQ(tap.mtu, 1500u);

    netlink->set_up("tap0", true);
    EXPECT_TRUE(must_find("tap0").up);

    netlink->delete_link("tap0");
    EXPECT_EQ(netlink->find("tap0"), std::nullopt);
}

// Whether a process running as `uid`, without capabilities, may attach to the tap `name`.
bool can_attach_to_tap_as(const std::string& name, uid_t uid) {
    pid_t child = ::fork();
    if (child == 0) {
        if (::setgid(65534) != 0 || ::setuid(uid) != 0) {
            ::_exit(2);
        }
        int tun = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        ifreq request{};
        std::memcpy(request.ifr_name, name.data(), name.size());
        request.ifr_flags = IFF_TAP | IFF_NO_PI;
        ::_exit(tun >= 0 && ::ioctl(tun, TUNSETIFF, &request) == 0 ? 0 : 1);
    }
    int status = 0;
    EXPECT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status));
    EXPECT_NE(WEXITSTATUS(status), 2) << "setuid failed";
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// (A tap without an owner opens for anyone who can open /dev/net/tun: the kernel's rule, not tested here.)
TEST_F(NetlinkTest, ATapWithAnOwnerOpensForThatUserOnly) {
    netlink->create_tap("tap-owned", 1000);
    EXPECT_TRUE(can_attach_to_tap_as("tap-owned", 1000));
    EXPECT_FALSE(can_attach_to_tap_as("tap-owned", 1001));
}

TEST_F(NetlinkTest, AttachesPortsToABridgeAndDetachesThem) {
    netlink->create_bridge("br0");
    netlink->create_veth("veth0", "veth1");
    netlink->create_tap("tap0");

    netlink->set_master("veth0", "br0");
    netlink->set_master("tap0", "br0");
    EXPECT_EQ(must_find("veth0").master, "br0");
    EXPECT_EQ(must_find("tap0").master, "br0");
    EXPECT_EQ(must_find("veth1").master, "");

    netlink->clear_master("veth0");
    EXPECT_EQ(must_find("veth0").master, "");
    EXPECT_EQ(must_find("tap0").master, "br0");

    netlink->delete_link("br0");  // its remaining ports are released, not deleted
    EXPECT_EQ(must_find("tap0").master, "");
}

TEST_F(NetlinkTest, AddsListsAndRemovesAddresses) {
    netlink->create_veth("veth0", "veth1");  // left down: no IPv6 link-local address joins in
    EXPECT_THAT(netlink->addresses("veth0"), IsEmpty());

    netlink->add_address("veth0", "10.0.0.1/24");
    netlink->add_address("veth0", "192.168.7.9/32");
    netlink->add_address("veth0", "fd00::1/64");
    EXPECT_THAT(netlink->addresses("veth0"),
                UnorderedElementsAre("10.0.0.1/24", "192.168.7.9/32", "fd00::1/64"));
    EXPECT_THAT(netlink->addresses("veth1"), IsEmpty());

    netlink->remove_address("veth0", "10.0.0.1/24");
    netlink->remove_address("veth0", "fd00::1/64");
    EXPECT_THAT(netlink->addresses("veth0"), ElementsAre("192.168.7.9/32"));
}

TEST_F(NetlinkTest, ReportsWhatTheKernelRefuses) {
    netlink->create_bridge("br-test");
    netlink->create_veth("veth0", "veth1");
    netlink->create_tap("tap0");
    netlink->add_address("veth0", "10.0.0.1/24");

    EXPECT_THAT([&] { netlink->create_bridge("br-test"); },
                ThrowsMessage<std::system_error>(StrEq("bridge br-test: create: File exists")));
    EXPECT_THAT([&] { netlink->create_veth("veth1", "veth2"); },
                ThrowsMessage<std::system_error>(StrEq("veth veth1: create: File exists")));
    EXPECT_THAT([&] { netlink->create_tap("tap0"); },
                ThrowsMessage<std::system_error>(StrEq("tap tap0: create: File exists")));
    EXPECT_THAT([&] { netlink->create_tap("br-test"); },
                ThrowsMessage<std::system_error>(StrEq("tap br-test: create: File exists")));
    EXPECT_THAT([&] { netlink->set_mtu("nosuch0", 1500); },
                ThrowsMessage<std::system_error>(StrEq("link nosuch0: set mtu: No such device")));
    EXPECT_THAT([&] { netlink->set_mtu("tap0", 65535); },  // a tap's largest is 65521
                ThrowsMessage<std::system_error>(StrEq("link tap0: set mtu: Invalid argument")));
    EXPECT_THAT(
        [&] { netlink->set_mac("nosuch0", "52:54:00:12:34:56"); },
        ThrowsMessage<std::system_error>(StrEq("link nosuch0: set mac 52:54:00:12:34:56: No such device")));
    EXPECT_THAT([&] { netlink->set_up("nosuch0", true); },
                ThrowsMessage<std::system_error>(StrEq("link nosuch0: set up: No such device")));
    EXPECT_THAT([&] { netlink->delete_link("nosuch0"); },
                ThrowsMessage<std::system_error>(StrEq("link nosuch0: delete: No such device")));
    EXPECT_THAT([&] { netlink->delete_link("lo"); },
                ThrowsMessage<std::system_error>(StrEq("link lo: delete: Operation not supported")));
    EXPECT_THAT([&] { netlink->create_vlan("v0.5", "nosuch0", 5); },
                ThrowsMessage<std::system_error>(StrEq("vlan v0.5: create: parent nosuch0: No such device")));
    EXPECT_THAT([&] { netlink->set_master("veth0", "nosuch-br"); },
                ThrowsMessage<std::system_error>(StrEq("bridge nosuch-br: attach veth0: No such device")));
    EXPECT_THAT([&] { netlink->set_master("nosuch0", "br-test"); },
                ThrowsMessage<std::system_error>(StrEq("link nosuch0: set master br-test: No such device")));
    EXPECT_THAT(
        [&] { netlink->set_master("veth0", "veth1"); },  // a veth cannot take ports
        ThrowsMessage<std::system_error>(StrEq("link veth0: set master veth1: Operation not supported")));
    EXPECT_THAT([&] { netlink->clear_master("nosuch0"); },
                ThrowsMessage<std::system_error>(StrEq("link nosuch0: clear master: No such device")));
    EXPECT_THAT([&] { netlink->add_address("veth0", "10.0.0.1/24"); },
                ThrowsMessage<std::system_error>(StrEq("link veth0: add address 10.0.0.1/24: File exists")));
    EXPECT_THAT(
        [&] { netlink->add_address("nosuch0", "10.0.0.1/24"); },
        ThrowsMessage<std::system_error>(StrEq("link nosuch0: add address 10.0.0.1/24: No such device")));
    EXPECT_THAT([&] { netlink->remove_address("veth0", "10.0.0.2/24"); },
                ThrowsMessage<std::system_error>(
                    StrEq("link veth0: remove address 10.0.0.2/24: Cannot assign requested address")));
    EXPECT_THAT([&] { netlink->addresses("nosuch0"); },
                ThrowsMessage<std::system_error>(StrEq("link nosuch0: list addresses: No such device")));
}

TEST_F(NetlinkTest, KernelErrorsCarryTheErrno) {
    netlink->create_bridge("br-test");
    try {
        netlink->create_bridge("br-test");
        FAIL() << "created br-test twice";
    } catch (const std::system_error& error) {
        EXPECT_EQ(error.code(), std::errc::file_exists);
    }
}

TEST_F(NetlinkTest, RejectsBadNamesBeforeAskingTheKernel) {
    EXPECT_THAT([&] { netlink->create_bridge("sixteen-bytes-xx"); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("bridge sixteen-bytes-xx: create: a link name is at most 15 bytes")));
    EXPECT_THAT(
        [&] { netlink->create_bridge(""); },
        ThrowsMessage<std::invalid_argument>(StrEq("bridge \"\": create: a link name cannot be empty")));
    EXPECT_THAT(
        [&] { netlink->create_bridge("br/0"); },
        ThrowsMessage<std::invalid_argument>(StrEq("bridge br/0: create: a link name cannot contain '/'")));
    EXPECT_THAT(
        [&] { netlink->create_bridge("br:0"); },
        ThrowsMessage<std::invalid_argument>(StrEq("bridge br:0: create: a link name cannot contain ':'")));
    EXPECT_THAT([&] { netlink->create_bridge(".."); },
                ThrowsMessage<std::invalid_argument>(StrEq("bridge ..: create: a link name cannot be '..'")));
    EXPECT_THAT([&] { netlink->create_tap("tap 0"); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("tap tap 0: create: a link name cannot contain whitespace")));
    EXPECT_THAT([&] { netlink->create_veth("veth0", "veth\n1"); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("veth veth0: create: peer veth\n1: a link name cannot contain whitespace")));
    EXPECT_THAT([&] { netlink->create_veth("veth0", "veth0"); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("veth veth0: create: the peer cannot have the same name")));
    EXPECT_THAT([&] { netlink->create_vlan("v0.5", "a/b", 5); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("vlan v0.5: create: parent a/b: a link name cannot contain '/'")));
    EXPECT_THAT(
        [&] { netlink->set_mtu("a/b", 1500); },
        ThrowsMessage<std::invalid_argument>(StrEq("link a/b: set mtu: a link name cannot contain '/'")));
    EXPECT_THAT([&] { netlink->set_master("veth0", "b r"); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("bridge b r: attach veth0: a link name cannot contain whitespace")));
    EXPECT_THAT([&] { netlink->delete_link("sixteen-bytes-xx"); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("link sixteen-bytes-xx: delete: a link name is at most 15 bytes")));
    EXPECT_THAT([&] { netlink->addresses("a/b"); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("link a/b: list addresses: a link name cannot contain '/'")));
    EXPECT_EQ(netlink->find("sixteen-bytes-xx"), std::nullopt);
    EXPECT_THAT(netlink->links(), ::testing::SizeIs(1));  // only loopback: nothing was created
}

TEST_F(NetlinkTest, RejectsBadVlanIdsMtusAndMacs) {
    netlink->create_veth("veth0", "veth1");
    EXPECT_THAT([&] { netlink->create_vlan("v0.5", "veth0", 5000); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("vlan v0.5: create: vlan id 5000 is out of range 1-4094")));
    EXPECT_THAT(
        [&] { netlink->create_vlan("v0.0", "veth0", 0); },
        ThrowsMessage<std::invalid_argument>(StrEq("vlan v0.0: create: vlan id 0 is out of range 1-4094")));
    EXPECT_THAT(
        [&] { netlink->create_vlan("v0.x", "veth0", -1); },
        ThrowsMessage<std::invalid_argument>(StrEq("vlan v0.x: create: vlan id -1 is out of range 1-4094")));
    EXPECT_THAT(
        [&] { netlink->set_mtu("veth0", 67); },
        ThrowsMessage<std::invalid_argument>(StrEq("link veth0: set mtu: 67 is out of range 68-65535")));
    EXPECT_THAT(
        [&] { netlink->set_mtu("veth0", 65536); },
        ThrowsMessage<std::invalid_argument>(StrEq("link veth0: set mtu: 65536 is out of range 68-65535")));
    for (const char* malformed :
         {"", "52:54:00:12:34", "52:54:00:12:34:56:78", "52-54-00-12-34-56", "52:54:00:12:34:5g",
          "5:254:00:12:34:56", "52:54:00:12:34:+5", "52:54:00:12:34:56 "}) {
        EXPECT_THAT([&] { netlink->set_mac("veth0", malformed); },
                    ThrowsMessage<std::invalid_argument>(
                        StrEq("link veth0: set mac " + std::string(*malformed ? malformed : "\"\"") +
                              ": not a MAC address like 52:54:00:12:34:56")));
    }
    EXPECT_THAT(
        [&] { netlink->set_mac("veth0", "01:00:5e:00:00:01"); },
        ThrowsMessage<std::invalid_argument>(
            StrEq("link veth0: set mac 01:00:5e:00:00:01: a multicast address cannot be a link's address")));
    EXPECT_THAT(
        [&] { netlink->set_mac("veth0", "00:00:00:00:00:00"); },
        ThrowsMessage<std::invalid_argument>(
            StrEq("link veth0: set mac 00:00:00:00:00:00: an all-zero address cannot be a link's address")));
    EXPECT_EQ(must_find("veth0").mtu, 1500u);
}

TEST_F(NetlinkTest, RejectsMalformedCidrs) {
    netlink->create_veth("veth0", "veth1");
    for (const char* malformed : {"10.0.0.300/24", "10.0.0.1", "10.0.0.1/", "10.0.0.1/24x", "10.0.0.1/-1",
                                  "/24", "fe80::1%veth0/64", "fd00::g/64", "10.0.0.1 /24", "veth0/24"}) {
        EXPECT_THAT([&] { netlink->add_address("veth0", malformed); },
                    ThrowsMessage<std::invalid_argument>(
                        StrEq("address " + std::string(malformed) + ": not an IPv4 or IPv6 CIDR")));
    }
    EXPECT_THAT([&] { netlink->add_address("veth0", ""); },
                ThrowsMessage<std::invalid_argument>(StrEq("address \"\": not an IPv4 or IPv6 CIDR")));
    EXPECT_THAT([&] { netlink->add_address("veth0", "10.0.0.1/33"); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("address 10.0.0.1/33: prefix length 33 is out of range 0-32")));
    EXPECT_THAT([&] { netlink->remove_address("veth0", "fd00::1/129"); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("address fd00::1/129: prefix length 129 is out of range 0-128")));
    EXPECT_THAT(netlink->addresses("veth0"), IsEmpty());
}

}  // namespace
