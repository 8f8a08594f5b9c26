#include "vmm/boot/kernel_unpack.h"

#include <bzlib.h>
#include <lz4.h>
#include <lzma.h>
#include <lzo/lzo1x.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <climits>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>

#include "bytes.h"
#include "vmm/boot/elf_kernel.h"

namespace vim::vmm::boot {
namespace {

using detail::load_le;

// What each compressor's output begins with, as the kernel's own
// decompress_method() tells them apart.
constexpr std::array<std::uint8_t, 2> kGzipMagic = {0x1f, 0x8b};
constexpr std::array<std::uint8_t, 3> kBzip2Magic = {'B', 'Z', 'h'};
// An .lzma header starts with the properties byte (0x5d: lc=3, lp=0, pb=2)
// and a dictionary size whose low 16 bits are zero.
constexpr std::array<std::uint8_t, 3> kLzmaMagic = {0x5d, 0x00, 0x00};
constexpr std::array<std::uint8_t, 6> kXzMagic = {0xfd, '7', 'z', 'X', 'Z', 0x00};
constexpr std::array<std::uint8_t, 9> kLzopMagic = {0x89, 'L', 'Z', 'O', 0x00, 0x0d, 0x0a, 0x1a, 0x0a};
constexpr std::array<std::uint8_t, 4> kLz4LegacyMagicBytes = {0x02, 0x21, 0x4c, 0x18};
constexpr std::uint32_t kLz4LegacyMagic = 0x184c2102;  // the same, read as lz4 reads it: little-endian
constexpr std::array<std::uint8_t, 4> kZstdMagic = {0x28, 0xb5, 0x2f, 0xfd};

// The kernel's build appends the uncompressed size as 32 bits (gzip's own
// trailer ends with it too), which sizes the output before decoding.
constexpr std::size_t kSizeTrailer = 4;

// liblzma's memory limit: kernels are compressed with a dictionary of at most
// 32 MiB (xz) or 64 MiB (lzma -9); the decoder needs little more.
constexpr std::uint64_t kLzmaMemoryLimit = 256ull << 20;

// The legacy lz4 frame cuts its input into blocks of this size; only the
// last one is shorter.
constexpr int kLz4LegacyBlockSize = 8 << 20;

// lzop's header flags and methods (lzop's conf.h) that change what is read.
constexpr std::uint32_t kLzopAdler32Unpacked = 0x1;
constexpr std::uint32_t kLzopAdler32Packed = 0x2;
constexpr std::uint32_t kLzopExtraField = 0x40;
constexpr std::uint32_t kLzopCrc32Unpacked = 0x100;
constexpr std::uint32_t kLzopCrc32Packed = 0x200;
constexpr std::uint32_t kLzopFilter = 0x800;
constexpr std::uint32_t kLzopHeaderCrc32 = 0x1000;
// Files from lzop 0.94 on carry the fields that depend on this version.
constexpr std::uint16_t kLzopVersionWithLevel = 0x0940;
constexpr std::uint8_t kLzopMethodLzo1x1 = 1;
constexpr std::uint8_t kLzopMethodLzo1x999 = 3;

[[noreturn]] void corrupt(const std::string& prefix, const std::string& format, const std::string& detail) {
    throw std::invalid_argument(prefix + format + " payload does not unpack: " + detail);
}

std::string liblzma_error(lzma_ret result) {
    switch (result) {
    case LZMA_DATA_ERROR:
        return "corrupt data";
    case LZMA_FORMAT_ERROR:
        return "not in the expected format";
    case LZMA_OPTIONS_ERROR:
        return "compression options this liblzma does not support";
    case LZMA_UNSUPPORTED_CHECK:
        return "an integrity check this liblzma does not support";
    case LZMA_MEMLIMIT_ERROR:
        return "needs more than " + std::to_string(kLzmaMemoryLimit >> 20) + " MiB to decode";
    case LZMA_MEM_ERROR:
        return "out of memory";
    default:
        return "liblzma error " + std::to_string(result);
    }
}

// Each decoder fills `out` exactly from `in`, or throws: ending short of the
// stated size, or having more to write than it, means the data is damaged.

// xz and lzma: `stream` holds a started decoder.
void unpack_with_liblzma(lzma_stream& stream, std::span<const std::uint8_t> in, std::span<std::uint8_t> out,
                         const std::string& prefix, const char* format) {
    const std::unique_ptr<lzma_stream, void (*)(lzma_stream*)> guard(&stream, lzma_end);
    stream.next_in = in.data();
    stream.avail_in = in.size();
    stream.next_out = out.data();
    stream.avail_out = out.size();
    // The size trailer follows the stream: decoding stops at the stream's end.
    const lzma_ret result = lzma_code(&stream, LZMA_FINISH);
    if (result == LZMA_OK || result == LZMA_BUF_ERROR) {
        // Input left over means the output filled up first. Input used up
        // before the stream's end means it was cut short, even when the
        // output happens to be full: all that is missing may be xz's index
        // or lzma's end marker.
        corrupt(prefix, format, stream.avail_in != 0 ? "more data than the stated size" : "truncated");
    }
    if (result != LZMA_STREAM_END) {
        corrupt(prefix, format, liblzma_error(result));
    }
    if (stream.avail_out != 0) {
        corrupt(prefix, format, "less data than the stated size");
    }
}

void unpack_xz(std::span<const std::uint8_t> in, std::span<std::uint8_t> out, const std::string& prefix) {
    lzma_stream stream = LZMA_STREAM_INIT;
    if (lzma_stream_decoder(&stream, kLzmaMemoryLimit, 0) != LZMA_OK) {
        throw std::runtime_error(prefix + "cannot start the xz decoder");
    }
    unpack_with_liblzma(stream, in, out, prefix, "xz");
}

// The legacy .lzma format ("lzma -9"): a 13-byte header, then LZMA1 data
// that ends with an end marker, as the header leaves the size unknown.
void unpack_lzma(std::span<const std::uint8_t> in, std::span<std::uint8_t> out, const std::string& prefix) {
    lzma_stream stream = LZMA_STREAM_INIT;
    if (lzma_alone_decoder(&stream, kLzmaMemoryLimit) != LZMA_OK) {
        throw std::runtime_error(prefix + "cannot start the lzma decoder");
    }
    unpack_with_liblzma(stream, in, out, prefix, "lzma");
}

void unpack_gzip(std::span<const std::uint8_t> in, std::span<std::uint8_t> out, const std::string& prefix) {
    z_stream stream{};
    // 16 + MAX_WBITS: a gzip header and trailer around the deflate data.
    if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) {
        throw std::runtime_error(prefix + "cannot start the gzip decoder");
    }
    const std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&stream, inflateEnd);
    if (in.size() > UINT_MAX || out.size() > UINT_MAX) {
        corrupt(prefix, "gzip", "too large for zlib");
    }
    stream.next_in = const_cast<Bytef*>(in.data());  // zlib's API predates const
    stream.avail_in = static_cast<uInt>(in.size());
    stream.next_out = out.data();
    stream.avail_out = static_cast<uInt>(out.size());
    const int result = inflate(&stream, Z_FINISH);
    if (result == Z_BUF_ERROR) {
        corrupt(prefix, "gzip", stream.avail_out == 0 ? "more data than the stated size" : "truncated");
    }
    if (result != Z_STREAM_END) {
        corrupt(prefix, "gzip", stream.msg != nullptr ? stream.msg : "zlib error " + std::to_string(result));
    }
    if (stream.avail_out != 0) {
        corrupt(prefix, "gzip", "less data than the stated size");
    }
}

