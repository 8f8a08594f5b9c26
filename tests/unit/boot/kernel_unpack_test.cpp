#include "vmm/boot/kernel_unpack.h"

#include <bzlib.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <lzma.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <ostream>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fake_bzimage.h"
#include "fake_elf_kernel.h"
#include "vmm/boot/elf_kernel.h"

namespace vim::vmm::boot {
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
    const lzma_ret result = lzma_easy_buffer_encode(1, LZMA_CHECK_CRC32, nullptr, data.data(), data.size(),
                                                    out.data(), &written, out.size());
    EXPECT_EQ(result, LZMA_OK);
    out.resize(written);
    return out;
}

// Level 0 makes stored blocks, whose data a decoder copies as it is.
std::vector<std::uint8_t> gzip_at_level(std::span<const std::uint8_t> data, int level) {
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

std::vector<std::uint8_t> gzip(std::span<const std::uint8_t> data) {
    return gzip_at_level(data, Z_BEST_COMPRESSION);
}

// libbz2 is what the bzip2 command line runs; -9 is its largest block.
std::vector<std::uint8_t> bzip2(std::span<const std::uint8_t> data) {
    // bzip2's documented worst case: 1% larger plus 600 bytes.
    std::vector<std::uint8_t> out(data.size() + data.size() / 100 + 600);
    auto written = static_cast<unsigned>(out.size());
    const int result = BZ2_bzBuffToBuffCompress(reinterpret_cast<char*>(out.data()), &written,
                                                const_cast<char*>(reinterpret_cast<const char*>(data.data())),
                                                static_cast<unsigned>(data.size()), 9, 0, 0);
    EXPECT_EQ(result, BZ_OK);
    out.resize(written);
    return out;
}

// The legacy .lzma format as the lzma command line writes it (liblzma's
// "alone" encoder: size unknown, end marker); the kernel's -9 only makes the
// dictionary larger.
std::vector<std::uint8_t> lzma(std::span<const std::uint8_t> data) {
    lzma_options_lzma options{};
    EXPECT_FALSE(lzma_lzma_preset(&options, 1));
    lzma_stream stream = LZMA_STREAM_INIT;
    EXPECT_EQ(lzma_alone_encoder(&stream, &options), LZMA_OK);
    std::vector<std::uint8_t> out(lzma_stream_buffer_bound(data.size()));
    stream.next_in = data.data();
    stream.avail_in = data.size();
    stream.next_out = out.data();
    stream.avail_out = out.size();
    EXPECT_EQ(lzma_code(&stream, LZMA_FINISH), LZMA_STREAM_END);
    out.resize(stream.total_out);
    lzma_end(&stream);
    return out;
}

// The zstd command line, which the kernel's build runs, adds a checksum.
std::vector<std::uint8_t> zstd(std::span<const std::uint8_t> data) {
    const std::unique_ptr<ZSTD_CCtx, std::size_t (*)(ZSTD_CCtx*)> context(ZSTD_createCCtx(), ZSTD_freeCCtx);
    ZSTD_CCtx_setParameter(context.get(), ZSTD_c_compressionLevel, 3);
    ZSTD_CCtx_setParameter(context.get(), ZSTD_c_checksumFlag, 1);
    std::vector<std::uint8_t> out(ZSTD_compressBound(data.size()));
    const std::size_t written =
        ZSTD_compress2(context.get(), out.data(), out.size(), data.data(), data.size());
    EXPECT_FALSE(ZSTD_isError(written)) << ZSTD_getErrorName(written);
    out.resize(written);
    return out;
}

std::string temporary_path(const std::string& name) {
    return (std::filesystem::temp_directory_path() /
            ("boot_unit_tests_unpack_" + std::to_string(::getpid()) + "_" + name))
        .string();
}

void write_file(const std::string& path, std::span<const std::uint8_t> bytes) {
    std::ofstream file(path, std::ios::binary);
    file.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!file) {
        throw std::runtime_error("cannot write " + path);
    }
}

