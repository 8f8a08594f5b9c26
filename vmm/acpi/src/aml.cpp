#include "aml.h"

#include <stdexcept>
#include <string>

#include "table_format.h"
#include "vmm/sys/hex.h"

namespace vim::vmm::acpi::aml {
namespace {

using detail::Bytes;
using sys::hex;

// Opcodes and prefixes (ACPI 6.5, section 20.3).
constexpr std::uint8_t kZeroOp = 0x00;
constexpr std::uint8_t kOneOp = 0x01;
constexpr std::uint8_t kNameOp = 0x08;
constexpr std::uint8_t kBytePrefix = 0x0a;
constexpr std::uint8_t kWordPrefix = 0x0b;
constexpr std::uint8_t kDWordPrefix = 0x0c;
constexpr std::uint8_t kQWordPrefix = 0x0e;
constexpr std::uint8_t kScopeOp = 0x10;
constexpr std::uint8_t kBufferOp = 0x11;
constexpr std::uint8_t kPackageOp = 0x12;
constexpr std::uint8_t kExtOpPrefix = 0x5b;
constexpr std::uint8_t kDeviceOp = 0x82;  // after kExtOpPrefix

constexpr std::uint8_t kNullName = 0x00;
constexpr std::uint8_t kDualNamePrefix = 0x2e;
constexpr std::uint8_t kMultiNamePrefix = 0x2f;
constexpr char kRootChar = '\\';
constexpr char kParentPrefixChar = '^';
constexpr std::size_t kNameSegSize = 4;

// PkgLength: the first byte's top two bits count the bytes that follow it.
// Alone, it holds 6 bits of length; with followers, its low nibble holds the
// lowest 4 bits and each follower 8 more.
constexpr std::size_t kMaxPkgLengthBytes = 4;
constexpr std::size_t kMaxOneBytePkgLength = 0x3f;
constexpr std::size_t kMaxPkgLength = (std::size_t{1} << (4 + 8 * (kMaxPkgLengthBytes - 1))) - 1;

constexpr std::size_t kMaxPackageElements = 0xff;

// Resource descriptors (section 6.4): small items carry their length in the
// tag byte; large ones a 16-bit length after it.
constexpr std::uint8_t kIoPortDescriptor = 0x47;  // small item 0x08, 7 bytes
constexpr std::uint8_t kIoDecode16 = 1u << 0;
constexpr std::uint8_t kIoAlignment = 1;
constexpr std::uint8_t kEndTag = 0x79;  // small item 0x0f, 1 byte
constexpr std::uint8_t kEndTagChecksumValid = 0;
constexpr std::uint8_t kDWordAddressSpaceDescriptor = 0x87;
constexpr std::uint8_t kWordAddressSpaceDescriptor = 0x88;
constexpr std::uint16_t kWordAddressSpaceLength = 13;
constexpr std::uint16_t kDWordAddressSpaceLength = 23;
constexpr std::uint8_t kAddressSpaceMemory = 0;
constexpr std::uint8_t kAddressSpaceIo = 1;
constexpr std::uint8_t kAddressSpaceBusNumber = 2;
// General flags: bit 0 clear for a producer, bit 1 clear for positive decode,
// bits 2 and 3 say the minimum and maximum addresses are fixed.
constexpr std::uint8_t kProducerFixedRange = (1u << 2) | (1u << 3);
constexpr std::uint8_t kIoEntireRange = 0b11;  // both ISA and non-ISA ports
constexpr std::uint8_t kMemoryReadWriteNonCacheable = 1u << 0;

// An opcode, then the PkgLength of the contents, then the contents.
Aml with_length(std::initializer_list<std::uint8_t> opcode, std::span<const std::uint8_t> contents) {
    Bytes out;
    for (const std::uint8_t byte : opcode) {
        out.u8(byte);
    }
    out.append(pkg_length(contents.size()));
    out.append(contents);
    return std::move(out.data());
}

// Scope and Device: a name, then the terms declared in it.
Aml named_block(std::initializer_list<std::uint8_t> opcode, std::string_view path,
                const std::vector<Aml>& terms) {
    Bytes contents;
    contents.append(name_string(path));
    for (const Aml& term : terms) {
        contents.append(term);
    }
    return with_length(opcode, contents.data());
}

bool valid_segment(std::string_view segment) {
    const auto lead = [](char c) { return (c >= 'A' && c <= 'Z') || c == '_'; };
    const auto digit = [](char c) { return c >= '0' && c <= '9'; };
    if (segment.empty() || segment.size() > kNameSegSize || !lead(segment[0])) {
        return false;
    }
    for (const char c : segment.substr(1)) {
        if (!lead(c) && !digit(c)) {
            return false;
        }
    }
    return true;
}

Aml address_space(std::uint8_t descriptor, std::uint8_t space, std::uint8_t type_flags,
                  std::size_t field_size, std::uint64_t minimum, std::uint64_t maximum) {
    Bytes out;
    out.u8(descriptor);
    out.u16(field_size == sizeof(std::uint16_t) ? kWordAddressSpaceLength : kDWordAddressSpaceLength);
    out.u8(space);
    out.u8(kProducerFixedRange);
    out.u8(type_flags);
    // Granularity, minimum, maximum, translation offset, length.
    const std::uint64_t length = maximum - minimum + 1;
    for (const std::uint64_t field : {std::uint64_t{0}, minimum, maximum, std::uint64_t{0}, length}) {
        if (field_size == sizeof(std::uint16_t)) {
            out.u16(static_cast<std::uint16_t>(field));
        } else {
            out.u32(static_cast<std::uint32_t>(field));
        }
    }
    return std::move(out.data());
}

}  // namespace

Aml pkg_length(std::size_t content_size) {
    if (content_size > kMaxPkgLength - kMaxPkgLengthBytes) {
        throw std::length_error("AML package of " + std::to_string(content_size) +
                                " bytes: PkgLength holds at most " + std::to_string(kMaxPkgLength) +
                                " bytes, itself included");
    }
    if (content_size + 1 <= kMaxOneBytePkgLength) {
        return {static_cast<std::uint8_t>(content_size + 1)};
    }
    std::size_t followers = 1;
    while (content_size + 1 + followers >= (std::size_t{1} << (4 + 8 * followers))) {
        ++followers;
    }
    const std::size_t total = content_size + 1 + followers;
    Aml out{static_cast<std::uint8_t>((followers << 6) | (total & 0x0f))};
    for (std::size_t index = 0; index < followers; ++index) {
        out.push_back(static_cast<std::uint8_t>(total >> (4 + 8 * index)));
    }
    return out;
}

Aml name_string(std::string_view path) {
    const std::string quoted = "AML name \"" + std::string(path) + "\"";
    Bytes out;
    std::string_view rest = path;
    if (!rest.empty() && rest.front() == kRootChar) {
        out.u8(static_cast<std::uint8_t>(kRootChar));
        rest.remove_prefix(1);
    } else {
        while (!rest.empty() && rest.front() == kParentPrefixChar) {
            out.u8(static_cast<std::uint8_t>(kParentPrefixChar));
            rest.remove_prefix(1);
        }
    }
    if (rest.empty()) {
        if (out.data().empty()) {
            throw std::invalid_argument(quoted + ": empty");
        }
        out.u8(kNullName);
        return std::move(out.data());
    }

    std::vector<std::string_view> segments;
    for (std::size_t start = 0;;) {
        const std::size_t dot = rest.find('.', start);
        segments.push_back(rest.substr(start, dot == std::string_view::npos ? dot : dot - start));
        if (dot == std::string_view::npos) {
            break;
        }
        start = dot + 1;
    }
    if (segments.size() > 0xff) {
        throw std::invalid_argument(quoted + ": more than 255 segments");
    }
    if (segments.size() == 2) {
        out.u8(kDualNamePrefix);
    } else if (segments.size() > 2) {
        out.u8(kMultiNamePrefix);
        out.u8(static_cast<std::uint8_t>(segments.size()));
    }
    for (const std::string_view segment : segments) {
        if (!valid_segment(segment)) {
            throw std::invalid_argument(quoted + ": segment \"" + std::string(segment) +
                                        "\" is not 1-4 of A-Z, 0-9 and _ with no digit first");
        }
        out.text(segment);
        for (std::size_t pad = segment.size(); pad < kNameSegSize; ++pad) {
            out.u8('_');
        }
    }
    return std::move(out.data());
}

Aml integer(std::uint64_t value) {
    if (value == 0) {
        return {kZeroOp};
    }
    if (value == 1) {
        return {kOneOp};
    }
    Bytes out;
    if (value <= UINT8_MAX) {
        out.u8(kBytePrefix);
        out.u8(static_cast<std::uint8_t>(value));
    } else if (value <= UINT16_MAX) {
        out.u8(kWordPrefix);
        out.u16(static_cast<std::uint16_t>(value));
    } else if (value <= UINT32_MAX) {
        out.u8(kDWordPrefix);
        out.u32(static_cast<std::uint32_t>(value));
    } else {
        out.u8(kQWordPrefix);
        out.u64(value);
    }
    return std::move(out.data());
}

std::uint32_t eisa_id(std::string_view id) {
    const auto letter = [](char c) { return c >= 'A' && c <= 'Z'; };
    const auto hex_digit = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
    constexpr std::size_t kLetters = 3;
    constexpr std::size_t kDigits = 4;
    bool valid = id.size() == kLetters + kDigits;
    for (std::size_t index = 0; valid && index < id.size(); ++index) {
        valid = index < kLetters ? letter(id[index]) : hex_digit(id[index]);
    }
    if (!valid) {
        throw std::invalid_argument("EISA ID \"" + std::string(id) +
                                    "\": not three letters A-Z and four hex digits 0-9, A-F");
    }
    // 'A' is 1; the letters fill bits 14-0 of a big-endian 16-bit word.
    std::uint32_t letters = 0;
    for (std::size_t index = 0; index < kLetters; ++index) {
        letters = (letters << 5) | static_cast<std::uint32_t>(id[index] - '@');
    }
    const std::uint32_t product = std::stoul(std::string(id.substr(kLetters)), nullptr, 16);
    // In memory: letters high byte, letters low byte, then the digits in
    // pairs, first pair first.
    return (letters >> 8) | ((letters & 0xff) << 8) | ((product >> 8) << 16) | ((product & 0xff) << 24);
}

Aml name(std::string_view path, const Aml& object) {
    Bytes out;
    out.u8(kNameOp);
    out.append(name_string(path));
    out.append(object);
    return std::move(out.data());
}

Aml package(const std::vector<Aml>& elements) {
    if (elements.size() > kMaxPackageElements) {
        throw std::length_error("AML package of " + std::to_string(elements.size()) +
                                " elements: a Package holds at most " + std::to_string(kMaxPackageElements));
    }
    Bytes contents;
    contents.u8(static_cast<std::uint8_t>(elements.size()));
    for (const Aml& element : elements) {
        contents.append(element);
    }
    return with_length({kPackageOp}, contents.data());
}

Aml buffer(std::span<const std::uint8_t> bytes) {
    Bytes contents;
    contents.append(integer(bytes.size()));
    contents.append(bytes);
    return with_length({kBufferOp}, contents.data());
}

Aml scope(std::string_view path, const std::vector<Aml>& terms) {
    return named_block({kScopeOp}, path, terms);
}

Aml device(std::string_view path, const std::vector<Aml>& terms) {
    return named_block({kExtOpPrefix, kDeviceOp}, path, terms);
}

namespace resource {

Aml word_bus_number(std::uint16_t first, std::uint16_t last) {
    return address_space(kWordAddressSpaceDescriptor, kAddressSpaceBusNumber, 0, sizeof(std::uint16_t), first,
                         last);
}

Aml io(std::uint16_t base, std::uint8_t count) {
    Bytes out;
    out.u8(kIoPortDescriptor);
    out.u8(kIoDecode16);
    out.u16(base);  // minimum
    out.u16(base);  // maximum
    out.u8(kIoAlignment);
    out.u8(count);
    return std::move(out.data());
}

Aml word_io(std::uint16_t base, std::uint32_t size) {
    // The length is a 16-bit field too, so all 64 Ki ports do not fit.
    if (size == 0 || size > UINT16_MAX || base + size - 1 > UINT16_MAX) {
        throw std::invalid_argument("WordIO at " + hex(base) + " of " + hex(size) +
                                    " ports: not a range whose ends and length fit 16 bits");
    }
    return address_space(kWordAddressSpaceDescriptor, kAddressSpaceIo, kIoEntireRange, sizeof(std::uint16_t),
                         base, base + size - 1);
}

Aml dword_memory(std::uint32_t base, std::uint64_t size) {
    if (size == 0 || size > UINT32_MAX || base + size - 1 > UINT32_MAX) {
        throw std::invalid_argument("DWordMemory at " + hex(base) + " of " + hex(size) +
                                    " bytes: not a range whose ends and length fit 32 bits");
    }
    return address_space(kDWordAddressSpaceDescriptor, kAddressSpaceMemory, kMemoryReadWriteNonCacheable,
                         sizeof(std::uint32_t), base, base + size - 1);
}

}  // namespace resource

Aml resource_template(const std::vector<Aml>& descriptors) {
    Bytes contents;
    for (const Aml& descriptor : descriptors) {
        contents.append(descriptor);
    }
    contents.u8(kEndTag);
    contents.u8(kEndTagChecksumValid);
    return buffer(contents.data());
}

}  // namespace vim::vmm::acpi::aml
