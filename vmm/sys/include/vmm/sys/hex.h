#pragma once

#include <cstdint>
#include <string>

namespace vmm::sys {

// "0x1f": how error messages write guest addresses and sizes.
std::string hex(std::uint64_t value);

}  // namespace vmm::sys
