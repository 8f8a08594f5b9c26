#include "vmm/virtio/net/net_device.h"

#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>

#include "vmm/virtio/split_ring.h"

namespace vim::vmm::virtio::net {
namespace {

// The backend's features this device knows what to do with.
constexpr std::uint64_t kOffloadFeatures = feature_bit(kFeatureCsum) | feature_bit(kFeatureGuestCsum) |
                                           feature_bit(kFeatureGuestTso4) | feature_bit(kFeatureGuestTso6) |
                                           feature_bit(kFeatureGuestEcn) | feature_bit(kFeatureGuestUfo) |
                                           feature_bit(kFeatureHostTso4) | feature_bit(kFeatureHostTso6) |
                                           feature_bit(kFeatureHostEcn) | feature_bit(kFeatureHostUfo);

// The largest packet the backend hands over: a header and the largest frame.
constexpr std::size_t kMaxPacketLength = kPacketHeaderSize + kMaxFrameLength;

std::span<std::uint8_t> bytes_of(PacketHeader& header) {
    return {reinterpret_cast<std::uint8_t*>(&header), sizeof(header)};
}

}  // namespace

NetDevice::NetDevice(std::unique_ptr<NetBackend> backend, MacAddress mac, std::optional<std::uint16_t> mtu)
    : backend_(std::move(backend)),
      mac_(mac),
      features_(feature_bit(kFeatureMac) | feature_bit(kFeatureStatus) |
                feature_bit(kFeatureMergeableRxBuffers) | (mtu ? feature_bit(kFeatureMtu) : 0) |
                (backend_->offload_features() & kOffloadFeatures) | feature_bit(kFeatureRingIndirectDesc) |
                feature_bit(kFeatureRingEventIdx)),
      config_{},
      status_(kStatusLinkUp),
      receive_overflow_(kMaxPacketLength) {
    std::copy(mac.begin(), mac.end(), config_.mac);
    config_.max_virtqueue_pairs = 1;
    config_.mtu = mtu.value_or(0);
}

std::uint64_t NetDevice::device_features() const { return features_; }

void NetDevice::read_config(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);
    if (offset >= sizeof(Config)) {
        return;
    }
    // Only the status changes, atomically; the rest is fixed at construction.
    Config config = config_;
    config.status = status_.load();
    const std::size_t length = std::min<std::uint64_t>(data.size(), sizeof(Config) - offset);
    std::memcpy(data.data(), reinterpret_cast<const std::uint8_t*>(&config) + offset, length);
}

void NetDevice::write_config(std::uint64_t, std::span<const std::uint8_t>) {}

void NetDevice::activate(const Activation& activation) {
    if (activation.queues.size() != 2 || activation.notifications.size() != 2) {
        throw std::invalid_argument("virtio-net: activated with " + std::to_string(activation.queues.size()) +
                                    " queues and " + std::to_string(activation.notifications.size()) +
                                    " notification fds; it has two (receive, transmit)");
    }
    active_.emplace(activation);
    try {
        backend_->set_offloads(activation.features);
    } catch (const std::system_error&) {
        // Packets the driver could not take would reach it: better no network.
        ++receive_counters_.errors;
        broken_ = true;
        active_->interrupt.needs_reset();
        return;
    }
    // Level-triggered, so a notification that came before activation (the
    // eventfd still counts it) is served at once.
    active_->loop.add(active_->notifications[kReceiveQueue], EPOLLIN,
                      [this](std::uint32_t) { serve_receive_notification(); });
    active_->loop.add(active_->notifications[kTransmitQueue], EPOLLIN,
                      [this](std::uint32_t) { serve_transmit_notification(); });
    if (!backend_lost_) {
        active_->loop.add(backend_->fd(), EPOLLIN, [this](std::uint32_t events) { serve_backend(events); });
        watched_events_ = EPOLLIN;
    }
}

void NetDevice::reset() {
    if (!active_) {
        return;
    }
    active_->loop.remove(active_->notifications[kReceiveQueue]);
    active_->loop.remove(active_->notifications[kTransmitQueue]);
    active_->loop.remove(backend_->fd());
    if (receive_packet_length_ != 0) {
        ++receive_counters_.dropped;
        receive_packet_length_ = 0;
    }
    receive_chains_.clear();
    transmit_waiting_.reset();
    waiting_for_receive_buffers_ = false;
    broken_ = false;
    watched_events_ = 0;
    active_.reset();
}

