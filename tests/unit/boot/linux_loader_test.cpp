#include "vmm/boot/linux_loader.h"

#include <glob.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "fake_bzimage.h"
#include "fake_elf_kernel.h"
#include "vmm/boot/elf_kernel.h"
#include "vmm/boot/kernel_unpack.h"
#include "vmm/boot/layout.h"
#include "vmm/boot/memory_map.h"

namespace vim::vmm::boot {
namespace {

using ::testing::StrEq;
using ::testing::ThrowsMessage;
using testing::FakeBzImage;
using testing::FakeElfKernel;
using testing::FakeElfSegment;

constexpr std::uint64_t kMiB = 1ull << 20;
constexpr std::uint64_t kGiB = 1ull << 30;

std::vector<std::uint8_t> pattern(std::size_t size, std::uint8_t seed) {
    std::vector<std::uint8_t> bytes(size);
    for (std::size_t i = 0; i < size; ++i) {
        bytes[i] = static_cast<std::uint8_t>(i * 13 + seed);
    }
    return bytes;
}

// What a boot without an initrd leaves: no ramdisk in BootInfo or
// boot_params, and an empty command line.
void expect_no_initrd(const BootInfo& info, const memory::GuestMemory& memory) {
    EXPECT_EQ(info.initrd_address, 0u);
    EXPECT_EQ(info.initrd_size, 0u);
    EXPECT_EQ(memory.read_object<std::uint32_t>(layout::kBootParamsAddress + 0x218), 0u);
    EXPECT_EQ(memory.read_object<std::uint32_t>(layout::kBootParamsAddress + 0x21c), 0u);
    EXPECT_EQ(memory.read_object<std::uint8_t>(layout::kCmdlineAddress), 0);
}

// The boot_params field at `offset`.
template <typename T>
T boot_param(const memory::GuestMemory& memory, std::size_t offset) {
    return memory.read_object<T>(layout::kBootParamsAddress + offset);
}

// The boot_params fields the loader fills in whatever the kernel's format,
// after a load with a 5000-byte initrd.
void expect_filled_in_by_the_loader(const BootInfo& info, const memory::GuestMemory& memory) {
    EXPECT_EQ(boot_param<std::uint8_t>(memory, 0x210), 0xff);  // type_of_loader: undefined
    EXPECT_EQ(boot_param<std::uint8_t>(memory, 0x211), kLoadedHigh);
    EXPECT_EQ(boot_param<std::uint32_t>(memory, 0x228), layout::kCmdlineAddress);
    EXPECT_EQ(boot_param<std::uint32_t>(memory, 0x0c8), 0u);
    EXPECT_EQ(boot_param<std::uint32_t>(memory, 0x218), info.initrd_address);
    EXPECT_EQ(boot_param<std::uint32_t>(memory, 0x21c), 5000u);
    EXPECT_EQ(boot_param<std::uint32_t>(memory, 0x0c0), 0u);
    EXPECT_EQ(boot_param<std::uint32_t>(memory, 0x0c4), 0u);
    EXPECT_EQ(boot_param<std::uint64_t>(memory, 0x070), layout::kAcpiRsdpAddress);
}

// 16 MiB of guest RAM from address 0, over a plain buffer.
class LinuxLoader : public ::testing::Test {
protected:
    LinuxLoader()
        : buffer_(16 * kMiB), memory_(memory::GuestMemory::over({{0, buffer_.size(), buffer_.data()}})) {}

    BzImage kernel(const FakeBzImage& fake = {}) { return BzImage::parse(fake.bytes(), "/k"); }

    template <typename T>
    T boot_param(std::size_t offset) {
        return vmm::boot::boot_param<T>(memory_, offset);
    }

    bool untouched(std::uint64_t address, std::size_t length) {
        return std::all_of(buffer_.begin() + address, buffer_.begin() + address + length,
                           [](std::uint8_t byte) { return byte == 0; });
    }

