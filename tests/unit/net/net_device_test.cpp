// The network device driven as a guest would drive it: chains offered on two
// queues in plain heap RAM, notifications through eventfds served by a real
// event loop on the test thread, interrupts recorded by a fake, and a
// SOCK_SEQPACKET socket pair in the tap's place (one packet per message, each
// after its 12-byte virtio-net header, as a tap with IFF_VNET_HDR carries them).
#include "vmm/virtio/net/net_device.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>

#include "vim/testing/guest_ram.h"
#include "vim/testing/loop_steps.h"
#include "vim/testing/recording_interrupt.h"
#include "vim/testing/virtio_driver.h"
#include "vmm/sys/error.h"
#include "vmm/sys/event_fd.h"
#include "vmm/sys/event_loop.h"
#include "vmm/sys/fd.h"
#include "vmm/virtio/split_ring.h"

namespace vim::vmm::virtio::net {
namespace {

using ::testing::ElementsAre;
using vim::testing::after_turns;
using vim::testing::DriverBuffer;
using vim::testing::LoopStep;
using vim::testing::run_loop_steps;
using vim::testing::VirtqueueDriver;
using Bytes = std::vector<std::uint8_t>;

constexpr std::uint64_t kAllOffloads = feature_bit(kFeatureCsum) | feature_bit(kFeatureGuestCsum) |
                                       feature_bit(kFeatureGuestTso4) | feature_bit(kFeatureGuestTso6) |
                                       feature_bit(kFeatureGuestEcn) | feature_bit(kFeatureGuestUfo) |
                                       feature_bit(kFeatureHostTso4) | feature_bit(kFeatureHostTso6) |
                                       feature_bit(kFeatureHostEcn) | feature_bit(kFeatureHostUfo);

// A socket pair as the tap: the device gets one end, the test plays the host
// network on the other.
class SocketBackend final : public NetBackend {
public:
    explicit SocketBackend(std::uint64_t offloads) : offloads_(offloads) {
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
            sys::throw_errno("socketpair");
        }
        device_end_.reset(fds[0]);
        host_end_.reset(fds[1]);
    }

    const std::string& name() const override { return name_; }
    int fd() const override { return device_end_.get(); }
    std::uint64_t offload_features() const override { return offloads_; }
    void set_offloads(std::uint64_t features) override {
        if (refuse_offloads) {
            sys::throw_errno("tap sock0: TUNSETOFFLOAD", EINVAL);
        }
        offloads_set.push_back(features);
    }

    int host_fd() const { return host_end_.get(); }
    void close_host_end() { host_end_.reset(); }

    std::vector<std::uint64_t> offloads_set;
    bool refuse_offloads = false;

private:
    std::string name_ = "sock0";
    std::uint64_t offloads_;
    sys::Fd device_end_;
    sys::Fd host_end_;
};

using vim::testing::RecordingInterrupt;

// Bytes that differ from one offset to the next, and from one frame to another.
Bytes frame(std::size_t length, std::uint8_t seed) {
    Bytes bytes(length);
    for (std::size_t i = 0; i < length; ++i) {
        bytes[i] = static_cast<std::uint8_t>(seed * 31 + i * 7 + (i >> 8));
    }
    return bytes;
}

Bytes header_bytes(const PacketHeader& header) {
    Bytes bytes(sizeof(header));
    std::memcpy(bytes.data(), &header, sizeof(header));
    return bytes;
}

Bytes packet(const PacketHeader& header, const Bytes& frame) {
    // Sized once: GCC 12 at -O3 sees a false out-of-bounds copy in an
    // insert() after the header (-Werror=array-bounds).
    Bytes bytes(sizeof(header) + frame.size());
    std::memcpy(bytes.data(), &header, sizeof(header));
    std::copy(frame.begin(), frame.end(), bytes.begin() + sizeof(header));
    return bytes;
}

Bytes slice(const Bytes& bytes, std::size_t offset, std::size_t length) {
    return Bytes(bytes.begin() + offset, bytes.begin() + offset + length);
}

PacketHeader header_of(const Bytes& bytes) {
    PacketHeader header;
    std::memcpy(&header, bytes.data(), sizeof(header));
    return header;
}

class NetDeviceTest : public ::testing::Test {
protected:
    static constexpr memory::GuestAddress kRam = 0x100000;
    static constexpr std::uint64_t kRamSize = 0x800000;
    static constexpr memory::GuestAddress kReceiveRings = kRam;
    static constexpr memory::GuestAddress kTransmitRings = kRam + 0x8000;
    static constexpr memory::GuestAddress kReceiveData = kRam + 0x10000;
    static constexpr memory::GuestAddress kTransmitData = kRam + 0x400000;
    static constexpr memory::GuestAddress kOutsideRam = 0x40000000;
    static constexpr MacAddress kMac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

    NetDeviceTest() {
        auto backend = std::make_unique<SocketBackend>(kAllOffloads);
        backend_ = backend.get();
        device_ = std::make_unique<NetDevice>(std::move(backend), kMac, 9000);
        use_receive_queue_size(NetDevice::kQueueSize);
    }

    ~NetDeviceTest() override {
        if (active_) {
            device_->reset();
        }
    }

    // Before activate(): the driver sets the receive queue up with `size` entries.
    void use_receive_queue_size(std::uint16_t size) {
        rx = std::make_unique<VirtqueueDriver>(ram.memory(), size,
                                               vim::testing::RingLayout::packed(kReceiveRings, size),
                                               kReceiveData, kTransmitData - kReceiveData);
    }

    // Activates with every feature offered but those in `refused`.
    void activate(std::uint64_t refused = 0, bool event_idx = false) {
        rx->configure(queues[NetDevice::kReceiveQueue], event_idx);
        tx.configure(queues[NetDevice::kTransmitQueue], event_idx);
        features = device_->device_features() & ~refused;
        if (!event_idx) {
            features &= ~feature_bit(kFeatureRingEventIdx);
        }
        device_->activate(Activation{ram.memory(), loop, features, queues, notification_fds, interrupt});
        active_ = true;
    }

    void run_loop(std::vector<LoopStep> steps) { run_loop_steps(loop, std::move(steps)); }

    // Transmit: chains of readable buffers, then a notification.
    std::uint16_t offer_transmit(const Bytes& bytes) { return tx.add_chain(std::array{tx.readable(bytes)}); }
    void transmit_until_used(std::uint16_t used_idx) {
        run_loop(
            {{[&] { transmit_notification.signal(); }, [&, used_idx] { return tx.used_idx() == used_idx; }}});
    }

    // Receive: buffers the driver posts.
    DriverBuffer post_receive_buffer(std::uint32_t length) {
        const DriverBuffer buffer = rx->writable(length);
        rx->add_chain(std::array{buffer});
        return buffer;
    }

