#include "vmm/boot/bzimage.h"

#include <glob.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "fake_bzimage.h"

namespace vim::vmm::boot {
namespace {

using ::testing::StrEq;
using ::testing::ThrowsMessage;
using testing::FakeBzImage;

BzImage parse(const FakeBzImage& fake) { return BzImage::parse(fake.bytes(), "/k"); }

void expect_rejected(std::vector<std::uint8_t> bytes, const std::string& message) {
    EXPECT_THAT([&] { BzImage::parse(bytes, "/k"); }, ThrowsMessage<std::invalid_argument>(StrEq(message)));
}

void expect_rejected(const FakeBzImage& fake, const std::string& message) {
    expect_rejected(fake.bytes(), message);
}

TEST(BzImage, DecodesTheSetupHeader) {
    FakeBzImage fake;
    fake.setup_sects = 3;
    const BzImage image = parse(fake);
    const SetupHeader& header = image.header();
    EXPECT_EQ(header.protocol_version, 0x020f);
    EXPECT_EQ(header.setup_sects, 3u);
    EXPECT_EQ(header.loadflags, kLoadedHigh);
    EXPECT_EQ(header.xloadflags, kXlfKernel64);
    EXPECT_EQ(header.kernel_alignment, 0x200000u);
    EXPECT_TRUE(header.relocatable);
    EXPECT_EQ(header.pref_address, 0x200000u);
    EXPECT_EQ(header.init_size, 0x100000u);
    EXPECT_EQ(header.initrd_addr_max, 0x7fffffffu);
    EXPECT_EQ(header.cmdline_size, 255u);
    EXPECT_EQ(image.name(), "/k");
    EXPECT_EQ(image.kernel_offset(), 4u * 512);

    const std::vector<std::uint8_t> bytes = fake.bytes();
    ASSERT_EQ(image.kernel().size(), fake.kernel_size);
    EXPECT_TRUE(std::equal(image.kernel().begin(), image.kernel().end(), bytes.begin() + 4 * 512));
    ASSERT_EQ(image.setup_header_bytes().size(), 0x26cu - 0x1f1);
    EXPECT_TRUE(std::equal(image.setup_header_bytes().begin(), image.setup_header_bytes().end(),
                           bytes.begin() + 0x1f1));
}

TEST(BzImage, GivesTheCompressedPayloadInsideTheKernel) {
    FakeBzImage fake;
    fake.payload_offset = 0x180;
    fake.payload_length = 0x2000;
    const BzImage image = parse(fake);
    ASSERT_EQ(image.payload().size(), 0x2000u);
    EXPECT_EQ(image.payload().data(), image.kernel().data() + 0x180);

    fake.put_payload({1, 2, 3, 4, 5});
    const BzImage carrying = parse(fake);
    EXPECT_THAT(std::vector<std::uint8_t>(carrying.payload().begin(), carrying.payload().end()),
                ::testing::ElementsAre(1, 2, 3, 4, 5));
    // The payload may end exactly where the protected-mode kernel does.
    fake = FakeBzImage{};
    fake.payload_offset = 0x2000;
    EXPECT_EQ(parse(fake).payload().size(), 0x1000u);
}

TEST(BzImage, SetupSectsZeroMeansFour) {
    FakeBzImage fake;
    fake.setup_sects = 0;
    const BzImage image = parse(fake);
    EXPECT_EQ(image.header().setup_sects, 4u);
    EXPECT_EQ(image.kernel_offset(), 5u * 512);
}

TEST(BzImage, KernelSizeComesFromSyssizeNotTheFileSize) {
    // Signed kernels carry a signature after the protected-mode code.
    FakeBzImage fake;
    std::vector<std::uint8_t> bytes = fake.bytes();
    bytes.resize(bytes.size() + 1000, 0xee);
    const BzImage image = BzImage::parse(bytes, "/k");
    EXPECT_EQ(image.kernel().size(), fake.kernel_size);
}

TEST(BzImage, RejectsAFileTooSmallForTheHeader) {
    expect_rejected(std::vector<std::uint8_t>(100),
                    "kernel /k: too small for a bzImage (100 bytes, the setup header alone needs 612)");
}

TEST(BzImage, RejectsAMissingBootFlag) {
    std::vector<std::uint8_t> bytes = FakeBzImage{}.bytes();
    bytes[0x1fe] = 0;
    expect_rejected(bytes, "kernel /k: not a bzImage (no 0x55AA boot flag at 0x1fe)");
}

TEST(BzImage, RejectsAMissingHdrSMagic) {
    std::vector<std::uint8_t> bytes = FakeBzImage{}.bytes();
    bytes[0x205] = 'X';
    expect_rejected(bytes, "kernel /k: not a bzImage (no HdrS magic at 0x202)");
}

TEST(BzImage, RejectsProtocolsOlderThan212) {
    FakeBzImage fake;
    fake.version = 0x020b;
    expect_rejected(fake, "kernel /k: boot protocol 2.11 is too old (need 2.12 or later)");
    fake.version = 0x020c;
    EXPECT_EQ(parse(fake).header().protocol_version, 0x020c);
}

TEST(BzImage, RejectsAHeaderEndOutsideBootParamsRoom) {
    FakeBzImage fake;
    fake.header_length = 0x10;
    expect_rejected(fake, "kernel /k: setup header ends at 0x212, outside [0x264, 0x290]");
    fake.header_length = 0x90;
    expect_rejected(fake, "kernel /k: setup header ends at 0x292, outside [0x264, 0x290]");
    std::vector<std::uint8_t> bytes = FakeBzImage{}.bytes();
    bytes[0x200] = 0x90;
    expect_rejected(bytes, "kernel /k: no short jump at 0x200 to mark the end of the setup header");
}

TEST(BzImage, RejectsSetupCodePastTheEndOfTheFile) {
    FakeBzImage fake;
    std::vector<std::uint8_t> bytes = fake.bytes();
    bytes[0x1f1] = 200;
    expect_rejected(bytes, "kernel /k: setup code of 200 sectors runs past the end of the file (" +
                               std::to_string(bytes.size()) + " bytes)");
}

TEST(BzImage, RejectsAKernelNotLoadedHigh) {
    FakeBzImage fake;
    fake.loadflags = 0;
    expect_rejected(fake, "kernel /k: not loaded high (loadflags bit 0 clear): a zImage, not a bzImage");
}

TEST(BzImage, RejectsAKernelWithout64BitEntry) {
    FakeBzImage fake;
    fake.xloadflags = 0x0002;
    expect_rejected(fake, "kernel /k: not a 64-bit kernel (xloadflags bit 0 XLF_KERNEL_64 clear)");
}

TEST(BzImage, RejectsAProtectedModeKernelPastTheEndOfTheFile) {
    FakeBzImage fake;
    std::vector<std::uint8_t> bytes = fake.bytes();
    bytes.erase(bytes.end() - 16, bytes.end());
    expect_rejected(bytes, "kernel /k: protected-mode kernel of 12288 bytes at offset 0x400 runs past the "
                           "end of the file (13296 bytes)");
    std::vector<std::uint8_t> empty = fake.bytes();
    std::fill(empty.begin() + 0x1f4, empty.begin() + 0x1f8, 0);
    expect_rejected(empty, "kernel /k: empty protected-mode kernel (syssize 0)");
}

TEST(BzImage, RejectsAPayloadOutsideTheProtectedModeKernel) {
    FakeBzImage fake;
    fake.payload_offset = 0x2800;
    expect_rejected(fake, "kernel /k: compressed payload at 0x2800+0x1000 lies beyond the protected-mode "
                          "kernel (12288 bytes)");
}

TEST(BzImage, RejectsAnAlignmentThatIsNotAPowerOfTwo) {
    FakeBzImage fake;
    fake.kernel_alignment = 0x300000;
    expect_rejected(fake, "kernel /k: kernel_alignment 0x300000 is not a power of two");
}

TEST(BzImage, RejectsAnUnreadableFile) {
    EXPECT_THAT([] { BzImage::read("/nonexistent/vmlinuz"); },
                ThrowsMessage<std::system_error>(
                    StrEq("open kernel /nonexistent/vmlinuz: No such file or directory")));
    EXPECT_THAT([] { BzImage::read("/"); },
                ThrowsMessage<std::invalid_argument>(StrEq("kernel /: not a regular file")));
}

TEST(BzImage, ReadsAFile) {
    const std::string path =
        (std::filesystem::temp_directory_path() / ("boot_unit_tests_bzimage_" + std::to_string(::getpid())))
            .string();
    const std::vector<std::uint8_t> bytes = FakeBzImage{}.bytes();
    {
        FILE* file = std::fopen(path.c_str(), "wb");
        ASSERT_NE(file, nullptr);
        ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), file), bytes.size());
        std::fclose(file);
    }
    const BzImage image = BzImage::read(path);
    std::filesystem::remove(path);
    EXPECT_EQ(image.name(), path);
    EXPECT_EQ(image.kernel().size(), FakeBzImage{}.kernel_size);
}

