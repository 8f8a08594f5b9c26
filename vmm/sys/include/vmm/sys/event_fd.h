#pragma once

#include "vmm/sys/fd.h"

namespace vim::vmm::sys {

// A non-blocking eventfd used to wake a thread sleeping in poll().
class EventFd {
public:
    // Throws std::system_error naming `what` on failure.
    explicit EventFd(const char* what);

    int get() const noexcept { return fd_.get(); }
    void signal() noexcept;
    // Resets the counter after poll() reported it readable.
    void drain() noexcept;

private:
    Fd fd_;
};

}  // namespace vim::vmm::sys
