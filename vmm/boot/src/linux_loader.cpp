#include "vmm/boot/linux_loader.h"

#include <algorithm>
#include <array>
#include <stdexcept>

#include "bytes.h"
#include "file_io.h"
#include "setup_header_offsets.h"
#include "vmm/boot/elf_kernel.h"
#include "vmm/boot/layout.h"
#include "vmm/boot/long_mode.h"
#include "vmm/boot/memory_map.h"

namespace vim::vmm::boot {
namespace {

using detail::hex;
using detail::store_le;

constexpr std::uint64_t k4GiB = 1ull << 32;

// boot_params ("zero page") fields outside the setup header.
constexpr std::size_t kBootParamsSize = 4096;
constexpr std::size_t kAcpiRsdpAddr = 0x070;
constexpr std::size_t kExtRamdiskImage = 0x0c0;
constexpr std::size_t kExtRamdiskSize = 0x0c4;
constexpr std::size_t kExtCmdLinePtr = 0x0c8;
constexpr std::size_t kE820EntryCount = 0x1e8;
constexpr std::size_t kE820Table = 0x2d0;
constexpr std::size_t kE820EntrySize = 20;
constexpr std::size_t kE820MaxEntries = 128;
// Kernels before protocol 2.14 do not read acpi_rsdp_addr; they scan the
// BIOS area, where the RSDP is anyway.
constexpr std::uint16_t kAcpiRsdpProtocol = 0x020e;
constexpr std::uint8_t kUndefinedLoaderType = 0xff;

std::uint64_t align_up(std::uint64_t value, std::uint64_t alignment) {
    return (value + alignment - 1) & ~(alignment - 1);
}

std::uint64_t align_down(std::uint64_t value, std::uint64_t alignment) { return value & ~(alignment - 1); }

// The end of the RAM that continues from the kernel load address: the
// kernel, its decompression and the initrd all have to fit below it.
std::uint64_t ram_end_below_4g(const memory::GuestMemory& memory) {
    for (const memory::Region& region : memory.regions()) {
        if (region.contains(layout::kKernelLoadAddress, 1)) {
            return std::min(region.start + region.size, k4GiB);
        }
    }
    throw std::invalid_argument("guest RAM does not contain the kernel load address " +
                                hex(layout::kKernelLoadAddress));
}

// What loading needs to know of a kernel, whichever its format.
struct KernelPlan {
    const std::string& name;
    std::uint64_t entry_point;
    std::uint64_t end;  // of the memory the kernel occupies or needs
    std::uint32_t cmdline_size;
    std::uint32_t initrd_addr_max;
    // boot_params starts from these setup header bytes (at 0x1f1).
    std::span<const std::uint8_t> setup_header;
    std::uint16_t protocol_version;
    std::uint8_t loadflags;
};

// Where the kernel decompresses itself and runs, as the 64-bit entry of
// arch/x86/boot/compressed/head_64.S computes it: a relocatable kernel stays
// at its (aligned) load address unless that lies below pref_address.
std::uint64_t kernel_runtime_start(const SetupHeader& header) {
    if (!header.relocatable) {
        return header.pref_address;
    }
    return std::max(align_up(layout::kKernelLoadAddress, header.kernel_alignment), header.pref_address);
}

KernelPlan plan(const BzImage& kernel, std::uint64_t ram_end) {
    const SetupHeader& header = kernel.header();
    const std::uint64_t runtime_start = kernel_runtime_start(header);
    // Compared without adding first: pref_address comes from the image and
    // could make the sum wrap.
    if (runtime_start > ram_end || header.init_size > ram_end - runtime_start) {
        throw std::invalid_argument("kernel " + kernel.name() + ": needs guest RAM up to " +
                                    hex(runtime_start + header.init_size) + " (init_size " +
                                    hex(header.init_size) + " from " + hex(runtime_start) +
                                    "), but RAM below 4 GiB ends at " + hex(ram_end));
    }
    const std::uint64_t kernel_end =
        std::max(layout::kKernelLoadAddress + kernel.kernel().size(), runtime_start + header.init_size);
    if (kernel_end > ram_end) {
        throw std::invalid_argument(
            "kernel " + kernel.name() + ": " + std::to_string(kernel.kernel().size()) + " bytes loaded at " +
            hex(layout::kKernelLoadAddress) + " run past the end of RAM below 4 GiB at " + hex(ram_end));
    }
    return {kernel.name(),
            layout::kKernelLoadAddress + k64BitEntryOffset,
            kernel_end,
            header.cmdline_size,
            header.initrd_addr_max,
            kernel.setup_header_bytes(),
            header.protocol_version,
            header.loadflags};
}

// An ELF kernel has no setup header; every x86-64 Linux takes a command line
// of COMMAND_LINE_SIZE - 1 = 2047 bytes and an initrd below 2 GiB (the
// defaults a bzImage header states). Boot protocol 2.15 is what this loader
// fills boot_params for.
constexpr std::uint32_t kElfCmdlineSize = 2047;
constexpr std::uint32_t kElfInitrdAddrMax = 0x7fffffff;
constexpr std::uint16_t kElfBootProtocol = 0x020f;
constexpr std::uint16_t kBootFlagValue = 0xaa55;
constexpr std::uint32_t kHeaderMagicValue = 0x53726448;  // "HdrS"

// boot_params bytes [0x1f1, kMinimumHeaderEnd) as a bzImage of the same
// kernel would bring them, for the fields the kernel itself reads.
std::array<std::uint8_t, detail::kMinimumHeaderEnd - detail::kSetupSects> elf_setup_header() {
    std::array<std::uint8_t, detail::kMinimumHeaderEnd - detail::kSetupSects> header{};
    const auto field = [&](std::size_t offset) { return offset - detail::kSetupSects; };
    const std::span<std::uint8_t> bytes(header);
    store_le<std::uint16_t>(bytes, field(detail::kBootFlag), kBootFlagValue);
    store_le<std::uint32_t>(bytes, field(detail::kHeaderMagic), kHeaderMagicValue);
    store_le<std::uint16_t>(bytes, field(detail::kVersion), kElfBootProtocol);
    store_le<std::uint16_t>(bytes, field(detail::kXloadflags), kXlfKernel64);
    store_le<std::uint32_t>(bytes, field(detail::kInitrdAddrMax), kElfInitrdAddrMax);
    store_le<std::uint32_t>(bytes, field(detail::kCmdlineSize), kElfCmdlineSize);
    return header;
}

KernelPlan plan(const ElfKernel& kernel, std::uint64_t ram_end, std::span<const std::uint8_t> setup_header) {
    if (kernel.end() > ram_end) {
        throw std::invalid_argument("kernel " + kernel.name() + ": segments from " + hex(kernel.start()) +
                                    " to " + hex(kernel.end()) + " run past the end of RAM below 4 GiB at " +
                                    hex(ram_end));
    }
    return {kernel.name(),     kernel.entry_point(), kernel.end(),     kElfCmdlineSize,
            kElfInitrdAddrMax, setup_header,         kElfBootProtocol, kLoadedHigh};
}

void check_cmdline(const KernelPlan& kernel, std::string_view cmdline) {
    if (auto nul = cmdline.find('\0'); nul != std::string_view::npos) {
        throw std::invalid_argument("command line has a NUL byte at offset " + std::to_string(nul));
    }
    if (cmdline.size() > kernel.cmdline_size) {
        throw std::invalid_argument("command line of " + std::to_string(cmdline.size()) +
                                    " bytes is longer than the " + std::to_string(kernel.cmdline_size) +
                                    " bytes kernel " + kernel.name + " accepts");
    }
    if (cmdline.size() + 1 > layout::kCmdlineMaxSize) {
        throw std::invalid_argument("command line of " + std::to_string(cmdline.size()) +
                                    " bytes and its NUL do not fit the " +
                                    std::to_string(layout::kCmdlineMaxSize) + " bytes reserved for it");
    }
}

std::vector<memory::RegionLayout> layout_of(const memory::GuestMemory& memory) {
    std::vector<memory::RegionLayout> regions;
    for (const memory::Region& region : memory.regions()) {
        regions.push_back({region.start, region.size});
    }
    return regions;
}

std::array<std::uint8_t, kBootParamsSize> build_boot_params(const KernelPlan& kernel, const BootInfo& info,
                                                            std::span<const E820Entry> e820) {
    if (e820.size() > kE820MaxEntries) {
        throw std::invalid_argument("e820 map of " + std::to_string(e820.size()) +
                                    " entries does not fit boot_params (at most " +
                                    std::to_string(kE820MaxEntries) + ")");
    }
    std::array<std::uint8_t, kBootParamsSize> params{};
    const std::span<std::uint8_t> bytes(params);
    std::copy(kernel.setup_header.begin(), kernel.setup_header.end(), bytes.begin() + detail::kSetupSects);

    bytes[detail::kTypeOfLoader] = kUndefinedLoaderType;
    // The heap is the real-mode setup code's, which the 64-bit entry skips.
    bytes[detail::kLoadflags] = static_cast<std::uint8_t>((kernel.loadflags | kLoadedHigh) & ~kCanUseHeap);
    store_le<std::uint32_t>(bytes, detail::kCmdLinePtr, static_cast<std::uint32_t>(layout::kCmdlineAddress));
    store_le<std::uint32_t>(bytes, kExtCmdLinePtr, static_cast<std::uint32_t>(layout::kCmdlineAddress >> 32));
    store_le<std::uint32_t>(bytes, detail::kRamdiskImage, static_cast<std::uint32_t>(info.initrd_address));
    store_le<std::uint32_t>(bytes, detail::kRamdiskSize, static_cast<std::uint32_t>(info.initrd_size));
    store_le<std::uint32_t>(bytes, kExtRamdiskImage, static_cast<std::uint32_t>(info.initrd_address >> 32));
    store_le<std::uint32_t>(bytes, kExtRamdiskSize, static_cast<std::uint32_t>(info.initrd_size >> 32));
    if (kernel.protocol_version >= kAcpiRsdpProtocol) {
        store_le<std::uint64_t>(bytes, kAcpiRsdpAddr, layout::kAcpiRsdpAddress);
    }

    bytes[kE820EntryCount] = static_cast<std::uint8_t>(e820.size());
    for (std::size_t i = 0; i < e820.size(); ++i) {
        const std::size_t offset = kE820Table + i * kE820EntrySize;
        store_le<std::uint64_t>(bytes, offset, e820[i].address);
        store_le<std::uint64_t>(bytes, offset + 8, e820[i].size);
        store_le<std::uint32_t>(bytes, offset + 16, static_cast<std::uint32_t>(e820[i].type));
    }
    return params;
}

// Everything is checked before guest memory is written. `write_kernel` puts
// the kernel into guest memory; `fill_initrd` writes the initrd's
// `initrd_size` bytes into the span it is given; `initrd_name` ("initrd
// /path"), where not empty, prefixes placement errors.
template <typename WriteKernel, typename FillInitrd>
BootInfo load(memory::GuestMemory& memory, const KernelPlan& kernel, std::string_view cmdline,
              std::uint64_t initrd_size, const std::string& initrd_name, WriteKernel write_kernel,
              FillInitrd fill_initrd) {
    check_cmdline(kernel, cmdline);
    BootInfo info{};
    info.entry_point = kernel.entry_point;
    info.boot_params_address = layout::kBootParamsAddress;
    info.kernel_end = kernel.end;
    if (initrd_size != 0) {
        try {
            info.initrd_address =
                place_initrd(initrd_size, kernel.end, kernel.initrd_addr_max, ram_end_below_4g(memory));
        } catch (const std::invalid_argument& error) {
            if (initrd_name.empty()) {
                throw;
            }
            throw std::invalid_argument(initrd_name + ": " + error.what());
        }
        info.initrd_size = initrd_size;
    }
    const std::vector<E820Entry> e820 = e820_map(layout_of(memory));
    const auto boot_params = build_boot_params(kernel, info, e820);

    write_kernel();
    std::span<std::uint8_t> cmdline_area = memory.write_span(layout::kCmdlineAddress, cmdline.size() + 1);
    std::copy(cmdline.begin(), cmdline.end(), cmdline_area.begin());
    cmdline_area.back() = 0;
    if (initrd_size != 0) {
        fill_initrd(memory.write_span(info.initrd_address, initrd_size));
    }
    memory.write(layout::kBootParamsAddress, boot_params);
    write_long_mode_tables(memory);
    return info;
}

// Copies each segment's file bytes with `read(file_offset, target)` and
// zeroes the rest of its memory size.
template <typename ReadAt>
void write_segments(memory::GuestMemory& memory, const ElfKernel& kernel, ReadAt read) {
    for (const ElfSegment& segment : kernel.segments()) {
        const std::span<std::uint8_t> target = memory.write_span(segment.address, segment.memory_size);
        read(segment.file_offset, target.first(segment.file_size));
        std::fill(target.begin() + static_cast<std::ptrdiff_t>(segment.file_size), target.end(), 0);
    }
}

// Loads either format from an open kernel file; `fill_initrd` as for load().
template <typename FillInitrd>
BootInfo load_kernel_file(memory::GuestMemory& memory, const std::string& kernel_path,
                          std::string_view cmdline, std::uint64_t initrd_size, const std::string& initrd_name,
                          FillInitrd fill_initrd) {
    const sys::Fd file = detail::open_for_reading("kernel", kernel_path);
    const std::uint64_t file_size = detail::file_size(file, "kernel", kernel_path);
    std::vector<std::uint8_t> head(std::min<std::uint64_t>(file_size, ElfKernel::kHeadSize));
    detail::read_exact(file, head, "kernel", kernel_path);
    const std::uint64_t ram_end = ram_end_below_4g(memory);

    if (ElfKernel::has_elf_magic(head)) {
        const ElfKernel kernel = ElfKernel::parse(head, file_size, kernel_path);
        const auto setup_header = elf_setup_header();
        // Segments go straight from the file into guest RAM: a vmlinux is
        // tens of MiB, and a copy through a buffer would double the work.
        return load(
            memory, plan(kernel, ram_end, setup_header), cmdline, initrd_size, initrd_name,
            [&] {
                write_segments(memory, kernel, [&](std::uint64_t offset, std::span<std::uint8_t> target) {
                    detail::read_exact_at(file, offset, target, "kernel", kernel_path);
                });
            },
            fill_initrd);
    }
    std::vector<std::uint8_t> bytes(file_size);
    detail::read_exact(file, bytes, "kernel", kernel_path);
    const BzImage kernel = BzImage::parse(std::move(bytes), kernel_path);
    return load(
        memory, plan(kernel, ram_end), cmdline, initrd_size, initrd_name,
        [&] { memory.write(layout::kKernelLoadAddress, kernel.kernel()); }, fill_initrd);
}

}  // namespace

std::uint64_t place_initrd(std::uint64_t initrd_size, std::uint64_t kernel_end, std::uint64_t initrd_addr_max,
                           std::uint64_t ram_end_below_4g) {
    const std::uint64_t limit = std::min(std::min(initrd_addr_max, k4GiB - 1) + 1, ram_end_below_4g);
    const std::uint64_t lowest = align_up(kernel_end, memory::kPageSize);
    if (initrd_size > limit || align_down(limit - initrd_size, memory::kPageSize) < lowest) {
        throw std::invalid_argument("initrd of " + std::to_string(initrd_size) +
                                    " bytes does not fit between the kernel's end at " + hex(kernel_end) +
                                    " and " + hex(limit) +
                                    " (the lower of initrd_addr_max + 1 and the end of RAM below 4 GiB)");
    }
    return align_down(limit - initrd_size, memory::kPageSize);
}

BootInfo load_linux(memory::GuestMemory& memory, const BzImage& kernel, std::span<const std::uint8_t> initrd,
                    std::string_view cmdline) {
    return load(
        memory, plan(kernel, ram_end_below_4g(memory)), cmdline, initrd.size(), "",
        [&] { memory.write(layout::kKernelLoadAddress, kernel.kernel()); },
        [&](std::span<std::uint8_t> target) { std::copy(initrd.begin(), initrd.end(), target.begin()); });
}

BootInfo load_linux(memory::GuestMemory& memory, const ElfKernel& kernel, std::span<const std::uint8_t> file,
                    std::span<const std::uint8_t> initrd, std::string_view cmdline) {
    if (file.size() < kernel.file_end()) {
        throw std::invalid_argument("kernel " + kernel.name() + ": " + std::to_string(file.size()) +
                                    " bytes given for an ELF file of " + std::to_string(kernel.file_end()));
    }
    const auto setup_header = elf_setup_header();
    return load(
        memory, plan(kernel, ram_end_below_4g(memory), setup_header), cmdline, initrd.size(), "",
        [&] {
            write_segments(memory, kernel, [&](std::uint64_t offset, std::span<std::uint8_t> target) {
                const auto source = file.subspan(offset, target.size());
                std::copy(source.begin(), source.end(), target.begin());
            });
        },
        [&](std::span<std::uint8_t> target) { std::copy(initrd.begin(), initrd.end(), target.begin()); });
}

BootInfo load_linux(memory::GuestMemory& memory, const std::string& kernel_path,
                    const std::string& initrd_path, const std::string& cmdline) {
    if (initrd_path.empty()) {
        return load_kernel_file(memory, kernel_path, cmdline, 0, "", [](std::span<std::uint8_t>) {});
    }
    const sys::Fd initrd = detail::open_for_reading("initrd", initrd_path);
    const std::uint64_t initrd_size = detail::file_size(initrd, "initrd", initrd_path);
    if (initrd_size == 0) {
        throw std::invalid_argument("initrd " + initrd_path + ": empty file");
    }
    return load_kernel_file(
        memory, kernel_path, cmdline, initrd_size, "initrd " + initrd_path,
        [&](std::span<std::uint8_t> target) { detail::read_exact(initrd, target, "initrd", initrd_path); });
}

}  // namespace vim::vmm::boot
