#pragma once

#include <sys/types.h>

#include <string>

#include "vmm/sys/fd.h"

namespace vim::vmm::control {

// A non-blocking Unix stream socket listening at a path. The file appears at
// the path only once the socket listens: a client polling for it (a host
// agent starting a VM does) is never refused by a socket that exists but does
// not listen yet.
class ListeningSocket {
public:
    // A stale socket file left by a dead process is replaced; throws when the
    // path is too long for sun_path, when a live server accepts connections
    // there ("api socket P is in use"), or when something other than a socket
    // exists there.
    ListeningSocket(std::string path, int backlog);
    // Removes the file, unless someone has since put another one at the path.
    ~ListeningSocket();
    ListeningSocket(const ListeningSocket&) = delete;
    ListeningSocket& operator=(const ListeningSocket&) = delete;

    int fd() const noexcept { return fd_.get(); }

private:
    std::string path_;
    sys::Fd fd_;
    // Identity of the file this object created.
    dev_t device_ = 0;
    ino_t inode_ = 0;
};

}  // namespace vim::vmm::control