std::string bzip2_error(int result) {
    switch (result) {
    case BZ_DATA_ERROR:
        return "corrupt data";
    case BZ_DATA_ERROR_MAGIC:
        return "not in the bzip2 format";
    case BZ_MEM_ERROR:
        return "out of memory";
    default:
        return "libbz2 error " + std::to_string(result);
    }
}

void unpack_bzip2(std::span<const std::uint8_t> in, std::span<std::uint8_t> out, const std::string& prefix) {
    bz_stream stream{};
    if (BZ2_bzDecompressInit(&stream, 0, 0) != BZ_OK) {
        throw std::runtime_error(prefix + "cannot start the bzip2 decoder");
    }
    const std::unique_ptr<bz_stream, int (*)(bz_stream*)> guard(&stream, BZ2_bzDecompressEnd);
    if (in.size() > UINT_MAX || out.size() > UINT_MAX) {
        corrupt(prefix, "bzip2", "too large for libbz2");
    }
    // libbz2's API predates const, and takes bytes as char.
    stream.next_in = const_cast<char*>(reinterpret_cast<const char*>(in.data()));
    stream.avail_in = static_cast<unsigned>(in.size());
    stream.next_out = reinterpret_cast<char*>(out.data());
    stream.avail_out = static_cast<unsigned>(out.size());
    // One call runs until the stream ends, the output is full or the input
    // is used up, whichever comes first.
    const int result = BZ2_bzDecompress(&stream);
    if (result == BZ_OK) {
        // As for xz: input used up first means the stream was cut short,
        // even when the output is full (the end-of-stream mark and the
        // combined CRC may be all that is missing).
        corrupt(prefix, "bzip2", stream.avail_in != 0 ? "more data than the stated size" : "truncated");
    }
    if (result != BZ_STREAM_END) {
        corrupt(prefix, "bzip2", bzip2_error(result));
    }
    if (stream.avail_out != 0) {
        corrupt(prefix, "bzip2", "less data than the stated size");
    }
}