    // What the host network does.
    void host_send(const Bytes& bytes) {
        ASSERT_EQ(::send(backend_->host_fd(), bytes.data(), bytes.size(), 0),
                  static_cast<ssize_t>(bytes.size()))
            << std::strerror(errno);
    }
    // The next packet the device wrote, or nullopt when none came in time.
    std::optional<Bytes> host_receive(int timeout_ms = 1000) {
        pollfd ready{backend_->host_fd(), POLLIN, 0};
        if (::poll(&ready, 1, timeout_ms) != 1) {
            return std::nullopt;
        }
        Bytes bytes(kPacketHeaderSize + kMaxFrameLength + 100);
        const ssize_t length = ::recv(backend_->host_fd(), bytes.data(), bytes.size(), MSG_DONTWAIT);
        if (length < 0) {
            return std::nullopt;
        }
        bytes.resize(static_cast<std::size_t>(length));
        return bytes;
    }
    bool host_has_nothing() {
        pollfd ready{backend_->host_fd(), POLLIN, 0};
        return ::poll(&ready, 1, 0) == 0;
    }

    // The bytes the device wrote into a receive chain of one buffer.
    Bytes received(const DriverBuffer& buffer, std::uint32_t length) {
        return slice(rx->contents(buffer), 0, length);
    }

    // A receive chain of `lengths` bytes in as many buffers, through an
    // indirect table when asked; remembered for received_packets().
    std::uint16_t post_receive_chain(const std::vector<std::uint32_t>& lengths, bool indirect = false) {
        std::vector<DriverBuffer> buffers;
        for (std::uint32_t length : lengths) {
            buffers.push_back(rx->writable(length));
        }
        const std::uint16_t head = indirect ? rx->add_indirect_chain(buffers) : rx->add_chain(buffers);
        receive_chain_buffers[head] = buffers;
        return head;
    }
    // The packets the device completed in `used`, each put together from
    // its chains (as many as the num_buffers in the first says) as the
    // driver does: the first `length` bytes of each chain's buffers.
    std::vector<Bytes> received_packets(const std::vector<UsedElement>& used) {
        std::vector<Bytes> packets;
        for (std::size_t index = 0; index < used.size();) {
            Bytes bytes;
            std::size_t chains = 1;
            for (std::size_t chain = 0; chain < chains; ++chain, ++index) {
                if (index == used.size()) {
                    ADD_FAILURE() << "the last packet lacks " << chains - chain << " chains";
                    return packets;
                }
                std::uint32_t left = used[index].length;
                for (const DriverBuffer& buffer :
                     receive_chain_buffers.at(static_cast<std::uint16_t>(used[index].id))) {
                    const std::uint32_t piece = std::min(left, buffer.length);
                    const Bytes part = slice(rx->contents(buffer), 0, piece);
                    bytes.insert(bytes.end(), part.begin(), part.end());
                    left -= piece;
                }
                if (chain == 0) {
                    chains = header_of(bytes).num_buffers;
                }
            }
            packets.push_back(std::move(bytes));
        }
        return packets;
    }
    std::vector<std::uint16_t> heads_of(const std::vector<UsedElement>& used) {
        std::vector<std::uint16_t> heads;
        for (const UsedElement& element : used) {
            heads.push_back(static_cast<std::uint16_t>(element.id));
        }
        return heads;
    }

    nlohmann::json counters(std::uint64_t packets, std::uint64_t bytes, std::uint64_t dropped,
                            std::uint64_t errors) {
        return {{"packets", packets}, {"bytes", bytes}, {"dropped", dropped}, {"errors", errors}};
    }