void NetDevice::quiesce() {
    if (!active_ || broken_) {
        return;
    }
    memory::GuestMemory& memory = active_->memory;
    for (const ReceiveChain& held : receive_chains_) {
        active_->queues[kReceiveQueue].add_used(memory, held.chain.head, 0);
    }
    receive_chains_.clear();
    if (receive_packet_length_ != 0) {
        ++receive_counters_.dropped;
        receive_packet_length_ = 0;
    }
    if (transmit_waiting_) {
        ++transmit_counters_.dropped;
        active_->queues[kTransmitQueue].add_used(memory, transmit_waiting_->head, 0);
        transmit_waiting_.reset();
        // Notifications were left off while it waited: the loop comes back
        // for the chains behind it, should the VM go on here.
        (void)::eventfd_write(active_->notifications[kTransmitQueue], 1);
    }
    watch_backend();
    signal_used(kReceiveQueue);
    signal_used(kTransmitQueue);
}

void NetDevice::serve_receive_notification() {
    eventfd_t count;
    // Fails only on a counter already drained (the fd is non-blocking).
    (void)::eventfd_read(active_->notifications[kReceiveQueue], &count);
    if (broken_) {
        return;
    }
    // New buffers: receiving resumes, and until they run out again the
    // driver need not tell us about more.
    waiting_for_receive_buffers_ = false;
    active_->queues[kReceiveQueue].disable_notification(active_->memory);
    receive();
}

void NetDevice::serve_transmit_notification() {
    eventfd_t count;
    (void)::eventfd_read(active_->notifications[kTransmitQueue], &count);
    transmit();
}

void NetDevice::serve_backend(std::uint32_t events) {
    if ((events & (EPOLLERR | EPOLLHUP)) != 0) {
        lose_backend();
        return;
    }
    if ((events & EPOLLOUT) != 0) {
        transmit();
    }
    if ((events & EPOLLIN) != 0) {
        receive();
    }
}

void NetDevice::receive() {
    if (broken_ || backend_lost_) {
        return;
    }
    Queue& queue = active_->queues[kReceiveQueue];
    try {
        for (std::size_t budget = kMaxPacketsPerTurn; budget > 0; --budget) {
            if (receive_packet_length_ == 0) {
                hold_receive_chains();
                if (!read_packet()) {
                    break;  // the chains held wait for the next packet
                }
            }
            if (deliver_packet()) {
                continue;
            }
            // Out of buffers. Ask for a notification, unless buffers came
            // while asking (then the driver will not notify for them).
            if (queue.enable_notification(active_->memory)) {
                queue.disable_notification(active_->memory);
                continue;
            }
            waiting_for_receive_buffers_ = true;
            break;
        }
    } catch (const QueueBrokenError&) {
        break_device();
        return;
    }
    watch_backend();
    signal_used(kReceiveQueue);
}

void NetDevice::hold_receive_chains() {
    if ((active_->features & feature_bit(kFeatureMergeableRxBuffers)) == 0) {
        if (receive_chains_.empty()) {
            hold_next_receive_chain();
        }
        return;
    }
    std::uint64_t room = 0;
    for (const ReceiveChain& held : receive_chains_) {
        room += held.length;
    }
    while (room < kMaxPacketLength && hold_next_receive_chain()) {
        room += receive_chains_.back().length;
    }
}

bool NetDevice::hold_next_receive_chain() {
    Queue& queue = active_->queues[kReceiveQueue];
    memory::GuestMemory& memory = active_->memory;
    // Bad chains go back as they come, but no more than a queue's worth per
    // call: a driver re-offering them as fast as we return them cannot keep
    // the loop here.
    for (std::uint32_t bad = 0; bad < queue.state().size; ++bad) {
        std::optional<DescriptorChain> chain;
        try {
            chain = queue.pop(memory);
        } catch (const InvalidChainError& error) {
            ++receive_counters_.errors;
            queue.add_used(memory, error.head(), 0);
            continue;
        }
        if (!chain) {
            return false;
        }
        // Receive buffers are the device's to write, and each must hold at
        // least the header (spec 5.1.6.3.1): anything else is a driver bug.
        if (!chain->readable.empty() || chain->writable_length() < kPacketHeaderSize) {
            ++receive_counters_.errors;
            queue.add_used(memory, chain->head, 0);
            continue;
        }
        std::vector<iovec> iovecs = chain->writable_iovecs(memory);
        const std::uint64_t length = chain->writable_length();
        receive_chains_.push_back({std::move(*chain), std::move(iovecs), length});
        return true;
    }
    return false;
}