    std::vector<std::uint8_t> buffer_;
    memory::GuestMemory memory_;
};

TEST_F(LinuxLoader, LoadsKernelCommandLineAndInitrd) {
    const FakeBzImage fake;
    const BzImage image = kernel(fake);
    const std::vector<std::uint8_t> initrd = pattern(5000, 1);
    const BootInfo info = load_linux(memory_, image, initrd, "console=ttyS0 reboot=k");

    EXPECT_EQ(info.entry_point, 0x100200u);
    EXPECT_EQ(info.boot_params_address, layout::kBootParamsAddress);
    // Relocatable, 2 MiB aligned: decompressed at 2 MiB, init_size 1 MiB.
    EXPECT_EQ(info.kernel_end, 0x300000u);
    EXPECT_EQ(info.initrd_address, 16 * kMiB - 0x2000);
    EXPECT_EQ(info.initrd_size, 5000u);

    const auto loaded = memory_.read_span(layout::kKernelLoadAddress, image.kernel().size());
    EXPECT_TRUE(std::equal(loaded.begin(), loaded.end(), image.kernel().begin()));
    const auto cmdline = memory_.read_span(layout::kCmdlineAddress, 23);
    EXPECT_EQ(std::string(cmdline.begin(), cmdline.end()), std::string("console=ttyS0 reboot=k", 23));
    const auto placed = memory_.read_span(info.initrd_address, initrd.size());
    EXPECT_TRUE(std::equal(placed.begin(), placed.end(), initrd.begin()));
}

TEST_F(LinuxLoader, FillsBootParams) {
    const BootInfo info = load_linux(memory_, kernel(), pattern(5000, 1), "console=ttyS0");

    // The setup header as the image has it...
    EXPECT_EQ(boot_param<std::uint16_t>(0x1fe), 0xaa55);
    EXPECT_EQ(boot_param<std::uint32_t>(0x202), 0x53726448u);
    EXPECT_EQ(boot_param<std::uint16_t>(0x206), 0x020f);
    EXPECT_EQ(boot_param<std::uint64_t>(0x258), 0x200000u);
    EXPECT_EQ(boot_param<std::uint32_t>(0x238), 255u);
    // ...up to its end at 0x26c and no further.
    EXPECT_TRUE(untouched(layout::kBootParamsAddress + 0x26c, 0x290 - 0x26c));
    // ...and what the loader fills in.
    expect_filled_in_by_the_loader(info, memory_);

    ASSERT_EQ(boot_param<std::uint8_t>(0x1e8), 3);
    const std::uint64_t expected[3][3] = {{0, 0x9fc00, 1}, {0x9fc00, 0x60400, 2}, {0x100000, 15 * kMiB, 1}};
    for (std::size_t i = 0; i < 3; ++i) {
        const std::size_t entry = 0x2d0 + i * 20;
        EXPECT_EQ(boot_param<std::uint64_t>(entry), expected[i][0]) << "entry " << i;
        EXPECT_EQ(boot_param<std::uint64_t>(entry + 8), expected[i][1]) << "entry " << i;
        EXPECT_EQ(boot_param<std::uint32_t>(entry + 16), expected[i][2]) << "entry " << i;
    }
}

TEST_F(LinuxLoader, WritesTheLongModeTables) {
    load_linux(memory_, kernel(), {}, "");
    EXPECT_EQ(memory_.read_object<std::uint64_t>(layout::kPml4Address), layout::kPdptAddress | 0x3);
    EXPECT_EQ(memory_.read_object<std::uint64_t>(layout::kGdtAddress + 0x10), 0x00af9b000000ffffu);
}

TEST_F(LinuxLoader, WithoutInitrdLeavesRamdiskFieldsZero) {
    expect_no_initrd(load_linux(memory_, kernel(), {}, ""), memory_);
}

TEST_F(LinuxLoader, ClearsCanUseHeapBecauseTheSetupCodeDoesNotRun) {
    FakeBzImage fake;
    fake.loadflags = 0x81;
    load_linux(memory_, kernel(fake), {}, "");
    EXPECT_EQ(boot_param<std::uint8_t>(0x211), 0x01);
}

TEST_F(LinuxLoader, GivesTheRsdpAddressOnlyToProtocol214AndLater) {
    FakeBzImage fake;
    fake.version = 0x020d;
    load_linux(memory_, kernel(fake), {}, "");
    EXPECT_EQ(boot_param<std::uint64_t>(0x070), 0u);
}

TEST_F(LinuxLoader, KeepsTheInitrdBelowInitrdAddrMax) {
    FakeBzImage fake;
    fake.initrd_addr_max = 0x9fffff;
    const BootInfo info = load_linux(memory_, kernel(fake), pattern(5000, 2), "");
    EXPECT_EQ(info.initrd_address, 0x9fe000u);
}

TEST_F(LinuxLoader, NonRelocatableKernelRunsAtPrefAddress) {
    FakeBzImage fake;
    fake.relocatable = 0;
    fake.pref_address = 0x400000;
    const BootInfo info = load_linux(memory_, kernel(fake), {}, "");
    EXPECT_EQ(info.kernel_end, 0x500000u);
}

TEST_F(LinuxLoader, RejectsAnInitrdThatDoesNotFitAndWritesNothing) {
    EXPECT_THAT([&] { load_linux(memory_, kernel(), std::vector<std::uint8_t>(14 * kMiB), ""); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("initrd of 14680064 bytes does not fit between the kernel's end at 0x300000 and "
                          "0x1000000 (the lower of initrd_addr_max + 1 and the end of RAM below 4 GiB)")));
    EXPECT_TRUE(untouched(layout::kKernelLoadAddress, 0x3000));
    EXPECT_TRUE(untouched(layout::kBootParamsAddress, 0x1000));
}

TEST_F(LinuxLoader, RejectsACommandLineLongerThanTheKernelAccepts) {
    EXPECT_THAT([&] { load_linux(memory_, kernel(), {}, std::string(256, 'a')); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("command line of 256 bytes is longer than the 255 bytes kernel /k accepts")));
    EXPECT_TRUE(untouched(layout::kCmdlineAddress, 0x1000));
    load_linux(memory_, kernel(), {}, std::string(255, 'a'));
    EXPECT_EQ(memory_.read_object<std::uint8_t>(layout::kCmdlineAddress + 254), 'a');
    EXPECT_EQ(memory_.read_object<std::uint8_t>(layout::kCmdlineAddress + 255), 0);
}

TEST_F(LinuxLoader, RejectsACommandLineLongerThanItsArea) {
    FakeBzImage fake;
    fake.cmdline_size = 0x100000;
    EXPECT_THAT([&] { load_linux(memory_, kernel(fake), {}, std::string(layout::kCmdlineMaxSize, 'a')); },
                ThrowsMessage<std::invalid_argument>(StrEq(
                    "command line of 65536 bytes and its NUL do not fit the 65536 bytes reserved for it")));
}

TEST_F(LinuxLoader, RejectsACommandLineWithANul) {
    EXPECT_THAT([&] { load_linux(memory_, kernel(), {}, std::string("ro\0quiet", 8)); },
                ThrowsMessage<std::invalid_argument>(StrEq("command line has a NUL byte at offset 2")));
}

TEST_F(LinuxLoader, RejectsAKernelThatNeedsMoreRam) {
    FakeBzImage fake;
    fake.init_size = 16 * kMiB;
    EXPECT_THAT([&] { load_linux(memory_, kernel(fake), {}, ""); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("kernel /k: needs guest RAM up to 0x1200000 (init_size 0x1000000 from 0x200000), "
                          "but RAM below 4 GiB ends at 0x1000000")));
}

TEST_F(LinuxLoader, RejectsAPrefAddressBeyondRam) {
    FakeBzImage fake;
    fake.pref_address = 0xfffffffffff00000;
    EXPECT_THAT([&] { load_linux(memory_, kernel(fake), {}, ""); },
                ThrowsMessage<std::invalid_argument>(::testing::HasSubstr(
                    "(init_size 0x100000 from 0xfffffffffff00000), but RAM below 4 GiB ends at 0x1000000")));
}

TEST_F(LinuxLoader, RejectsAKernelLargerThanRam) {
    FakeBzImage fake;
    fake.kernel_size = 16 * kMiB;
    EXPECT_THAT([&] { load_linux(memory_, kernel(fake), {}, ""); },
                ThrowsMessage<std::invalid_argument>(StrEq(
                    "kernel /k: 16777216 bytes loaded at 0x100000 run past the end of RAM below 4 GiB at "
                    "0x1000000")));
}

bool filled_with(const memory::GuestMemory& memory, std::uint64_t address, std::size_t length,
                 std::uint8_t byte) {
    const auto bytes = memory.read_span(address, length);
    return std::all_of(bytes.begin(), bytes.end(), [&](std::uint8_t value) { return value == byte; });
}

// Each loadable segment's file bytes at its physical address, zeroes for the
// rest of its memory size, and memory just behind it untouched (0xff).
void expect_segments_loaded(const memory::GuestMemory& memory, const FakeElfKernel& fake) {
    for (const FakeElfSegment& segment : fake.segments) {
        if (segment.type != PT_LOAD || segment.memory_size == 0) {
            continue;
        }
        SCOPED_TRACE("segment at " + std::to_string(segment.address));
        const std::vector<std::uint8_t> contents = segment.contents();
        const auto loaded = memory.read_span(segment.address, contents.size());
        EXPECT_TRUE(std::equal(loaded.begin(), loaded.end(), contents.begin()));
        EXPECT_TRUE(filled_with(memory, segment.address + segment.file_size,
                                segment.memory_size - segment.file_size, 0));
        EXPECT_TRUE(filled_with(memory, segment.address + segment.memory_size, 0x100, 0xff));
    }
}

// 32 MiB of guest RAM from address 0, filled with 0xff so that the zeroes
// the loader writes (bss, boot_params) show.
class ElfLoader : public ::testing::Test {
protected:
    ElfLoader()
        : buffer_(32 * kMiB, 0xff),
          memory_(memory::GuestMemory::over({{0, buffer_.size(), buffer_.data()}})) {}