    vim::testing::GuestRam ram{kRam, kRamSize};
    std::unique_ptr<VirtqueueDriver> rx;
    std::map<std::uint16_t, std::vector<DriverBuffer>> receive_chain_buffers;
    VirtqueueDriver tx{ram.memory(), NetDevice::kQueueSize,
                       vim::testing::RingLayout::packed(kTransmitRings, NetDevice::kQueueSize), kTransmitData,
                       kRam + kRamSize - kTransmitData};
    std::array<Queue, 2> queues{Queue{"virtio-net0 queue 0", NetDevice::kQueueSize},
                                Queue{"virtio-net0 queue 1", NetDevice::kQueueSize}};
    sys::EventFd receive_notification{"virtio-net test receive notification"};
    sys::EventFd transmit_notification{"virtio-net test transmit notification"};
    std::array<int, 2> notification_fds{receive_notification.get(), transmit_notification.get()};
    sys::EventLoop loop;
    RecordingInterrupt interrupt;
    SocketBackend* backend_;
    std::unique_ptr<NetDevice> device_;
    std::uint64_t features = 0;
    bool active_ = false;
};

TEST_F(NetDeviceTest, IsANetworkDeviceWithReceiveAndTransmitQueues) {
    EXPECT_EQ(device_->device_type(), 1u);
    EXPECT_THAT(device_->queue_max_sizes(), ElementsAre(NetDevice::kQueueSize, NetDevice::kQueueSize));
    const std::uint64_t offered = device_->device_features();
    for (unsigned bit : {kFeatureMac, kFeatureStatus, kFeatureMergeableRxBuffers, kFeatureMtu,
                         kFeatureRingIndirectDesc, kFeatureRingEventIdx}) {
        EXPECT_NE(offered & feature_bit(bit), 0u) << "feature " << bit;
    }
    EXPECT_EQ(offered & kAllOffloads, kAllOffloads);
}

TEST_F(NetDeviceTest, OffersOnlyTheOffloadsTheBackendServesAndMtuOnlyWhenGiven) {
    NetDevice plain(
        std::make_unique<SocketBackend>(feature_bit(kFeatureCsum) | feature_bit(kFeatureHostTso4)), kMac);
    const std::uint64_t offered = plain.device_features();
    EXPECT_EQ(offered & kAllOffloads, feature_bit(kFeatureCsum) | feature_bit(kFeatureHostTso4));
    EXPECT_EQ(offered & feature_bit(kFeatureMtu), 0u);
    std::array<std::uint8_t, 12> config;
    plain.read_config(0, config);
    EXPECT_EQ(config[10] | config[11] << 8, 0);
}

TEST_F(NetDeviceTest, ConfigurationSpaceHoldsMacLinkUpAndMtu) {
    std::array<std::uint8_t, 16> config;
    config.fill(0xaa);
    device_->read_config(0, config);
    EXPECT_THAT(config, ElementsAre(0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // mac
                                    1, 0,                                // status: link up
                                    1, 0,                                // max_virtqueue_pairs
                                    0x28, 0x23,                          // mtu 9000
                                    0, 0, 0, 0));                        // past the end
    // The driver cannot change the MAC (no CTRL_MAC_ADDR); a read at an offset sees the same.
    device_->write_config(0, std::array<std::uint8_t, 6>{1, 2, 3, 4, 5, 6});
    std::array<std::uint8_t, 3> tail;
    device_->read_config(3, tail);
    EXPECT_THAT(tail, ElementsAre(0x12, 0x34, 0x56));
}

TEST_F(NetDeviceTest, SetsTheBackendsOffloadsToWhatTheDriverAccepted) {
    activate(/*refused=*/feature_bit(kFeatureGuestTso6) | feature_bit(kFeatureGuestUfo));
    ASSERT_EQ(backend_->offloads_set.size(), 1u);
    EXPECT_EQ(backend_->offloads_set[0], features);
    EXPECT_EQ(backend_->offloads_set[0] & feature_bit(kFeatureGuestTso6), 0u);
}

TEST_F(NetDeviceTest, ABackendRefusingTheOffloadsLeavesTheDeviceNeedingAReset) {
    backend_->refuse_offloads = true;
    activate();
    EXPECT_EQ(interrupt.needs_reset_calls, 1);
    offer_transmit(packet({}, frame(60, 1)));
    run_loop({{[&] { transmit_notification.signal(); }, after_turns(3)}});
    EXPECT_EQ(tx.used_idx(), 0);
    EXPECT_TRUE(host_has_nothing());
}

TEST_F(NetDeviceTest, TransmitsEachChainAsOnePacketWhateverItsLayout) {
    activate();
    const Bytes first = frame(60, 1), second = frame(1514, 2), third = frame(9014, 3);
    const PacketHeader checksummed{.flags = kHeaderNeedsCsum, .csum_start = 34, .csum_offset = 16};
    // Header and frame in two buffers, as Linux lays them out.
    tx.add_chain(std::array{tx.readable(header_bytes({})), tx.readable(first)});
    // All in one buffer.
    offer_transmit(packet(checksummed, second));
    // Through an indirect table, the header itself cut in two.
    const Bytes whole_third = packet({}, third);
    tx.add_indirect_chain(std::array{tx.readable(slice(whole_third, 0, 5)),
                                     tx.readable(slice(whole_third, 5, 107)),
                                     tx.readable(slice(whole_third, 112, whole_third.size() - 112))});
    transmit_until_used(3);

    EXPECT_EQ(host_receive(), packet({}, first));
    EXPECT_EQ(host_receive(), packet(checksummed, second));
    EXPECT_EQ(host_receive(), whole_third);
    EXPECT_TRUE(host_has_nothing());
    const auto used = tx.take_used();
    ASSERT_EQ(used.size(), 3u);
    for (const UsedElement& element : used) {
        EXPECT_EQ(element.length, 0u);  // the device writes nothing into a transmit chain
    }
    // One interrupt for the batch.
    EXPECT_THAT(interrupt.used_buffers_queues, ElementsAre(NetDevice::kTransmitQueue));
    EXPECT_EQ(device_->stats()["tx"], counters(3, 60 + 1514 + 9014, 0, 0));
}

TEST_F(NetDeviceTest, TransmitsTsoPacketsUpToTheLargestFrame) {
    activate();
    const PacketHeader tso{.flags = kHeaderNeedsCsum,
                           .gso_type = kGsoTcpV4 | kGsoEcn,
                           .header_length = 66,
                           .gso_size = 1448,
                           .csum_start = 34,
                           .csum_offset = 16};
    const Bytes largest = frame(kMaxFrameLength, 4);
    offer_transmit(packet(tso, largest));
    transmit_until_used(1);
    EXPECT_EQ(host_receive(), packet(tso, largest));
    EXPECT_EQ(device_->stats()["tx"], counters(1, kMaxFrameLength, 0, 0));
}

TEST_F(NetDeviceTest, ClearsNumBuffersOnTransmit) {
    activate();
    const Bytes bytes = frame(100, 5);
    offer_transmit(packet({.num_buffers = 7}, bytes));
    transmit_until_used(1);
    EXPECT_EQ(host_receive(), packet({}, bytes));
}

// Each hostile chain is followed by a good one, which must still go out.
class HostileTransmitTest : public NetDeviceTest {
protected:
    void expect_dropped(const std::function<std::uint16_t()>& offer_hostile) {
        activate(/*refused=*/feature_bit(kFeatureHostUfo) | feature_bit(kFeatureHostEcn));
        const std::uint16_t hostile = offer_hostile();
        const Bytes good = frame(80, 9);
        offer_transmit(packet({}, good));
        transmit_until_used(2);

        const auto used = tx.take_used();
        ASSERT_EQ(used.size(), 2u);
        EXPECT_EQ(used[0].id, hostile);
        EXPECT_EQ(used[0].length, 0u);
        EXPECT_EQ(host_receive(), packet({}, good));
        EXPECT_TRUE(host_has_nothing());
        EXPECT_EQ(device_->stats()["tx"], counters(1, 80, 1, 0));
        EXPECT_EQ(interrupt.needs_reset_calls, 0);
    }
};

TEST_F(HostileTransmitTest, DropsAChainShorterThanAHeader) {
    expect_dropped([&] { return offer_transmit(Bytes(kPacketHeaderSize - 1, 0)); });
}

TEST_F(HostileTransmitTest, DropsAHeaderWithoutAnEthernetHeaderAfterIt) {
    expect_dropped([&] { return offer_transmit(packet({}, frame(kMinFrameLength - 1, 1))); });
}

TEST_F(HostileTransmitTest, DropsAFrameLongerThanTheLargest) {
    expect_dropped([&] { return offer_transmit(packet({}, frame(kMaxFrameLength + 1, 1))); });
}

TEST_F(HostileTransmitTest, DropsAHugeChainSpreadOverManyBuffers) {
    expect_dropped([&] {
        std::vector<DriverBuffer> buffers{tx.readable(header_bytes({}))};
        for (int i = 0; i < 100; ++i) {
            buffers.push_back(tx.readable(frame(4096, static_cast<std::uint8_t>(i))));
        }
        return tx.add_chain(buffers);
    });
}

TEST_F(HostileTransmitTest, DropsAChainWithDeviceWritableBuffers) {
    expect_dropped([&] {
        return tx.add_chain(std::array{tx.readable(packet({}, frame(60, 1))), tx.writable(64)});
    });
}

TEST_F(HostileTransmitTest, DropsAHeaderWithDataValidSet) {
    expect_dropped([&] { return offer_transmit(packet({.flags = kHeaderDataValid}, frame(60, 1))); });
}

TEST_F(HostileTransmitTest, DropsAChecksumPastTheFrame) {
    expect_dropped([&] {
        return offer_transmit(
            packet({.flags = kHeaderNeedsCsum, .csum_start = 50, .csum_offset = 9}, frame(60, 1)));
    });
}

TEST_F(HostileTransmitTest, DropsAnOffloadTheDriverDidNotNegotiate) {
    expect_dropped([&] {
        return offer_transmit(
            packet({.gso_type = kGsoUdp, .header_length = 42, .gso_size = 1000}, frame(3000, 1)));
    });
}

TEST_F(HostileTransmitTest, DropsEcnWithoutHostEcn) {
    expect_dropped([&] {
        return offer_transmit(
            packet({.gso_type = kGsoTcpV4 | kGsoEcn, .header_length = 54, .gso_size = 1000}, frame(3000, 1)));
    });
}

TEST_F(HostileTransmitTest, DropsAnUnknownGsoType) {
    expect_dropped([&] { return offer_transmit(packet({.gso_type = 2, .gso_size = 1000}, frame(3000, 1))); });
}

TEST_F(HostileTransmitTest, DropsGsoWithoutASegmentSize) {
    expect_dropped(
        [&] { return offer_transmit(packet({.gso_type = kGsoTcpV4, .header_length = 54}, frame(3000, 1))); });
}

TEST_F(HostileTransmitTest, DropsHeadersLongerThanTheFrame) {
    expect_dropped([&] {
        return offer_transmit(
            packet({.gso_type = kGsoTcpV4, .header_length = 3001, .gso_size = 1000}, frame(3000, 1)));
    });
}

TEST_F(HostileTransmitTest, DropsAChainOutsideRam) {
    expect_dropped([&] { return tx.add_chain(std::array{DriverBuffer{kOutsideRam, 100, false}}); });
}

TEST_F(HostileTransmitTest, DropsALoopingChain) {
    expect_dropped([&] {
        const DriverBuffer buffer = tx.readable(packet({}, frame(60, 1)));
        const std::uint16_t first = tx.take_free_descriptor();
        const std::uint16_t second = tx.take_free_descriptor();
        tx.set_descriptor(first, {buffer.address, buffer.length, kDescriptorNext, second});
        tx.set_descriptor(second, {buffer.address, buffer.length, kDescriptorNext, first});
        tx.offer(first);
        return first;
    });
}

TEST_F(NetDeviceTest, ABackendThatIsFullHoldsTheChainUntilItTakesMore) {
    // A small send buffer on the device's end: a few packets fill it.
    const int size = 4096;
    ASSERT_EQ(::setsockopt(backend_->fd(), SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)), 0);
    activate();
    constexpr int kPackets = 40;
    std::vector<Bytes> sent;
    for (int i = 0; i < kPackets; ++i) {
        sent.push_back(packet({}, frame(1000, static_cast<std::uint8_t>(i))));
        offer_transmit(sent.back());
    }
    std::vector<Bytes> arrived;
    std::uint16_t used_while_full = 0;
    run_loop({{[&] { transmit_notification.signal(); }, after_turns(5)},
              {[&] { used_while_full = tx.used_idx(); },
               [&] {
                   // The host reads as it can; the device goes on once it has.
                   while (auto bytes = host_receive(/*timeout_ms=*/0)) {
                       arrived.push_back(std::move(*bytes));
                       if (arrived.size() == kPackets) {
                           break;
                       }
                   }
                   return tx.used_idx() == kPackets;
               }}});

