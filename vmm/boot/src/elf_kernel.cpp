#include "vmm/boot/elf_kernel.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "bytes.h"
#include "vmm/boot/layout.h"

namespace vim::vmm::boot {
namespace {

using detail::hex;

// Far more than any kernel has (vmlinux has five); a bound on hostile input.
constexpr std::size_t kMaxProgramHeaders = 64;

template <typename T>
T read_struct(std::span<const std::uint8_t> bytes, std::uint64_t offset) {
    T value;
    std::memcpy(&value, bytes.subspan(offset, sizeof(T)).data(), sizeof(T));
    return value;
}

// `offset + size <= limit`, without the sum wrapping.
bool fits(std::uint64_t offset, std::uint64_t size, std::uint64_t limit) {
    return offset <= limit && size <= limit - offset;
}

void check_identity(const Elf64_Ehdr& header, const std::string& prefix) {
    if (header.e_ident[EI_CLASS] != ELFCLASS64) {
        throw std::invalid_argument(prefix + "not a 64-bit ELF file (EI_CLASS " +
                                    std::to_string(header.e_ident[EI_CLASS]) + ")");
    }
    if (header.e_ident[EI_DATA] != ELFDATA2LSB) {
        throw std::invalid_argument(prefix + "not a little-endian ELF file");
    }
    if (header.e_machine != EM_X86_64) {
        throw std::invalid_argument(prefix + "ELF file for machine " + std::to_string(header.e_machine) +
                                    ", not x86-64 (" + std::to_string(EM_X86_64) + ")");
    }
    if (header.e_type != ET_EXEC) {
        throw std::invalid_argument(prefix + "ELF file of type " + std::to_string(header.e_type) +
                                    ", not an executable (ET_EXEC) like vmlinux");
    }
}

std::vector<ElfSegment> loadable_segments(std::span<const std::uint8_t> head, const Elf64_Ehdr& header,
                                          std::uint64_t file_size, const std::string& prefix) {
    if (header.e_phentsize != sizeof(Elf64_Phdr)) {
        throw std::invalid_argument(prefix + "program header entries of " +
                                    std::to_string(header.e_phentsize) + " bytes, not " +
                                    std::to_string(sizeof(Elf64_Phdr)));
    }
    if (header.e_phnum == 0 || header.e_phnum > kMaxProgramHeaders) {
        throw std::invalid_argument(prefix + std::to_string(header.e_phnum) +
                                    " program headers (expected 1 to " + std::to_string(kMaxProgramHeaders) +
                                    ")");
    }
    const std::uint64_t table_size = std::uint64_t{header.e_phnum} * sizeof(Elf64_Phdr);
    if (!fits(header.e_phoff, table_size, head.size())) {
        throw std::invalid_argument(prefix + "program header table at " + hex(header.e_phoff) +
                                    " lies beyond the first " + std::to_string(head.size()) +
                                    " bytes of the file");
    }

    std::vector<ElfSegment> segments;
    for (std::size_t i = 0; i < header.e_phnum; ++i) {
        const auto program = read_struct<Elf64_Phdr>(head, header.e_phoff + i * sizeof(Elf64_Phdr));
        if (program.p_type != PT_LOAD || program.p_memsz == 0) {
            continue;
        }
        const std::string what = prefix + "segment " + std::to_string(i) + " ";
        if (program.p_filesz > program.p_memsz) {
            throw std::invalid_argument(what + "has more file bytes (" + hex(program.p_filesz) +
                                        ") than memory bytes (" + hex(program.p_memsz) + ")");
        }
        if (!fits(program.p_offset, program.p_filesz, file_size)) {
            throw std::invalid_argument(what + "at file offset " + hex(program.p_offset) + "+" +
                                        hex(program.p_filesz) + " runs past the end of the file (" +
                                        std::to_string(file_size) + " bytes)");
        }
        if (!fits(program.p_paddr, program.p_memsz, UINT64_MAX)) {
            throw std::invalid_argument(what + "at " + hex(program.p_paddr) + "+" + hex(program.p_memsz) +
                                        " wraps around the address space");
        }
        if (program.p_paddr < layout::kKernelLoadAddress) {
            throw std::invalid_argument(what + "at " + hex(program.p_paddr) + " lies below " +
                                        hex(layout::kKernelLoadAddress) + ", where the boot structures live");
        }
        segments.push_back({program.p_offset, program.p_filesz, program.p_paddr, program.p_memsz});
    }
    if (segments.empty()) {
        throw std::invalid_argument(prefix + "no loadable (PT_LOAD) segment");
    }
    std::sort(segments.begin(), segments.end(),
              [](const ElfSegment& a, const ElfSegment& b) { return a.address < b.address; });
    for (std::size_t i = 1; i < segments.size(); ++i) {
        const ElfSegment& before = segments[i - 1];
        if (before.address + before.memory_size > segments[i].address) {
            throw std::invalid_argument(prefix + "segments at " + hex(before.address) + "+" +
                                        hex(before.memory_size) + " and " + hex(segments[i].address) +
                                        " overlap");
        }
    }
    return segments;
}

}  // namespace

bool ElfKernel::has_elf_magic(std::span<const std::uint8_t> head) noexcept {
    return head.size() >= SELFMAG && std::memcmp(head.data(), ELFMAG, SELFMAG) == 0;
}

ElfKernel ElfKernel::parse(std::span<const std::uint8_t> head, std::uint64_t file_size, std::string name) {
    const std::string prefix = "kernel " + name + ": ";
    head = head.first(std::min<std::uint64_t>(head.size(), file_size));
    if (!has_elf_magic(head)) {
        throw std::invalid_argument(prefix + "not an ELF file (no 0x7f 'ELF' magic)");
    }
    if (head.size() < sizeof(Elf64_Ehdr)) {
        throw std::invalid_argument(prefix + "too small for an ELF header (" + std::to_string(head.size()) +
                                    " bytes)");
    }
    const auto header = read_struct<Elf64_Ehdr>(head, 0);
    check_identity(header, prefix);

    ElfKernel kernel;
    kernel.segments_ = loadable_segments(head, header, file_size, prefix);
    kernel.name_ = std::move(name);
    kernel.entry_point_ = header.e_entry;
    if (std::none_of(kernel.segments_.begin(), kernel.segments_.end(), [&](const ElfSegment& segment) {
            return header.e_entry >= segment.address && header.e_entry - segment.address < segment.file_size;
        })) {
        throw std::invalid_argument(prefix + "entry point " + hex(header.e_entry) +
                                    " lies outside the segments' file contents");
    }

    kernel.file_end_ = header.e_phoff + std::uint64_t{header.e_phnum} * sizeof(Elf64_Phdr);
    for (const ElfSegment& segment : kernel.segments_) {
        kernel.file_end_ = std::max(kernel.file_end_, segment.file_offset + segment.file_size);
    }
    if (header.e_shoff != 0) {
        const std::uint64_t section_table_size = std::uint64_t{header.e_shnum} * header.e_shentsize;
        if (!fits(header.e_shoff, section_table_size, file_size)) {
            throw std::invalid_argument(prefix + "section header table at " + hex(header.e_shoff) +
                                        " runs past the end of the file (" + std::to_string(file_size) +
                                        " bytes)");
        }
        kernel.file_end_ = std::max(kernel.file_end_, header.e_shoff + section_table_size);
    }
    return kernel;
}

std::uint64_t ElfKernel::start() const noexcept { return segments_.front().address; }

std::uint64_t ElfKernel::end() const noexcept {
    return segments_.back().address + segments_.back().memory_size;
}

}  // namespace vim::vmm::boot
