#include "vmm/virtio/net/tap.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

#include "vmm/netlink/netlink.h"
#include "vmm/sys/error.h"
#include "vmm/virtio/device.h"
#include "vmm/virtio/net/protocol.h"

namespace vim::vmm::virtio::net {
namespace {

constexpr short kTapFlags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;

// TUNSETIFF on `fd`; returns the errno (0 on success) and the name the kernel used.
int set_interface(int fd, const std::string& name, short flags, std::string& name_used) {
    ifreq request{};
    std::strncpy(request.ifr_name, name.c_str(), IFNAMSIZ - 1);
    request.ifr_flags = flags;
    if (::ioctl(fd, TUNSETIFF, &request) != 0) {
        return errno;
    }
    name_used = request.ifr_name;
    return 0;
}

unsigned tun_offloads(std::uint64_t features) {
    const auto has = [features](unsigned bit) { return (features & feature_bit(bit)) != 0; };
    unsigned offloads = 0;
    // The tap hands over unsegmented or unchecksummed packets only where the
    // driver can take them: its "guest" features.
    if (has(kFeatureGuestCsum)) {
        offloads |= TUN_F_CSUM;
        if (has(kFeatureGuestTso4)) {
            offloads |= TUN_F_TSO4;
        }
        if (has(kFeatureGuestTso6)) {
            offloads |= TUN_F_TSO6;
        }
        if (has(kFeatureGuestEcn) && (has(kFeatureGuestTso4) || has(kFeatureGuestTso6))) {
            offloads |= TUN_F_TSO_ECN;
        }
        if (has(kFeatureGuestUfo)) {
            offloads |= TUN_F_UFO;
        }
    }
    return offloads;
}

// Changes only what differs, so that a vmm without CAP_NET_ADMIN can use a
// persistent tap its owner has set up already.
void configure_link(const std::string& name, const LinkSettings& settings) {
    netlink::Netlink netlink;
    const std::optional<netlink::Link> link = netlink.find(name);
    if (!link) {
        throw std::runtime_error("tap " + name + ": gone right after it was opened");
    }
    if (settings.mtu && link->mtu != *settings.mtu) {
        netlink.set_mtu(name, *settings.mtu);
    }
    if (!settings.bridge.empty() && link->master != settings.bridge) {
        netlink.set_master(name, settings.bridge);
    }
    if (!link->up) {
        netlink.set_up(name, true);
    }
}

}  // namespace

std::unique_ptr<Tap> Tap::open(const std::string& name, const LinkSettings& link) {
    if (name.empty() || name.size() >= IFNAMSIZ) {
        throw std::invalid_argument("tap '" + name + "': a name of 1 to " + std::to_string(IFNAMSIZ - 1) +
                                    " characters is needed");
    }
    sys::Fd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!fd) {
        sys::throw_errno("tap " + name + ": open /dev/net/tun");
    }
    // IFF_TUN_EXCL fails with EBUSY where the interface exists: whether we
    // created the tap is then known without a race against another creator.
    std::string name_used;
    bool created = true;
    int error = set_interface(fd.get(), name, kTapFlags | IFF_TUN_EXCL, name_used);
    if (error == EBUSY) {
        created = false;
        error = set_interface(fd.get(), name, kTapFlags, name_used);
        if (error == EBUSY) {
            sys::throw_errno("tap " + name + ": TUNSETIFF (attached to another process?)", error);
        }
        if (error == EINVAL) {
            sys::throw_errno("tap " + name + ": TUNSETIFF (not a single-queue tap?)", error);
        }
    }
    if (error != 0) {
        sys::throw_errno("tap " + name + ": TUNSETIFF", error);
    }
    std::unique_ptr<Tap> tap(new Tap(name_used, std::move(fd), created));
    int header_size = kPacketHeaderSize;
    if (::ioctl(tap->fd(), TUNSETVNETHDRSZ, &header_size) != 0) {
        sys::throw_errno("tap " + name + ": TUNSETVNETHDRSZ " + std::to_string(header_size));
    }
    tap->probe_offloads();
    configure_link(tap->name(), link);
    return tap;
}

void Tap::probe_offloads() {
    // The tap takes any offload from us with a virtio-net header; what it may
    // hand us is what TUNSETOFFLOAD accepts (QEMU probes the same way).
    offload_features_ = feature_bit(kFeatureCsum) | feature_bit(kFeatureHostTso4) |
                        feature_bit(kFeatureHostTso6) | feature_bit(kFeatureHostEcn);
    if (::ioctl(fd(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN) == 0) {
        offload_features_ |= feature_bit(kFeatureGuestCsum) | feature_bit(kFeatureGuestTso4) |
                             feature_bit(kFeatureGuestTso6) | feature_bit(kFeatureGuestEcn);
    }
    if (::ioctl(fd(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_UFO) == 0) {
        offload_features_ |= feature_bit(kFeatureHostUfo);
        if ((offload_features_ & feature_bit(kFeatureGuestCsum)) != 0) {
            offload_features_ |= feature_bit(kFeatureGuestUfo);
        }
    }
    // Nothing until a driver says what it takes.
    set_offloads(0);
}

void Tap::set_offloads(std::uint64_t features) {
    const unsigned offloads = tun_offloads(features);
    if (::ioctl(fd(), TUNSETOFFLOAD, offloads) != 0) {
        sys::throw_errno("tap " + name_ + ": TUNSETOFFLOAD " + std::to_string(offloads));
    }
}

}  // namespace vim::vmm::virtio::net
