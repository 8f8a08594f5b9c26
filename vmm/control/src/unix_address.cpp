#include "unix_address.h"

#include <sys/socket.h>

#include <cstring>
#include <stdexcept>

namespace vim::vmm::control {

sockaddr_un unix_address(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    // Room is kept for the terminating NUL: pathname sockets are NUL-terminated.
    constexpr std::size_t limit = sizeof(address.sun_path) - 1;
    if (path.empty()) {
        throw std::invalid_argument("api socket path is empty");
    }
    if (path.size() > limit) {
        throw std::invalid_argument("api socket path " + path + " is " + std::to_string(path.size()) +
                                    " bytes long; a Unix socket path is limited to " + std::to_string(limit) +
                                    " bytes");
    }
    std::memcpy(address.sun_path, path.data(), path.size());
    return address;
}

}  // namespace vim::vmm::control
