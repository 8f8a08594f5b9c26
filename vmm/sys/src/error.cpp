#include "vmm/sys/error.h"

#include <cerrno>
#include <system_error>

namespace vim::vmm::sys {

void throw_errno(const std::string& context) { throw_errno(context, errno); }

void throw_errno(const std::string& context, int error) {
    throw std::system_error(error, std::generic_category(), context);
}

}  // namespace vim::vmm::sys
