#include "vmm/boot/elf_kernel.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "fake_elf_kernel.h"

namespace vim::vmm::boot {
namespace {

using ::testing::StrEq;
using ::testing::ThrowsMessage;
using testing::FakeElfKernel;

ElfKernel parse(const std::vector<std::uint8_t>& bytes) {
    return ElfKernel::parse(bytes, bytes.size(), "/k");
}

ElfKernel parse(const FakeElfKernel& fake) { return parse(fake.bytes()); }

void expect_rejected(const std::vector<std::uint8_t>& bytes, const std::string& message) {
    EXPECT_THAT([&] { parse(bytes); }, ThrowsMessage<std::invalid_argument>(StrEq(message)));
}

void expect_rejected(const FakeElfKernel& fake, const std::string& message) {
    expect_rejected(fake.bytes(), message);
}

void expect_segment(const ElfSegment& segment, std::uint64_t file_offset, std::uint64_t file_size,
                    std::uint64_t address, std::uint64_t memory_size) {
    EXPECT_EQ(segment.file_offset, file_offset);
    EXPECT_EQ(segment.file_size, file_size);
    EXPECT_EQ(segment.address, address);
    EXPECT_EQ(segment.memory_size, memory_size);
}

TEST(ElfKernel, ParsesAKernel) {
    FakeElfKernel fake;
    fake.trailing_junk = 0x100;
    const ElfKernel kernel = parse(fake);

    EXPECT_EQ(kernel.name(), "/k");
    EXPECT_EQ(kernel.entry_point(), 0x1000000u);
    // The note segment is left out; the addresses are physical, not virtual.
    ASSERT_EQ(kernel.segments().size(), 3u);
    expect_segment(kernel.segments()[0], 0x200, 0x1000, 0x1000000, 0x1000);
    expect_segment(kernel.segments()[1], 0x1200, 0x800, 0x1200000, 0x800);
    expect_segment(kernel.segments()[2], 0x1a40, 0x400, 0x1400000, 0x2000);
    EXPECT_EQ(kernel.start(), 0x1000000u);
    EXPECT_EQ(kernel.end(), 0x1402000u);
    // The section header table ends the ELF file; the junk behind it is not part of it.
    EXPECT_EQ(kernel.file_end(), FakeElfKernel::kDefaultFileEnd);
    EXPECT_EQ(fake.bytes().size(), FakeElfKernel::kDefaultFileEnd + 0x100);
}

TEST(ElfKernel, SortsSegmentsByAddress) {
    FakeElfKernel fake;
    std::reverse(fake.segments.begin(), fake.segments.end());
    const ElfKernel kernel = parse(fake);
    ASSERT_EQ(kernel.segments().size(), 3u);
    EXPECT_EQ(kernel.segments()[0].address, 0x1000000u);
    EXPECT_EQ(kernel.segments()[1].address, 0x1200000u);
    EXPECT_EQ(kernel.segments()[2].address, 0x1400000u);
    EXPECT_EQ(kernel.start(), 0x1000000u);
    EXPECT_EQ(kernel.end(), 0x1402000u);
}

TEST(ElfKernel, FileEndCoversWhicheverPartComesLast) {
    FakeElfKernel without_sections;
    without_sections.section_header_offset = 0;  // the count means nothing then
    without_sections.trailing_junk = 0x100;
    EXPECT_EQ(parse(without_sections).file_end(), 0x1e40u);

    FakeElfKernel program_headers_last = without_sections;
    program_headers_last.program_header_offset = 0x3000;
    EXPECT_EQ(parse(program_headers_last).file_end(), 0x3000u + 4 * sizeof(Elf64_Phdr));

    FakeElfKernel segment_last;
    segment_last.segments[1].offset = 0x4000;
    EXPECT_EQ(parse(segment_last).file_end(), 0x4800u);
}

TEST(ElfKernel, IgnoresSegmentsThatLoadNothing) {
    FakeElfKernel fake;
    // Neither of these would pass the checks on a loadable segment.
    fake.segments.push_back({PT_NOTE, 0xffffffffffff0000, 0x20000, 0x10, 0, 5});
    fake.segments.push_back({PT_LOAD, 0xffffffffffff0000, 0x20000, 0, 0, 6});
    fake.segments.push_back({PT_GNU_STACK, 0, 0, 0, 0, 7});
    const ElfKernel kernel = parse(fake);
    EXPECT_EQ(kernel.segments().size(), 3u);
    EXPECT_EQ(kernel.file_end(), FakeElfKernel::kDefaultFileEnd);
}

TEST(ElfKernel, TakesSegmentsThatAreAllBss) {
    FakeElfKernel fake;
    fake.segments.push_back({PT_LOAD, 0, 0, 0x3000, 0x1600000, 8});
    const ElfKernel kernel = parse(fake);
    ASSERT_EQ(kernel.segments().size(), 4u);
    expect_segment(kernel.segments()[3], 0, 0, 0x1600000, 0x3000);
    EXPECT_EQ(kernel.end(), 0x1603000u);
}

TEST(ElfKernel, TellsTheElfMagic) {
    const std::vector<std::uint8_t> elf = FakeElfKernel{}.bytes();
    EXPECT_TRUE(ElfKernel::has_elf_magic(elf));
    EXPECT_TRUE(ElfKernel::has_elf_magic(std::span(elf).first(4)));
    EXPECT_FALSE(ElfKernel::has_elf_magic(std::span(elf).first(3)));
    EXPECT_FALSE(ElfKernel::has_elf_magic({}));
    const std::vector<std::uint8_t> other = {0x7f, 'E', 'L', 'G', 2, 1};
    EXPECT_FALSE(ElfKernel::has_elf_magic(other));
}

TEST(ElfKernel, RejectsAFileWithoutTheMagic) {
    std::vector<std::uint8_t> bytes = FakeElfKernel{}.bytes();
    bytes[1] = 'e';
    expect_rejected(bytes, "kernel /k: not an ELF file (no 0x7f 'ELF' magic)");
    expect_rejected(std::vector<std::uint8_t>{0x7f, 'E', 'L'},
                    "kernel /k: not an ELF file (no 0x7f 'ELF' magic)");
    expect_rejected(std::vector<std::uint8_t>{}, "kernel /k: not an ELF file (no 0x7f 'ELF' magic)");
}

TEST(ElfKernel, RejectsAFileTooSmallForTheHeader) {
    std::vector<std::uint8_t> bytes = FakeElfKernel{}.bytes();
    bytes.resize(sizeof(Elf64_Ehdr) - 1);
    expect_rejected(bytes, "kernel /k: too small for an ELF header (63 bytes)");
    // What the head holds past the file's end does not count.
    const std::vector<std::uint8_t> whole = FakeElfKernel{}.bytes();
    EXPECT_THAT(
        [&] { ElfKernel::parse(whole, 40, "/k"); },
        ThrowsMessage<std::invalid_argument>(StrEq("kernel /k: too small for an ELF header (40 bytes)")));
}

TEST(ElfKernel, RejectsA32BitFile) {
    FakeElfKernel fake;
    fake.elf_class = ELFCLASS32;
    expect_rejected(fake, "kernel /k: not a 64-bit ELF file (EI_CLASS 1)");
}

TEST(ElfKernel, RejectsABigEndianFile) {
    FakeElfKernel fake;
    fake.data_encoding = ELFDATA2MSB;
    expect_rejected(fake, "kernel /k: not a little-endian ELF file");
}

TEST(ElfKernel, RejectsAnotherMachine) {
    FakeElfKernel fake;
    fake.machine = EM_AARCH64;
    expect_rejected(fake, "kernel /k: ELF file for machine 183, not x86-64 (62)");
}

TEST(ElfKernel, RejectsWhatIsNotAnExecutable) {
    FakeElfKernel fake;
    fake.type = ET_DYN;
    expect_rejected(fake, "kernel /k: ELF file of type 3, not an executable (ET_EXEC) like vmlinux");
    fake.type = ET_REL;
    expect_rejected(fake, "kernel /k: ELF file of type 1, not an executable (ET_EXEC) like vmlinux");
}

TEST(ElfKernel, RejectsProgramHeadersOfAnotherSize) {
    FakeElfKernel fake;
    fake.program_header_entry_size = sizeof(Elf32_Phdr);
    expect_rejected(fake, "kernel /k: program header entries of 32 bytes, not 56");
}

TEST(ElfKernel, RejectsNoneOrTooManyProgramHeaders) {
    FakeElfKernel fake;
    fake.program_header_count = 0;
    expect_rejected(fake, "kernel /k: 0 program headers (expected 1 to 64)");
    fake.program_header_count = 65;
    expect_rejected(fake, "kernel /k: 65 program headers (expected 1 to 64)");

    // 64 is allowed; the 60 not in `segments` are zero, PT_NULL.
    fake.program_header_count = 64;
    fake.program_header_offset = 0x3000;
    fake.file_size = 0x3000 + 64 * sizeof(Elf64_Phdr);
    EXPECT_EQ(parse(fake).segments().size(), 3u);
}

TEST(ElfKernel, RejectsAProgramHeaderTableBeyondTheHead) {
    // The table has to lie in the first ElfKernel::kHeadSize bytes, which
    // are all the loader reads before it knows where the segments are.
    FakeElfKernel fake;
    fake.program_header_offset = ElfKernel::kHeadSize - 4 * sizeof(Elf64_Phdr) + 8;
    fake.file_size = 2 * ElfKernel::kHeadSize;
    const std::vector<std::uint8_t> bytes = fake.bytes();
    const auto head = std::span(bytes).first(ElfKernel::kHeadSize);
    EXPECT_THAT(
        [&] { ElfKernel::parse(head, bytes.size(), "/k"); },
        ThrowsMessage<std::invalid_argument>(StrEq(
            "kernel /k: program header table at 0xff28 lies beyond the first 65536 bytes of the file")));

    fake.program_header_offset -= 8;  // ends exactly at the head's end
    const std::vector<std::uint8_t> fitting = fake.bytes();
    EXPECT_EQ(ElfKernel::parse(std::span(fitting).first(ElfKernel::kHeadSize), fitting.size(), "/k")
                  .segments()
                  .size(),
              3u);
}

TEST(ElfKernel, RejectsAProgramHeaderTableBeyondTheFile) {
    FakeElfKernel fake;
    fake.program_header_offset = 0x3000;
    fake.file_size = FakeElfKernel::kDefaultFileEnd;
    expect_rejected(fake,
                    "kernel /k: program header table at 0x3000 lies beyond the first 8384 bytes of the file");
    fake.program_header_offset = 0xffffffffffffff00;
    expect_rejected(
        fake, "kernel /k: program header table at 0xffffffffffffff00 lies beyond the first 8384 bytes of the "
              "file");
}

TEST(ElfKernel, RejectsMoreFileBytesThanMemoryBytes) {
    FakeElfKernel fake;
    fake.segments[1].file_size = 0x801;
    expect_rejected(fake, "kernel /k: segment 1 has more file bytes (0x801) than memory bytes (0x800)");
}

TEST(ElfKernel, RejectsASegmentPastTheEndOfTheFile) {
    FakeElfKernel fake;
    fake.section_header_offset = 0;
    fake.file_size = 0x1e3f;  // one byte short of the last segment's
    expect_rejected(fake,
                    "kernel /k: segment 3 at file offset 0x1a40+0x400 runs past the end of the file (7743 "
                    "bytes)");

    FakeElfKernel wrapping;
    wrapping.segments[0].offset = 0xfffffffffffff000;
    wrapping.segments[0].file_size = wrapping.segments[0].memory_size = 0x2000;
    expect_rejected(wrapping,
                    "kernel /k: segment 0 at file offset 0xfffffffffffff000+0x2000 runs past the end "
                    "of the file (8384 bytes)");
}

TEST(ElfKernel, RejectsASegmentThatWrapsAroundTheAddressSpace) {
    FakeElfKernel fake;
    fake.segments[3].address = 0xfffffffffffff000;
    expect_rejected(fake, "kernel /k: segment 3 at 0xfffffffffffff000+0x2000 wraps around the address space");
    // Ending at 2^64 exactly is no better: the end is not an address.
    fake.segments[3].address = 0xffffffffffffe000;
    expect_rejected(fake, "kernel /k: segment 3 at 0xffffffffffffe000+0x2000 wraps around the address space");
}

TEST(ElfKernel, RejectsASegmentBelowOneMebibyte) {
    FakeElfKernel fake;
    fake.segments[0].address = 0xff000;
    fake.entry = 0xff000;
    expect_rejected(fake,
                    "kernel /k: segment 0 at 0xff000 lies below 0x100000, where the boot structures live");
    fake.segments[0].address = 0x100000;
    fake.entry = 0x100000;
    EXPECT_EQ(parse(fake).start(), 0x100000u);
}

TEST(ElfKernel, RejectsOverlappingSegments) {
    FakeElfKernel fake;
    fake.segments[1].address = 0x1000fff;
    expect_rejected(fake, "kernel /k: segments at 0x1000000+0x1000 and 0x1000fff overlap");
    // Overlap is found between neighbours by address, not by table order.
    FakeElfKernel bss_over_rodata;
    bss_over_rodata.segments[3].address = 0x11ff000;
    expect_rejected(bss_over_rodata, "kernel /k: segments at 0x11ff000+0x2000 and 0x1200000 overlap");
    // Touching is fine.
    fake.segments[1].address = 0x1001000;
    EXPECT_EQ(parse(fake).segments()[1].address, 0x1001000u);
}

TEST(ElfKernel, RejectsAKernelWithoutLoadableSegments) {
    FakeElfKernel fake;
    for (auto& segment : fake.segments) {
        segment.type = PT_NOTE;
    }
    expect_rejected(fake, "kernel /k: no loadable (PT_LOAD) segment");
    FakeElfKernel empty_loads;
    for (auto& segment : empty_loads.segments) {
        segment.memory_size = 0;
        segment.file_size = 0;
    }
    expect_rejected(empty_loads, "kernel /k: no loadable (PT_LOAD) segment");
}

TEST(ElfKernel, RejectsAnEntryPointOutsideTheSegments) {
    FakeElfKernel fake;
    fake.entry = 0x1001000;  // just past the text
    expect_rejected(fake, "kernel /k: entry point 0x1001000 lies outside the segments' file contents");
    fake.entry = 0xfffff;
    expect_rejected(fake, "kernel /k: entry point 0xfffff lies outside the segments' file contents");
    // The virtual address vmlinux's e_entry would hold if it were not physical.
    fake.entry = 0xffffffff81000000;
    expect_rejected(fake,
                    "kernel /k: entry point 0xffffffff81000000 lies outside the segments' file contents");
}

TEST(ElfKernel, RejectsAnEntryPointInBssOnly) {
    FakeElfKernel fake;
    fake.entry = 0x1400400;  // the data segment's first byte of bss
    expect_rejected(fake, "kernel /k: entry point 0x1400400 lies outside the segments' file contents");
    fake.entry = 0x14003ff;  // its last file byte
    EXPECT_EQ(parse(fake).entry_point(), 0x14003ffu);
    fake.entry = 0x12007ff;
    EXPECT_EQ(parse(fake).entry_point(), 0x12007ffu);
}

TEST(ElfKernel, RejectsASectionHeaderTablePastTheEndOfTheFile) {
    FakeElfKernel fake;
    fake.file_size = FakeElfKernel::kDefaultFileEnd - 1;
    expect_rejected(fake,
                    "kernel /k: section header table at 0x2000 runs past the end of the file (8383 bytes)");
    FakeElfKernel wrapping;
    wrapping.section_header_offset = 0xffffffffffffff00;
    expect_rejected(
        wrapping, "kernel /k: section header table at 0xffffffffffffff00 runs past the end of the file (7744 "
                  "bytes)");
}

}  // namespace
}  // namespace vim::vmm::boot
