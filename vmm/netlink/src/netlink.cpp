#include "vmm/netlink/netlink.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/link/vlan.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "vmm/sys/error.h"
#include "vmm/sys/fd.h"

namespace vim::vmm::netlink {

namespace {

constexpr unsigned kMinimumMtu = 68;  // the least IPv4 allows; the kernel's minimum for Ethernet links
constexpr unsigned kMaximumMtu = 65535;
constexpr int kMinimumVlanId = 1;
constexpr int kMaximumVlanId = 4094;  // 0 and 4095 are reserved by 802.1Q

template <auto Free>
struct Deleter {
    template <typename T>
    void operator()(T* object) const noexcept {
        Free(object);
    }
};
using SocketPtr = std::unique_ptr<nl_sock, Deleter<nl_socket_free>>;
using CachePtr = std::unique_ptr<nl_cache, Deleter<nl_cache_free>>;
using LinkPtr = std::unique_ptr<rtnl_link, Deleter<rtnl_link_put>>;
using AddrPtr = std::unique_ptr<rtnl_addr, Deleter<rtnl_addr_put>>;
using NlAddrPtr = std::unique_ptr<nl_addr, Deleter<nl_addr_put>>;

// Takes ownership of a freshly allocated libnl object; libnl returns null only when out of memory.
template <typename Owner>
Owner own(typename Owner::pointer object) {
    if (object == nullptr) {
        throw std::bad_alloc();
    }
    return Owner(object);
}

std::string quoted_if_empty(const std::string& name) { return name.empty() ? "\"\"" : name; }

// The kernel's dev_valid_name(), checked here so the message says what is wrong rather than
// "Invalid argument".
void check_name(const std::string& name, const std::string& context) {
    auto fail = [&](const std::string& reason) { throw std::invalid_argument(context + ": " + reason); };
    if (name.empty()) {
        fail("a link name cannot be empty");
    }
    if (name.size() >= IFNAMSIZ) {
        fail("a link name is at most " + std::to_string(IFNAMSIZ - 1) + " bytes");
    }
    if (name == "." || name == "..") {
        fail("a link name cannot be '" + name + "'");
    }
    for (char c : name) {
        if (c == '/' || c == ':') {
            fail(std::string("a link name cannot contain '") + c + "'");
        }
        if (std::isspace(static_cast<unsigned char>(c))) {
            fail("a link name cannot contain whitespace");
        }
    }
}

std::string format_mac(const nl_addr* address) {
    if (address == nullptr || nl_addr_get_family(address) != AF_LLC || nl_addr_get_len(address) != 6) {
        return "";
    }
    const auto* bytes = static_cast<const unsigned char*>(nl_addr_get_binary_addr(address));
    if (std::all_of(bytes, bytes + 6, [](unsigned char byte) { return byte == 0; })) {
        return "";
    }
    static constexpr char kHex[] = "0123456789abcdef";
    std::string text;
    for (int i = 0; i < 6; ++i) {
        if (i > 0) {
            text += ':';
        }
        text += kHex[bytes[i] >> 4];
        text += kHex[bytes[i] & 0xf];
    }
    return text;
}

std::array<unsigned char, 6> parse_mac(const std::string& mac, const std::string& context) {
    auto fail = [&](const std::string& reason) { throw std::invalid_argument(context + ": " + reason); };
    std::array<unsigned char, 6> bytes{};
    bool well_formed = mac.size() == 17;
    for (size_t i = 0; well_formed && i < bytes.size(); ++i) {
        const char* first = mac.data() + 3 * i;
        well_formed = std::isxdigit(static_cast<unsigned char>(first[0])) &&
                      std::isxdigit(static_cast<unsigned char>(first[1])) && (i == 5 || first[2] == ':') &&
                      std::from_chars(first, first + 2, bytes[i], 16).ec == std::errc{};
    }
    if (!well_formed) {
        fail("not a MAC address like 52:54:00:12:34:56");
    }
    if (bytes[0] & 1) {
        fail("a multicast address cannot be a link's address");
    }
    if (std::all_of(bytes.begin(), bytes.end(), [](unsigned char byte) { return byte == 0; })) {
        fail("an all-zero address cannot be a link's address");
    }
    return bytes;
}

// "10.0.0.1/24" or "fd00::1/64" as a libnl address carrying its prefix length.
NlAddrPtr parse_cidr(const std::string& cidr) {
    auto fail = [&](const std::string& reason) {
        throw std::invalid_argument("address " + quoted_if_empty(cidr) + ": " + reason);
    };
    size_t slash = cidr.find('/');
    if (slash == std::string::npos) {
        fail("not an IPv4 or IPv6 CIDR");
    }
    std::string host = cidr.substr(0, slash);
    std::string_view prefix_text = std::string_view(cidr).substr(slash + 1);
    std::array<unsigned char, 16> bytes{};
    int family = inet_pton(AF_INET, host.c_str(), bytes.data()) == 1    ? AF_INET
                 : inet_pton(AF_INET6, host.c_str(), bytes.data()) == 1 ? AF_INET6
                                                                        : AF_UNSPEC;
    unsigned prefix = 0;
    auto [end, error] = std::from_chars(prefix_text.data(), prefix_text.data() + prefix_text.size(), prefix);
    if (family == AF_UNSPEC || prefix_text.empty() || error != std::errc{} ||
        end != prefix_text.data() + prefix_text.size()) {
        fail("not an IPv4 or IPv6 CIDR");
    }
    unsigned bits = family == AF_INET ? 32 : 128;
    if (prefix > bits) {
        fail("prefix length " + std::to_string(prefix) + " is out of range 0-" + std::to_string(bits));
    }
    auto address = own<NlAddrPtr>(nl_addr_build(family, bytes.data(), bits / 8));
    nl_addr_set_prefixlen(address.get(), static_cast<int>(prefix));
    return address;
}

std::string format_cidr(const nl_addr* address, int prefix_length) {
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(nl_addr_get_family(address), nl_addr_get_binary_addr(address), text, sizeof(text));
    return std::string(text) + "/" + std::to_string(prefix_length);
}

std::string name_of_index(nl_cache* links, int index) {
    char name[IFNAMSIZ] = {};
    return index > 0 && rtnl_link_i2name(links, index, name, sizeof(name)) ? name : "";
}

Link to_link(nl_cache* links, rtnl_link* link) {
    Link result;
    result.name = rtnl_link_get_name(link);
    result.index = rtnl_link_get_ifindex(link);
    const char* kind = rtnl_link_get_type(link);
    result.kind = kind ? kind : "";
    result.master = name_of_index(links, rtnl_link_get_master(link));
    result.mtu = rtnl_link_get_mtu(link);
    result.mac = format_mac(rtnl_link_get_addr(link));
    result.up = (rtnl_link_get_flags(link) & IFF_UP) != 0;
    char state[32] = {};
    rtnl_link_operstate2str(rtnl_link_get_operstate(link), state, sizeof(state));
    result.operational_state = state;
    if (rtnl_link_is_vlan(link)) {
        result.vlan_id = rtnl_link_vlan_get_id(link);
        result.parent = name_of_index(links, rtnl_link_get_link(link));
    }
    return result;
}

}  // namespace

struct Netlink::Socket {
    SocketPtr socket;
    // The errno of the last NLMSG_ERROR the kernel sent: libnl folds errnos into its own
    // codes ("Object exists"), and callers want the kernel's words ("File exists").
    int kernel_error = 0;

