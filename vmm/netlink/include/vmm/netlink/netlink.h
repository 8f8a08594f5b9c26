#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vim::vmm::netlink {

// A network interface as the kernel reports it (RTM_GETLINK).
struct Link {
    std::string name;
    int index = 0;
    std::string kind;  // rtnl "kind": "bridge", "veth", "vlan", "tun", "bond", "dummy"...; "" for a physical
                       // NIC or loopback
    std::string master;  // the bridge/bond it is a port of, "" when none
    unsigned mtu = 0;
    std::string mac;  // "52:54:00:12:34:56", "" when the link has none (or an all-zero one, as loopback)
    bool up = false;  // administratively up (IFF_UP)
    std::string operational_state;  // "up", "down", "unknown", "lowerlayerdown", ... (IF_OPER_*)
    int vlan_id = 0;                // for kind "vlan"
    std::string parent;             // for vlan: the link it sits on ("" otherwise)
};

// One NETLINK_ROUTE socket, bound to the network namespace of the thread that constructs it; not
// thread-safe. Links are named, never numbered, in every call.
//
// Errors: bad arguments (names longer than 15 bytes or holding '/', ':' or whitespace, malformed or
// multicast MACs, MTUs outside 68-65535, VLAN ids outside 1-4094, malformed CIDRs) throw
// std::invalid_argument before anything is sent. Kernel refusals throw std::system_error carrying the
// kernel's errno, so callers can test code() == std::errc::file_exists and the like (libnl's own failures,
// such as running out of memory, are std::runtime_error or std::bad_alloc). Every message names
// the object, the operation and the reason: "bridge br-test: create: File exists",
// "link nosuch0: set mtu: No such device".
class Netlink {
public:
    Netlink();  // throws std::runtime_error when the socket cannot be opened
    Netlink(Netlink&&) noexcept;
    Netlink& operator=(Netlink&&) noexcept;
    ~Netlink();

    std::vector<Link> links();
    std::optional<Link> find(std::string_view name);

    void create_bridge(const std::string& name);
    void create_veth(const std::string& name, const std::string& peer);
    void create_vlan(const std::string& name, const std::string& parent, int vlan_id);
    // A persistent tap (TUNSETIFF + TUNSETPERSIST on /dev/net/tun: the kernel has no netlink call that
    // makes one), owned by `owner_uid` when >= 0. It is single-queue (no IFF_MULTI_QUEUE), without a
    // packet-information header (IFF_NO_PI); whoever opens it later may ask for IFF_VNET_HDR. Unlike the
    // netlink calls, it acts in the namespace the calling thread is in now, not the one the socket was made
    // in.
    void create_tap(const std::string& name, int owner_uid = -1);
    void delete_link(const std::string& name);

    void set_master(const std::string& name, const std::string& bridge);
    void clear_master(const std::string& name);
    void set_mtu(const std::string& name, unsigned mtu);
    void set_mac(const std::string& name, const std::string& mac);
    void set_up(const std::string& name, bool up);

    void add_address(const std::string& name, const std::string& cidr);  // "10.0.0.1/24" or IPv6
    void remove_address(const std::string& name, const std::string& cidr);
    // Every address on the link as a CIDR ("10.0.0.1/24", "fe80::1/64"), including those the kernel adds
    // itself (IPv6 link-local addresses once the link is up).
    std::vector<std::string> addresses(const std::string& name);

private:
    struct Socket;
    std::unique_ptr<Socket> socket_;
};

}  // namespace vim::vmm::netlink
