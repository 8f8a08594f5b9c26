#pragma once

// An uncompressed x86-64 Linux kernel: the ELF `vmlinux` that a bzImage
// carries compressed inside it (unpack_bzimage() in kernel_unpack.h takes it
// out). Booting it skips the kernel's own decompressor, which on a small VM
// is the largest part of the time before the kernel's first instruction of
// real work; Firecracker and Cloud Hypervisor boot kernels this way too.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace vim::vmm::boot {

// One PT_LOAD program header: `file_size` bytes at `file_offset` go to the
// guest-physical `address`; the rest of `memory_size` is zero.
struct ElfSegment {
    std::uint64_t file_offset;
    std::uint64_t file_size;
    std::uint64_t address;
    std::uint64_t memory_size;
};

class ElfKernel {
public:
    // How many bytes from the start of the file parse() wants to see: enough
    // for the ELF header and any sane program header table.
    static constexpr std::size_t kHeadSize = 64 * 1024;

    // Whether `head` starts with the ELF magic.
    static bool has_elf_magic(std::span<const std::uint8_t> head) noexcept;

    // `head` is the start of the file (kHeadSize bytes, or the whole file if
    // shorter) and `file_size` its full size. `name` (usually the path) starts
    // every error message. Throws std::invalid_argument naming what is wrong:
    // not a 64-bit little-endian x86-64 executable, program headers or
    // segments outside the file, segments below 1 MiB (where the boot
    // structures live), overlapping or wrapping around, or an entry point
    // outside them.
    static ElfKernel parse(std::span<const std::uint8_t> head, std::uint64_t file_size, std::string name);

    const std::string& name() const noexcept { return name_; }
    // Guest-physical address of the 64-bit entry (startup_64 for vmlinux).
    std::uint64_t entry_point() const noexcept { return entry_point_; }
    // The PT_LOAD segments, sorted by address.
    std::span<const ElfSegment> segments() const noexcept { return segments_; }
    // [start, end): the guest-physical range the segments occupy.
    std::uint64_t start() const noexcept;
    std::uint64_t end() const noexcept;
    // Where the ELF file proper ends: an unpacked bzImage payload carries the
    // kernel's relocation table behind it, which is not part of the ELF.
    std::uint64_t file_end() const noexcept { return file_end_; }

private:
    ElfKernel() = default;

    std::string name_;
    std::uint64_t entry_point_ = 0;
    std::vector<ElfSegment> segments_;
    std::uint64_t file_end_ = 0;
};

}  // namespace vim::vmm::boot