std::vector<std::uint8_t> read_file(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

bool tool_installed(const std::string& tool) {
    return std::system(("command -v " + tool + " >/dev/null 2>&1").c_str()) == 0;
}

std::string not_installed(const std::string& tool, const std::string& package) {
    return tool + " is not installed (apt-get install " + package + ")";
}

// Runs a compressor's command line over `data`, as the kernel's build pipes
// vmlinux.bin through it; through files, as a pipe both ways would need a
// second thread to keep from blocking.
std::vector<std::uint8_t> run_compressor(const std::string& command, std::span<const std::uint8_t> data) {
    const std::string input = temporary_path("in");
    const std::string output = temporary_path("out");
    write_file(input, data);
    const int status = std::system((command + " < " + input + " > " + output).c_str());
    std::vector<std::uint8_t> compressed = read_file(output);
    std::filesystem::remove(input);
    std::filesystem::remove(output);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        throw std::runtime_error("`" + command + "` failed with status " + std::to_string(status));
    }
    return compressed;
}

std::uint32_t load_le32(std::span<const std::uint8_t> bytes, std::size_t offset) {
    std::uint32_t value;
    std::memcpy(&value, bytes.data() + offset, sizeof value);
    return value;
}

std::uint32_t load_be32(std::span<const std::uint8_t> bytes, std::size_t offset) {
    return std::uint32_t{bytes[offset]} << 24 | std::uint32_t{bytes[offset + 1]} << 16 |
           std::uint32_t{bytes[offset + 2]} << 8 | bytes[offset + 3];
}

void store_be32(std::span<std::uint8_t> bytes, std::size_t offset, std::uint32_t value) {
    for (std::size_t i = 0; i < 4; ++i) {
        bytes[offset + i] = static_cast<std::uint8_t>(value >> (24 - 8 * i));
    }
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

// One compressor the kernel's build offers, and the messages that differ by it.
struct Format {
    const char* name;
    // The command the build pipes vmlinux.bin through (scripts/Makefile.lib's
    // cmd_gzip, cmd_bzip2_with_size, ..., and scripts/xz_wrap.sh's options
    // for x86), and the Debian package that has it.
    const char* build_command;
    const char* package;
    // The same format made in-process for the other tests, or nullptr where
    // only the command writes it: the libraries of lzop and lz4 do blocks,
    // not lzop's file format or lz4's legacy frame.
    std::vector<std::uint8_t> (*compress_in_process)(std::span<const std::uint8_t>);
    // The build appends the size for every compressor but gzip, whose
    // trailer already ends with it.
    bool size_appended;
    // zlib checks ISIZE itself, before the unpacker can compare sizes.
    const char* larger_size_detail;

    std::string tool() const {
        const std::string command = build_command;
        return command.substr(0, command.find(' '));
    }

    std::vector<std::uint8_t> compress(std::span<const std::uint8_t> data) const {
        return compress_in_process != nullptr ? compress_in_process(data)
                                              : run_compressor(build_command, data);
    }

    std::vector<std::uint8_t> with_size(std::vector<std::uint8_t> compressed, std::size_t size) const {
        if (size_appended) {
            append_size(compressed, static_cast<std::uint32_t>(size));
        }
        return compressed;
    }

    std::vector<std::uint8_t> payload(std::span<const std::uint8_t> data) const {
        return with_size(compress(data), data.size());
    }

    std::string unpack_error(const std::string& detail) const {
        return std::string("kernel /k: ") + name + " payload does not unpack: " + detail;
    }
};

// Names the format in test output instead of dumping its bytes.
void PrintTo(const Format& format, std::ostream* out) { *out << format.name; }

const Format kGzip{"gzip", "gzip -n -f -9", "gzip", gzip, false, "incorrect length check"};
const Format kBzip2{"bzip2", "bzip2 -9", "bzip2", bzip2, true, "less data than the stated size"};
const Format kLzma{"lzma", "lzma -9", "xz-utils", lzma, true, "less data than the stated size"};
const Format kXz{"xz",       "xz --check=crc32 --x86 --lzma2=,dict=32MiB",
                 "xz-utils", xz,
                 true,       "less data than the stated size"};
const Format kLzo{"lzo", "lzop -9", "lzop", nullptr, true, "less data than the stated size"};
const Format kLz4{"lz4", "lz4 -l -9 - -", "lz4", nullptr, true, "less data than the stated size"};
const Format kZstd{"zstd", "zstd -22 --ultra", "zstd", zstd, true, "less data than the stated size"};

class UnpackBzImage : public ::testing::TestWithParam<Format> {
protected:
    void SetUp() override {
        if (format().compress_in_process == nullptr && !tool_installed(format().tool())) {
            GTEST_SKIP() << not_installed(format().tool(), format().package);
        }
    }

    const Format& format() const { return GetParam(); }
};

TEST_P(UnpackBzImage, UnpacksWhatTheKernelsBuildMakes) {
    if (!tool_installed(format().tool())) {
        GTEST_SKIP() << not_installed(format().tool(), format().package);
    }
    const std::vector<std::uint8_t> file = payload_kernel().bytes();
    const std::vector<std::uint8_t> payload =
        format().with_size(run_compressor(format().build_command, file), file.size());
    const std::vector<std::uint8_t> unpacked = unpack_bzimage(image_with(payload));
    ASSERT_EQ(unpacked.size(), kPayloadKernelFileEnd);
    EXPECT_TRUE(std::equal(unpacked.begin(), unpacked.end(), file.begin()));
}

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
    expect_rejected(payload,
                    "kernel /k: payload states an unpacked size of 1073741825 bytes (at most 1073741824)");
    state_size(payload, UINT32_MAX);
    expect_rejected(payload,
                    "kernel /k: payload states an unpacked size of 4294967295 bytes (at most 1073741824)");
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
    // What the decoder says about it depends on its version. (lz4's legacy
    // frame has no checksum: these bytes happen to break its structure.)
    const BzImage image = image_with(payload);
    EXPECT_THAT([&] { unpack_bzimage(image); },
                ThrowsMessage<std::invalid_argument>(StartsWith(format().unpack_error(""))));
}

