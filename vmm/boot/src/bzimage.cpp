#include "vmm/boot/bzimage.h"

#include <bit>
#include <stdexcept>

#include "bytes.h"
#include "file_io.h"
#include "setup_header_offsets.h"

namespace vim::vmm::boot {
namespace {

using detail::hex;
using detail::load_le;

constexpr std::uint64_t kSectorSize = 512;
constexpr std::uint16_t kBootFlagValue = 0xaa55;
constexpr std::uint32_t kHeaderMagicValue = 0x53726448;  // "HdrS"
constexpr std::uint8_t kShortJumpOpcode = 0xeb;
// A setup_sects of 0 dates from before the field existed and means 4.
constexpr std::uint32_t kDefaultSetupSects = 4;

std::string protocol_text(std::uint16_t version) {
    return std::to_string(version >> 8) + "." + std::to_string(version & 0xff);
}

}  // namespace

BzImage BzImage::read(const std::string& path) {
    return parse(detail::read_whole_file("kernel", path), path);
}

BzImage BzImage::parse(std::vector<std::uint8_t> bytes, std::string name) {
    const std::string prefix = "kernel " + name + ": ";
    const std::span<const std::uint8_t> file(bytes);
    if (file.size() < detail::kMinimumHeaderEnd) {
        throw std::invalid_argument(prefix + "too small for a bzImage (" + std::to_string(file.size()) +
                                    " bytes, the setup header alone needs " +
                                    std::to_string(detail::kMinimumHeaderEnd) + ")");
    }
    if (load_le<std::uint16_t>(file, detail::kBootFlag) != kBootFlagValue) {
        throw std::invalid_argument(prefix + "not a bzImage (no 0x55AA boot flag at 0x1fe)");
    }
    if (load_le<std::uint32_t>(file, detail::kHeaderMagic) != kHeaderMagicValue) {
        throw std::invalid_argument(prefix + "not a bzImage (no HdrS magic at 0x202)");
    }

    SetupHeader header{};
    header.protocol_version = load_le<std::uint16_t>(file, detail::kVersion);
    if (header.protocol_version < kMinimumBootProtocol) {
        throw std::invalid_argument(prefix + "boot protocol " + protocol_text(header.protocol_version) +
                                    " is too old (need " + protocol_text(kMinimumBootProtocol) +
                                    " or later)");
    }
    if (file[detail::kJump] != kShortJumpOpcode) {
        throw std::invalid_argument(prefix + "no short jump at 0x200 to mark the end of the setup header");
    }
    const std::uint64_t header_end = detail::kJump + 2 + file[detail::kJump + 1];
    if (header_end < detail::kMinimumHeaderEnd || header_end > detail::kMaximumHeaderEnd) {
        throw std::invalid_argument(prefix + "setup header ends at " + hex(header_end) + ", outside [" +
                                    hex(detail::kMinimumHeaderEnd) + ", " + hex(detail::kMaximumHeaderEnd) +
                                    "]");
    }

    header.setup_sects = file[detail::kSetupSects];
    if (header.setup_sects == 0) {
        header.setup_sects = kDefaultSetupSects;
    }
    const std::uint64_t kernel_offset = (header.setup_sects + 1) * kSectorSize;
    if (kernel_offset > file.size()) {
        throw std::invalid_argument(prefix + "setup code of " + std::to_string(header.setup_sects) +
                                    " sectors runs past the end of the file (" + std::to_string(file.size()) +
                                    " bytes)");
    }

    header.loadflags = file[detail::kLoadflags];
    if ((header.loadflags & kLoadedHigh) == 0) {
        throw std::invalid_argument(prefix +
                                    "not loaded high (loadflags bit 0 clear): a zImage, not a bzImage");
    }
    header.xloadflags = load_le<std::uint16_t>(file, detail::kXloadflags);
    if ((header.xloadflags & kXlfKernel64) == 0) {
        throw std::invalid_argument(prefix + "not a 64-bit kernel (xloadflags bit 0 XLF_KERNEL_64 clear)");
    }

    // syssize, not the file size: signed kernels carry their signature after
    // the protected-mode code.
    const std::uint64_t kernel_size = std::uint64_t{load_le<std::uint32_t>(file, detail::kSyssize)} * 16;
    if (kernel_size == 0) {
        throw std::invalid_argument(prefix + "empty protected-mode kernel (syssize 0)");
    }
    if (kernel_size > file.size() - kernel_offset) {
        throw std::invalid_argument(prefix + "protected-mode kernel of " + std::to_string(kernel_size) +
                                    " bytes at offset " + hex(kernel_offset) +
                                    " runs past the end of the file (" + std::to_string(file.size()) +
                                    " bytes)");
    }
    const std::uint64_t payload_offset = load_le<std::uint32_t>(file, detail::kPayloadOffset);
    const std::uint64_t payload_length = load_le<std::uint32_t>(file, detail::kPayloadLength);
    if (payload_offset + payload_length > kernel_size) {
        throw std::invalid_argument(prefix + "compressed payload at " + hex(payload_offset) + "+" +
                                    hex(payload_length) + " lies beyond the protected-mode kernel (" +
                                    std::to_string(kernel_size) + " bytes)");
    }

    header.kernel_alignment = load_le<std::uint32_t>(file, detail::kKernelAlignment);
    header.relocatable = file[detail::kRelocatableKernel] != 0;
    if (header.relocatable && !std::has_single_bit(header.kernel_alignment)) {
        throw std::invalid_argument(prefix + "kernel_alignment " + hex(header.kernel_alignment) +
                                    " is not a power of two");
    }
    header.pref_address = load_le<std::uint64_t>(file, detail::kPrefAddress);
    header.init_size = load_le<std::uint32_t>(file, detail::kInitSize);
    header.initrd_addr_max = load_le<std::uint32_t>(file, detail::kInitrdAddrMax);
    header.cmdline_size = load_le<std::uint32_t>(file, detail::kCmdlineSize);

    BzImage image;
    image.name_ = std::move(name);
    image.bytes_ = std::move(bytes);
    image.header_ = header;
    image.kernel_size_ = kernel_size;
    image.payload_offset_ = payload_offset;
    image.payload_length_ = payload_length;
    image.header_end_ = header_end;
    return image;
}

std::uint64_t BzImage::kernel_offset() const noexcept { return (header_.setup_sects + 1) * kSectorSize; }

std::span<const std::uint8_t> BzImage::kernel() const noexcept {
    return std::span<const std::uint8_t>(bytes_).subspan(kernel_offset(), kernel_size_);
}

std::span<const std::uint8_t> BzImage::payload() const noexcept {
    return kernel().subspan(payload_offset_, payload_length_);
}

std::span<const std::uint8_t> BzImage::setup_header_bytes() const noexcept {
    return std::span<const std::uint8_t>(bytes_).subspan(detail::kSetupSects,
                                                         header_end_ - detail::kSetupSects);
}

}  // namespace vim::vmm::boot