void unpack_zstd(std::span<const std::uint8_t> in, std::span<std::uint8_t> out, const std::string& prefix) {
    const std::unique_ptr<ZSTD_DCtx, std::size_t (*)(ZSTD_DCtx*)> context(ZSTD_createDCtx(), ZSTD_freeDCtx);
    if (!context) {
        throw std::runtime_error(prefix + "cannot start the zstd decoder");
    }
    ZSTD_inBuffer input{in.data(), in.size(), 0};
    ZSTD_outBuffer output{out.data(), out.size(), 0};
    for (;;) {
        const std::size_t left = ZSTD_decompressStream(context.get(), &output, &input);
        if (ZSTD_isError(left)) {
            corrupt(prefix, "zstd", ZSTD_getErrorName(left));
        }
        if (left == 0) {  // a frame ended
            break;
        }
        // As for xz: input used up first means the frame was cut short,
        // even when the output is full (its checksum may be all that is missing).
        if (input.pos == input.size) {
            corrupt(prefix, "zstd", "truncated");
        }
        if (output.pos == output.size) {
            corrupt(prefix, "zstd", "more data than the stated size");
        }
    }
    if (output.pos != output.size) {
        corrupt(prefix, "zstd", "less data than the stated size");
    }
}

// Reads the framing that lz4 and lzop put around their blocks, which their
// libraries leave to the caller; running out of input means truncated.
class FrameReader {
public:
    FrameReader(std::span<const std::uint8_t> data, const std::string& prefix, const char* format)
        : data_(data), prefix_(prefix), format_(format) {}

    bool at_end() const { return position_ == data_.size(); }
    std::size_t position() const { return position_; }

    std::span<const std::uint8_t> take(std::size_t count) {
        if (count > data_.size() - position_) {
            fail("truncated");
        }
        const std::span<const std::uint8_t> taken = data_.subspan(position_, count);
        position_ += count;
        return taken;
    }
    std::uint8_t take_u8() { return take(1)[0]; }
    std::uint16_t take_be16() {
        const std::span<const std::uint8_t> bytes = take(2);
        return static_cast<std::uint16_t>(bytes[0] << 8 | bytes[1]);
    }
    std::uint32_t take_be32() {
        const std::span<const std::uint8_t> bytes = take(4);
        return std::uint32_t{bytes[0]} << 24 | std::uint32_t{bytes[1]} << 16 | std::uint32_t{bytes[2]} << 8 |
               bytes[3];
    }
    std::uint32_t take_le32() { return load_le<std::uint32_t>(take(4), 0); }

    [[noreturn]] void fail(const std::string& detail) const { corrupt(prefix_, format_, detail); }

private:
    std::span<const std::uint8_t> data_;
    std::size_t position_ = 0;
    const std::string& prefix_;
    const char* format_;
};

