#include "vmm/boot/kernel_unpack.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <ostream>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fake_bzimage.h"
#include "fake_elf_kernel.h"

namespace vmm::boot {
namespace {

using ::testing::StartsWith;
using ::testing::StrEq;
using ::testing::ThrowsMessage;
using testing::FakeBzImage;
using testing::FakeElfKernel;

// A kernel large enough that every compressor makes several blocks of it,
// with 12 KiB behind the ELF file proper where a real payload has the
// kernel's relocation table.
FakeElfKernel payload_kernel() {
    FakeElfKernel fake;
    fake.segments = {
        {PT_LOAD, 0x1000, 0x40000, 0x40000, 0x1000000, 1},
        {PT_NOTE, 0x41000, 0x40, 0x40, 0x1000f00, 3},
        {PT_LOAD, 0x42000, 0x8000, 0x10000, 0x1200000, 4},
    };
    fake.section_header_offset = 0x4a000;
    fake.section_header_count = 3;
    fake.trailing_junk = 0x3000;
    return fake;
}
constexpr std::size_t kPayloadKernelFileEnd = 0x4a000 + 3 * sizeof(Elf64_Shdr);

// xz as scripts/xz_wrap.sh runs it: CRC32, which the kernel's own decoder
// checks (the x86 BCJ filter and the larger dictionary change nothing here).
std::vector<std::uint8_t> xz(std::span<const std::uint8_t> data) {
    std::vector<std::uint8_t> out(lzma_stream_buffer_bound(data.size()));
    std::size_t written = 0;
    const lzma_ret result = lzma_easy_buffer_encode(1, LZMA_CHECK_CRC32, nullptr, data.data(), data.size(), out.data(),
                                                    &written, out.size());
    EXPECT_EQ(result, LZMA_OK);
    out.resize(written);
    return out;
}

// gzip -9 by default; level 0 makes stored blocks, whose data a decoder
// copies as it is.
std::vector<std::uint8_t> gzip(std::span<const std::uint8_t> data, int level = Z_BEST_COMPRESSION) {
    z_stream stream{};
    EXPECT_EQ(deflateInit2(&stream, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    std::vector<std::uint8_t> out(deflateBound(&stream, data.size()));
    stream.next_in = const_cast<Bytef*>(data.data());
    stream.avail_in = static_cast<uInt>(data.size());
    stream.next_out = out.data();
    stream.avail_out = static_cast<uInt>(out.size());
    EXPECT_EQ(deflate(&stream, Z_FINISH), Z_STREAM_END);
    out.resize(stream.total_out);
    deflateEnd(&stream);
    return out;
}

// The zstd command line, which the kernel's build runs, adds a checksum.
std::vector<std::uint8_t> zstd(std::span<const std::uint8_t> data) {
    const std::unique_ptr<ZSTD_CCtx, std::size_t (*)(ZSTD_CCtx*)> context(ZSTD_createCCtx(), ZSTD_freeCCtx);
    ZSTD_CCtx_setParameter(context.get(), ZSTD_c_compressionLevel, 3);
    ZSTD_CCtx_setParameter(context.get(), ZSTD_c_checksumFlag, 1);
    std::vector<std::uint8_t> out(ZSTD_compressBound(data.size()));
    const std::size_t written = ZSTD_compress2(context.get(), out.data(), out.size(), data.data(), data.size());
    EXPECT_FALSE(ZSTD_isError(written)) << ZSTD_getErrorName(written);
    out.resize(written);
    return out;
}

void append_size(std::vector<std::uint8_t>& payload, std::uint32_t size) {
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(&size);
    payload.insert(payload.end(), bytes, bytes + sizeof size);
}

// Overwrites the payload's last four bytes: the size the build appended, or
// gzip's own ISIZE.
void state_size(std::vector<std::uint8_t>& payload, std::uint32_t size) {
    std::memcpy(payload.data() + payload.size() - sizeof size, &size, sizeof size);
}

std::vector<std::uint8_t> pattern(std::size_t size) {
    std::vector<std::uint8_t> bytes(size);
    for (std::size_t i = 0; i < size; ++i) {
        bytes[i] = static_cast<std::uint8_t>(i * 13 + 5);
    }
    return bytes;
}

BzImage image_with(std::vector<std::uint8_t> payload) {
    FakeBzImage fake;
    fake.put_payload(std::move(payload));
    return BzImage::parse(fake.bytes(), "/k");
}

void expect_rejected(std::vector<std::uint8_t> payload, const std::string& message) {
    const BzImage image = image_with(std::move(payload));
    EXPECT_THAT([&] { unpack_bzimage(image); }, ThrowsMessage<std::invalid_argument>(StrEq(message)));
}

// How the kernel's build compresses with one compressor (Makefile.lib's
// cmd_xzkern, cmd_zstd22, cmd_gzip), and the messages that differ by it.
struct Format {
    const char* name;
    std::vector<std::uint8_t> (*compress)(std::span<const std::uint8_t>);
    // The build appends the size for every compressor but gzip, whose
    // trailer already ends with it.
    bool size_appended;
    // zlib checks ISIZE itself, before the unpacker can compare sizes.
    const char* larger_size_detail;

    std::vector<std::uint8_t> payload(std::span<const std::uint8_t> data) const {
        std::vector<std::uint8_t> compressed = compress(data);
        if (size_appended) {
            append_size(compressed, static_cast<std::uint32_t>(data.size()));
        }
        return compressed;
    }

    std::string unpack_error(const std::string& detail) const {
        return std::string("kernel /k: ") + name + " payload does not unpack: " + detail;
    }
};

// Names the format in test output instead of dumping its bytes.
void PrintTo(const Format& format, std::ostream* out) { *out << format.name; }

const Format kXz{"xz", xz, true, "less data than the stated size"};
const Format kGzip{"gzip", [](std::span<const std::uint8_t> data) { return gzip(data); }, false,
                   "incorrect length check"};
const Format kZstd{"zstd", zstd, true, "less data than the stated size"};

class UnpackBzImage : public ::testing::TestWithParam<Format> {
protected:
    const Format& format() const { return GetParam(); }
};

TEST_P(UnpackBzImage, GivesTheElfFileWithoutTheRelocationsBehindIt) {
    const std::vector<std::uint8_t> file = payload_kernel().bytes();
    const std::vector<std::uint8_t> unpacked = unpack_bzimage(image_with(format().payload(file)));
    ASSERT_EQ(unpacked.size(), kPayloadKernelFileEnd);
    EXPECT_TRUE(std::equal(unpacked.begin(), unpacked.end(), file.begin()));
}

TEST_P(UnpackBzImage, UnpacksAKernelWithNothingBehindIt) {
    const std::vector<std::uint8_t> file = FakeElfKernel{}.bytes();
    EXPECT_EQ(unpack_bzimage(image_with(format().payload(file))), file);
}

TEST_P(UnpackBzImage, RejectsAStatedSizeOfZeroOrOverTheMaximum) {
    std::vector<std::uint8_t> payload = format().payload(FakeElfKernel{}.bytes());
    state_size(payload, 0);
    expect_rejected(payload, "kernel /k: payload states an unpacked size of 0 bytes (at most 1073741824)");
    state_size(payload, static_cast<std::uint32_t>(kMaxUnpackedKernelSize + 1));
    expect_rejected(payload, "kernel /k: payload states an unpacked size of 1073741825 bytes (at most 1073741824)");
    state_size(payload, UINT32_MAX);
    expect_rejected(payload, "kernel /k: payload states an unpacked size of 4294967295 bytes (at most 1073741824)");
}

TEST_P(UnpackBzImage, RejectsAStatedSizeLargerThanTheData) {
    const std::vector<std::uint8_t> file = payload_kernel().bytes();
    std::vector<std::uint8_t> payload = format().payload(file);
    state_size(payload, static_cast<std::uint32_t>(file.size() + 1));
    expect_rejected(payload, format().unpack_error(format().larger_size_detail));
}

TEST_P(UnpackBzImage, RejectsAStatedSizeSmallerThanTheData) {
    const std::vector<std::uint8_t> file = payload_kernel().bytes();
    std::vector<std::uint8_t> payload = format().payload(file);
    state_size(payload, static_cast<std::uint32_t>(file.size() - 1));
    expect_rejected(payload, format().unpack_error("more data than the stated size"));
    state_size(payload, 100);
    expect_rejected(payload, format().unpack_error("more data than the stated size"));
}

TEST_P(UnpackBzImage, RejectsCorruptData) {
    const std::vector<std::uint8_t> file = payload_kernel().bytes();
    std::vector<std::uint8_t> payload = format().payload(file);
    // Past the format's headers, before its trailers.
    for (std::size_t i = payload.size() / 2; i < payload.size() / 2 + 4; ++i) {
        payload[i] ^= 0x5a;
    }
    // What the decoder says about it depends on its version.
    const BzImage image = image_with(payload);
    EXPECT_THAT([&] { unpack_bzimage(image); },
                ThrowsMessage<std::invalid_argument>(StartsWith(format().unpack_error(""))));
}

TEST_P(UnpackBzImage, RejectsTruncatedData) {
    const std::vector<std::uint8_t> file = payload_kernel().bytes();
    // gzip's size is the last part of its stream, so the cut stream ends in
    // it; in stored blocks the decoder takes those four bytes as data.
    std::vector<std::uint8_t> compressed = format().size_appended ? format().compress(file) : gzip(file, 0);
    const std::vector<std::uint8_t> trailer(compressed.end() - 4, compressed.end());
    compressed.resize(compressed.size() / 2);
    if (format().size_appended) {
        append_size(compressed, static_cast<std::uint32_t>(file.size()));
    } else {
        compressed.insert(compressed.end(), trailer.begin(), trailer.end());
    }
    expect_rejected(compressed, format().unpack_error("truncated"));
}

TEST_P(UnpackBzImage, RejectsAPayloadThatIsNotAnElfFile) {
    expect_rejected(format().payload(pattern(0x2000)), "kernel /k: unpacked payload is not an ELF file");
}

TEST_P(UnpackBzImage, RejectsAnElfFileThatIsNotAKernel) {
    FakeElfKernel shared_object;
    shared_object.type = ET_DYN;
    expect_rejected(format().payload(shared_object.bytes()),
                    "kernel /k (unpacked): ELF file of type 3, not an executable (ET_EXEC) like vmlinux");
    FakeElfKernel truncated;
    truncated.file_size = 0x1000;  // its first segment ends at 0x1200
    expect_rejected(format().payload(truncated.bytes()),
                    "kernel /k (unpacked): segment 0 at file offset 0x200+0x1000 runs past the end of the file "
                    "(4096 bytes)");
}

TEST(UnpackBzImageXz, CallsAStreamCutShortOfItsIndexTruncated) {
    // All the data is there, so the output fills up exactly; the block's
    // check, the index and the stream footer are not.
    const std::vector<std::uint8_t> file = payload_kernel().bytes();
    for (const std::size_t cut : {1, 12, 24}) {
        SCOPED_TRACE(cut);
        std::vector<std::uint8_t> payload = xz(file);
        payload.resize(payload.size() - cut);
        append_size(payload, static_cast<std::uint32_t>(file.size()));
        expect_rejected(payload, "kernel /k: xz payload does not unpack: truncated");
    }
}

INSTANTIATE_TEST_SUITE_P(Formats, UnpackBzImage, ::testing::Values(kXz, kGzip, kZstd),
                         [](const ::testing::TestParamInfo<Format>& info) { return std::string(info.param.name); });

TEST(UnpackBzImageFormat, RejectsAPayloadTooSmallForASize) {
    expect_rejected({1, 2, 3, 4}, "kernel /k: compressed payload of 4 bytes is too small to hold a kernel");
    FakeBzImage fake;
    fake.payload_length = 0;
    EXPECT_THAT([&] { unpack_bzimage(BzImage::parse(fake.bytes(), "/k")); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("kernel /k: compressed payload of 0 bytes is too small to hold a kernel")));
}

TEST(UnpackBzImageFormat, NamesTheCompressorsItDoesNotSupport) {
    const std::vector<std::pair<std::vector<std::uint8_t>, std::string>> magics = {
        {{'B', 'Z', 'h', '9', '1', 'A', 'Y', '&', 'S', 'Y'}, "bzip2"},
        {{0x5d, 0x00, 0x00, 0x00, 0x04}, "lzma"},
        {{0x89, 'L', 'Z', 'O', 0x00, 0x0d, 0x0a, 0x1a, 0x0a}, "lzo"},
        {{0x02, 0x21, 0x4c, 0x18}, "lz4"},
    };
    for (const auto& [magic, name] : magics) {
        std::vector<std::uint8_t> payload = magic;
        const std::vector<std::uint8_t> rest = pattern(0x100);
        payload.insert(payload.end(), rest.begin(), rest.end());
        append_size(payload, 0x10000);
        expect_rejected(payload,
                        "kernel /k: payload compressed with " + name + ", which is not supported (xz, zstd, gzip are)");
    }
}

TEST(UnpackBzImageFormat, RejectsAnUnknownFormat) {
    std::vector<std::uint8_t> payload = pattern(0x100);
    append_size(payload, 0x10000);
    expect_rejected(payload, "kernel /k: payload compressed in an unknown format");
}

}  // namespace
}  // namespace vmm::boot
