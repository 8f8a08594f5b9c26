#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <vector>

#include "vmm/virtio/device.h"
#include "vmm/virtio/net/backend.h"
#include "vmm/virtio/net/mac_address.h"
#include "vmm/virtio/net/protocol.h"
#include "vmm/virtio/split_ring.h"

namespace vim::vmm::virtio::net {

// The network device (spec 5.1) over a NetBackend (a tap): one receive and
// one transmit queue, no control queue. Everything runs on the event loop.
//
// Transmit: the driver's notification drains the transmit queue, each chain
// (header and frame) written to the backend with one writev straight from
// guest memory, and one interrupt per batch when the driver wants it. Should
// the backend be full (EAGAIN), the chain waits until it is writable.
//
// Receive: the device holds the driver's chains first, then reads each packet
// from the backend straight into them with one readv, with no copy on the
// way: with MRG_RXBUF it holds chains enough for the largest packet (or all
// the driver posted) and a packet spans as many as it needs (num_buffers says
// how many), without it one chain takes one packet. A packet's chains are
// published together, one interrupt per batch. Chains held when the backend
// has nothing wait there for the next packet. What does not fit the chains
// held (the driver posted too few, or none) lands in a buffer of the
// device's and waits there for more chains, copied into them when they come;
// meanwhile the backend is no longer watched (no busy loop on a readable tap)
// and the driver is asked to notify: its next buffers resume receiving.
//
// A guest that posts garbage loses that packet, counted in the stats: a chain
// the queue refuses, a transmit chain shorter than a header and an Ethernet
// header or longer than kMaxFrameLength after its header, one with
// device-writable buffers, a header with flags or offloads not negotiated, a
// receive chain with device-readable buffers or shorter than a header. A
// broken queue stops the device until the driver resets it
// (DEVICE_NEEDS_RESET). One turn on the loop moves at most kMaxPacketsPerTurn
// packets each way, so the other devices get their turn.
//
// Destroy it after reset() or once its loop no longer runs: while active, the
// loop holds handlers that point to it.
class NetDevice final : public VirtioDevice {
public:
    static constexpr std::size_t kReceiveQueue = 0;
    static constexpr std::size_t kTransmitQueue = 1;
    static constexpr std::uint16_t kQueueSize = 256;
    static constexpr std::size_t kMaxPacketsPerTurn = 256;

    // `mtu`: offered to the driver (the MTU feature) when given.
    NetDevice(std::unique_ptr<NetBackend> backend, MacAddress mac, std::optional<std::uint16_t> mtu = {});
    NetDevice(const NetDevice&) = delete;
    NetDevice& operator=(const NetDevice&) = delete;

    const NetBackend& backend() const noexcept { return *backend_; }

    std::uint32_t device_type() const override { return kDeviceTypeNet; }
    // MAC, STATUS, MRG_RXBUF, MTU when given, the backend's offloads, and the
    // ring's INDIRECT_DESC and EVENT_IDX.
    std::uint64_t device_features() const override;
    std::vector<std::uint16_t> queue_max_sizes() const override { return {kQueueSize, kQueueSize}; }

    // mac, status (link up until the backend fails), max_virtqueue_pairs (1)
    // and mtu. The driver cannot write any of them (no CTRL_MAC_ADDR).
    void read_config(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    // Sets the backend's offloads to what the driver accepted and starts
    // serving. A backend refusing them leaves the device needing a reset.
    void activate(const Activation& activation) override;
    // Unregisters from the loop and forgets the chains held and the packet
    // waiting for more of them (counted as dropped).
    void reset() override;

    // interface, mac; rx and tx: packets, bytes (frames without headers),
    // dropped (packets lost to a guest's bad chain, or too large for its
    // buffers), errors (bad receive chains given back empty, failed reads
    // and writes on the backend).
    nlohmann::json stats() const override;

    // Gives back what the device holds outside the rings, so that nothing of
    // the driver's is lost with the source: the receive chains held go back
    // empty (the driver drops them as runts and posts them again), the packet
    // waiting for more of them and a transmit chain the tap did not take yet
    // are dropped (counted), as a network may drop them. The link state does
    // not travel: the destination's tap is a new one.
    void quiesce() override;

private:
    struct Counters {
        std::atomic<std::uint64_t> packets = 0;
        std::atomic<std::uint64_t> bytes = 0;
        std::atomic<std::uint64_t> dropped = 0;
        std::atomic<std::uint64_t> errors = 0;
    };

    // Loop handlers.
    void serve_receive_notification();
    void serve_transmit_notification();
    void serve_backend(std::uint32_t events);

    // A receive chain held for the packets to come, its buffers translated
    // to host memory once.
    struct ReceiveChain {
        DescriptorChain chain;
        std::vector<iovec> iovecs;
        std::uint64_t length;  // writable bytes
    };

    // Moves packets from the backend into the receive queue until either
    // runs dry or the turn's budget is spent.
    void receive();
    // Holds chains until they can take the largest packet (with MRG_RXBUF)
    // or one packet (without), or the driver has no more.
    void hold_receive_chains();
    // Pops and holds the next usable receive chain; bad ones are given back
    // empty on the way. False when the driver has none.
    bool hold_next_receive_chain();
    // Reads the next packet into the held chains, the part past them into
    // receive_overflow_; false when there is none.
    bool read_packet();
    // Completes the packet read with the chains that hold it; false when the
    // driver has yet to post the chains for its overflow (it keeps waiting).
    bool deliver_packet();

    // Sends the chain that waited for the backend, then the queue's.
    void transmit();
    // Sends chains until the transmit queue is empty, the backend full or the
    // turn's budget spent.
    void transmit_chains();
    enum class SendResult { Sent, Dropped, BackendFull };
    SendResult send(const DescriptorChain& chain);
    // The header's flags and offloads are ones the driver negotiated and fit
    // the frame of `frame_length` bytes.
    bool valid_transmit_header(const PacketHeader& header, std::uint64_t frame_length) const;

    void signal_used(std::size_t queue);
    void watch_backend();
    void break_device();
    void lose_backend();

    const std::unique_ptr<NetBackend> backend_;
    const MacAddress mac_;
    const std::uint64_t features_;
    Config config_;
    std::atomic<std::uint16_t> status_;

    // Set while active; everything below belongs to the loop's thread.
    std::optional<Activation> active_;
    bool broken_ = false;
    bool backend_lost_ = false;
    // Receive chains popped but not yet used, in the driver's order.
    std::deque<ReceiveChain> receive_chains_;
    // The packet read from the backend and not yet delivered: its first
    // receive_packet_in_chains_ bytes in the held chains, the rest at the
    // start of receive_overflow_.
    std::size_t receive_packet_length_ = 0;  // 0: none
    std::size_t receive_packet_in_chains_ = 0;
    // Where a read puts what does not fit the chains: room for the largest
    // packet, so that no read is ever cut short.
    std::vector<std::uint8_t> receive_overflow_;
    std::vector<iovec> receive_iovecs_;      // reused: one read's buffers
    std::vector<UsedElement> receive_used_;  // reused: one packet's chains
    bool waiting_for_receive_buffers_ = false;
    std::optional<DescriptorChain> transmit_waiting_;  // the backend was full
    std::vector<iovec> transmit_iovecs_;               // reused: one packet's header and frame
    std::uint32_t watched_events_ = 0;

    // Read by stats() from whichever thread asks.
    Counters receive_counters_;
    Counters transmit_counters_;
};

}  // namespace vim::vmm::virtio::net