// The legacy lz4 frame ("lz4 -l"): the magic, then blocks of a 32-bit
// little-endian size and that many bytes of LZ4 data, up to the input's end.
// A magic where a block's size would be starts a concatenated frame. Nothing
// marks the end or checksums the data, so a cut between blocks shows only as
// too little data, and damaged literals not at all.
void unpack_lz4(std::span<const std::uint8_t> in, std::span<std::uint8_t> out, const std::string& prefix) {
    FrameReader reader(in, prefix, "lz4");
    reader.take(kLz4LegacyMagicBytes.size());
    // Each block goes through a buffer of a whole block, so that one holding
    // more than the stated size left to fill shows as that, not as damage.
    std::vector<char> block(kLz4LegacyBlockSize);
    const int largest_packed_block = LZ4_compressBound(kLz4LegacyBlockSize);
    std::size_t written = 0;
    while (!reader.at_end()) {
        const std::uint32_t packed_size = reader.take_le32();
        if (packed_size == kLz4LegacyMagic) {
            continue;
        }
        if (packed_size == 0 || packed_size > static_cast<std::uint32_t>(largest_packed_block)) {
            reader.fail("the block at offset " + std::to_string(reader.position() - 4) + " states " +
                        std::to_string(packed_size) + " bytes, outside 1.." +
                        std::to_string(largest_packed_block));
        }
        const std::span<const std::uint8_t> packed = reader.take(packed_size);
        const int unpacked_size =
            LZ4_decompress_safe(reinterpret_cast<const char*>(packed.data()), block.data(),
                                static_cast<int>(packed.size()), kLz4LegacyBlockSize);
        if (unpacked_size < 0) {
            reader.fail("corrupt data in the block at offset " +
                        std::to_string(reader.position() - packed_size - 4));
        }
        if (static_cast<std::size_t>(unpacked_size) > out.size() - written) {
            reader.fail("more data than the stated size");
        }
        std::copy_n(block.begin(), unpacked_size, out.begin() + static_cast<std::ptrdiff_t>(written));
        written += static_cast<std::size_t>(unpacked_size);
    }
    if (written != out.size()) {
        reader.fail("less data than the stated size");
    }
}

// An lzop checksum (Adler-32 or CRC-32, as the header's flags choose) of a
// block's unpacked or packed bytes, checked when present: damage the LZO
// decoder does not notice, and any in a stored block, shows only there.
struct LzopChecksums {
    std::optional<std::uint32_t> adler32;
    std::optional<std::uint32_t> crc32;

    static LzopChecksums read(FrameReader& reader, std::uint32_t flags, std::uint32_t adler32_flag,
                              std::uint32_t crc32_flag) {
        LzopChecksums checksums;
        if ((flags & adler32_flag) != 0) {
            checksums.adler32 = reader.take_be32();
        }
        if ((flags & crc32_flag) != 0) {
            checksums.crc32 = reader.take_be32();
        }
        return checksums;
    }

    void check(std::span<const std::uint8_t> bytes, const FrameReader& reader,
               const std::string& what) const {
        if (adler32 && *adler32 != lzo_adler32(1, bytes.data(), bytes.size())) {
            reader.fail("Adler-32 mismatch in " + what);
        }
        if (crc32 && *crc32 != lzo_crc32(0, bytes.data(), bytes.size())) {
            reader.fail("CRC-32 mismatch in " + what);
        }
    }
};

// lzop's file format ("lzop -9"): a header, then blocks each of the unpacked
// and packed sizes (big-endian), checksums, and LZO1X data, or the bytes
// themselves where packing did not shrink them; an unpacked size of 0 ends it.
void unpack_lzo(std::span<const std::uint8_t> in, std::span<std::uint8_t> out, const std::string& prefix) {
    static const bool lzo_ready = lzo_init() == LZO_E_OK;
    if (!lzo_ready) {
        throw std::runtime_error(prefix + "cannot start the lzo decoder");
    }
    FrameReader reader(in, prefix, "lzo");
    reader.take(kLzopMagic.size());
    const std::size_t header_start = reader.position();
    const std::uint16_t version = reader.take_be16();
    reader.take_be16();  // the library's version
    if (version >= kLzopVersionWithLevel) {
        reader.take_be16();  // the version needed to extract
    }
    const std::uint8_t method = reader.take_u8();
    if (method < kLzopMethodLzo1x1 || method > kLzopMethodLzo1x999) {
        reader.fail("method " + std::to_string(method) + ", not one of LZO1X");
    }
    if (version >= kLzopVersionWithLevel) {
        reader.take_u8();  // the level
    }
    const std::uint32_t flags = reader.take_be32();
    if ((flags & (kLzopFilter | kLzopExtraField)) != 0) {
        reader.fail("header flags " + detail::hex(flags) +
                    " ask for a filter or an extra field, which lzop only writes when told to");
    }
    reader.take_be32();  // the file's mode
    reader.take_be32();  // its modification time
    if (version >= kLzopVersionWithLevel) {
        reader.take_be32();  // the time's upper half
    }
    reader.take(reader.take_u8());  // the file's name
    const std::span<const std::uint8_t> header = in.subspan(header_start, reader.position() - header_start);
    const std::uint32_t stored_header_checksum = reader.take_be32();
    const std::uint32_t header_checksum = (flags & kLzopHeaderCrc32) != 0
                                              ? lzo_crc32(0, header.data(), header.size())
                                              : lzo_adler32(1, header.data(), header.size());
    if (stored_header_checksum != header_checksum) {
        reader.fail("header checksum mismatch");
    }

    std::size_t written = 0;
    for (;;) {
        const std::size_t block_offset = reader.position();
        const std::string block_name = "the block at offset " + std::to_string(block_offset);
        const std::uint32_t unpacked_size = reader.take_be32();
        if (unpacked_size == 0) {
            break;
        }
        const std::uint32_t packed_size = reader.take_be32();
        if (packed_size == 0 || packed_size > unpacked_size) {
            reader.fail(block_name + " packs " + std::to_string(unpacked_size) + " bytes into " +
                        std::to_string(packed_size));
        }
        const bool stored = packed_size == unpacked_size;
        const LzopChecksums unpacked_checksums =
            LzopChecksums::read(reader, flags, kLzopAdler32Unpacked, kLzopCrc32Unpacked);
        const LzopChecksums packed_checksums =
            stored ? LzopChecksums{}
                   : LzopChecksums::read(reader, flags, kLzopAdler32Packed, kLzopCrc32Packed);
        const std::span<const std::uint8_t> packed = reader.take(packed_size);
        packed_checksums.check(packed, reader, block_name);
        if (unpacked_size > out.size() - written) {
            reader.fail("more data than the stated size");
        }
        const std::span<std::uint8_t> unpacked = out.subspan(written, unpacked_size);
        if (stored) {
            std::copy(packed.begin(), packed.end(), unpacked.begin());
        } else {
            lzo_uint produced = unpacked.size();
            const int result =
                lzo1x_decompress_safe(packed.data(), packed.size(), unpacked.data(), &produced, nullptr);
            if (result != LZO_E_OK || produced != unpacked.size()) {
                reader.fail("corrupt data in " + block_name);
            }
        }
        unpacked_checksums.check(unpacked, reader, block_name);
        written += unpacked_size;
    }
    if (written != out.size()) {
        reader.fail("less data than the stated size");
    }
}