    static ElfKernel kernel(const std::vector<std::uint8_t>& file) {
        return ElfKernel::parse(file, file.size(), "/k");
    }

    template <typename T>
    T boot_param(std::size_t offset) {
        return vmm::boot::boot_param<T>(memory_, offset);
    }

    std::vector<std::uint8_t> buffer_;
    memory::GuestMemory memory_;
};

TEST_F(ElfLoader, LoadsSegmentsAtTheirPhysicalAddresses) {
    FakeElfKernel fake;
    fake.trailing_junk = 0x100;
    const std::vector<std::uint8_t> file = fake.bytes();
    const std::vector<std::uint8_t> initrd = pattern(5000, 1);
    const BootInfo info = load_linux(memory_, kernel(file), file, initrd, "console=ttyS0 reboot=k");

    EXPECT_EQ(info.entry_point, 0x1000000u);
    EXPECT_EQ(info.boot_params_address, layout::kBootParamsAddress);
    EXPECT_EQ(info.kernel_end, 0x1402000u);
    EXPECT_EQ(info.initrd_address, 32 * kMiB - 0x2000);
    EXPECT_EQ(info.initrd_size, 5000u);

    expect_segments_loaded(memory_, fake);
    // Between the segments nothing is written.
    EXPECT_TRUE(filled_with(memory_, 0x1001000, 0x1ff000, 0xff));
    EXPECT_TRUE(filled_with(memory_, layout::kKernelLoadAddress, 0x100000, 0xff));
    const auto cmdline = memory_.read_span(layout::kCmdlineAddress, 23);
    EXPECT_EQ(std::string(cmdline.begin(), cmdline.end()), std::string("console=ttyS0 reboot=k", 23));
    const auto placed = memory_.read_span(info.initrd_address, initrd.size());
    EXPECT_TRUE(std::equal(placed.begin(), placed.end(), initrd.begin()));
}

TEST_F(ElfLoader, FillsBootParamsAsABzImageOfTheKernelWould) {
    const std::vector<std::uint8_t> file = FakeElfKernel{}.bytes();
    const BootInfo info = load_linux(memory_, kernel(file), file, pattern(5000, 1), "console=ttyS0");

    // The setup header fields the kernel reads...
    EXPECT_EQ(boot_param<std::uint16_t>(0x1fe), 0xaa55);
    EXPECT_EQ(boot_param<std::uint32_t>(0x202), 0x53726448u);
    EXPECT_EQ(boot_param<std::uint16_t>(0x206), 0x020f);
    EXPECT_EQ(boot_param<std::uint16_t>(0x236), kXlfKernel64);
    EXPECT_EQ(boot_param<std::uint32_t>(0x238), 2047u);
    EXPECT_EQ(boot_param<std::uint32_t>(0x22c), 0x7fffffffu);
    // ...with no setup code, decompressor or relocation behind them...
    EXPECT_EQ(boot_param<std::uint8_t>(0x1f1), 0);
    EXPECT_EQ(boot_param<std::uint32_t>(0x1f4), 0u);
    EXPECT_EQ(boot_param<std::uint32_t>(0x230), 0u);
    EXPECT_EQ(boot_param<std::uint8_t>(0x234), 0);
    EXPECT_EQ(boot_param<std::uint64_t>(0x258), 0u);
    EXPECT_EQ(boot_param<std::uint32_t>(0x260), 0u);
    EXPECT_TRUE(filled_with(memory_, layout::kBootParamsAddress + 0x264, 0x290 - 0x264, 0));
    // ...and what the loader fills in, as for a bzImage.
    expect_filled_in_by_the_loader(info, memory_);
    EXPECT_TRUE(filled_with(memory_, layout::kBootParamsAddress, 0x070, 0));

    ASSERT_EQ(boot_param<std::uint8_t>(0x1e8), 3);
    const std::uint64_t expected[3][3] = {{0, 0x9fc00, 1}, {0x9fc00, 0x60400, 2}, {0x100000, 31 * kMiB, 1}};
    for (std::size_t i = 0; i < 3; ++i) {
        const std::size_t entry = 0x2d0 + i * 20;
        EXPECT_EQ(boot_param<std::uint64_t>(entry), expected[i][0]) << "entry " << i;
        EXPECT_EQ(boot_param<std::uint64_t>(entry + 8), expected[i][1]) << "entry " << i;
        EXPECT_EQ(boot_param<std::uint32_t>(entry + 16), expected[i][2]) << "entry " << i;
    }
    EXPECT_EQ(memory_.read_object<std::uint64_t>(layout::kPml4Address), layout::kPdptAddress | 0x3);
}

TEST_F(ElfLoader, WithoutInitrdLeavesRamdiskFieldsZero) {
    const std::vector<std::uint8_t> file = FakeElfKernel{}.bytes();
    expect_no_initrd(load_linux(memory_, kernel(file), file, {}, ""), memory_);
}

TEST_F(ElfLoader, PlacesTheInitrdAtOrAboveTheKernelsEnd) {
    const std::vector<std::uint8_t> file = FakeElfKernel{}.bytes();
    const std::uint64_t room = 32 * kMiB - 0x1402000;
    const BootInfo info = load_linux(memory_, kernel(file), file, std::vector<std::uint8_t>(room, 0x11), "");
    EXPECT_EQ(info.initrd_address, 0x1402000u);
    // Right behind the bss, which stays zero.
    EXPECT_TRUE(filled_with(memory_, 0x1400400, 0x1c00, 0));
    EXPECT_TRUE(filled_with(memory_, 0x1402000, room, 0x11));

    EXPECT_THAT([&] { load_linux(memory_, kernel(file), file, std::vector<std::uint8_t>(room + 1), ""); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("initrd of 12574721 bytes does not fit between the kernel's end at 0x1402000 and "
                          "0x2000000 (the lower of initrd_addr_max + 1 and the end of RAM below 4 GiB)")));
}

TEST_F(ElfLoader, RejectsSegmentsPastTheEndOfRamAndWritesNothing) {
    FakeElfKernel fake;
    fake.segments[3].address = 0x1fff000;  // its bss ends at 0x2001000
    const std::vector<std::uint8_t> file = fake.bytes();
    EXPECT_THAT([&] { load_linux(memory_, kernel(file), file, {}, ""); },
                ThrowsMessage<std::invalid_argument>(StrEq(
                    "kernel /k: segments from 0x1000000 to 0x2001000 run past the end of RAM below 4 GiB at "
                    "0x2000000")));
    EXPECT_TRUE(filled_with(memory_, 0x1000000, 0x1000, 0xff));
    EXPECT_TRUE(filled_with(memory_, layout::kBootParamsAddress, 0x1000, 0xff));
    EXPECT_TRUE(filled_with(memory_, layout::kCmdlineAddress, 0x1000, 0xff));
}

TEST_F(LinuxLoader, RejectsAnElfKernelAboveTheEndOfRam) {
    // vmlinux starts at 16 MiB, where this RAM ends.
    const std::vector<std::uint8_t> file = FakeElfKernel{}.bytes();
    EXPECT_THAT([&] { load_linux(memory_, ElfKernel::parse(file, file.size(), "/k"), file, {}, ""); },
                ThrowsMessage<std::invalid_argument>(StrEq(
                    "kernel /k: segments from 0x1000000 to 0x1402000 run past the end of RAM below 4 GiB at "
                    "0x1000000")));
}

TEST_F(ElfLoader, RejectsACommandLineLongerThan2047Bytes) {
    const std::vector<std::uint8_t> file = FakeElfKernel{}.bytes();
    EXPECT_THAT([&] { load_linux(memory_, kernel(file), file, {}, std::string(2048, 'a')); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("command line of 2048 bytes is longer than the 2047 bytes kernel /k accepts")));
    EXPECT_TRUE(filled_with(memory_, layout::kCmdlineAddress, 0x1000, 0xff));
    load_linux(memory_, kernel(file), file, {}, std::string(2047, 'a'));
    EXPECT_EQ(memory_.read_object<std::uint8_t>(layout::kCmdlineAddress + 2046), 'a');
    EXPECT_EQ(memory_.read_object<std::uint8_t>(layout::kCmdlineAddress + 2047), 0);
}

TEST_F(ElfLoader, RejectsBytesShorterThanTheElfFile) {
    FakeElfKernel fake;
    fake.trailing_junk = 0x100;
    const std::vector<std::uint8_t> file = fake.bytes();
    const ElfKernel parsed = kernel(file);
    EXPECT_THAT(
        [&] { load_linux(memory_, parsed, std::span(file).first(parsed.file_end() - 1), {}, ""); },
        ThrowsMessage<std::invalid_argument>(StrEq("kernel /k: 8383 bytes given for an ELF file of 8384")));
    EXPECT_TRUE(filled_with(memory_, 0x1000000, 0x1000, 0xff));
    // The junk behind the ELF file is not needed.
    load_linux(memory_, parsed, std::span(file).first(parsed.file_end()), {}, "");
    expect_segments_loaded(memory_, fake);
}

TEST(LinuxLoaderRam, RejectsRamWithoutTheKernelLoadAddress) {
    std::vector<std::uint8_t> buffer(512 * 1024);
    memory::GuestMemory memory = memory::GuestMemory::over({{0, buffer.size(), buffer.data()}});
    EXPECT_THAT([&] { load_linux(memory, BzImage::parse(FakeBzImage{}.bytes(), "/k"), {}, ""); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("guest RAM does not contain the kernel load address 0x100000")));
}

TEST(PlaceInitrd, GoesAsHighAsAllowedPageAligned) {
    // 5 GiB of RAM: the region below the hole ends at 3 GiB.
    EXPECT_EQ(place_initrd(64 * kMiB, 80 * kMiB, 0x7fffffff, 3 * kGiB), 2 * kGiB - 64 * kMiB);
    EXPECT_EQ(place_initrd(64 * kMiB, 80 * kMiB, 0xffffffff, 3 * kGiB), 3 * kGiB - 64 * kMiB);
    EXPECT_EQ(place_initrd(5000, 80 * kMiB, 0xffffffff, 3 * kGiB), 3 * kGiB - 0x2000);
    // 512 MiB of RAM ends below initrd_addr_max.
    EXPECT_EQ(place_initrd(30 * kMiB, 80 * kMiB, 0x7fffffff, 512 * kMiB), 482 * kMiB);
}

TEST(PlaceInitrd, FitsExactlyBetweenKernelEndAndLimit) {
    EXPECT_EQ(place_initrd(0x1000, 0x1000, 0x1fff, 1 * kGiB), 0x1000u);
    // The kernel's end is rounded up to a page.
    EXPECT_EQ(place_initrd(0x1000, 0x1001, 0x2fff, 1 * kGiB), 0x2000u);
}

TEST(PlaceInitrd, RejectsWhatDoesNotFit) {
    EXPECT_THAT([] { place_initrd(0x1001, 0x1000, 0x1fff, 1 * kGiB); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("initrd of 4097 bytes does not fit between the kernel's end at 0x1000 and 0x2000 "
                          "(the lower of initrd_addr_max + 1 and the end of RAM below 4 GiB)")));
    EXPECT_THAT([] { place_initrd(0x1000, 0x1001, 0x1fff, 1 * kGiB); },
                ThrowsMessage<std::invalid_argument>(::testing::HasSubstr("does not fit")));
    EXPECT_THAT([] { place_initrd(4 * kGiB, 0x1000, 0xffffffff, 3 * kGiB); },
                ThrowsMessage<std::invalid_argument>(::testing::HasSubstr("does not fit")));
}

class LoadFromFiles : public ::testing::Test {
protected:
    ~LoadFromFiles() override {
        for (const std::string& path : paths_) {
            std::filesystem::remove(path);
        }
    }

