#include "migration/transport.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <stdexcept>
#include <string>

#include "vmm/sys/error.h"

namespace vim::migration {
namespace {

struct Endpoint {
    std::string host;
    std::string port;
};

Endpoint parse(std::string_view uri) {
    const std::string text(uri);
    auto bad = [&](const std::string& why) {
        return std::invalid_argument("migration URI '" + text + "': " + why + " (expected tcp:HOST:PORT)");
    };
    if (!uri.starts_with("tcp:")) {
        throw bad("unknown transport");
    }
    const std::string_view rest = uri.substr(4);
    const std::size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
        throw bad("no host or port");
    }
    std::string_view host = rest.substr(0, colon);
    const std::string_view port = rest.substr(colon + 1);
    if (host.front() == '[') {
        if (host.size() < 3 || host.back() != ']') {
            throw bad("unclosed bracket");
        }
        host = host.substr(1, host.size() - 2);
    }
    unsigned number = 0;
    const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), number);
    if (port.empty() || error != std::errc() || end != port.data() + port.size() || number > 65535) {
        throw bad("port is not a number from 0 to 65535");
    }
    return {std::string(host), std::string(port)};
}

struct AddressList {
    addrinfo* first = nullptr;
    ~AddressList() {
        if (first != nullptr) {
            ::freeaddrinfo(first);
        }
    }
};

AddressList resolve(std::string_view uri, const Endpoint& endpoint, bool passive) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    AddressList list;
    const int error = ::getaddrinfo(endpoint.host.c_str(), endpoint.port.c_str(), &hints, &list.first);
    if (error != 0) {
        throw std::runtime_error("migration URI '" + std::string(uri) + "': " + ::gai_strerror(error));
    }
    return list;
}

// Control messages are small and answered at once: no Nagle delay.
void set_no_delay(int socket) {
    const int on = 1;
    ::setsockopt(socket, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

// A socket for the first of `addresses` that `use` (connect, or bind and
// listen) succeeds on; throws "<what>: <the last error>".
template <typename Use>
vmm::sys::Fd first_usable(const AddressList& addresses, const std::string& what, Use use) {
    int last_error = 0;
    for (addrinfo* address = addresses.first; address != nullptr; address = address->ai_next) {
        vmm::sys::Fd socket(::socket(address->ai_family, address->ai_socktype | SOCK_CLOEXEC, 0));
        if (socket && use(socket.get(), *address)) {
            return socket;
        }
        last_error = errno;
    }
    vmm::sys::throw_errno(what, last_error);
}

}  // namespace

void check_tcp_uri(std::string_view uri) { (void)parse(uri); }

vmm::sys::Fd connect_tcp(std::string_view uri) {
    const Endpoint endpoint = parse(uri);
    return first_usable(resolve(uri, endpoint, false), "connect to " + std::string(uri),
                        [](int socket, const addrinfo& address) {
                            if (::connect(socket, address.ai_addr, address.ai_addrlen) != 0) {
                                return false;
                            }
                            set_no_delay(socket);
                            return true;
                        });
}

vmm::sys::Fd listen_tcp(std::string_view uri) {
    const Endpoint endpoint = parse(uri);
    return first_usable(resolve(uri, endpoint, true), "listen on " + std::string(uri),
                        [](int socket, const addrinfo& address) {
                            const int on = 1;
                            ::setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
                            return ::bind(socket, address.ai_addr, address.ai_addrlen) == 0 &&
                                   ::listen(socket, 1) == 0;
                        });
}

vmm::sys::Fd accept_one(const vmm::sys::Fd& listener) {
    for (;;) {
        vmm::sys::Fd socket(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (socket) {
            set_no_delay(socket.get());
            return socket;
        }
        if (errno != EINTR) {
            vmm::sys::throw_errno("accept the incoming migration");
        }
    }
}

int local_port(const vmm::sys::Fd& socket) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        vmm::sys::throw_errno("getsockname of the migration socket");
    }
    if (address.ss_family == AF_INET6) {
        return ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
    }
    return ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
}

}  // namespace vim::migration
