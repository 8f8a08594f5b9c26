#pragma once

// An encoder for the few ACPI Machine Language terms the DSDT is written in
// (ACPI 6.5, section 20), and for the resource descriptors its
// ResourceTemplates hold (section 6.4). Each function returns the encoding of
// one term; containers take the encodings of their contents, so a table is
// built as its ASL reads:
//   aml::scope("\\_SB", {aml::device("PCI0", {aml::name("_UID", aml::integer(0))})})

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace vim::vmm::acpi::aml {

using Aml = std::vector<std::uint8_t>;

// PkgLength: `content_size` bytes follow, and the length counts itself, so it
// takes the shortest of its 1- to 4-byte forms that can hold the sum. Throws
// std::length_error past 2^28 - 1 bytes in all.
Aml pkg_length(std::size_t content_size);

// NameString: an optional root prefix '\' or parent prefixes '^', then
// dot-separated name segments of 1-4 characters (a letter or '_' first, then
// letters, digits or '_'), which are padded with '_': "\\_SB.PCI0", "_HID".
// "\\" alone names the root. Throws std::invalid_argument for anything else.
Aml name_string(std::string_view path);

// The shortest encoding of a value: ZeroOp, OneOp, then Byte-, Word-, DWord-
// and QWord-prefixed constants.
Aml integer(std::uint64_t value);

// The value ASL's EISAID("PNP0A03") stands for: three uppercase letters of 5
// bits each and four uppercase hex digits, stored so that the bytes read
// 41 D0 0A 03. Throws std::invalid_argument for any other form.
std::uint32_t eisa_id(std::string_view id);

// Name(path, object).
Aml name(std::string_view path, const Aml& object);
// Package(){elements}, whose count is a byte: throws std::length_error past 255.
Aml package(const std::vector<Aml>& elements);
// Buffer(){bytes}.
Aml buffer(std::span<const std::uint8_t> bytes);
// Scope(path){terms} and Device(path){terms}.
Aml scope(std::string_view path, const std::vector<Aml>& terms);
Aml device(std::string_view path, const std::vector<Aml>& terms);

// Resource descriptors, as a host bridge's _CRS lists them: the ranges it
// produces (decodes for the devices behind it) and the ports it consumes.
namespace resource {

// WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, first, last, 0, count).
Aml word_bus_number(std::uint16_t first, std::uint16_t last);
// IO(Decode16, base, base, 1, count): ports the device itself answers.
Aml io(std::uint16_t base, std::uint8_t count);
// WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, base,
// base + size - 1, 0, size). Throws std::invalid_argument for an empty range or
// one whose ends or length do not fit 16 bits.
Aml word_io(std::uint16_t base, std::uint32_t size);
// DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable,
// ReadWrite, 0, base, base + size - 1, 0, size). Throws std::invalid_argument
// for an empty range or one whose ends or length do not fit 32 bits.
Aml dword_memory(std::uint32_t base, std::uint64_t size);

}  // namespace resource

// ResourceTemplate(){descriptors}: a Buffer of the descriptors and an end tag.
// Its checksum byte is 0, which says "treat as valid" (iasl writes the same).
Aml resource_template(const std::vector<Aml>& descriptors);

}  // namespace vim::vmm::acpi::aml
