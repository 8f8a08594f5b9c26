#pragma once

#include <cstdint>
#include <string>

namespace vim::controller::store {

// An IPv4 network in CIDR form with the address pool the store hands out: the network address and .1
// (the gateway) and the broadcast address are never given to a NIC.
struct Ipv4Network {
    std::uint32_t base = 0;
    int prefix = 0;

    // Throws InvalidArgumentError naming the text: `network cidr "10.0.0.5/24" has host bits set`.
    static Ipv4Network parse(const std::string& cidr);
    std::uint32_t first_pool_address() const { return base + 2; }
    std::uint32_t last_pool_address() const;  // broadcast - 1
};

std::string format_ipv4(std::uint32_t address);
// -1 when not a dotted quad.
std::int64_t parse_ipv4(const std::string& text);

}  // namespace vim::controller::store
