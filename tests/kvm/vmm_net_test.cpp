// Networks as a guest and its host see them: Debian's kernel with its own
// virtio_net driver on our virtio-net, behind a tap on a bridge, all inside a
// network namespace the test makes (nothing reaches any other network).

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <system_error>
#include <vector>

#include "vmm/netlink/netlink.h"
#include "vmm/sys/fd.h"
#include "vmm/virtio/net/mac_address.h"
#include "vmm_fixture.h"
#include "vmm_process.h"

namespace {

using namespace vim::testing;
using nlohmann::json;

constexpr std::uint64_t k64MiB = 64ull << 20;
constexpr int kNetblastPort = 5201;

// The calling thread (and every process it starts, the vmm and its taps
// included) moves into a network namespace of its own, with its loopback up;
// the destructor moves the thread back, and the namespace goes with the
// last process in it.
class PrivateNetwork {
public:
    PrivateNetwork() : original_(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {
        if (!original_.valid() || ::unshare(CLONE_NEWNET) != 0) {
            throw std::system_error(errno, std::generic_category(), "network namespace");
        }
        vim::vmm::netlink::Netlink().set_up("lo", true);
    }
    ~PrivateNetwork() { (void)::setns(original_.get(), CLONE_NEWNET); }
    PrivateNetwork(const PrivateNetwork&) = delete;
    PrivateNetwork& operator=(const PrivateNetwork&) = delete;

private:
    vim::vmm::sys::Fd original_;
};

class VmmNetwork : public VmmBoot {
protected:
    void SetUp() override {
        VmmBoot::SetUp();
        if (IsSkipped()) {
            return;
        }
        if (::geteuid() != 0) {
            GTEST_SKIP() << "needs root for a network namespace, taps and bridges";
        }
        network_.emplace();
    }
    void TearDown() override {
        network_.reset();
        VmmBoot::TearDown();
    }

    // A bridge, up, with the host's own address on it when `address` is given.
    void make_bridge(const std::string& name, const std::string& address = "") {
        vim::vmm::netlink::Netlink netlink;
        netlink.create_bridge(name);
        netlink.set_up(name, true);
        if (!address.empty()) {
            netlink.add_address(name, address);
        }
    }

    // A guest with a shell, one NIC on `tap` (made by the vmm) attached to
    // `bridge`, with the address `address`; its control socket at
    // socket_path() when asked.
    std::unique_ptr<VmmProcess> boot_guest(const std::string& tap, const std::string& bridge,
                                           const std::string& address, const std::string& extra_net = "",
                                           bool api_socket = false) {
        auto arguments = boot_arguments("shell", 2, "256M");
        arguments.back() += " guest.ip=" + address;
        arguments.insert(arguments.end(), {"--net", "tap=" + tap + ",bridge=" + bridge + extra_net});
        if (api_socket) {
            arguments.insert(arguments.end(), {"--api-socket", socket_path()});
        }
        auto vmm = std::make_unique<VmmProcess>(arguments, VmmProcess::Input::Pipe);
        EXPECT_TRUE(vmm->wait_for_line("VIM-GUEST-SHELL", kBootTimeout)) << vmm->console() << vmm->errors();
        return vmm;
    }

