#include "controller/hostd/disks.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "vmm/sys/error.h"
#include "vmm/sys/fd.h"

namespace vim::controller::hostd {
namespace {

using vmm::sys::Fd;
using vmm::sys::throw_errno;

constexpr std::size_t kCopyChunk = 1 << 20;

// Copies what is not zero; the holes come from the final size.
void sparse_copy(int from, int to, std::uint64_t size, const std::string& name) {
    std::vector<char> buffer(kCopyChunk);
    std::uint64_t offset = 0;
    while (offset < size) {
        const ssize_t got = ::pread(from, buffer.data(), buffer.size(), static_cast<off_t>(offset));
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw_errno("disk " + name + ": read the image");
        }
        if (got == 0) {
            break;
        }
        const auto end = buffer.begin() + got;
        if (std::any_of(buffer.begin(), end, [](char byte) { return byte != 0; })) {
            for (ssize_t written = 0; written < got;) {
                const ssize_t put =
                    ::pwrite(to, buffer.data() + written, static_cast<std::size_t>(got - written),
                             static_cast<off_t>(offset) + written);
                if (put < 0 && errno != EINTR) {
                    throw_errno("disk " + name + ": write");
                }
                written += std::max<ssize_t>(put, 0);
            }
        }
        offset += static_cast<std::uint64_t>(got);
    }
}

}  // namespace

void clone_file(const std::filesystem::path& source, const std::filesystem::path& target) {
    Fd from(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
    if (!from) {
        throw_errno("disk " + target.string() + ": open the image " + source.string());
    }
    struct stat info {};
    if (::fstat(from.get(), &info) != 0) {
        throw_errno("disk " + target.string() + ": stat the image " + source.string());
    }
    const std::filesystem::path temporary = target.string() + ".tmp";
    Fd to(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!to) {
        throw_errno("disk " + temporary.string() + ": create");
    }
    if (::ioctl(to.get(), FICLONE, from.get()) != 0) {
        // Not a filesystem with shared extents (ext4, tmpfs), or another one: copy.
        sparse_copy(from.get(), to.get(), static_cast<std::uint64_t>(info.st_size), target.string());
        if (::ftruncate(to.get(), info.st_size) != 0) {
            throw_errno("disk " + target.string() + ": set the size");
        }
    }
    if (::fsync(to.get()) != 0) {
        throw_errno("disk " + target.string() + ": fsync");
    }
    to.reset();
    if (::rename(temporary.c_str(), target.c_str()) != 0) {
        throw_errno("disk " + target.string() + ": rename");
    }
}

void create_sparse_file(const std::filesystem::path& path, std::uint64_t size_bytes) {
    Fd file(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    if (!file) {
        throw_errno("disk " + path.string() + ": create");
    }
    if (::ftruncate(file.get(), static_cast<off_t>(size_bytes)) != 0) {
        throw_errno("disk " + path.string() + ": set the size to " + std::to_string(size_bytes));
    }
}

}  // namespace vim::controller::hostd