    static int record_kernel_error(sockaddr_nl*, nlmsgerr* error, void* self) {
        static_cast<Socket*>(self)->kernel_error = -error->error;
        return NL_STOP;
    }

    // Throws for a negative libnl `result`, naming `context` and the kernel's reason.
    void check(int result, const std::string& context) {
        int error = std::exchange(kernel_error, 0);
        if (result >= 0) {
            return;
        }
        if (error != 0) {
            sys::throw_errno(context, error);
        }
        throw std::runtime_error(context + ": " + nl_geterror(result));
    }

    LinkPtr get(const std::string& name, const std::string& context) {
        rtnl_link* link = nullptr;
        int result = rtnl_link_get_kernel(socket.get(), 0, name.c_str(), &link);
        // rtnl_link_get_kernel() installs its own error handler, so the kernel's ENODEV never reaches ours.
        if (result == -NLE_NODEV || result == -NLE_OBJ_NOTFOUND) {
            kernel_error = ENODEV;
        }
        check(result, context);
        return LinkPtr(link);
    }

    CachePtr link_cache() {
        nl_cache* cache = nullptr;
        check(rtnl_link_alloc_cache(socket.get(), AF_UNSPEC, &cache), "links: list");
        return CachePtr(cache);
    }

    // Applies the attributes set in `changes` to the link called `name`.
    void change(const std::string& name, const std::string& context, rtnl_link* changes) {
        check_name(name, context);
        LinkPtr current = get(name, context);
        check(rtnl_link_change(socket.get(), current.get(), changes, 0), context);
    }

    void add(rtnl_link* link, const std::string& context) {
        check(rtnl_link_add(socket.get(), link, NLM_F_CREATE | NLM_F_EXCL), context);
    }

