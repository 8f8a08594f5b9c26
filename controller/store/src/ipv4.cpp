#include "ipv4.h"

#include <charconv>

#include "controller/store/errors.h"

namespace vim::controller::store {

std::int64_t parse_ipv4(const std::string& text) {
    std::uint32_t address = 0;
    const char* position = text.data();
    const char* end = text.data() + text.size();
    for (int octet = 0; octet < 4; ++octet) {
        if (octet > 0) {
            if (position == end || *position != '.') {
                return -1;
            }
            ++position;
        }
        unsigned value = 0;
        auto [next, error] = std::from_chars(position, end, value);
        if (error != std::errc() || next == position || next - position > 3 || value > 255) {
            return -1;
        }
        address = (address << 8) | value;
        position = next;
    }
    return position == end ? static_cast<std::int64_t>(address) : -1;
}

std::string format_ipv4(std::uint32_t address) {
    return std::to_string(address >> 24) + "." + std::to_string((address >> 16) & 0xff) + "." +
           std::to_string((address >> 8) & 0xff) + "." + std::to_string(address & 0xff);
}

Ipv4Network Ipv4Network::parse(const std::string& cidr) {
    auto invalid = [&](const std::string& why) {
        return InvalidArgumentError("network cidr \"" + cidr + "\" " + why);
    };
    auto slash = cidr.find('/');
    if (slash == std::string::npos) {
        throw invalid("is not an IPv4 network like 10.0.0.0/24");
    }
    std::int64_t address = parse_ipv4(cidr.substr(0, slash));
    int prefix = -1;
    const char* begin = cidr.data() + slash + 1;
    const char* end = cidr.data() + cidr.size();
    auto [next, error] = std::from_chars(begin, end, prefix);
    if (address < 0 || error != std::errc() || next != end || begin == end) {
        throw invalid("is not an IPv4 network like 10.0.0.0/24");
    }
    if (prefix < 8 || prefix > 30) {
        throw invalid("must have a prefix length from 8 to 30");
    }
    std::uint32_t host_mask = (1U << (32 - prefix)) - 1;
    if ((static_cast<std::uint32_t>(address) & host_mask) != 0) {
        throw invalid("has host bits set");
    }
    return {static_cast<std::uint32_t>(address), prefix};
}

std::uint32_t Ipv4Network::last_pool_address() const { return base + ((1U << (32 - prefix)) - 1) - 1; }

}  // namespace vim::controller::store
