#pragma once

#include <string>

namespace vim::vmm::sys {

// Throws std::system_error for the current errno; its what() reads
// "<context>: <strerror>", e.g. "open /dev/kvm: Permission denied".
[[noreturn]] void throw_errno(const std::string& context);
[[noreturn]] void throw_errno(const std::string& context, int error);

}  // namespace vim::vmm::sys