bool NetDevice::read_packet() {
    const bool merged = (active_->features & feature_bit(kFeatureMergeableRxBuffers)) != 0;
    // The held chains' buffers, as many as one readv takes (a chain has at
    // most twice the queue size of them, far fewer than IOV_MAX, so the
    // first always fits), then the overflow: room for more than the largest
    // packet, so that a longer one (which no tap sends) shows by its length.
    receive_iovecs_.clear();
    std::uint64_t room = 0;
    for (const ReceiveChain& held : receive_chains_) {
        if (receive_iovecs_.size() + held.iovecs.size() >= IOV_MAX) {
            break;
        }
        receive_iovecs_.insert(receive_iovecs_.end(), held.iovecs.begin(), held.iovecs.end());
        room += held.length;
        if (!merged || room >= kMaxPacketLength) {
            break;
        }
    }
    receive_iovecs_.push_back({receive_overflow_.data(), receive_overflow_.size()});

    while (!backend_lost_) {
        const ssize_t read =
            ::readv(backend_->fd(), receive_iovecs_.data(), static_cast<int>(receive_iovecs_.size()));
        if (read < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                lose_backend();
            }
            return false;
        }
        if (read == 0) {
            lose_backend();  // the other end is gone (a socket pair's; a tap does not end)
            return false;
        }
        const auto length = static_cast<std::size_t>(read);
        const std::size_t in_chains = std::min<std::uint64_t>(length, room);
        // The pages were marked dirty when the chains were translated, maybe
        // long before: marked again now that they hold the data, as a
        // migration may have taken the dirty bitmap in between.
        std::uint64_t unmarked = in_chains;
        for (auto held = receive_chains_.begin(); unmarked > 0; ++held) {
            const std::uint64_t piece = std::min(unmarked, held->length);
            held->chain.mark_written(active_->memory, piece);
            unmarked -= piece;
        }
        if (length < kPacketHeaderSize + kMinFrameLength || length > kMaxPacketLength) {
            ++receive_counters_.dropped;  // no frame a driver could use
            continue;
        }
        receive_packet_length_ = length;
        receive_packet_in_chains_ = in_chains;
        return true;
    }
    return false;
}

bool NetDevice::deliver_packet() {
    Queue& queue = active_->queues[kReceiveQueue];
    memory::GuestMemory& memory = active_->memory;
    const bool merged = (active_->features & feature_bit(kFeatureMergeableRxBuffers)) != 0;
    const std::size_t length = receive_packet_length_;

    // Find the chains that hold the packet: the first one alone without
    // MRG_RXBUF, as many as it takes with it.
    std::size_t chains = 0;
    std::uint64_t room = 0;
    while (room < length && (merged || chains == 0)) {
        if (chains == receive_chains_.size() && !hold_next_receive_chain()) {
            if (receive_chains_.size() < queue.state().size) {
                return false;  // the driver has more buffers to post
            }
            break;  // the whole queue cannot hold it
        }
        room += receive_chains_[chains].length;
        ++chains;
    }
    if (room < length) {
        // Kept for a smaller packet: the chains are good, this one too big.
        ++receive_counters_.dropped;
        receive_packet_length_ = 0;
        return true;
    }

    // The read filled whole chains before it reached the overflow, so each
    // chain holds its part already or takes it from there.
    const std::span<const std::uint8_t> overflow =
        std::span(receive_overflow_).first(length - receive_packet_in_chains_);
    receive_used_.clear();
    std::size_t offset = 0;
    for (std::size_t index = 0; index < chains; ++index) {
        const ReceiveChain& held = receive_chains_[index];
        const std::size_t piece = std::min<std::uint64_t>(held.length, length - offset);
        if (offset >= receive_packet_in_chains_) {
            held.chain.write(memory, 0, overflow.subspan(offset - receive_packet_in_chains_, piece));
        }
        receive_used_.push_back({held.chain.head, static_cast<std::uint32_t>(piece)});
        offset += piece;
    }
    // num_buffers is the device's to fill: a tap skips it, leaving what the buffer held.
    const auto num_buffers = static_cast<std::uint16_t>(chains);
    receive_chains_.front().chain.write(
        memory, offsetof(PacketHeader, num_buffers),
        std::span(reinterpret_cast<const std::uint8_t*>(&num_buffers), sizeof(num_buffers)));
    queue.add_used(memory, receive_used_);
    receive_chains_.erase(receive_chains_.begin(),
                          receive_chains_.begin() + static_cast<std::ptrdiff_t>(chains));

    ++receive_counters_.packets;
    receive_counters_.bytes += length - kPacketHeaderSize;
    receive_packet_length_ = 0;
    return true;
}

