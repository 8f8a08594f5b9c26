#pragma once

// Takes the uncompressed ELF kernel (vmlinux) out of a bzImage, once, so
// that VMs boot it without the kernel decompressing itself on every boot
// (see elf_kernel.h). Every compressor Linux builds a bzImage with is
// unpacked, in the format its build writes: gzip, bzip2, lzma (the legacy
// .lzma header), xz, lzo (lzop's file format), lz4 (the legacy frame of
// `lz4 -l`) and zstd. Distributions use xz (Debian), lz4 (Debian's cloud
// kernel), zstd (Ubuntu, Fedora, Arch) or gzip.

#include <cstdint>
#include <vector>

#include "vmm/boot/bzimage.h"

namespace vim::vmm::boot {

// Refuses to produce more than this: a bound on what a hostile image can make
// the unpacker allocate. Distribution kernels unpack to under 100 MiB.
inline constexpr std::uint64_t kMaxUnpackedKernelSize = 1ull << 30;

// The ELF file proper (ElfKernel::file_end() bytes), checked as ElfKernel::parse
// checks a kernel file. Throws std::invalid_argument naming the image and the
// problem: an unknown compression, corrupt or truncated data, a stated size
// over kMaxUnpackedKernelSize or unlike the data's, or contents that are not a
// loadable ELF kernel.
std::vector<std::uint8_t> unpack_bzimage(const BzImage& image);

}  // namespace vim::vmm::boot
