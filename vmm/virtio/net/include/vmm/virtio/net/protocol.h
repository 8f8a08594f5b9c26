#pragma once

// What a virtio-net driver and device exchange (spec 5.1): feature bits, the
// header before every packet, the configuration space. Little-endian, read as
// native integers (split_ring.h checks the host is little-endian).

#include <cstddef>
#include <cstdint>

namespace vim::vmm::virtio::net {

// Device feature bits (spec 5.1.3). "Guest" offloads are what the driver can
// receive (the tap may hand us such packets), "host" offloads what the device
// accepts from the driver (the tap takes them from us).
inline constexpr unsigned kFeatureCsum = 0;
inline constexpr unsigned kFeatureGuestCsum = 1;
inline constexpr unsigned kFeatureMtu = 3;
inline constexpr unsigned kFeatureMac = 5;
inline constexpr unsigned kFeatureGuestTso4 = 7;
inline constexpr unsigned kFeatureGuestTso6 = 8;
inline constexpr unsigned kFeatureGuestEcn = 9;
inline constexpr unsigned kFeatureGuestUfo = 10;
inline constexpr unsigned kFeatureHostTso4 = 11;
inline constexpr unsigned kFeatureHostTso6 = 12;
inline constexpr unsigned kFeatureHostEcn = 13;
inline constexpr unsigned kFeatureHostUfo = 14;
inline constexpr unsigned kFeatureMergeableRxBuffers = 15;
inline constexpr unsigned kFeatureStatus = 16;

// struct virtio_net_hdr_v1 (spec 5.1.6): before every packet, both ways. With
// VERSION_1 it always has num_buffers, merged receive buffers or not.
struct PacketHeader {
    std::uint8_t flags = 0;
    std::uint8_t gso_type = 0;
    std::uint16_t header_length = 0;  // hdr_len: Ethernet, IP and transport headers, a hint
    std::uint16_t gso_size = 0;       // payload bytes per segment
    std::uint16_t csum_start = 0;     // where checksumming starts, from the frame's start
    std::uint16_t csum_offset = 0;    // where the checksum goes, from csum_start
    std::uint16_t num_buffers = 0;    // receive: the chains the packet spans
};
static_assert(sizeof(PacketHeader) == 12);
inline constexpr std::size_t kPacketHeaderSize = sizeof(PacketHeader);

// PacketHeader::flags.
inline constexpr std::uint8_t kHeaderNeedsCsum = 1;
inline constexpr std::uint8_t kHeaderDataValid = 2;

// PacketHeader::gso_type.
inline constexpr std::uint8_t kGsoNone = 0;
inline constexpr std::uint8_t kGsoTcpV4 = 1;
inline constexpr std::uint8_t kGsoUdp = 3;
inline constexpr std::uint8_t kGsoTcpV6 = 4;
inline constexpr std::uint8_t kGsoEcn = 0x80;

// The largest frame either way: a 64 KiB TSO/UFO packet (Linux's GSO limit)
// with its Ethernet and VLAN headers. A chain carrying more is dropped.
inline constexpr std::size_t kMaxFrameLength = 65536 + 14 + 4;
// The smallest frame the tap takes: an Ethernet header.
inline constexpr std::size_t kMinFrameLength = 14;

// Config status bits.
inline constexpr std::uint16_t kStatusLinkUp = 1;

// The start of struct virtio_net_config (spec 5.1.4): the fields this device
// fills. max_virtqueue_pairs is read only with MQ, which is not offered.
struct Config {
    std::uint8_t mac[6];
    std::uint16_t status;
    std::uint16_t max_virtqueue_pairs;
    std::uint16_t mtu;
};
static_assert(sizeof(Config) == 12);

}  // namespace vim::vmm::virtio::net
