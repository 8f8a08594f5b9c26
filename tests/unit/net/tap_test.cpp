// Real taps, each test in a network namespace of its own (needs root, as
// creating taps does): what the vmm does to the host's interfaces, and a
// packet through the device and the host's stack and back.
#include "vmm/virtio/net/tap.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <system_error>
#include <vector>

#include "vim/testing/guest_ram.h"
#include "vim/testing/loop_steps.h"
#include "vim/testing/virtio_driver.h"
#include "vmm/netlink/netlink.h"
#include "vmm/sys/event_fd.h"
#include "vmm/sys/event_loop.h"
#include "vmm/virtio/net/net_device.h"

namespace vim::vmm::virtio::net {
namespace {

using Bytes = std::vector<std::uint8_t>;

class TapTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) {
            GTEST_SKIP() << "taps and network namespaces need root";
        }
        ASSERT_EQ(::unshare(CLONE_NEWNET), 0) << "unshare(CLONE_NEWNET): " << std::strerror(errno);
        netlink.emplace();
    }

    std::optional<netlink::Netlink> netlink;
};

TEST_F(TapTest, CreatesATapThatGoesAwayWhenClosed) {
    ASSERT_FALSE(netlink->find("vt0"));
    {
        const auto tap = Tap::open("vt0");
        EXPECT_TRUE(tap->created());
        EXPECT_EQ(tap->name(), "vt0");
        const auto link = netlink->find("vt0");
        ASSERT_TRUE(link);
        EXPECT_EQ(link->kind, "tun");
        EXPECT_TRUE(link->up);
    }
    EXPECT_FALSE(netlink->find("vt0"));
}

TEST_F(TapTest, LeavesAPersistentTapItOnlyAttachedTo) {
    netlink->create_tap("vt1");
    {
        const auto tap = Tap::open("vt1");
        EXPECT_FALSE(tap->created());
        EXPECT_TRUE(netlink->find("vt1")->up);
    }
    EXPECT_TRUE(netlink->find("vt1"));
}

