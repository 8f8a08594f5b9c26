#pragma once

#include <string_view>

#include "vmm/sys/fd.h"

namespace vim::migration {

// A migration's TCP connection, named by a URI "tcp:HOST:PORT" (HOST a name,
// an IPv4 address or a bracketed IPv6 one). Errors name the URI.
vmm::sys::Fd connect_tcp(std::string_view uri);
// Throws std::invalid_argument, as connect_tcp() would, for a URI that is
// not tcp:HOST:PORT; connects nowhere.
void check_tcp_uri(std::string_view uri);
// The destination's listening socket (port 0: any free port, see local_port()).
vmm::sys::Fd listen_tcp(std::string_view uri);
vmm::sys::Fd accept_one(const vmm::sys::Fd& listener);
int local_port(const vmm::sys::Fd& socket);

}  // namespace vim::migration