    EXPECT_LT(used_while_full, kPackets);
    while (arrived.size() < kPackets) {
        auto bytes = host_receive();
        ASSERT_TRUE(bytes);
        arrived.push_back(std::move(*bytes));
    }
    EXPECT_EQ(arrived, sent);
    EXPECT_EQ(device_->stats()["tx"], counters(kPackets, kPackets * 1000, 0, 0));
}

TEST_F(NetDeviceTest, ReceivesIntoOneChainWithoutMergedBuffers) {
    activate(/*refused=*/feature_bit(kFeatureMergeableRxBuffers));
    const DriverBuffer buffer = post_receive_buffer(kPacketHeaderSize + 1514);
    const Bytes bytes = frame(1000, 1);
    // The tap leaves num_buffers as it was in our buffer: the device sets it.
    const PacketHeader from_tap{.flags = kHeaderDataValid, .num_buffers = 0xbeef};
    run_loop({{[&] { host_send(packet(from_tap, bytes)); }, [&] { return rx->used_idx() == 1; }}});

    const auto used = rx->take_used();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(used[0].length, kPacketHeaderSize + 1000);
    EXPECT_EQ(received(buffer, used[0].length), packet({.flags = kHeaderDataValid, .num_buffers = 1}, bytes));
    EXPECT_THAT(interrupt.used_buffers_queues, ElementsAre(NetDevice::kReceiveQueue));
    EXPECT_EQ(device_->stats()["rx"], counters(1, 1000, 0, 0));
}

TEST_F(NetDeviceTest, ReceivesIntoAChainOfSeveralBuffersWithoutMergedBuffers) {
    // Linux's "big packets" layout: the header in one buffer, the frame in pages.
    activate(/*refused=*/feature_bit(kFeatureMergeableRxBuffers));
    const std::array buffers{rx->writable(kPacketHeaderSize), rx->writable(4096), rx->writable(4096)};
    rx->add_chain(buffers);
    const Bytes bytes = frame(6000, 2);
    run_loop({{[&] { host_send(packet({}, bytes)); }, [&] { return rx->used_idx() == 1; }}});

    EXPECT_EQ(rx->take_used()[0].length, kPacketHeaderSize + 6000);
    Bytes written = rx->contents(buffers[0]);
    const Bytes second = rx->contents(buffers[1]);
    written.insert(written.end(), second.begin(), second.end());
    const Bytes third = rx->contents(buffers[2]);
    written.insert(written.end(), third.begin(), third.begin() + (6000 - 4096));
    EXPECT_EQ(written, packet({.num_buffers = 1}, bytes));
}

TEST_F(NetDeviceTest, SpreadsAPacketOverSeveralChainsWithMergedBuffers) {
    activate();
    std::vector<DriverBuffer> buffers;
    for (int i = 0; i < 4; ++i) {
        buffers.push_back(post_receive_buffer(1024));
    }
    const Bytes bytes = frame(3000, 3);
    run_loop({{[&] { host_send(packet({}, bytes)); }, [&] { return rx->used_idx() == 3; }}});

    const auto used = rx->take_used();
    ASSERT_EQ(used.size(), 3u);
    EXPECT_EQ(used[0].length, 1024u);
    EXPECT_EQ(used[1].length, 1024u);
    EXPECT_EQ(used[2].length, kPacketHeaderSize + 3000 - 2048);
    Bytes written;
    for (int i = 0; i < 3; ++i) {
        const Bytes part = received(buffers[i], used[i].length);
        written.insert(written.end(), part.begin(), part.end());
    }
    EXPECT_EQ(header_of(written).num_buffers, 3);
    EXPECT_EQ(written, packet({.num_buffers = 3}, bytes));
    // The fourth buffer waits for the next packet.
    EXPECT_EQ(rx->contents(buffers[3]), Bytes(1024, VirtqueueDriver::kUnwrittenByte));
    EXPECT_EQ(device_->stats()["rx"], counters(1, 3000, 0, 0));
}