    std::string write_file(const std::string& name, const std::vector<std::uint8_t>& bytes) {
        const std::string path = (std::filesystem::temp_directory_path() /
                                  ("boot_unit_tests_" + std::to_string(::getpid()) + "_" + name))
                                     .string();
        FILE* file = std::fopen(path.c_str(), "wb");
        EXPECT_NE(file, nullptr);
        if (!bytes.empty()) {
            EXPECT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), file), bytes.size());
        }
        std::fclose(file);
        paths_.push_back(path);
        return path;
    }

    std::vector<std::string> paths_;
};

TEST_F(LoadFromFiles, ReadsKernelAndInitrd) {
    std::vector<std::uint8_t> buffer(16 * kMiB);
    memory::GuestMemory memory = memory::GuestMemory::over({{0, buffer.size(), buffer.data()}});
    const std::string kernel = write_file("kernel", FakeBzImage{}.bytes());
    const std::vector<std::uint8_t> initrd_bytes = pattern(10000, 5);
    const std::string initrd = write_file("initrd", initrd_bytes);

    const BootInfo info = load_linux(memory, kernel, initrd, "quiet");
    EXPECT_EQ(info.initrd_address, 16 * kMiB - 0x3000);
    EXPECT_EQ(info.initrd_size, 10000u);
    const auto placed = memory.read_span(info.initrd_address, initrd_bytes.size());
    EXPECT_TRUE(std::equal(placed.begin(), placed.end(), initrd_bytes.begin()));
}

