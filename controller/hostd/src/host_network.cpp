#include "host_network.h"

#include <system_error>

#include "vmm/netlink/netlink.h"

namespace vim::controller::hostd {

HostNetwork::HostNetwork(std::string uplink) : uplink_(std::move(uplink)) {}

HostNetwork::~HostNetwork() = default;

vmm::netlink::Netlink& HostNetwork::netlink() {
    if (!netlink_) {
        netlink_ = std::make_unique<vmm::netlink::Netlink>();
    }
    return *netlink_;
}

void HostNetwork::attach_tap(const std::string& tap, std::uint64_t vlan) {
    std::lock_guard lock(mutex_);
    auto& links = netlink();
    const std::string bridge = bridge_name(vlan);
    if (!links.find(bridge)) {
        links.create_bridge(bridge);
    }
    links.set_up(bridge, true);
    if (!uplink_.empty()) {
        const std::string vlan_link = uplink_ + "." + std::to_string(vlan);
        if (!links.find(vlan_link)) {
            links.create_vlan(vlan_link, uplink_, static_cast<int>(vlan));
        }
        links.set_master(vlan_link, bridge);
        links.set_up(vlan_link, true);
    }
    if (!links.find(tap)) {
        links.create_tap(tap);
    }
    links.set_master(tap, bridge);
    links.set_up(tap, true);
}

void HostNetwork::remove_tap(const std::string& tap) {
    std::lock_guard lock(mutex_);
    auto& links = netlink();
    if (links.find(tap)) {
        links.delete_link(tap);
    }
}

}  // namespace vim::controller::hostd
