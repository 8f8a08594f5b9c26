#pragma once

// Builds small synthetic ELF kernels shaped like vmlinux: an x86-64 ET_EXEC
// file whose PT_LOAD segments sit at 16 MiB and up by physical address (the
// virtual addresses are the kernel's high mapping, which a loader must not
// use), a note segment, a section header table at the end, and optionally
// junk behind the ELF file proper, as an unpacked bzImage payload carries
// the kernel's relocation table there.

#include <elf.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

namespace vim::vmm::boot::testing {

struct FakeElfSegment {
    Elf64_Word type = PT_LOAD;
    Elf64_Off offset = 0;
    Elf64_Xword file_size = 0;
    Elf64_Xword memory_size = 0;
    Elf64_Addr address = 0;  // p_paddr
    std::uint8_t seed = 0;   // file byte i of the segment is i * 7 + seed

    // What the file holds for this segment.
    std::vector<std::uint8_t> contents() const {
        std::vector<std::uint8_t> bytes(file_size);
        for (std::size_t i = 0; i < bytes.size(); ++i) {
            bytes[i] = static_cast<std::uint8_t>(i * 7 + seed);
        }
        return bytes;
    }
};

// vmlinux maps itself at __START_KERNEL_map + physical address.
inline constexpr Elf64_Addr kFakeKernelVirtualOffset = 0xffffffff80000000;

struct FakeElfKernel {
    unsigned char elf_class = ELFCLASS64;
    unsigned char data_encoding = ELFDATA2LSB;
    Elf64_Half machine = EM_X86_64;
    Elf64_Half type = ET_EXEC;
    Elf64_Addr entry = 0x1000000;
    Elf64_Off program_header_offset = sizeof(Elf64_Ehdr);
    Elf64_Half program_header_entry_size = sizeof(Elf64_Phdr);
    // e_phnum; segments.size() unless set. The table written always holds
    // all of `segments`.
    std::optional<Elf64_Half> program_header_count;
    // Program header order: a note segment between the loadable ones, and
    // the bss of the last one beyond its file bytes.
    std::vector<FakeElfSegment> segments = {
        {PT_LOAD, 0x200, 0x1000, 0x1000, 0x1000000, 1},  // text
        {PT_LOAD, 0x1200, 0x800, 0x800, 0x1200000, 2},   // rodata
        {PT_NOTE, 0x1a00, 0x40, 0x40, 0x1000f00, 3},     // notes, inside the text
        {PT_LOAD, 0x1a40, 0x400, 0x2000, 0x1400000, 4},  // data, then 0x1c00 bytes of bss
    };
    Elf64_Off section_header_offset = 0x2000;
    Elf64_Half section_header_count = 3;
    Elf64_Half section_header_entry_size = sizeof(Elf64_Shdr);
    // Bytes after everything the ELF header accounts for.
    std::size_t trailing_junk = 0;
    // Cuts or extends the file to this size, for headers that point past it.
    std::optional<std::uint64_t> file_size;

    // Where the ELF file proper ends for the default layout: the section
    // header table is its last part.
    static constexpr std::uint64_t kDefaultFileEnd = 0x2000 + 3 * sizeof(Elf64_Shdr);

    std::vector<std::uint8_t> bytes() const {
        // Pieces that point absurdly far (tests of offsets that wrap or run
        // past the file) do not make the file larger; `file_size` sizes it.
        constexpr std::uint64_t kLargest = 64ull << 20;
        std::uint64_t size = sizeof(Elf64_Ehdr);
        auto extend_to = [&](std::uint64_t offset, std::uint64_t length) {
            if (offset <= kLargest && length <= kLargest - offset) {
                size = std::max(size, offset + length);
            }
        };
        extend_to(program_header_offset, segments.size() * sizeof(Elf64_Phdr));
        for (const FakeElfSegment& segment : segments) {
            extend_to(segment.offset, segment.file_size);
        }
        if (section_header_offset != 0) {
            extend_to(section_header_offset, std::uint64_t{section_header_count} * section_header_entry_size);
        }
        size += trailing_junk;
        std::vector<std::uint8_t> file(size);
        for (std::size_t i = size - trailing_junk; i < size; ++i) {
            file[i] = static_cast<std::uint8_t>(0xa5 ^ i);
        }

        auto put = [&](std::uint64_t offset, const void* data, std::uint64_t length) {
            if (length != 0 && offset <= file.size() && length <= file.size() - offset) {
                std::memcpy(file.data() + offset, data, length);
            }
        };
        Elf64_Ehdr header{};
        std::memcpy(header.e_ident, ELFMAG, SELFMAG);
        header.e_ident[EI_CLASS] = elf_class;
        header.e_ident[EI_DATA] = data_encoding;
        header.e_ident[EI_VERSION] = EV_CURRENT;
        header.e_type = type;
        header.e_machine = machine;
        header.e_version = EV_CURRENT;
        header.e_entry = entry;
        header.e_phoff = program_header_offset;
        header.e_shoff = section_header_offset;
        header.e_ehsize = sizeof(Elf64_Ehdr);
        header.e_phentsize = program_header_entry_size;
        header.e_phnum = program_header_count.value_or(static_cast<Elf64_Half>(segments.size()));
        header.e_shentsize = section_header_entry_size;
        header.e_shnum = section_header_count;
        put(0, &header, sizeof header);

        for (std::size_t i = 0; i < segments.size(); ++i) {
            const FakeElfSegment& segment = segments[i];
            Elf64_Phdr program{};
            program.p_type = segment.type;
            program.p_flags = PF_R;
            program.p_offset = segment.offset;
            program.p_vaddr = segment.address + kFakeKernelVirtualOffset;
            program.p_paddr = segment.address;
            program.p_filesz = segment.file_size;
            program.p_memsz = segment.memory_size;
            program.p_align = 0x1000;
            put(program_header_offset + i * sizeof(Elf64_Phdr), &program, sizeof program);
            if (segment.file_size <= kLargest) {
                const std::vector<std::uint8_t> contents = segment.contents();
                put(segment.offset, contents.data(), contents.size());
            }
        }
        if (section_header_offset != 0 && section_header_entry_size == sizeof(Elf64_Shdr)) {
            for (std::size_t i = 1; i < section_header_count; ++i) {
                Elf64_Shdr section{};
                section.sh_type = SHT_PROGBITS;
                put(section_header_offset + i * sizeof(Elf64_Shdr), &section, sizeof section);
            }
        }
        if (file_size) {
            file.resize(*file_size);
        }
        return file;
    }
};

}  // namespace vim::vmm::boot::testing