TEST_F(LoadFromFiles, NamesTheInitrdThatFails) {
    std::vector<std::uint8_t> buffer(16 * kMiB);
    memory::GuestMemory memory = memory::GuestMemory::over({{0, buffer.size(), buffer.data()}});
    const std::string kernel = write_file("kernel", FakeBzImage{}.bytes());
    EXPECT_THAT([&] { load_linux(memory, kernel, "/nonexistent/initrd", ""); },
                ThrowsMessage<std::system_error>(
                    StrEq("open initrd /nonexistent/initrd: No such file or directory")));
    const std::string empty = write_file("empty", {});
    EXPECT_THAT([&] { load_linux(memory, kernel, empty, ""); },
                ThrowsMessage<std::invalid_argument>(StrEq("initrd " + empty + ": empty file")));
    const std::string huge = write_file("huge", std::vector<std::uint8_t>(14 * kMiB));
    EXPECT_THAT(
        [&] { load_linux(memory, kernel, huge, ""); },
        ThrowsMessage<std::invalid_argument>(StrEq(
            "initrd " + huge +
            ": initrd of 14680064 bytes does not fit between the kernel's end at "
            "0x300000 and 0x1000000 (the lower of initrd_addr_max + 1 and the end of RAM below 4 GiB)")));
}

