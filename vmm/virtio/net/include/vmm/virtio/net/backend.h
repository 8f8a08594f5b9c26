#pragma once

#include <cstdint>
#include <string>

namespace vim::vmm::virtio::net {

// Where a virtio-net device sends the driver's packets and finds packets for
// it: a tap in the vmm, a socket pair in tests.
//
// fd() is non-blocking and carries one packet per read or write, each after a
// PacketHeader (12 bytes) that means what it means on the virtqueue: a tap
// with IFF_VNET_HDR and TUNSETVNETHDRSZ 12.
class NetBackend {
public:
    virtual ~NetBackend() = default;

    // "tap0": names the backend in messages and stats.
    virtual const std::string& name() const = 0;
    virtual int fd() const = 0;
    // The offload feature bits (protocol.h) the backend can serve: CSUM and
    // HOST_* (packets from the driver it can take), GUEST_* (packets it can
    // hand over unsegmented or without a checksum).
    virtual std::uint64_t offload_features() const = 0;
    // The driver accepted `features`: from now on hand over only packets the
    // driver can take (TUNSETOFFLOAD). Throws std::system_error naming the
    // backend when it refuses.
    virtual void set_offloads(std::uint64_t features) = 0;
};

}  // namespace vim::vmm::virtio::net