    // An address object for `cidr` on the link called `name`, ready to add or delete.
    AddrPtr address(const std::string& name, const std::string& cidr, const std::string& context) {
        NlAddrPtr local = parse_cidr(cidr);
        check_name(name, context);
        auto address = own<AddrPtr>(rtnl_addr_alloc());
        rtnl_addr_set_ifindex(address.get(), rtnl_link_get_ifindex(get(name, context).get()));
        rtnl_addr_set_family(address.get(), nl_addr_get_family(local.get()));
        check(rtnl_addr_set_local(address.get(), local.get()), context);
        rtnl_addr_set_prefixlen(address.get(), nl_addr_get_prefixlen(local.get()));
        return address;
    }
};

Netlink::Netlink() : socket_(std::make_unique<Socket>()) {
    socket_->socket = own<SocketPtr>(nl_socket_alloc());
    nl_socket_modify_err_cb(socket_->socket.get(), NL_CB_CUSTOM, &Socket::record_kernel_error, socket_.get());
    socket_->check(nl_connect(socket_->socket.get(), NETLINK_ROUTE), "netlink: connect");
}

Netlink::Netlink(Netlink&&) noexcept = default;
Netlink& Netlink::operator=(Netlink&&) noexcept = default;
Netlink::~Netlink() = default;

std::vector<Link> Netlink::links() {
    CachePtr cache = socket_->link_cache();
    std::vector<Link> result;
    for (nl_object* object = nl_cache_get_first(cache.get()); object; object = nl_cache_get_next(object)) {
        result.push_back(to_link(cache.get(), reinterpret_cast<rtnl_link*>(object)));
    }
    return result;
}

std::optional<Link> Netlink::find(std::string_view name) {
    for (Link& link : links()) {
        if (link.name == name) {
            return std::move(link);
        }
    }
    return std::nullopt;
}

void Netlink::create_bridge(const std::string& name) {
    std::string context = "bridge " + quoted_if_empty(name) + ": create";
    check_name(name, context);
    LinkPtr bridge = own<LinkPtr>(rtnl_link_alloc());
    rtnl_link_set_name(bridge.get(), name.c_str());
    socket_->check(rtnl_link_set_type(bridge.get(), "bridge"), context);
    socket_->add(bridge.get(), context);
}

void Netlink::create_veth(const std::string& name, const std::string& peer) {
    std::string context = "veth " + quoted_if_empty(name) + ": create";
    check_name(name, context);
    check_name(peer, context + ": peer " + quoted_if_empty(peer));
    if (peer == name) {
        throw std::invalid_argument(context + ": the peer cannot have the same name");
    }
    LinkPtr veth = own<LinkPtr>(rtnl_link_veth_alloc());
    rtnl_link_set_name(veth.get(), name.c_str());
    LinkPtr peer_link(rtnl_link_veth_get_peer(veth.get()));
    rtnl_link_set_name(peer_link.get(), peer.c_str());
    socket_->add(veth.get(), context);
}

void Netlink::create_vlan(const std::string& name, const std::string& parent, int vlan_id) {
    std::string context = "vlan " + quoted_if_empty(name) + ": create";
    check_name(name, context);
    std::string parent_context = context + ": parent " + quoted_if_empty(parent);
    check_name(parent, parent_context);
    if (vlan_id < kMinimumVlanId || vlan_id > kMaximumVlanId) {
        throw std::invalid_argument(context + ": vlan id " + std::to_string(vlan_id) + " is out of range " +
                                    std::to_string(kMinimumVlanId) + "-" + std::to_string(kMaximumVlanId));
    }
    int parent_index = rtnl_link_get_ifindex(socket_->get(parent, parent_context).get());
    LinkPtr vlan = own<LinkPtr>(rtnl_link_vlan_alloc());
    rtnl_link_set_name(vlan.get(), name.c_str());
    rtnl_link_set_link(vlan.get(), parent_index);
    socket_->check(rtnl_link_vlan_set_id(vlan.get(), static_cast<uint16_t>(vlan_id)), context);
    socket_->add(vlan.get(), context);
}

void Netlink::create_tap(const std::string& name, int owner_uid) {
    std::string context = "tap " + quoted_if_empty(name) + ": create";
    check_name(name, context);
    // TUNSETIFF on an existing tap attaches to it instead of failing; say what a netlink create would.
    if (if_nametoindex(name.c_str()) != 0) {
        sys::throw_errno(context, EEXIST);
    }
    sys::Fd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!tun) {
        sys::throw_errno(context + ": open /dev/net/tun");
    }
    ifreq request{};
    std::memcpy(request.ifr_name, name.data(), name.size());
    // IFF_TUN_EXCL closes the window between the check above and the ioctl.
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL;
    if (::ioctl(tun.get(), TUNSETIFF, &request) < 0) {
        sys::throw_errno(context);
    }
    // Persistence comes last: until then closing `tun` removes the tap, so a failure leaves nothing behind.
    if (owner_uid >= 0 && ::ioctl(tun.get(), TUNSETOWNER, static_cast<unsigned long>(owner_uid)) < 0) {
        sys::throw_errno(context + ": set owner " + std::to_string(owner_uid));
    }
    if (::ioctl(tun.get(), TUNSETPERSIST, 1UL) < 0) {
        sys::throw_errno(context + ": make persistent");
    }
}