TEST_F(LoadFromFiles, ReadsAnElfKernelAndInitrd) {
    std::vector<std::uint8_t> buffer(32 * kMiB, 0xff);
    memory::GuestMemory memory = memory::GuestMemory::over({{0, buffer.size(), buffer.data()}});
    FakeElfKernel fake;
    // Far beyond the head the loader reads first, before the section headers.
    fake.segments[1].offset = 0x30000;
    fake.section_header_offset = 0x30800;
    fake.trailing_junk = 0x1000;
    const std::string kernel = write_file("vmlinux", fake.bytes());
    const std::vector<std::uint8_t> initrd_bytes = pattern(10000, 5);
    const std::string initrd = write_file("initrd", initrd_bytes);

    const BootInfo info = load_linux(memory, kernel, initrd, "quiet");
    EXPECT_EQ(info.entry_point, 0x1000000u);
    EXPECT_EQ(info.kernel_end, 0x1402000u);
    EXPECT_EQ(info.initrd_address, 32 * kMiB - 0x3000);
    EXPECT_EQ(info.initrd_size, 10000u);
    expect_segments_loaded(memory, fake);
    const auto placed = memory.read_span(info.initrd_address, initrd_bytes.size());
    EXPECT_TRUE(std::equal(placed.begin(), placed.end(), initrd_bytes.begin()));
    EXPECT_EQ(memory.read_object<std::uint16_t>(layout::kBootParamsAddress + 0x206), 0x020f);
    EXPECT_EQ(memory.read_object<std::uint32_t>(layout::kBootParamsAddress + 0x238), 2047u);
    EXPECT_EQ(memory.read_object<std::uint32_t>(layout::kBootParamsAddress + 0x218), info.initrd_address);
}

