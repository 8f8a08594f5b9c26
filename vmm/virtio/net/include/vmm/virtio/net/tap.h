#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "vmm/sys/fd.h"
#include "vmm/virtio/net/backend.h"

namespace vim::vmm::virtio::net {

// How the vmm sets up the tap's link before the guest uses it.
struct LinkSettings {
    std::string bridge;                     // empty: attached to no bridge
    std::optional<std::uint32_t> mtu = {};  // nullopt: the tap's own (1500 for a new one)
};

// A tap interface (/dev/net/tun, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), open
// non-blocking, with 12-byte virtio-net headers (TUNSETVNETHDRSZ).
//
// open() attaches to the tap if it exists (a persistent one, `ip tuntap add`)
// or creates a transient one, which the kernel removes when the last
// descriptor closes: the vmm removes only what it created, even when it dies.
class Tap final : public NetBackend {
public:
    // Opens tap `name`, then through netlink sets its MTU, attaches it to the
    // bridge and brings it up. Throws std::system_error naming the tap and the
    // step ("tap tap0: TUNSETIFF: Operation not permitted").
    static std::unique_ptr<Tap> open(const std::string& name, const LinkSettings& link = {});

    const std::string& name() const override { return name_; }
    int fd() const override { return fd_.get(); }
    // Whether open() created the tap (it goes away with this object).
    bool created() const noexcept { return created_; }
    // CSUM and HOST_TSO4/6/ECN always (the tap takes any GSO packet with a
    // virtio-net header), HOST_UFO and GUEST_UFO where the kernel accepts
    // TUN_F_UFO, GUEST_CSUM/TSO4/TSO6/ECN where it accepts TUN_F_TSO*.
    std::uint64_t offload_features() const override { return offload_features_; }
    void set_offloads(std::uint64_t features) override;

private:
    Tap(std::string name, sys::Fd fd, bool created)
        : name_(std::move(name)), fd_(std::move(fd)), created_(created) {}
    void probe_offloads();

    std::string name_;
    sys::Fd fd_;
    bool created_;
    std::uint64_t offload_features_ = 0;
};

}  // namespace vim::vmm::virtio::net
