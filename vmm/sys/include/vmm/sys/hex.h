#pragma once

#include <cstdint>
#include <string>

namespace vim::vmm::sys {

// "0x1f": how error messages write guest addresses and sizes.
std::string hex(std::uint64_t value);

}  // namespace vim::vmm::sys
