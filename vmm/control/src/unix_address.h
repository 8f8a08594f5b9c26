#pragma once

#include <sys/un.h>

#include <string>

namespace vim::vmm::control {

// The address of the Unix socket at path. Throws std::invalid_argument when
// the path is empty or does not fit in sun_path.
sockaddr_un unix_address(const std::string& path);

}  // namespace vim::vmm::control
