#include <linux/if_tun.h>

#include <algorithm>
#include <exception>

#include "sections.h"
#include "vmm/netlink/netlink.h"

namespace vim::hwprobe::detail {
namespace {

// The kernel's link kind "tun" covers both; only the device's flags say which it is.
std::string tun_or_tap(HostFiles& files, const std::string& name) {
    const auto flags = files.read_unsigned(files.sys("class/net/" + name + "/tun_flags"), Need::if_readable);
    if (!flags) {
        return "tun";
    }
    return (*flags & IFF_TAP) ? "tap" : "tun";
}

// Links that are down or virtual answer EINVAL or -1; neither is a fault worth a warning.
std::optional<std::uint64_t> speed_of(HostFiles& files, const std::string& name) {
    const auto mbps = files.read_unsigned(files.sys("class/net/" + name + "/speed"), Need::if_readable);
    return mbps && *mbps > 0 ? mbps : std::nullopt;
}

}  // namespace

std::vector<Nic> probe_nics(HostFiles& files) {
    std::vector<Nic> nics;
    std::vector<vmm::netlink::Link> links;
    try {
        links = vmm::netlink::Netlink().links();
    } catch (const std::exception& error) {
        files.warn("netlink", error.what());
        return nics;
    }
    for (const vmm::netlink::Link& link : links) {
        Nic nic;
        nic.name = link.name;
        nic.index = link.index;
        nic.kind = link.kind == "tun" ? tun_or_tap(files, link.name) : link.kind;
        nic.master = link.master;
        nic.mtu = link.mtu;
        nic.mac = link.mac;
        nic.up = link.up;
        nic.operational_state = link.operational_state;
        if (link.kind == "vlan") {
            nic.vlan_id = static_cast<std::uint16_t>(link.vlan_id);
        }
        nic.parent = link.parent;
        nic.speed_mbps = speed_of(files, link.name);
        nics.push_back(std::move(nic));
    }
    std::sort(nics.begin(), nics.end(),
              [](const Nic& left, const Nic& right) { return left.index < right.index; });
    return nics;
}

}  // namespace vim::hwprobe::detail