TEST_F(NetDeviceTest, ReceivesSeveralPacketsWithOneInterrupt) {
    activate();
    std::vector<DriverBuffer> buffers;
    for (int i = 0; i < 8; ++i) {
        buffers.push_back(post_receive_buffer(2048));
    }
    std::vector<Bytes> sent;
    for (int i = 0; i < 5; ++i) {
        sent.push_back(frame(100 + i, static_cast<std::uint8_t>(i)));
        host_send(packet({}, sent.back()));
    }
    run_loop({{[] {}, [&] { return rx->used_idx() == 5; }}});

    const auto used = rx->take_used();
    for (int i = 0; i < 5; ++i) {
        EXPECT_EQ(received(buffers[i], used[i].length), packet({.num_buffers = 1}, sent[i]))
            << "packet " << i;
    }
    EXPECT_THAT(interrupt.used_buffers_queues, ElementsAre(NetDevice::kReceiveQueue));
}

TEST_F(NetDeviceTest, APacketWaitsForBuffersAndArrivesOnceTheDriverPostsThem) {
    activate();
    const Bytes bytes = frame(500, 4);
    DriverBuffer buffer{};
    run_loop({{[&] { host_send(packet({}, bytes)); }, after_turns(5)},
              {[&] {
                   EXPECT_EQ(rx->used_idx(), 0);
                   // The device asked to be told about new buffers.
                   EXPECT_EQ(rx->used_flags(), 0);
                   buffer = post_receive_buffer(2048);
                   receive_notification.signal();
               },
               [&] { return rx->used_idx() == 1; }}});

    EXPECT_EQ(received(buffer, kPacketHeaderSize + 500), packet({.num_buffers = 1}, bytes));
    // Notifications are off again until the buffers run out.
    EXPECT_EQ(rx->used_flags(), kUsedNoNotify);
    EXPECT_EQ(device_->stats()["rx"], counters(1, 500, 0, 0));
}

TEST_F(NetDeviceTest, WithEventIdxAPacketWaitingForBuffersAsksForTheNextOne) {
    activate(/*refused=*/0, /*event_idx=*/true);
    const Bytes bytes = frame(500, 4);
    const DriverBuffer first = post_receive_buffer(2048);
    DriverBuffer second{};
    run_loop({{[&] {
                   host_send(packet({}, bytes));
                   host_send(packet({}, bytes));
               },
               [&] { return rx->used_idx() == 1; }},
              {[] {}, after_turns(5)},
              {[&] {
                   EXPECT_EQ(rx->used_idx(), 1);
                   // "Notify me once you have made entry 1 available."
                   EXPECT_EQ(rx->avail_event(), 1);
                   second = post_receive_buffer(2048);
                   receive_notification.signal();
               },
               [&] { return rx->used_idx() == 2; }}});
    EXPECT_EQ(received(first, kPacketHeaderSize + 500), packet({.num_buffers = 1}, bytes));
    EXPECT_EQ(received(second, kPacketHeaderSize + 500), packet({.num_buffers = 1}, bytes));
}

TEST_F(NetDeviceTest, PacketsQueuedAtTheBackendWaitThereWhileTheDriverHasNoBuffers) {
    activate();
    std::vector<Bytes> sent;
    for (int i = 0; i < 3; ++i) {
        sent.push_back(frame(200, static_cast<std::uint8_t>(i)));
    }
    std::vector<DriverBuffer> buffers;
    run_loop({{[&] {
                   for (const Bytes& bytes : sent) {
                       host_send(packet({}, bytes));
                   }
               },
               after_turns(5)},
              {[&] {
                   for (int i = 0; i < 3; ++i) {
                       buffers.push_back(post_receive_buffer(1024));
                   }
                   receive_notification.signal();
               },
               [&] { return rx->used_idx() == 3; }}});
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(received(buffers[i], kPacketHeaderSize + 200), packet({.num_buffers = 1}, sent[i]));
    }
}

TEST_F(NetDeviceTest, WithMergedBuffersAPacketWaitsUntilEnoughBuffersArePosted) {
    activate();
    const Bytes bytes = frame(2500, 5);
    std::vector<DriverBuffer> buffers{post_receive_buffer(1024)};
    run_loop({{[&] { host_send(packet({}, bytes)); }, after_turns(5)},
              {[&] {
                   EXPECT_EQ(rx->used_idx(), 0);
                   buffers.push_back(post_receive_buffer(1024));
                   buffers.push_back(post_receive_buffer(1024));
                   receive_notification.signal();
               },
               [&] { return rx->used_idx() == 3; }}});
    const auto used = rx->take_used();
    Bytes written;
    for (int i = 0; i < 3; ++i) {
        const Bytes part = received(buffers[i], used[i].length);
        written.insert(written.end(), part.begin(), part.end());
    }
    EXPECT_EQ(written, packet({.num_buffers = 3}, bytes));
}

TEST_F(NetDeviceTest, MarksTheReceivedPagesDirty) {
    activate();
    (void)ram.take_dirty_page_numbers();
    const DriverBuffer buffer = post_receive_buffer(3 * memory::kPageSize);
    run_loop({{[&] { host_send(packet({}, frame(2 * memory::kPageSize, 6))); },
               [&] { return rx->used_idx() == 1; }}});
    const std::uint64_t first_page = (buffer.address - kRam) / memory::kPageSize;
    const auto dirty = ram.take_dirty_page_numbers();
    for (std::uint64_t page = first_page; page < first_page + 2; ++page) {
        EXPECT_THAT(dirty, ::testing::Contains(page)) << "page " << page;
    }
}

TEST_F(NetDeviceTest, BadReceiveChainsGoBackEmptyAndTheNextGoodOneIsUsed) {
    activate();
    const std::uint16_t with_readable =
        rx->add_chain(std::array{rx->readable(Bytes(16, 0)), rx->writable(2048)});
    const std::uint16_t too_short = rx->add_chain(std::array{rx->writable(kPacketHeaderSize - 1)});
    const std::uint16_t outside_ram = rx->add_chain(std::array{DriverBuffer{kOutsideRam, 2048, true}});
    const DriverBuffer looped = rx->writable(2048);
    const std::uint16_t looping = rx->take_free_descriptor();
    const std::uint16_t looping_next = rx->take_free_descriptor();
    rx->set_descriptor(looping,
                       {looped.address, looped.length, kDescriptorWrite | kDescriptorNext, looping_next});
    rx->set_descriptor(looping_next,
                       {looped.address, looped.length, kDescriptorWrite | kDescriptorNext, looping});
    rx->offer(looping);
    const DriverBuffer good = post_receive_buffer(2048);
    const Bytes bytes = frame(300, 7);
    run_loop({{[&] { host_send(packet({}, bytes)); }, [&] { return rx->used_idx() == 5; }}});

    const auto used = rx->take_used();
    ASSERT_EQ(used.size(), 5u);
    EXPECT_EQ(used[0].id, with_readable);
    EXPECT_EQ(used[1].id, too_short);
    EXPECT_EQ(used[2].id, outside_ram);
    EXPECT_EQ(used[3].id, looping);
    for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(used[i].length, 0u) << "bad chain " << i;
    }
    EXPECT_EQ(used[4].length, kPacketHeaderSize + 300);
    EXPECT_EQ(received(good, used[4].length), packet({.num_buffers = 1}, bytes));
    EXPECT_EQ(rx->contents(looped), Bytes(2048, VirtqueueDriver::kUnwrittenByte));
    EXPECT_EQ(device_->stats()["rx"], counters(1, 300, 0, 4));
    EXPECT_EQ(interrupt.needs_reset_calls, 0);
}

