#include "vmm/boot/kernel_unpack.h"

#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <climits>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>

#include "bytes.h"
#include "vmm/boot/elf_kernel.h"

namespace vmm::boot {
namespace {

using detail::load_le;

constexpr std::array<std::uint8_t, 2> kGzipMagic = {0x1f, 0x8b};
constexpr std::array<std::uint8_t, 6> kXzMagic = {0xfd, '7', 'z', 'X', 'Z', 0x00};
constexpr std::array<std::uint8_t, 4> kZstdMagic = {0x28, 0xb5, 0x2f, 0xfd};
// What the other compressors Linux offers begin with, to name them when refusing.
constexpr std::array<std::uint8_t, 3> kBzip2Magic = {'B', 'Z', 'h'};
constexpr std::array<std::uint8_t, 3> kLzmaMagic = {0x5d, 0x00, 0x00};
constexpr std::array<std::uint8_t, 4> kLzoMagic = {0x89, 'L', 'Z', 'O'};
constexpr std::array<std::uint8_t, 4> kLz4Magic = {0x02, 0x21, 0x4c, 0x18};

// The kernel's build appends the uncompressed size as 32 bits (gzip's own
// trailer ends with it too), which sizes the output before decoding.
constexpr std::size_t kSizeTrailer = 4;

// The xz decoder's memory limit: kernels are compressed with a dictionary of
// at most 32 MiB, the decoder needs little more.
constexpr std::uint64_t kXzMemoryLimit = 256ull << 20;

template <std::size_t N>
bool starts_with(std::span<const std::uint8_t> data, const std::array<std::uint8_t, N>& magic) {
    return data.size() >= N && std::equal(magic.begin(), magic.end(), data.begin());
}

[[noreturn]] void corrupt(const std::string& prefix, const std::string& format, const std::string& detail) {
    throw std::invalid_argument(prefix + format + " payload does not unpack: " + detail);
}

std::string xz_error(lzma_ret result) {
    switch (result) {
    case LZMA_DATA_ERROR:
        return "corrupt data";
    case LZMA_FORMAT_ERROR:
        return "not in the xz format";
    case LZMA_OPTIONS_ERROR:
        return "compression options this liblzma does not support";
    case LZMA_UNSUPPORTED_CHECK:
        return "an integrity check this liblzma does not support";
    case LZMA_MEMLIMIT_ERROR:
        return "needs more than " + std::to_string(kXzMemoryLimit >> 20) + " MiB to decode";
    case LZMA_MEM_ERROR:
        return "out of memory";
    default:
        return "liblzma error " + std::to_string(result);
    }
}

// Each decoder fills `out` exactly from `in`, or throws: ending short of the
// stated size, or having more to write than it, means the data is damaged.
void unpack_xz(std::span<const std::uint8_t> in, std::span<std::uint8_t> out, const std::string& prefix) {
    lzma_stream stream = LZMA_STREAM_INIT;
    if (lzma_stream_decoder(&stream, kXzMemoryLimit, 0) != LZMA_OK) {
        throw std::runtime_error(prefix + "cannot start the xz decoder");
    }
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
        // output happens to be full: all that is missing may be the index.
        corrupt(prefix, "xz", stream.avail_in != 0 ? "more data than the stated size" : "truncated");
    }
    if (result != LZMA_STREAM_END) {
        corrupt(prefix, "xz", xz_error(result));
    }
    if (stream.avail_out != 0) {
        corrupt(prefix, "xz", "less data than the stated size");
    }
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

    using Decoder = void (*)(std::span<const std::uint8_t>, std::span<std::uint8_t>, const std::string&);
    Decoder decode = nullptr;
    std::span<const std::uint8_t> compressed = payload.first(payload.size() - kSizeTrailer);
    if (starts_with(payload, kXzMagic)) {
        decode = unpack_xz;
    } else if (starts_with(payload, kZstdMagic)) {
        decode = unpack_zstd;
    } else if (starts_with(payload, kGzipMagic)) {
        decode = unpack_gzip;
        compressed = payload;  // the size is gzip's own trailer
    } else {
        const char* other = starts_with(payload, kBzip2Magic)  ? "bzip2"
                            : starts_with(payload, kLzmaMagic) ? "lzma"
                            : starts_with(payload, kLzoMagic)  ? "lzo"
                            : starts_with(payload, kLz4Magic)  ? "lz4"
                                                               : nullptr;
        throw std::invalid_argument(prefix + (other != nullptr ? std::string("payload compressed with ") + other +
                                                                     ", which is not supported (xz, zstd, gzip are)"
                                                               : std::string("payload compressed in an unknown "
                                                                             "format")));
    }
    std::vector<std::uint8_t> unpacked(size);
    decode(compressed, unpacked, prefix);

    if (!ElfKernel::has_elf_magic(unpacked)) {
        throw std::invalid_argument(prefix + "unpacked payload is not an ELF file");
    }
    const ElfKernel kernel = ElfKernel::parse(unpacked, unpacked.size(), image.name() + " (unpacked)");
    unpacked.resize(kernel.file_end());
    return unpacked;
}

}  // namespace vmm::boot