void Netlink::delete_link(const std::string& name) {
    std::string context = "link " + quoted_if_empty(name) + ": delete";
    check_name(name, context);
    LinkPtr link = own<LinkPtr>(rtnl_link_alloc());
    rtnl_link_set_name(link.get(), name.c_str());
    socket_->check(rtnl_link_delete(socket_->socket.get(), link.get()), context);
}

void Netlink::set_master(const std::string& name, const std::string& bridge) {
    std::string bridge_context = "bridge " + quoted_if_empty(bridge) + ": attach " + quoted_if_empty(name);
    check_name(bridge, bridge_context);
    LinkPtr changes = own<LinkPtr>(rtnl_link_alloc());
    rtnl_link_set_master(changes.get(), rtnl_link_get_ifindex(socket_->get(bridge, bridge_context).get()));
    socket_->change(name, "link " + quoted_if_empty(name) + ": set master " + bridge, changes.get());
}

void Netlink::clear_master(const std::string& name) {
    LinkPtr changes = own<LinkPtr>(rtnl_link_alloc());
    rtnl_link_set_master(changes.get(), 0);
    socket_->change(name, "link " + quoted_if_empty(name) + ": clear master", changes.get());
}

void Netlink::set_mtu(const std::string& name, unsigned mtu) {
    std::string context = "link " + quoted_if_empty(name) + ": set mtu";
    if (mtu < kMinimumMtu || mtu > kMaximumMtu) {
        throw std::invalid_argument(context + ": " + std::to_string(mtu) + " is out of range " +
                                    std::to_string(kMinimumMtu) + "-" + std::to_string(kMaximumMtu));
    }
    LinkPtr changes = own<LinkPtr>(rtnl_link_alloc());
    rtnl_link_set_mtu(changes.get(), mtu);
    socket_->change(name, context, changes.get());
}

void Netlink::set_mac(const std::string& name, const std::string& mac) {
    std::string context = "link " + quoted_if_empty(name) + ": set mac " + quoted_if_empty(mac);
    std::array<unsigned char, 6> bytes = parse_mac(mac, context);
    auto address = own<NlAddrPtr>(nl_addr_build(AF_LLC, bytes.data(), bytes.size()));
    LinkPtr changes = own<LinkPtr>(rtnl_link_alloc());
    rtnl_link_set_addr(changes.get(), address.get());
    socket_->change(name, context, changes.get());
}

void Netlink::set_up(const std::string& name, bool up) {
    LinkPtr changes = own<LinkPtr>(rtnl_link_alloc());
    if (up) {
        rtnl_link_set_flags(changes.get(), IFF_UP);
    } else {
        rtnl_link_unset_flags(changes.get(), IFF_UP);
    }
    socket_->change(name, "link " + quoted_if_empty(name) + (up ? ": set up" : ": set down"), changes.get());
}

void Netlink::add_address(const std::string& name, const std::string& cidr) {
    std::string context = "link " + quoted_if_empty(name) + ": add address " + cidr;
    AddrPtr address = socket_->address(name, cidr, context);
    socket_->check(rtnl_addr_add(socket_->socket.get(), address.get(), NLM_F_EXCL), context);
}

void Netlink::remove_address(const std::string& name, const std::string& cidr) {
    std::string context = "link " + quoted_if_empty(name) + ": remove address " + cidr;
    AddrPtr address = socket_->address(name, cidr, context);
    socket_->check(rtnl_addr_delete(socket_->socket.get(), address.get(), 0), context);
}

std::vector<std::string> Netlink::addresses(const std::string& name) {
    std::string context = "link " + quoted_if_empty(name) + ": list addresses";
    check_name(name, context);
    int index = rtnl_link_get_ifindex(socket_->get(name, context).get());
    nl_cache* raw_cache = nullptr;
    socket_->check(rtnl_addr_alloc_cache(socket_->socket.get(), &raw_cache), context);
    CachePtr cache(raw_cache);
    std::vector<std::string> result;
    for (nl_object* object = nl_cache_get_first(cache.get()); object; object = nl_cache_get_next(object)) {
        auto* address = reinterpret_cast<rtnl_addr*>(object);
        if (rtnl_addr_get_ifindex(address) == index && rtnl_addr_get_local(address) != nullptr) {
            result.push_back(format_cidr(rtnl_addr_get_local(address), rtnl_addr_get_prefixlen(address)));
        }
    }
    return result;
}

}  // namespace vim::vmm::netlink
