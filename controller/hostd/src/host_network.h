#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace vim::vmm::netlink {
class Netlink;
}

namespace vim::controller::hostd {

// The host side of the VMs' networks: per network a bridge vb<vlan>, joined to the uplink's VLAN
// sub-interface <uplink>.<vlan> when there is an uplink (so the network reaches other hosts and no other
// VLAN), and a tap per NIC on it. Everything is made by hostd only and made idempotently.
class HostNetwork {
public:
    explicit HostNetwork(std::string uplink);
    ~HostNetwork();

    // The bridge of vlan (made when missing) with tap on it, all up.
    void attach_tap(const std::string& tap, std::uint64_t vlan);
    // Nothing when it is already gone.
    void remove_tap(const std::string& tap);

    static std::string bridge_name(std::uint64_t vlan) { return "vb" + std::to_string(vlan); }

private:
    vmm::netlink::Netlink& netlink();

    std::string uplink_;
    std::mutex mutex_;  // the socket is not thread-safe
    // Opened at first use: a host whose VMs have no NICs needs no CAP_NET_ADMIN.
    std::unique_ptr<vmm::netlink::Netlink> netlink_;
};

}  // namespace vim::controller::hostd