TEST_F(LoadFromFiles, NamesTheElfKernelThatFails) {
    std::vector<std::uint8_t> buffer(32 * kMiB);
    memory::GuestMemory memory = memory::GuestMemory::over({{0, buffer.size(), buffer.data()}});
    FakeElfKernel shared_object;
    shared_object.type = ET_DYN;
    const std::string dynamic = write_file("dynamic", shared_object.bytes());
    EXPECT_THAT([&] { load_linux(memory, dynamic, "", ""); },
                ThrowsMessage<std::invalid_argument>(StrEq(
                    "kernel " + dynamic + ": ELF file of type 3, not an executable (ET_EXEC) like vmlinux")));

    const std::string stub = write_file("stub", {0x7f, 'E', 'L', 'F'});
    EXPECT_THAT([&] { load_linux(memory, stub, "", ""); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("kernel " + stub + ": too small for an ELF header (4 bytes)")));

    // The program header table has to be in the head read before parsing.
    FakeElfKernel late_headers;
    late_headers.program_header_offset = ElfKernel::kHeadSize;
    const std::string late = write_file("late", late_headers.bytes());
    EXPECT_THAT([&] { load_linux(memory, late, "", ""); },
                ThrowsMessage<std::invalid_argument>(StrEq(
                    "kernel " + late +
                    ": program header table at 0x10000 lies beyond the first 65536 bytes of the file")));

    FakeElfKernel too_high;
    too_high.segments[3].address = 0x1fff000;
    const std::string high = write_file("high", too_high.bytes());
    EXPECT_THAT(
        [&] { load_linux(memory, high, "", ""); },
        ThrowsMessage<std::invalid_argument>(StrEq(
            "kernel " + high +
            ": segments from 0x1000000 to 0x2001000 run past the end of RAM below 4 GiB at 0x2000000")));

    const std::string kernel = write_file("vmlinux", FakeElfKernel{}.bytes());
    const std::string huge = write_file("huge", std::vector<std::uint8_t>(32 * kMiB - 0x1402000 + 1));
    EXPECT_THAT(
        [&] { load_linux(memory, kernel, huge, ""); },
        ThrowsMessage<std::invalid_argument>(StrEq(
            "initrd " + huge +
            ": initrd of 12574721 bytes does not fit between the kernel's end at 0x1402000 and 0x2000000 "
            "(the lower of initrd_addr_max + 1 and the end of RAM below 4 GiB)")));
}