using Decoder = void (*)(std::span<const std::uint8_t>, std::span<std::uint8_t>, const std::string&);

struct Compression {
    std::span<const std::uint8_t> magic;
    Decoder decode;
    // gzip's own trailer ends with the size; the others are followed by it.
    bool size_inside_stream = false;
};

// Every compressor the kernel's build offers for a bzImage (CONFIG_KERNEL_*).
const std::array kCompressions = {
    Compression{kGzipMagic, unpack_gzip, true}, Compression{kBzip2Magic, unpack_bzip2},
    Compression{kLzmaMagic, unpack_lzma},       Compression{kXzMagic, unpack_xz},
    Compression{kLzopMagic, unpack_lzo},        Compression{kLz4LegacyMagicBytes, unpack_lz4},
    Compression{kZstdMagic, unpack_zstd},
};

}  // namespace

std::vector<std::uint8_t> unpack_bzimage(const BzImage& image) {
    const std::string prefix = "kernel " + image.name() + ": ";
    const std::span<const std::uint8_t> payload = image.payload();
    if (payload.size() <= kSizeTrailer) {
        throw std::invalid_argument(prefix + "compressed payload of " + std::to_string(payload.size()) +
                                    " bytes is too small to hold a kernel");
    }
    const std::uint64_t size = load_le<std::uint32_t>(payload, payload.size() - kSizeTrailer);
    if (size == 0 || size > kMaxUnpackedKernelSize) {
        throw std::invalid_argument(prefix + "payload states an unpacked size of " + std::to_string(size) +
                                    " bytes (at most " + std::to_string(kMaxUnpackedKernelSize) + ")");
    }

    const auto compression =
        std::find_if(kCompressions.begin(), kCompressions.end(), [&](const Compression& c) {
            return payload.size() >= c.magic.size() &&
                   std::equal(c.magic.begin(), c.magic.end(), payload.begin());
        });
    if (compression == kCompressions.end()) {
        throw std::invalid_argument(prefix + "payload compressed in an unknown format");
    }
    std::vector<std::uint8_t> unpacked(size);
    compression->decode(
        compression->size_inside_stream ? payload : payload.first(payload.size() - kSizeTrailer), unpacked,
        prefix);

    if (!ElfKernel::has_elf_magic(unpacked)) {
        throw std::invalid_argument(prefix + "unpacked payload is not an ELF file");
    }
    const ElfKernel kernel = ElfKernel::parse(unpacked, unpacked.size(), image.name() + " (unpacked)");
    unpacked.resize(kernel.file_end());
    return unpacked;
}

}  // namespace vim::vmm::boot
