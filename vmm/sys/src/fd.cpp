#include "vmm/sys/fd.h"

#include <unistd.h>

namespace vim::vmm::sys {

Fd& Fd::operator=(Fd&& other) noexcept {
    if (this != &other) {
        reset(std::exchange(other.fd_, -1));
    }
    return *this;
}

Fd::~Fd() { reset(); }

void Fd::reset(int fd) noexcept {
    if (fd_ >= 0) {
        // close() is not retried on EINTR: on Linux the descriptor is gone either way.
        ::close(fd_);
    }
    fd_ = fd;
}

}  // namespace vim::vmm::sys