void NetDevice::transmit() {
    if (broken_) {
        return;
    }
    Queue& queue = active_->queues[kTransmitQueue];
    memory::GuestMemory& memory = active_->memory;
    try {
        if (transmit_waiting_) {
            if (send(*transmit_waiting_) == SendResult::BackendFull) {
                return;  // still full; the backend's EPOLLOUT brings us back
            }
            queue.add_used(memory, transmit_waiting_->head, 0);
            transmit_waiting_.reset();
        }
        transmit_chains();
    } catch (const QueueBrokenError&) {
        break_device();
        return;
    }
    watch_backend();
    signal_used(kTransmitQueue);
}

void NetDevice::transmit_chains() {
    Queue& queue = active_->queues[kTransmitQueue];
    memory::GuestMemory& memory = active_->memory;
    std::size_t budget = kMaxPacketsPerTurn;
    queue.disable_notification(memory);
    do {
        for (; budget > 0; --budget) {
            std::optional<DescriptorChain> chain;
            try {
                chain = queue.pop(memory);
            } catch (const InvalidChainError& error) {
                ++transmit_counters_.dropped;
                queue.add_used(memory, error.head(), 0);
                continue;
            }
            if (!chain) {
                break;
            }
            if (send(*chain) == SendResult::BackendFull) {
                // Notifications stay off until the backend takes it.
                transmit_waiting_ = std::move(chain);
                return;
            }
            queue.add_used(memory, chain->head, 0);
        }
        if (budget == 0) {
            // Chains may be left: come back once the loop's other sources
            // have had their turn, through our own level-triggered notification.
            (void)::eventfd_write(active_->notifications[kTransmitQueue], 1);
            return;
        }
    } while (queue.enable_notification(memory));
}

NetDevice::SendResult NetDevice::send(const DescriptorChain& chain) {
    const memory::GuestMemory& memory = active_->memory;
    const std::uint64_t length = chain.readable_length();
    if (!chain.writable.empty() || length < kPacketHeaderSize + kMinFrameLength ||
        length > kPacketHeaderSize + kMaxFrameLength) {
        ++transmit_counters_.dropped;
        return SendResult::Dropped;
    }
    // The header goes out from this checked copy, so a driver rewriting it
    // meanwhile cannot slip a different one past the check.
    PacketHeader header;
    chain.read(memory, 0, bytes_of(header));
    const std::uint64_t frame_length = length - kPacketHeaderSize;
    if (!valid_transmit_header(header, frame_length)) {
        ++transmit_counters_.dropped;
        return SendResult::Dropped;
    }
    if (backend_lost_) {
        ++transmit_counters_.errors;
        return SendResult::Dropped;
    }
    header.num_buffers = 0;
    transmit_iovecs_.clear();
    transmit_iovecs_.push_back({&header, sizeof(header)});
    std::uint64_t skip = kPacketHeaderSize;
    for (const GuestBuffer& buffer : chain.readable) {
        if (skip >= buffer.length) {
            skip -= buffer.length;
            continue;
        }
        const auto bytes = memory.read_span(buffer.address + skip, buffer.length - skip);
        transmit_iovecs_.push_back({const_cast<std::uint8_t*>(bytes.data()), bytes.size()});  // only read
        skip = 0;
    }
    for (;;) {
        const ssize_t written =
            ::writev(backend_->fd(), transmit_iovecs_.data(), static_cast<int>(transmit_iovecs_.size()));
        if (written >= 0) {
            if (static_cast<std::uint64_t>(written) != length) {
                ++transmit_counters_.errors;  // a tap writes a packet whole or not at all
                return SendResult::Dropped;
            }
            ++transmit_counters_.packets;
            transmit_counters_.bytes += frame_length;
            return SendResult::Sent;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return SendResult::BackendFull;
        }
        // The tap refused this packet (its checks of the header are stricter
        // than ours, or the link is down): the next may pass.
        ++transmit_counters_.errors;
        return SendResult::Dropped;
    }
}