    std::optional<PrivateNetwork> network_;
};

// One guest for what a user does with a NIC: the host reaches it through its
// tap and bridge, and bytes move both ways intact.
TEST_F(VmmNetwork, HostReachesTheGuestThroughTapAndBridgeAndBytesMoveBothWays) {
    make_bridge("br0", "10.0.0.1/24");
    auto guest = boot_guest("tap0", "br0", "10.0.0.2/24", ",mac=52:54:00:12:34:56", /*api_socket=*/true);
    ASSERT_FALSE(HasFailure());

    // The device as the guest sees it: the MAC we gave, the link up.
    auto link = run_in_guest(*guest, "cat /sys/class/net/eth0/address /sys/class/net/eth0/operstate");
    EXPECT_NE(link.output.find("52:54:00:12:34:56"), std::string::npos) << link.output;
    EXPECT_NE(link.output.find("\nup"), std::string::npos) << link.output;

    // The vmm made the tap and put it on the bridge.
    auto tap = vim::vmm::netlink::Netlink().find("tap0");
    ASSERT_TRUE(tap.has_value());
    EXPECT_EQ(tap->master, "br0");

    const HostResult ping = run_on_host("busybox ping -c 3 -W 5 10.0.0.2");
    EXPECT_EQ(ping.status, 0) << ping.output << guest->console();

    // 64 MiB each way over TCP, checked end to end by netblast's checksums.
    guest->type("netblast serve " + std::to_string(kNetblastPort) + " &\n");
    ASSERT_TRUE(guest->wait_for_line("netblast: serving", 60s)) << guest->console();
    const std::string client = std::string(VIM_NETBLAST_PATH) + " %s 10.0.0.2 " +
                               std::to_string(kNetblastPort) + " " + std::to_string(k64MiB);
    for (const char* direction : {"send", "recv"}) {
        char command[512];
        std::snprintf(command, sizeof command, client.c_str(), direction);
        const HostResult transfer = run_on_host(command);
        EXPECT_EQ(transfer.status, 0) << direction << ": " << transfer.output << guest->console();
        EXPECT_NE(transfer.output.find(" ok"), std::string::npos) << transfer.output;
    }

    // The vmm counted what crossed its NIC.
    const json stats = command(*guest, "stats", {});
    ASSERT_TRUE(stats["ok"].get<bool>()) << stats.dump();
    const json nic = stats["devices"]["virtio-net0"];
    EXPECT_GE(nic["rx"]["bytes"].get<std::uint64_t>(), k64MiB) << nic.dump();  // to the guest
    EXPECT_GE(nic["tx"]["bytes"].get<std::uint64_t>(), k64MiB) << nic.dump();  // from the guest
    EXPECT_EQ(nic["link"], "up") << nic.dump();
}

// Guests on one bridge reach each other; a guest on another bridge is out of reach.
TEST_F(VmmNetwork, GuestsOnOneBridgeReachEachOtherAndNotAGuestOnAnother) {
    make_bridge("br0");
    make_bridge("br1");
    auto first = boot_guest("tap0", "br0", "10.0.1.1/24");
    auto second = boot_guest("tap1", "br0", "10.0.1.2/24");
    auto isolated = boot_guest("tap2", "br1", "10.0.1.3/24");
    ASSERT_FALSE(HasFailure());

    EXPECT_EQ(run_in_guest(*first, "ping -c 3 -W 5 10.0.1.2").status, 0) << first->console();
    EXPECT_NE(run_in_guest(*first, "ping -c 2 -W 2 10.0.1.3").status, 0) << first->console();
    EXPECT_NE(run_in_guest(*isolated, "ping -c 2 -W 2 10.0.1.2").status, 0) << isolated->console();
}

// A TCP connection from the host to the guest survives a live migration to
// another vmm whose NIC is on another tap of the same bridge: the guest keeps
// its MAC (it travels with the VM) and the bridge finds it on its new port.
TEST_F(VmmNetwork, TcpConnectionToTheGuestSurvivesALiveMigration) {
    make_bridge("br0", "10.0.2.1/24");
    auto source = boot_guest("tap0", "br0", "10.0.2.2/24", "", /*api_socket=*/true);
    ASSERT_FALSE(HasFailure());
    source->type("nc -l -p 7000 -e cat &\n");
    ASSERT_TRUE(
        eventually([] { return run_on_host("busybox nc -w 1 10.0.2.2 7000 </dev/null").status == 0; }, 60s));
    source->type("nc -l -p 7001 -e cat &\n");

    // One connection, open across the move.
    vim::vmm::sys::Fd connection(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in guest{};
    guest.sin_family = AF_INET;
    guest.sin_port = htons(7001);
    guest.sin_addr.s_addr = htonl(0x0a000202);
    ASSERT_TRUE(eventually(
        [&] { return ::connect(connection.get(), reinterpret_cast<sockaddr*>(&guest), sizeof guest) == 0; },
        60s));
    timeval timeout{30, 0};
    ::setsockopt(connection.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    auto echo = [&](const std::string& text) {
        if (::send(connection.get(), text.data(), text.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(text.size())) {
            return std::string("(send failed)");
        }
        std::string received(text.size(), '\0');
        std::size_t have = 0;
        while (have < text.size()) {
            const ssize_t got = ::recv(connection.get(), received.data() + have, text.size() - have, 0);
            if (got <= 0) {
                return std::string("(no echo)");
            }
            have += static_cast<std::size_t>(got);
        }
        return received;
    };
    ASSERT_EQ(echo("before the move\n"), "before the move\n");

    VmmProcess destination({"--incoming", "tcp:127.0.0.1:0", "--net", "tap=tap1,bridge=br0"},
                           VmmProcess::Input::Pipe);
    const auto port = destination.wait_for_error("waiting for a migration on port ", 30s);
    ASSERT_TRUE(port) << destination.errors();
    json reply = command(*source, "migrate", {{"uri", "tcp:127.0.0.1:" + *port}});
    ASSERT_TRUE(reply.value("ok", false)) << reply.dump();
    json status;
    eventually(
        [&] {
            status = command(*source, "migrate-status");
            return status.value("state", "") != "active";
        },
        300s);
    ASSERT_EQ(status.value("state", ""), "completed") << status.dump() << destination.errors();
    command(*source, "shutdown");
    EXPECT_EQ(source->wait_exit(kExitTimeout), 0) << source->errors();

    EXPECT_EQ(echo("after the move\n"), "after the move\n") << destination.console() << destination.errors();
    auto mac = run_in_guest(destination, "cat /sys/class/net/eth0/address");
    EXPECT_NE(mac.output.find(vim::vmm::virtio::net::to_string(vim::vmm::virtio::net::stable_mac("tap0"))),
              std::string::npos)
        << mac.output;
}

}  // namespace