TEST_F(NetDeviceTest, WithoutMergedBuffersAPacketTooBigForTheChainIsDroppedAndTheChainKept) {
    activate(/*refused=*/feature_bit(kFeatureMergeableRxBuffers));
    const DriverBuffer small = post_receive_buffer(256);
    const Bytes big = frame(1000, 8), fits = frame(100, 9);
    run_loop({{[&] {
                   host_send(packet({}, big));
                   host_send(packet({}, fits));
               },
               [&] { return rx->used_idx() == 1; }}});
    EXPECT_EQ(received(small, kPacketHeaderSize + 100), packet({.num_buffers = 1}, fits));
    EXPECT_EQ(device_->stats()["rx"], counters(1, 100, 1, 0));
}

TEST_F(NetDeviceTest, APacketLargerThanTheWholeReceiveQueueIsDropped) {
    // Four chains of 32 bytes: no packet over 128 bytes can ever fit, and
    // waiting for more buffers would wait forever.
    use_receive_queue_size(4);
    activate();
    std::vector<DriverBuffer> buffers;
    for (int i = 0; i < 4; ++i) {
        buffers.push_back(post_receive_buffer(32));
    }
    const Bytes big = frame(500, 10), fits = frame(50, 11);
    run_loop({{[&] {
                   host_send(packet({}, big));
                   host_send(packet({}, fits));
               },
               [&] { return rx->used_idx() == 2; }}});
    const auto used = rx->take_used();
    Bytes written = received(buffers[0], used[0].length);
    const Bytes second = received(buffers[1], used[1].length);
    written.insert(written.end(), second.begin(), second.end());
    EXPECT_EQ(written, packet({.num_buffers = 2}, fits));
    EXPECT_EQ(device_->stats()["rx"], counters(1, 50, 1, 0));
}

// Frames from the smallest to the largest a tap hands over (a 64 KiB GSO
// packet), around the edges of a 1536-byte receive buffer and of a page.
const std::vector<std::size_t> kFrameLengths{kMinFrameLength, 60, 1000, 1524, 1525, 4084, 4085, 9000, 30000,
                                             kMaxFrameLength};

TEST_F(NetDeviceTest, ReceivesFramesOfEveryLengthByteExactOverMergedBuffers) {
    activate();
    // Chains of 1536 bytes as Linux posts them, and the same cut into
    // buffers, direct and through indirect tables.
    std::vector<std::uint16_t> heads;
    for (int i = 0; i < 100; ++i) {
        if (i % 3 == 0) {
            heads.push_back(post_receive_chain({1536}));
        } else if (i % 3 == 1) {
            heads.push_back(post_receive_chain({500, 1036}));
        } else {
            heads.push_back(post_receive_chain({5, 531, 1000}, /*indirect=*/true));
        }
    }
    std::vector<Bytes> expected;
    std::vector<LoopStep> steps;
    std::size_t chains = 0, frame_bytes = 0;
    for (std::size_t i = 0; i < kFrameLengths.size(); ++i) {
        const Bytes bytes = frame(kFrameLengths[i], static_cast<std::uint8_t>(i));
        const auto num_buffers = static_cast<std::uint16_t>((kPacketHeaderSize + bytes.size() + 1535) / 1536);
        expected.push_back(packet({.flags = kHeaderDataValid, .num_buffers = num_buffers}, bytes));
        chains += num_buffers;
        frame_bytes += bytes.size();
        // One at a time: the socket pair holds less than all of them.
        steps.push_back(
            {[this, bytes] { host_send(packet({.flags = kHeaderDataValid, .num_buffers = 0xbeef}, bytes)); },
             [this, i] { return device_->stats()["rx"]["packets"] == i + 1; }});
    }
    run_loop(std::move(steps));

    const auto used = rx->take_used();
    // The chains in the order posted, none skipped, none twice.
    EXPECT_EQ(heads_of(used),
              std::vector(heads.begin(), heads.begin() + static_cast<std::ptrdiff_t>(chains)));
    const std::vector<Bytes> packets = received_packets(used);
    ASSERT_EQ(packets.size(), expected.size());
    for (std::size_t i = 0; i < packets.size(); ++i) {
        EXPECT_EQ(packets[i], expected[i]) << "frame of " << kFrameLengths[i] << " bytes";
    }
    EXPECT_EQ(device_->stats()["rx"], counters(kFrameLengths.size(), frame_bytes, 0, 0));
    EXPECT_EQ(interrupt.needs_reset_calls, 0);
}

TEST_F(NetDeviceTest, ReceivesFramesOfEveryLengthByteExactIntoOneChainEachWithoutMergedBuffers) {
    activate(/*refused=*/feature_bit(kFeatureMergeableRxBuffers));
    // Linux's "big packets" layout: the header, then pages for the largest frame.
    std::vector<std::uint32_t> layout{kPacketHeaderSize};
    layout.resize(1 + 17, memory::kPageSize);
    std::vector<std::uint16_t> heads;
    for (std::size_t i = 0; i < kFrameLengths.size(); ++i) {
        heads.push_back(post_receive_chain(layout, /*indirect=*/i % 2 == 1));
    }
    std::vector<Bytes> expected;
    std::vector<LoopStep> steps;
    for (std::size_t i = 0; i < kFrameLengths.size(); ++i) {
        const Bytes bytes = frame(kFrameLengths[i], static_cast<std::uint8_t>(i));
        expected.push_back(packet({.num_buffers = 1}, bytes));
        steps.push_back(
            {[this, bytes] { host_send(packet({}, bytes)); }, [this, i] { return rx->used_idx() == i + 1; }});
    }
    run_loop(std::move(steps));

    const auto used = rx->take_used();
    EXPECT_EQ(heads_of(used), heads);
    for (std::size_t i = 0; i < used.size(); ++i) {
        EXPECT_EQ(used[i].length, kPacketHeaderSize + kFrameLengths[i]);
    }
    EXPECT_EQ(received_packets(used), expected);
}

