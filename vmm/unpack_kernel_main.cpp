// unpack-kernel: writes the uncompressed ELF kernel inside a bzImage to a
// file that `vmm --kernel` boots without in-guest decompression.

#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "vmm/boot/bzimage.h"
#include "vmm/boot/kernel_unpack.h"
#include "vmm/sys/error.h"
#include "vmm/sys/fd.h"

namespace {

// Through a temporary file and a rename, so that a VM started meanwhile sees
// the old file or the whole new one, never a part.
void write_atomically(const std::string& path, const std::vector<std::uint8_t>& bytes) {
    const std::string temporary = path + ".tmp." + std::to_string(::getpid());
    {
        vim::vmm::sys::Fd file(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!file) {
            vim::vmm::sys::throw_errno("create " + temporary);
        }
        std::size_t done = 0;
        while (done < bytes.size()) {
            const ssize_t wrote = ::write(file.get(), bytes.data() + done, bytes.size() - done);
            if (wrote < 0 && errno == EINTR) {
                continue;
            }
            if (wrote < 0) {
                const int error = errno;
                ::unlink(temporary.c_str());
                vim::vmm::sys::throw_errno("write " + temporary, error);
            }
            done += static_cast<std::size_t>(wrote);
        }
    }
    if (::rename(temporary.c_str(), path.c_str()) != 0) {
        const int error = errno;
        ::unlink(temporary.c_str());
        vim::vmm::sys::throw_errno("rename " + temporary + " to " + path, error);
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app("Writes the uncompressed ELF kernel (vmlinux) inside a Linux bzImage to a file, for "
                 "vmm --kernel: the guest then skips decompressing itself on every boot.",
                 "unpack-kernel");
    std::string input;
    std::string output;
    app.add_option("bzimage", input, "the bzImage, e.g. /boot/vmlinuz-6.1.0-26-amd64")->required();
    app.add_option("vmlinux", output, "where to write the ELF kernel")->required();
    app.footer("Every payload compression Linux builds is unpacked: gzip, bzip2, lzma, xz, lzo, lz4, zstd.");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        std::fputs(app.help().c_str(), stdout);
        return 0;
    } catch (const CLI::ParseError& error) {
        std::fprintf(stderr, "error: %s\n", error.what());
        return 2;
    }
    try {
        write_atomically(output, vim::vmm::boot::unpack_bzimage(vim::vmm::boot::BzImage::read(input)));
        return 0;
    } catch (const std::exception& error) {
        std::fprintf(stderr, "error: %s\n", error.what());
        return 1;
    }
}
