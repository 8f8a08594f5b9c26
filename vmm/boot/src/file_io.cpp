#include "file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>

#include "vmm/sys/error.h"

namespace vim::vmm::boot::detail {

sys::Fd open_for_reading(const std::string& what, const std::string& path) {
    sys::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        sys::throw_errno("open " + what + " " + path);
    }
    return fd;
}

std::uint64_t file_size(const sys::Fd& fd, const std::string& what, const std::string& path) {
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0) {
        sys::throw_errno("stat " + what + " " + path);
    }
    if (!S_ISREG(info.st_mode)) {
        throw std::invalid_argument(what + " " + path + ": not a regular file");
    }
    return static_cast<std::uint64_t>(info.st_size);
}

void read_exact_at(const sys::Fd& fd, std::uint64_t offset, std::span<std::uint8_t> out,
                   const std::string& what, const std::string& path) {
    std::size_t done = 0;
    while (done < out.size()) {
        ssize_t got =
            ::pread(fd.get(), out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            sys::throw_errno("read " + what + " " + path);
        }
        if (got == 0) {
            throw std::runtime_error("read " + what + " " + path + ": file shrank to " +
                                     std::to_string(offset + done) + " bytes while being read");
        }
        done += static_cast<std::size_t>(got);
    }
}

void read_exact(const sys::Fd& fd, std::span<std::uint8_t> out, const std::string& what,
                const std::string& path) {
    read_exact_at(fd, 0, out, what, path);
}

std::vector<std::uint8_t> read_whole_file(const std::string& what, const std::string& path) {
    sys::Fd fd = open_for_reading(what, path);
    std::vector<std::uint8_t> bytes(file_size(fd, what, path));
    read_exact(fd, bytes, what, path);
    return bytes;
}

}  // namespace vim::vmm::boot::detail
