#pragma once

// Loads a Linux kernel (a bzImage, or an uncompressed ELF vmlinux), its initrd
// and command line into guest memory and prepares everything the 64-bit boot
// protocol asks of the boot loader: boot_params with the e820 map, page
// tables, GDT and IDT.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "vmm/boot/bzimage.h"
#include "vmm/boot/elf_kernel.h"
#include "vmm/memory/guest_memory.h"

namespace vim::vmm::boot {

struct BootInfo {
    std::uint64_t entry_point;          // the kernel's 64-bit entry: rip of the boot vCPU
    std::uint64_t boot_params_address;  // rsi of the boot vCPU
    // End of the memory the kernel occupies: for a bzImage, all it needs
    // while it decompresses itself; for an ELF kernel, its last segment.
    std::uint64_t kernel_end;
    std::uint64_t initrd_address;  // both 0 without an initrd
    std::uint64_t initrd_size;
};

// The kernel's format is told by its first bytes: the ELF magic, or else a
// bzImage. `initrd_path` may be empty for no initrd. Everything is checked
// (image, sizes, placement) before guest memory is written. Throws
// std::invalid_argument or std::system_error naming the file and the problem.
BootInfo load_linux(memory::GuestMemory& memory, const std::string& kernel_path,
                    const std::string& initrd_path, const std::string& cmdline);

// As above, from bytes already in memory; an empty `initrd` means none.
BootInfo load_linux(memory::GuestMemory& memory, const BzImage& kernel, std::span<const std::uint8_t> initrd,
                    std::string_view cmdline);
// `file` is the ELF file `kernel` was parsed from.
BootInfo load_linux(memory::GuestMemory& memory, const ElfKernel& kernel, std::span<const std::uint8_t> file,
                    std::span<const std::uint8_t> initrd, std::string_view cmdline);

// The page-aligned address of the highest place for an initrd of
// `initrd_size` bytes that lies at or above `kernel_end`, occupies no address
// above `initrd_addr_max` (the header's inclusive limit) and ends by
// `ram_end_below_4g`. Throws std::invalid_argument when there is none.
std::uint64_t place_initrd(std::uint64_t initrd_size, std::uint64_t kernel_end, std::uint64_t initrd_addr_max,
                           std::uint64_t ram_end_below_4g);

}  // namespace vim::vmm::boot