TEST_F(NetDeviceTest, ChainsHeldWhileTheBackendIsEmptyTakeTheNextPacketsInOrder) {
    activate();
    std::vector<std::uint16_t> heads;
    for (int i = 0; i < 6; ++i) {
        heads.push_back(post_receive_chain({2048}));
    }
    const Bytes first = frame(100, 1), second = frame(3000, 2), third = frame(500, 3);
    run_loop({// The driver's notification: the device takes the chains and finds nothing to read.
              {[&] { receive_notification.signal(); }, after_turns(3)},
              {[&] {
                   EXPECT_EQ(rx->used_idx(), 0);
                   host_send(packet({}, first));
               },
               [&] { return rx->used_idx() == 1; }},
              {[] {}, after_turns(3)},
              {[&] {
                   host_send(packet({}, second));
                   host_send(packet({}, third));
               },
               [&] { return rx->used_idx() == 4; }}});

    const auto used = rx->take_used();
    EXPECT_EQ(heads_of(used), std::vector(heads.begin(), heads.begin() + 4));
    EXPECT_THAT(received_packets(used),
                ElementsAre(packet({.num_buffers = 1}, first), packet({.num_buffers = 2}, second),
                            packet({.num_buffers = 1}, third)));
    // The chains still held go back empty before a snapshot, each once.
    device_->quiesce();
    const auto rest = rx->take_used();
    EXPECT_EQ(heads_of(rest), std::vector(heads.begin() + 4, heads.end()));
    for (const UsedElement& element : rest) {
        EXPECT_EQ(element.length, 0u);
    }
    EXPECT_EQ(device_->stats()["rx"], counters(3, 3600, 0, 0));
}

TEST_F(NetDeviceTest, APacketLongerThanTheChainsHeldWaitsAndEndsInTheNextChainsPosted) {
    activate();
    std::vector<std::uint16_t> heads{post_receive_chain({400, 600}), post_receive_chain({1000})};
    const Bytes bytes = frame(5000, 7);
    std::vector<std::uint64_t> dirty;
    run_loop({{[&] { host_send(packet({.flags = kHeaderDataValid}, bytes)); }, after_turns(5)},
              {[&] {
                   EXPECT_EQ(rx->used_idx(), 0);
                   EXPECT_EQ(rx->used_flags(), 0);  // the device asked to be told about more buffers
                   (void)ram.take_dirty_page_numbers();
                   heads.push_back(post_receive_chain({500, 500, 500}, /*indirect=*/true));
                   heads.push_back(post_receive_chain({2000}));
                   receive_notification.signal();
               },
               [&] { return rx->used_idx() == 4; }}});

    const auto used = rx->take_used();
    EXPECT_EQ(heads_of(used), heads);
    std::vector<std::uint32_t> lengths;
    for (const UsedElement& element : used) {
        lengths.push_back(element.length);
    }
    EXPECT_THAT(lengths, ElementsAre(1000, 1000, 1500, kPacketHeaderSize + 5000 - 3500));
    EXPECT_THAT(received_packets(used),
                ElementsAre(packet({.flags = kHeaderDataValid, .num_buffers = 4}, bytes)));
    // What was copied into the later chains, and num_buffers, marked for migration.
    dirty = ram.take_dirty_page_numbers();
    for (const std::uint16_t head : {heads[2], heads[3]}) {
        for (const DriverBuffer& buffer : receive_chain_buffers[head]) {
            EXPECT_THAT(dirty, ::testing::Contains((buffer.address - kRam) / memory::kPageSize));
        }
    }
    EXPECT_THAT(dirty,
                ::testing::Contains((receive_chain_buffers[heads[0]][0].address - kRam) / memory::kPageSize));
    EXPECT_EQ(device_->stats()["rx"], counters(1, 5000, 0, 0));
}

TEST_F(NetDeviceTest, PagesOfAChainHeldBeforeThePacketCameAreMarkedDirtyWhenItLands) {
    activate();
    const DriverBuffer buffer = post_receive_buffer(3 * memory::kPageSize);
    const std::uint64_t written = kPacketHeaderSize + 2 * memory::kPageSize;
    run_loop({{[&] { receive_notification.signal(); }, after_turns(3)},
              {[&] {
                   // A migration pass takes the bitmap while the device holds the chain.
                   (void)ram.take_dirty_page_numbers();
                   host_send(packet({}, frame(2 * memory::kPageSize, 6)));
               },
               [&] { return rx->used_idx() == 1; }}});
    const auto dirty = ram.take_dirty_page_numbers();
    const std::uint64_t first_page = (buffer.address - kRam) / memory::kPageSize;
    const std::uint64_t last_page = (buffer.address - kRam + written - 1) / memory::kPageSize;
    for (std::uint64_t page = first_page; page <= last_page; ++page) {
        EXPECT_THAT(dirty, ::testing::Contains(page)) << "page " << page;
    }
}

TEST_F(NetDeviceTest, DropsAPacketLongerThanTheLargestFromTheBackend) {
    activate();
    std::vector<std::uint16_t> heads;
    for (int i = 0; i < 4; ++i) {
        heads.push_back(post_receive_chain({2048}));
    }
    const Bytes fits = frame(60, 1);
    run_loop({{[&] {
                   host_send(packet({}, frame(kMaxFrameLength + 1, 2)));
                   host_send(packet({}, fits));
               },
               [&] { return rx->used_idx() == 1; }}});
    const auto used = rx->take_used();
    EXPECT_EQ(heads_of(used), std::vector{heads[0]});
    EXPECT_THAT(received_packets(used), ElementsAre(packet({.num_buffers = 1}, fits)));
    EXPECT_EQ(device_->stats()["rx"], counters(1, 60, 1, 0));
}

TEST_F(NetDeviceTest, ReceivesIntoChainsOfMoreBuffersThanOneReadTakes) {
    // 16 chains of 128 buffers of 16 bytes: 2048 buffers, twice what one
    // readv takes (IOV_MAX); a driver may post such chains, if not Linux.
    activate();
    std::vector<std::uint16_t> heads;
    for (int i = 0; i < 16; ++i) {
        heads.push_back(post_receive_chain(std::vector<std::uint32_t>(128, 16), /*indirect=*/true));
    }
    const Bytes bytes = frame(30000, 8);
    run_loop({{[&] { host_send(packet({}, bytes)); }, [&] { return rx->used_idx() == 15; }}});
    const auto used = rx->take_used();
    EXPECT_EQ(heads_of(used), std::vector(heads.begin(), heads.begin() + 15));
    EXPECT_THAT(received_packets(used), ElementsAre(packet({.num_buffers = 15}, bytes)));
    EXPECT_EQ(device_->stats()["rx"], counters(1, 30000, 0, 0));
}

TEST_F(NetDeviceTest, WithEventIdxReceiveInterruptsOnlyWhenTheDriverAsks) {
    activate(/*refused=*/0, /*event_idx=*/true);
    // "Interrupt me once the entry at used index 3 is written."
    rx->set_used_event(3);
    for (int i = 0; i < 8; ++i) {
        post_receive_buffer(2048);
    }
    run_loop({{[&] {
                   for (int i = 0; i < 3; ++i) {
                       host_send(packet({}, frame(60, static_cast<std::uint8_t>(i))));
                   }
               },
               [&] { return rx->used_idx() == 3; }},
              {[] {}, after_turns(3)},
              {[&] {
                   EXPECT_TRUE(interrupt.used_buffers_queues.empty());
                   host_send(packet({}, frame(60, 3)));
               },
               [&] { return rx->used_idx() == 4; }}});
    EXPECT_THAT(interrupt.used_buffers_queues, ElementsAre(NetDevice::kReceiveQueue));
}

