#include "listening_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <stdexcept>

#include "unix_address.h"
#include "vmm/sys/error.h"

namespace vim::vmm::control {

namespace {

// Makes path free: nothing there, or a socket nobody listens on any more (its
// server died without removing it), which is removed.
void claim_socket_path(const std::string& path, const sockaddr_un& address) {
    struct stat status {};
    if (::lstat(path.c_str(), &status) != 0) {
        if (errno == ENOENT) {
            return;
        }
        sys::throw_errno("stat api socket " + path);
    }
    if (!S_ISSOCK(status.st_mode)) {
        throw std::runtime_error("api socket " + path + " exists and is not a socket");
    }
    // Non-blocking, so a live server with a full backlog answers EAGAIN
    // instead of holding us up; that too means the path is in use.
    sys::Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!probe) {
        sys::throw_errno("create a socket to probe api socket " + path);
    }
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0 ||
        errno == EAGAIN) {
        throw std::runtime_error("api socket " + path + " is in use");
    }
    if (errno != ECONNREFUSED) {
        sys::throw_errno("probe existing api socket " + path);
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
        sys::throw_errno("remove stale api socket " + path);
    }
}

// A name no other socket made by this or another live process uses.
std::string temporary_socket_name() {
    static std::atomic<unsigned> made = 0;
    return ".vmm-api-" + std::to_string(::getpid()) + "-" + std::to_string(made++);
}

}  // namespace

ListeningSocket::ListeningSocket(std::string path, int backlog) : path_(std::move(path)) {
    claim_socket_path(path_, unix_address(path_));

    const std::filesystem::path full_path(path_);
    const std::string directory_path = full_path.has_parent_path() ? full_path.parent_path().string() : ".";
    const std::string name = full_path.filename().string();
    const sys::Fd directory(::open(directory_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!directory) {
        sys::throw_errno("open the directory of api socket " + path_);
    }

    // bind() makes the file and only listen() makes it accept connections;
    // in between a client would be refused as if by a dead server's stale
    // socket. So the socket is bound under a temporary name and given its
    // real one once it listens. The directory is reached through /proc so
    // that the temporary address fits in sun_path whatever the directory's
    // length.
    const std::string temporary_name = temporary_socket_name();
    const sockaddr_un temporary_address =
        unix_address("/proc/self/fd/" + std::to_string(directory.get()) + "/" + temporary_name);
    fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd_) {
        sys::throw_errno("create api socket " + path_);
    }
    if (::bind(fd_.get(), reinterpret_cast<const sockaddr*>(&temporary_address), sizeof(temporary_address)) !=
        0) {
        sys::throw_errno("bind api socket " + path_);
    }
    // The temporary name goes whether or not the real one is given.
    struct TemporaryName {
        int directory;
        const std::string& name;
        ~TemporaryName() { ::unlinkat(directory, name.c_str(), 0); }
    } bound{directory.get(), temporary_name};

    struct stat status {};
    if (::fstatat(directory.get(), temporary_name.c_str(), &status, AT_SYMLINK_NOFOLLOW) != 0) {
        sys::throw_errno("stat api socket " + path_);
    }
    device_ = status.st_dev;
    inode_ = status.st_ino;
    if (::listen(fd_.get(), backlog) != 0) {
        sys::throw_errno("listen on api socket " + path_);
    }
    // Unlike rename(), linkat() never replaces a file that appeared at the
    // path after claim_socket_path() looked.
    if (::linkat(directory.get(), temporary_name.c_str(), directory.get(), name.c_str(), 0) != 0) {
        sys::throw_errno("bind api socket " + path_);
    }
}

ListeningSocket::~ListeningSocket() {
    struct stat status {};
    if (::lstat(path_.c_str(), &status) == 0 && status.st_dev == device_ && status.st_ino == inode_) {
        ::unlink(path_.c_str());
    }
}

}  // namespace vim::vmm::control