std::vector<std::string> host_kernels() {
    std::vector<std::string> paths;
    glob_t found{};
    if (::glob("/boot/vmlinuz-*", 0, nullptr, &found) == 0) {
        for (std::size_t i = 0; i < found.gl_pathc; ++i) {
            paths.emplace_back(found.gl_pathv[i]);
        }
    }
    ::globfree(&found);
    return paths;
}

TEST(BzImage, ParsesTheHostsDistributionKernels) {
    const std::vector<std::string> kernels = host_kernels();
    if (kernels.empty()) {
        GTEST_SKIP() << "no /boot/vmlinuz-* on this machine";
    }
    for (const std::string& path : kernels) {
        SCOPED_TRACE(path);
        const BzImage image = BzImage::read(path);
        EXPECT_GE(image.header().protocol_version, 0x020c);
        EXPECT_NE(image.header().xloadflags & kXlfKernel64, 0);
        EXPECT_NE(image.header().loadflags & kLoadedHigh, 0);
        EXPECT_TRUE(image.header().relocatable);
        EXPECT_GT(image.kernel().size(), 1u << 20);
        EXPECT_GT(image.header().init_size, image.kernel().size());
        EXPECT_GE(image.header().cmdline_size, 255u);
    }
}

}  // namespace
}  // namespace vim::vmm::boot