TEST_F(TapTest, OpensWithVnetHeadersAndTakesEveryOffloadItOffers) {
    const auto tap = Tap::open("vt2");
    ifreq request{};
    ASSERT_EQ(::ioctl(tap->fd(), TUNGETIFF, &request), 0);
    EXPECT_EQ(request.ifr_flags & (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
    int header_size = 0;
    ASSERT_EQ(::ioctl(tap->fd(), TUNGETVNETHDRSZ, &header_size), 0);
    EXPECT_EQ(header_size, 12);
    const std::uint64_t offloads = tap->offload_features();
    for (unsigned bit : {kFeatureCsum, kFeatureGuestCsum, kFeatureGuestTso4, kFeatureGuestTso6,
                         kFeatureGuestEcn, kFeatureHostTso4, kFeatureHostTso6, kFeatureHostEcn}) {
        EXPECT_NE(offloads & feature_bit(bit), 0u) << "feature " << bit;
    }
    EXPECT_NO_THROW(tap->set_offloads(offloads));
    EXPECT_NO_THROW(tap->set_offloads(0));
}

TEST_F(TapTest, SetsTheMtuAndAttachesToTheBridge) {
    netlink->create_bridge("vbr0");
    const auto tap = Tap::open("vt3", {.bridge = "vbr0", .mtu = 9000});
    const auto link = netlink->find("vt3");
    ASSERT_TRUE(link);
    EXPECT_EQ(link->master, "vbr0");
    EXPECT_EQ(link->mtu, 9000u);
    EXPECT_TRUE(link->up);
}

TEST_F(TapTest, ATapThatCannotBeSetUpIsNotLeftBehind) {
    EXPECT_THROW(Tap::open("vt4", {.bridge = "nosuch0"}), std::system_error);
    EXPECT_FALSE(netlink->find("vt4"));
}

TEST_F(TapTest, RefusesATapAnotherProcessHolds) {
    const auto first = Tap::open("vt5");
    try {
        Tap::open("vt5");
        FAIL() << "no exception";
    } catch (const std::system_error& error) {
        EXPECT_STREQ(error.what(),
                     "tap vt5: TUNSETIFF (attached to another process?): Device or resource busy");
    }
}

TEST_F(TapTest, RefusesAnInterfaceThatIsNotATap) {
    netlink->create_bridge("vbr1");
    try {
        Tap::open("vbr1");
        FAIL() << "no exception";
    } catch (const std::system_error& error) {
        EXPECT_STREQ(error.what(), "tap vbr1: TUNSETIFF (not a single-queue tap?): Invalid argument");
    }
    EXPECT_TRUE(netlink->find("vbr1"));
}

// The guest asks who has the host's address; the host's stack answers
// through the tap into the guest's receive buffers.
TEST_F(TapTest, TheHostAnswersTheGuestsArpRequestThroughTheDevice) {
    constexpr memory::GuestAddress kRam = 0x100000;
    constexpr std::uint16_t kSize = NetDevice::kQueueSize;
    constexpr MacAddress kGuestMac{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc};
    vim::testing::GuestRam ram{kRam, 0x200000};
    vim::testing::VirtqueueDriver rx{ram.memory(), kSize, vim::testing::RingLayout::packed(kRam, kSize),
                                     kRam + 0x10000, 0x80000};
    vim::testing::VirtqueueDriver tx{ram.memory(), kSize,
                                     vim::testing::RingLayout::packed(kRam + 0x8000, kSize), kRam + 0x100000,
                                     0x80000};
    std::array<Queue, 2> queues{Queue{"virtio-net0 queue 0", kSize}, Queue{"virtio-net0 queue 1", kSize}};
    sys::EventFd receive_notification{"receive notification"}, transmit_notification{"transmit notification"};
    std::array<int, 2> notification_fds{receive_notification.get(), transmit_notification.get()};
    sys::EventLoop loop;
    struct : DeviceInterrupt {
        void used_buffers(std::size_t) override {}
        void config_changed() override {}
        void needs_reset() override { ADD_FAILURE() << "needs reset"; }
    } interrupt;

    NetDevice device(Tap::open("vt6"), kGuestMac);
    netlink->add_address("vt6", "10.0.0.1/24");
    rx.configure(queues[NetDevice::kReceiveQueue]);
    tx.configure(queues[NetDevice::kTransmitQueue]);
    device.activate(
        Activation{ram.memory(), loop, device.device_features(), queues, notification_fds, interrupt});

    std::vector<vim::testing::DriverBuffer> buffers;
    for (int i = 0; i < 16; ++i) {
        buffers.push_back(rx.writable(2048));
        rx.add_chain(std::array{buffers.back()});
    }
    // virtio-net header, then who-has 10.0.0.1 tell 10.0.0.2.
    Bytes request(kPacketHeaderSize, 0);
    const Bytes arp{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0xaa,
                    0xbb, 0xcc, 0x08, 0x06,                                    // Ethernet
                    0x00, 0x01, 0x08, 0x00, 6,    4,    0x00, 0x01,            // request
                    0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc, 10,   0,    0,    2,   // sender
                    0,    0,    0,    0,    0,    0,    10,   0,    0,    1};  // target
    request.insert(request.end(), arp.begin(), arp.end());
    tx.add_chain(std::array{tx.readable(request)});

    std::optional<Bytes> reply;
    std::vector<UsedElement> received;
    vim::testing::run_loop_steps(
        loop, {{[&] { transmit_notification.signal(); },
                [&] {
                    for (const UsedElement& used : rx.take_used()) {
                        const auto& buffer =
                            *std::find_if(buffers.begin(), buffers.end(), [&](const auto& candidate) {
                                return candidate.address == rx.descriptor(used.id).address;
                            });
                        const Bytes bytes = rx.contents(buffer);
                        const Bytes frame(bytes.begin() + kPacketHeaderSize, bytes.begin() + used.length);
                        if (frame.size() >= 42 && frame[12] == 0x08 && frame[13] == 0x06 && frame[21] == 2) {
                            reply = frame;
                        }
                    }
                    return reply.has_value();
                }}});
    device.reset();

    ASSERT_TRUE(reply);
    EXPECT_EQ(Bytes(reply->begin(), reply->begin() + 6), Bytes(kGuestMac.begin(), kGuestMac.end()));
    EXPECT_EQ(Bytes(reply->begin() + 28, reply->begin() + 32), (Bytes{10, 0, 0, 1}));  // sender: the host
    EXPECT_EQ(Bytes(reply->begin() + 38, reply->begin() + 42), (Bytes{10, 0, 0, 2}));  // target: the guest
    EXPECT_EQ(device.stats()["tx"]["packets"], 1);
    EXPECT_GE(device.stats()["rx"]["packets"], 1);
}

}  // namespace
}  // namespace vim::vmm::virtio::net