TEST_F(NetDeviceTest, DropsARuntFromTheBackend) {
    activate();
    const DriverBuffer buffer = post_receive_buffer(2048);
    const Bytes bytes = frame(60, 12);
    run_loop({{[&] {
                   host_send(Bytes(kPacketHeaderSize + kMinFrameLength - 1, 0));
                   host_send(packet({}, bytes));
               },
               [&] { return rx->used_idx() == 1; }}});
    EXPECT_EQ(received(buffer, kPacketHeaderSize + 60), packet({.num_buffers = 1}, bytes));
    EXPECT_EQ(device_->stats()["rx"], counters(1, 60, 1, 0));
}

TEST_F(NetDeviceTest, ABrokenQueueAsksForAResetAndIsNotTouchedAgain) {
    activate();
    // avail.idx further ahead than the queue is long: no correct driver writes that.
    tx.set_avail_idx(NetDevice::kQueueSize + 1);
    DriverBuffer later{};
    run_loop({{[&] { transmit_notification.signal(); }, [&] { return interrupt.needs_reset_calls == 1; }},
              {[&] {
                   later = post_receive_buffer(2048);
                   host_send(packet({}, frame(60, 1)));
                   receive_notification.signal();
               },
               after_turns(3)}});
    EXPECT_EQ(tx.used_idx(), 0);
    EXPECT_EQ(rx->used_idx(), 0);
    EXPECT_EQ(interrupt.needs_reset_calls, 1);
    EXPECT_TRUE(interrupt.used_buffers_queues.empty());
}

TEST_F(NetDeviceTest, ABackendThatGoesAwayTakesTheLinkDownAndTransmitDrops) {
    activate();
    run_loop({{[&] { backend_->close_host_end(); }, [&] { return interrupt.config_changes == 1; }},
              {[&] {
                   offer_transmit(packet({}, frame(60, 1)));
                   transmit_notification.signal();
               },
               [&] { return tx.used_idx() == 1; }}});
    std::array<std::uint8_t, 2> status;
    device_->read_config(6, status);
    EXPECT_THAT(status, ElementsAre(0, 0));
    const nlohmann::json stats = device_->stats();
    EXPECT_EQ(stats["link"], "down");
    EXPECT_EQ(stats["tx"], counters(0, 0, 0, 1));
}

TEST_F(NetDeviceTest, AfterResetNothingIsServedAndAWaitingPacketIsDropped) {
    activate();
    DriverBuffer later{};
    run_loop({{[&] { host_send(packet({}, frame(60, 1))); }, after_turns(5)},
              {[&] {
                   device_->reset();
                   active_ = false;
                   later = post_receive_buffer(2048);
                   receive_notification.signal();
                   offer_transmit(packet({}, frame(60, 2)));
                   transmit_notification.signal();
               },
               after_turns(3)}});
    EXPECT_EQ(rx->used_idx(), 0);
    EXPECT_EQ(tx.used_idx(), 0);
    EXPECT_TRUE(host_has_nothing());
    EXPECT_EQ(device_->stats()["rx"], counters(0, 0, 1, 0));
    // The fds are no longer the loop's: they can be watched anew.
    EXPECT_NO_THROW(loop.add(backend_->fd(), EPOLLIN, [](std::uint32_t) {}));
    EXPECT_NO_THROW(loop.add(receive_notification.get(), EPOLLIN, [](std::uint32_t) {}));
}

TEST_F(NetDeviceTest, WithEventIdxInterruptsOnlyWhenTheDriverAsks) {
    activate(/*refused=*/0, /*event_idx=*/true);
    // "Interrupt me once the entry at used index 5 is written": 3 packets do not get there.
    tx.set_used_event(5);
    for (int i = 0; i < 3; ++i) {
        offer_transmit(packet({}, frame(60, static_cast<std::uint8_t>(i))));
    }
    transmit_until_used(3);
    EXPECT_TRUE(interrupt.used_buffers_queues.empty());
    EXPECT_EQ(tx.avail_event(), 3);
}

TEST_F(NetDeviceTest, RefusesAnActivationWithAnotherNumberOfQueues) {
    std::array<Queue, 1> one_queue{Queue{"q0", 16}};
    std::array<int, 1> one_fd{receive_notification.get()};
    try {
        device_->activate(Activation{ram.memory(), loop, 0, one_queue, one_fd, interrupt});
        FAIL() << "no exception";
    } catch (const std::invalid_argument& error) {
        EXPECT_STREQ(
            error.what(),
            "virtio-net: activated with 1 queues and 1 notification fds; it has two (receive, transmit)");
    }
}

TEST_F(NetDeviceTest, StatsNameTheInterfaceAndTheMac) {
    const nlohmann::json stats = device_->stats();
    EXPECT_EQ(stats["interface"], "sock0");
    EXPECT_EQ(stats["mac"], "52:54:00:12:34:56");
    EXPECT_EQ(stats["link"], "up");
    EXPECT_EQ(stats["rx"], counters(0, 0, 0, 0));
    EXPECT_EQ(stats["tx"], counters(0, 0, 0, 0));
}

// Before a snapshot: the receive chains held for a packet too big for them go
// back to the driver empty (it posts them again), so none is lost with the
// source; the packet is dropped, and the device goes on as before.
TEST_F(NetDeviceTest, QuiesceGivesHeldReceiveChainsBackEmpty) {
    activate();
    const std::uint16_t held = rx->add_chain(std::array{rx->writable(1024)});
    std::vector<DriverBuffer> buffers;
    run_loop({{[&] { host_send(packet({}, frame(2500, 5))); }, after_turns(5)},
              {[&] {
                   EXPECT_EQ(rx->used_idx(), 0);
                   device_->quiesce();
                   EXPECT_EQ(rx->used_idx(), 1);
                   buffers.push_back(post_receive_buffer(2048));
                   receive_notification.signal();
                   host_send(packet({}, frame(300, 6)));
               },
               [&] { return rx->used_idx() == 2; }}});
    const auto used = rx->take_used();
    ASSERT_EQ(used.size(), 2u);
    EXPECT_EQ(used[0].id, held);
    EXPECT_EQ(used[0].length, 0u);
    EXPECT_EQ(received(buffers[0], used[1].length), packet({.num_buffers = 1}, frame(300, 6)));
    EXPECT_EQ(device_->stats()["rx"]["dropped"], 1u);
    EXPECT_EQ(device_->save_device(), state::State::object());
}

}  // namespace
}  // namespace vim::vmm::virtio::net
