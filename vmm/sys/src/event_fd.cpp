#include "vmm/sys/event_fd.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "vmm/sys/error.h"

namespace vim::vmm::sys {

EventFd::EventFd(const char* what) : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!fd_) {
        throw_errno(std::string("eventfd for ") + what);
    }
}

void EventFd::signal() noexcept {
    const std::uint64_t one = 1;
    // Can only fail if the counter would overflow, and then a wake-up is pending anyway.
    [[maybe_unused]] ssize_t written = ::write(fd_.get(), &one, sizeof one);
}

void EventFd::drain() noexcept {
    std::uint64_t value;
    [[maybe_unused]] ssize_t read = ::read(fd_.get(), &value, sizeof value);
}

}  // namespace vim::vmm::sys