TEST_P(UnpackBzImage, RejectsTruncatedData) {
    const std::vector<std::uint8_t> file = payload_kernel().bytes();
    if (!format().size_appended) {
        // gzip's size is the last part of its stream, so the cut stream ends
        // in it; in stored blocks the decoder takes those four bytes as data.
        std::vector<std::uint8_t> compressed = gzip_at_level(file, 0);
        const std::vector<std::uint8_t> trailer(compressed.end() - 4, compressed.end());
        compressed.resize(compressed.size() / 2);
        compressed.insert(compressed.end(), trailer.begin(), trailer.end());
        expect_rejected(compressed, format().unpack_error("truncated"));
        return;
    }
    const std::vector<std::uint8_t> compressed = format().compress(file);
    // Inside every format's header, halfway, and short of the last byte,
    // which each format needs: a check, an end marker, the end of a block.
    for (const std::size_t kept : {std::size_t{12}, compressed.size() / 2, compressed.size() - 1}) {
        SCOPED_TRACE(kept);
        expect_rejected(
            format().with_size({compressed.begin(), compressed.begin() + static_cast<std::ptrdiff_t>(kept)},
                               file.size()),
            format().unpack_error("truncated"));
    }
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
    expect_rejected(
        format().payload(truncated.bytes()),
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

TEST(UnpackBzImageLzma, RefusesADictionaryThatNeedsTooMuchMemory) {
    // A hostile header: 3.75 GiB of dictionary, which the decoder would allocate.
    std::vector<std::uint8_t> payload = lzma(payload_kernel().bytes());
    payload[4] = 0xf0;  // the top byte of the dictionary size, behind the properties byte
    append_size(payload, static_cast<std::uint32_t>(payload_kernel().bytes().size()));
    expect_rejected(payload, "kernel /k: lzma payload does not unpack: needs more than 256 MiB to decode");
}

// Tests of one format's framing, which only its command line writes.
template <const Format& kFormat>
class UnpackBzImageFraming : public ::testing::Test {
protected:
    void SetUp() override {
        if (!tool_installed(kFormat.tool())) {
            GTEST_SKIP() << not_installed(kFormat.tool(), kFormat.package);
        }
    }
};
using UnpackBzImageLz4 = UnpackBzImageFraming<kLz4>;
using UnpackBzImageLzo = UnpackBzImageFraming<kLzo>;

// A kernel over 8 MiB, which lz4's legacy frame cuts into 8 MiB blocks.
FakeElfKernel kernel_over_8_mib() {
    FakeElfKernel fake;
    fake.segments = {{PT_LOAD, 0x1000, 0x880000, 0x880000, 0x1000000, 1}};
    fake.section_header_offset = 0x881000;
    fake.trailing_junk = 0x3000;
    return fake;
}

TEST_F(UnpackBzImageLz4, UnpacksSeveralBlocks) {
    const std::vector<std::uint8_t> file = kernel_over_8_mib().bytes();
    const std::vector<std::uint8_t> payload = kLz4.payload(file);
    const std::vector<std::uint8_t> unpacked = unpack_bzimage(image_with(payload));
    ASSERT_EQ(unpacked.size(), 0x881000 + 3 * sizeof(Elf64_Shdr));
    EXPECT_TRUE(std::equal(unpacked.begin(), unpacked.end(), file.begin()));
}

TEST_F(UnpackBzImageLz4, UnpacksConcatenatedFrames) {
    // As `cat a.lz4 b.lz4` makes: the second frame's magic where a block's
    // size would be.
    const std::vector<std::uint8_t> file = payload_kernel().bytes();
    const std::size_t half = file.size() / 2;
    std::vector<std::uint8_t> payload = kLz4.compress(std::span(file).first(half));
    const std::vector<std::uint8_t> second = kLz4.compress(std::span(file).subspan(half));
    payload.insert(payload.end(), second.begin(), second.end());
    append_size(payload, static_cast<std::uint32_t>(file.size()));
    const std::vector<std::uint8_t> unpacked = unpack_bzimage(image_with(payload));
    ASSERT_EQ(unpacked.size(), kPayloadKernelFileEnd);
    EXPECT_TRUE(std::equal(unpacked.begin(), unpacked.end(), file.begin()));
}

TEST(UnpackBzImageLz4Blocks, RejectsABlockLargerThanTheFrameMakes) {
    std::vector<std::uint8_t> payload = {0x02, 0x21, 0x4c, 0x18};
    append_size(payload, 0x7f000000);
    payload.resize(payload.size() + 0x100);
    append_size(payload, 0x10000);
    expect_rejected(payload,
                    "kernel /k: lz4 payload does not unpack: the block at offset 4 states 2130706432 bytes, "
                    "outside 1..8421520");
}

TEST_F(UnpackBzImageLz4, CallsACutBetweenBlocksTooLittleData) {
    // Nothing marks the frame's end: the cut shows only in the size.
    const std::vector<std::uint8_t> file = kernel_over_8_mib().bytes();
    std::vector<std::uint8_t> payload = kLz4.compress(file);
    const std::uint32_t first_block = load_le32(payload, 4);
    payload.resize(8 + first_block);
    append_size(payload, static_cast<std::uint32_t>(file.size()));
    expect_rejected(payload, "kernel /k: lz4 payload does not unpack: less data than the stated size");
}

// A kernel random from behind its program headers to the end of its text,
// which lzop stores as it is: all of the first block.
std::vector<std::uint8_t> incompressible_kernel() {
    std::vector<std::uint8_t> file = payload_kernel().bytes();
    std::uint32_t state = 12345;
    for (std::size_t i = sizeof(Elf64_Ehdr) + 3 * sizeof(Elf64_Phdr); i < 0x41000; ++i) {
        state = state * 1103515245 + 12345;
        file[i] = static_cast<std::uint8_t>(state >> 16);
    }
    return file;
}

TEST_F(UnpackBzImageLzo, UnpacksStoredBlocksAndChecksThem) {
    const std::vector<std::uint8_t> file = incompressible_kernel();
    std::vector<std::uint8_t> payload = kLzo.payload(file);
    const std::vector<std::uint8_t> unpacked = unpack_bzimage(image_with(payload));
    ASSERT_EQ(unpacked.size(), kPayloadKernelFileEnd);
    EXPECT_TRUE(std::equal(unpacked.begin(), unpacked.end(), file.begin()));

    // The first block starts behind the 38-byte header; its data behind the
    // two sizes and the Adler-32, and the decoder copies it unchecked.
    constexpr std::size_t kFirstBlock = 38;
    ASSERT_EQ(load_be32(payload, kFirstBlock), 256u * 1024);
    ASSERT_EQ(load_be32(payload, kFirstBlock + 4), 256u * 1024) << "not a stored block";
    payload[kFirstBlock + 12 + 0x2000] ^= 1;
    expect_rejected(payload,
                    "kernel /k: lzo payload does not unpack: Adler-32 mismatch in the block at offset 38");
}

TEST_F(UnpackBzImageLzo, ChecksCrc32sWhereTheHeaderAsksForThem) {
    const std::vector<std::uint8_t> file = incompressible_kernel();
    std::vector<std::uint8_t> payload = run_compressor("lzop --crc32", file);
    append_size(payload, static_cast<std::uint32_t>(file.size()));
    const std::vector<std::uint8_t> unpacked = unpack_bzimage(image_with(payload));
    ASSERT_EQ(unpacked.size(), kPayloadKernelFileEnd);
    EXPECT_TRUE(std::equal(unpacked.begin(), unpacked.end(), file.begin()));

    payload[38 + 12 + 0x2000] ^= 1;
    expect_rejected(payload,
                    "kernel /k: lzo payload does not unpack: CRC-32 mismatch in the block at offset 38");
}

TEST_F(UnpackBzImageLzo, RejectsADamagedHeader) {
    const std::vector<std::uint8_t> good = kLzo.payload(payload_kernel().bytes());
    constexpr std::size_t kMethod = 15;
    constexpr std::size_t kFlags = 17;
    constexpr std::size_t kModificationTime = 25;

    std::vector<std::uint8_t> payload = good;
    payload[kModificationTime] ^= 1;
    expect_rejected(payload, "kernel /k: lzo payload does not unpack: header checksum mismatch");

    payload = good;
    payload[kMethod] = 0x1a;  // lzop's NRV1a, which only old lzop versions read
    expect_rejected(payload, "kernel /k: lzo payload does not unpack: method 26, not one of LZO1X");

    payload = good;
    payload[kFlags + 2] |= 0x08;  // F_H_FILTER
    expect_rejected(payload,
                    "kernel /k: lzo payload does not unpack: header flags 0x300080d ask for a filter or an "
                    "extra field, which lzop only writes when told to");
}

TEST_F(UnpackBzImageLzo, RejectsABlockThatGrowsWhenPacked) {
    std::vector<std::uint8_t> payload = kLzo.payload(payload_kernel().bytes());
    store_be32(payload, 38 + 4, 256 * 1024 + 1);  // the first block's packed size
    expect_rejected(payload,
                    "kernel /k: lzo payload does not unpack: the block at offset 38 packs 262144 bytes "
                    "into 262145");
}

INSTANTIATE_TEST_SUITE_P(Formats, UnpackBzImage,
                         ::testing::Values(kGzip, kBzip2, kLzma, kXz, kLzo, kLz4, kZstd),
                         [](const ::testing::TestParamInfo<Format>& info) {
                             return std::string(info.param.name);
                         });

TEST(UnpackBzImageFormat, RejectsAPayloadTooSmallForASize) {
    expect_rejected({1, 2, 3, 4}, "kernel /k: compressed payload of 4 bytes is too small to hold a kernel");
    FakeBzImage fake;
    fake.payload_length = 0;
    EXPECT_THAT([&] { unpack_bzimage(BzImage::parse(fake.bytes(), "/k")); },
                ThrowsMessage<std::invalid_argument>(
                    StrEq("kernel /k: compressed payload of 0 bytes is too small to hold a kernel")));
}

TEST(UnpackBzImageFormat, RejectsAnUnknownFormat) {
    std::vector<std::uint8_t> payload = pattern(0x100);
    append_size(payload, 0x10000);
    expect_rejected(payload, "kernel /k: payload compressed in an unknown format");
}

// A distribution kernel that /boot does not have, named by VIM_EXTRA_KERNEL:
// Debian's cloud kernel, for one, is lz4 where the standard one is xz.
//   apt-get download linux-image-cloud-amd64   # names the versioned package it depends on
//   apt-get download linux-image-6.1.0-NN-cloud-amd64
//   dpkg-deb -x linux-image-6.1.0-NN-cloud-amd64_*.deb /tmp/cloud-kernel
//   VIM_EXTRA_KERNEL=/tmp/cloud-kernel/boot/vmlinuz-6.1.0-NN-cloud-amd64 boot_unit_tests
// (not into /boot, where other tests take the newest kernel for the host's).
TEST(UnpackBzImageExtraKernel, UnpacksTheKernelInVimExtraKernel) {
    const char* path = std::getenv("VIM_EXTRA_KERNEL");
    if (path == nullptr || *path == '\0') {
        GTEST_SKIP() << "VIM_EXTRA_KERNEL does not name a bzImage";
    }
    const BzImage image = BzImage::read(path);
    const std::vector<std::uint8_t> unpacked = unpack_bzimage(image);
    const ElfKernel kernel = ElfKernel::parse(unpacked, unpacked.size(), std::string(path) + " (unpacked)");
    EXPECT_EQ(kernel.file_end(), unpacked.size());
    // Linked to run at CONFIG_PHYSICAL_START, 16 MiB on x86-64 distributions.
    EXPECT_EQ(kernel.entry_point(), 0x1000000u);
    EXPECT_EQ(kernel.start(), 0x1000000u);
    EXPECT_GT(unpacked.size(), image.payload().size());
    EXPECT_LE(unpacked.size(), load_le32(image.payload(), image.payload().size() - 4));
}

}  // namespace
}  // namespace vim::vmm::boot