TEST_F(LoadFromFiles, TakesWhatIsNotElfForABzImage) {
    std::vector<std::uint8_t> buffer(16 * kMiB);
    memory::GuestMemory memory = memory::GuestMemory::over({{0, buffer.size(), buffer.data()}});
    const std::string other = write_file("other", pattern(4096, 9));
    EXPECT_THAT([&] { load_linux(memory, other, "", ""); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("kernel " + other + ": not a bzImage (no 0x55AA boot flag at 0x1fe)")));
    // Too short for the ELF magic, it is a (too small) bzImage.
    const std::string stub = write_file("stub", {0x7f, 'E', 'L'});
    EXPECT_THAT(
        [&] { load_linux(memory, stub, "", ""); },
        ThrowsMessage<std::invalid_argument>(StrEq(
            "kernel " + stub + ": too small for a bzImage (3 bytes, the setup header alone needs 612)")));
    EXPECT_THAT([&] { load_linux(memory, "/nonexistent/vmlinux", "", ""); },
                ThrowsMessage<std::system_error>(
                    StrEq("open kernel /nonexistent/vmlinux: No such file or directory")));
}

std::string first_match(const char* pattern) {
    glob_t found{};
    std::string path;
    if (::glob(pattern, 0, nullptr, &found) == 0 && found.gl_pathc > 0) {
        path = found.gl_pathv[0];
    }
    ::globfree(&found);
    return path;
}

TEST(LoadDistributionKernel, LoadsTheHostsKernelAndInitrd) {
    const std::string kernel = first_match("/boot/vmlinuz-*");
    if (kernel.empty()) {
        GTEST_SKIP() << "no /boot/vmlinuz-* on this machine";
    }
    std::string initrd = first_match("/boot/initrd.img-*");
    if (!initrd.empty() && ::access(initrd.c_str(), R_OK) != 0) {
        initrd.clear();
    }
    // MAP_NORESERVE and touched only where written, so 256 MiB costs little.
    memory::GuestMemory memory = memory::GuestMemory::allocate(ram_layout(256 * kMiB));
    const BootInfo info = load_linux(memory, kernel, initrd, "console=ttyS0");

    EXPECT_EQ(info.entry_point, layout::kKernelLoadAddress + 0x200);
    EXPECT_GT(info.kernel_end, 16 * kMiB);
    EXPECT_EQ(memory.read_object<std::uint32_t>(layout::kBootParamsAddress + 0x202), 0x53726448u);
    EXPECT_EQ(memory.read_object<std::uint8_t>(layout::kBootParamsAddress + 0x1e8), 3);
    if (!initrd.empty()) {
        EXPECT_EQ(info.initrd_size, std::filesystem::file_size(initrd));
        EXPECT_GE(info.initrd_address, info.kernel_end);
        EXPECT_LE(info.initrd_address + info.initrd_size, 256 * kMiB);
        EXPECT_EQ(info.initrd_address % 4096, 0u);
    }
}

TEST_F(LoadFromFiles, LoadsTheHostsKernelUnpacked) {
    const std::string bzimage = first_match("/boot/vmlinuz-*");
    if (bzimage.empty()) {
        GTEST_SKIP() << "no /boot/vmlinuz-* on this machine";
    }
    const std::vector<std::uint8_t> unpacked = unpack_bzimage(BzImage::read(bzimage));
    const ElfKernel kernel = ElfKernel::parse(unpacked, unpacked.size(), bzimage + " (unpacked)");
    EXPECT_EQ(kernel.file_end(), unpacked.size());

    memory::GuestMemory from_bytes = memory::GuestMemory::allocate(ram_layout(256 * kMiB));
    const BootInfo info = load_linux(from_bytes, kernel, unpacked, {}, "console=ttyS0");
    EXPECT_EQ(info.entry_point, 0x1000000u);
    EXPECT_GT(info.kernel_end, 16 * kMiB);
    EXPECT_EQ(from_bytes.read_object<std::uint32_t>(layout::kBootParamsAddress + 0x202), 0x53726448u);
    for (const ElfSegment& segment : kernel.segments()) {
        const auto loaded = from_bytes.read_span(segment.address, segment.file_size);
        EXPECT_TRUE(std::equal(loaded.begin(), loaded.end(), unpacked.begin() + segment.file_offset))
            << "segment at " << segment.address;
    }

    // The same kernel from a file, as unpack-kernel writes it, loads the same.
    const std::string vmlinux = write_file("host_vmlinux", unpacked);
    memory::GuestMemory from_file = memory::GuestMemory::allocate(ram_layout(256 * kMiB));
    const BootInfo file_info = load_linux(from_file, vmlinux, "", "console=ttyS0");
    EXPECT_EQ(file_info.entry_point, info.entry_point);
    EXPECT_EQ(file_info.kernel_end, info.kernel_end);
    const auto expected = from_bytes.read_span(kernel.start(), kernel.end() - kernel.start());
    const auto actual = from_file.read_span(kernel.start(), kernel.end() - kernel.start());
    EXPECT_TRUE(std::equal(actual.begin(), actual.end(), expected.begin()));
}

}  // namespace
}  // namespace vim::vmm::boot