bool NetDevice::valid_transmit_header(const PacketHeader& header, std::uint64_t frame_length) const {
    const auto negotiated = [this](unsigned bit) { return (active_->features & feature_bit(bit)) != 0; };
    // DATA_VALID and the rest are the device's to set (spec 5.1.6.2.1).
    if ((header.flags & ~kHeaderNeedsCsum) != 0) {
        return false;
    }
    if ((header.flags & kHeaderNeedsCsum) != 0) {
        if (!negotiated(kFeatureCsum) ||
            std::uint64_t{header.csum_start} + header.csum_offset + sizeof(std::uint16_t) > frame_length) {
            return false;
        }
    }
    const auto gso = static_cast<std::uint8_t>(header.gso_type & ~kGsoEcn);
    if ((header.gso_type & kGsoEcn) != 0 && (gso == kGsoNone || !negotiated(kFeatureHostEcn))) {
        return false;
    }
    switch (gso) {
    case kGsoNone:
        return true;
    case kGsoTcpV4:
        if (!negotiated(kFeatureHostTso4)) {
            return false;
        }
        break;
    case kGsoTcpV6:
        if (!negotiated(kFeatureHostTso6)) {
            return false;
        }
        break;
    case kGsoUdp:
        if (!negotiated(kFeatureHostUfo)) {
            return false;
        }
        break;
    default:
        return false;
    }
    return header.gso_size != 0 && header.header_length <= frame_length;
}

void NetDevice::signal_used(std::size_t queue) {
    if (!broken_ && active_->queues[queue].needs_notification(active_->memory)) {
        active_->interrupt.used_buffers(queue);
    }
}

void NetDevice::watch_backend() {
    if (broken_ || backend_lost_) {
        return;
    }
    std::uint32_t events = 0;
    if (!waiting_for_receive_buffers_) {
        events |= EPOLLIN;
    }
    if (transmit_waiting_) {
        events |= EPOLLOUT;
    }
    if (events != watched_events_) {
        active_->loop.modify(backend_->fd(), events);
        watched_events_ = events;
    }
}

void NetDevice::break_device() {
    // No chain of the queue can be trusted any more: stop until the driver
    // resets the device.
    broken_ = true;
    active_->loop.remove(active_->notifications[kReceiveQueue]);
    active_->loop.remove(active_->notifications[kTransmitQueue]);
    active_->loop.remove(backend_->fd());
    active_->interrupt.needs_reset();
}

void NetDevice::lose_backend() {
    // The tap was deleted under us, or a test's socket closed: the link is
    // down for good. Transmit goes on, dropping, so the driver's queue drains.
    backend_lost_ = true;
    ++receive_counters_.errors;
    active_->loop.remove(backend_->fd());
    status_ = 0;
    if ((active_->features & feature_bit(kFeatureStatus)) != 0) {
        active_->interrupt.config_changed();
    }
    if (transmit_waiting_) {
        ++transmit_counters_.errors;
        active_->queues[kTransmitQueue].add_used(active_->memory, transmit_waiting_->head, 0);
        transmit_waiting_.reset();
        signal_used(kTransmitQueue);
    }
}

nlohmann::json NetDevice::stats() const {
    const auto counters = [](const Counters& counters) {
        return nlohmann::json{{"packets", counters.packets.load()},
                              {"bytes", counters.bytes.load()},
                              {"dropped", counters.dropped.load()},
                              {"errors", counters.errors.load()}};
    };
    return {{"interface", backend_->name()},
            {"mac", to_string(mac_)},
            {"link", status_.load() == kStatusLinkUp ? "up" : "down"},
            {"rx", counters(receive_counters_)},
            {"tx", counters(transmit_counters_)}};
}

}  // namespace vim::vmm::virtio::net
