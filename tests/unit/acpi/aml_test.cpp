#include "aml.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace vim::vmm::acpi::aml {
namespace {

using Expected = std::vector<std::uint8_t>;

// What the guest's interpreter reads from a PkgLength: the bytes it takes and the length it says.
std::pair<std::size_t, std::size_t> decode_pkg_length(const Aml& encoded) {
    const std::size_t followers = encoded.at(0) >> 6;
    std::size_t length = followers == 0 ? encoded[0] & 0x3f : encoded[0] & 0x0f;
    for (std::size_t index = 0; index < followers; ++index) {
        length |= std::size_t{encoded.at(1 + index)} << (4 + 8 * index);
    }
    return {1 + followers, length};
}

std::string error_of(const auto& call) {
    try {
        call();
    } catch (const std::exception& error) {
        return error.what();
    }
    return "(accepted)";
}

TEST(AmlPkgLength, TakesEachFormAtItsBoundaries) {
    EXPECT_EQ(pkg_length(0), (Expected{0x01}));
    EXPECT_EQ(pkg_length(62), (Expected{0x3f})) << "63, the most one byte holds";
    EXPECT_EQ(pkg_length(63), (Expected{0x41, 0x04})) << "65 = 0x041: low nibble first, then the rest";
    EXPECT_EQ(pkg_length(4093), (Expected{0x4f, 0xff})) << "4095, the most two bytes hold";
    EXPECT_EQ(pkg_length(4094), (Expected{0x81, 0x00, 0x01})) << "4097 = 0x1001";
    EXPECT_EQ(pkg_length(0xffffc), (Expected{0x8f, 0xff, 0xff})) << "2^20 - 1, the most three bytes hold";
    EXPECT_EQ(pkg_length(0xffffd), (Expected{0xc1, 0x00, 0x00, 0x01})) << "2^20 + 1";
    EXPECT_EQ(pkg_length(0xffffffb), (Expected{0xcf, 0xff, 0xff, 0xff})) << "2^28 - 1, the most of all";
}

TEST(AmlPkgLength, CountsItselfInTheShortestFormForEverySize) {
    for (std::size_t content = 0; content < 70000; ++content) {
        const Aml encoded = pkg_length(content);
        const auto [taken, length] = decode_pkg_length(encoded);
        ASSERT_EQ(taken, encoded.size()) << content;
        ASSERT_EQ(length, content + encoded.size()) << content;
        const std::size_t shortest = content + 1 <= 63 ? 1 : content + 2 < (1u << 12) ? 2 : 3;
        ASSERT_EQ(encoded.size(), shortest) << content;
    }
}

TEST(AmlPkgLength, RefusesWhatFourBytesCannotHold) {
    EXPECT_EQ(error_of([] { pkg_length(0xffffffc); }),
              "AML package of 268435452 bytes: PkgLength holds at most 268435455 bytes, itself included");
    EXPECT_THROW(pkg_length(SIZE_MAX), std::length_error);
}

TEST(AmlInteger, TakesTheSmallestPrefix) {
    EXPECT_EQ(integer(0), (Expected{0x00})) << "ZeroOp";
    EXPECT_EQ(integer(1), (Expected{0x01})) << "OneOp";
    EXPECT_EQ(integer(2), (Expected{0x0a, 0x02}));
    EXPECT_EQ(integer(0xff), (Expected{0x0a, 0xff}));
    EXPECT_EQ(integer(0x100), (Expected{0x0b, 0x00, 0x01}));
    EXPECT_EQ(integer(0xffff), (Expected{0x0b, 0xff, 0xff}));
    EXPECT_EQ(integer(0x10000), (Expected{0x0c, 0x00, 0x00, 0x01, 0x00}));
    EXPECT_EQ(integer(0x0001ffff), (Expected{0x0c, 0xff, 0xff, 0x01, 0x00}));
    EXPECT_EQ(integer(0xffffffff), (Expected{0x0c, 0xff, 0xff, 0xff, 0xff}));
    EXPECT_EQ(integer(0x100000000), (Expected{0x0e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00}));
    EXPECT_EQ(integer(UINT64_MAX), (Expected{0x0e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}));
}

TEST(AmlNameString, PadsSegmentsAndPrefixesRootParentAndSegmentCount) {
    EXPECT_EQ(name_string("_HID"), (Expected{'_', 'H', 'I', 'D'}));
    EXPECT_EQ(name_string("\\_SB"), (Expected{'\\', '_', 'S', 'B', '_'}));
    EXPECT_EQ(name_string("\\_SB.PCI0"), (Expected{'\\', 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'}));
    EXPECT_EQ(name_string("\\_SB.PCI0.S8"),
              (Expected{'\\', 0x2f, 3, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'S', '8', '_', '_'}));
    EXPECT_EQ(name_string("^^X"), (Expected{'^', '^', 'X', '_', '_', '_'}));
    EXPECT_EQ(name_string("\\"), (Expected{'\\', 0x00})) << "the root itself: NullName";
}

TEST(AmlNameString, RefusesWhatIsNotAName) {
    EXPECT_EQ(error_of([] { name_string(""); }), "AML name \"\": empty");
    EXPECT_EQ(error_of([] { name_string("PCI00"); }),
              "AML name \"PCI00\": segment \"PCI00\" is not 1-4 of A-Z, 0-9 and _ with no digit first");
    EXPECT_EQ(error_of([] { name_string("\\_SB.0PCI"); }),
              "AML name \"\\_SB.0PCI\": segment \"0PCI\" is not 1-4 of A-Z, 0-9 and _ with no digit first");
    for (const char* hostile :
         {"pci0", "_SB..PCI0", "_SB.", ".PCI0", "\\^PCI0", "PCI0^", "P-CI", "\\\\", "_S\x01"}) {
        EXPECT_THROW(name_string(hostile), std::invalid_argument) << hostile;
    }
    std::string too_many = "A";
    for (int segment = 1; segment < 256; ++segment) {
        too_many += ".A";
    }
    const std::string message = error_of([&] { name_string(too_many); });
    EXPECT_TRUE(message.ends_with("\": more than 255 segments")) << message;
    EXPECT_EQ(name_string(too_many.substr(2)).size(), 2 + 255 * 4) << "255 segments still fit";
}

TEST(AmlEisaId, CompressesLettersAndKeepsTheProductNumber) {
    EXPECT_EQ(eisa_id("PNP0A03"), 0x030ad041u) << "PCI bus, as iasl encodes it: 41 D0 0A 03";
    EXPECT_EQ(eisa_id("PNP0A08"), 0x080ad041u) << "PCI Express bus";
    EXPECT_EQ(eisa_id("PNP0C0F"), 0x0f0cd041u) << "PCI interrupt link";
    EXPECT_EQ(eisa_id("ABC1234"), 0x34124304u) << "A=1, B=2, C=3: 00001 00010 00011";
}

TEST(AmlEisaId, RefusesOtherForms) {
    EXPECT_EQ(error_of([] { eisa_id("PNP0A0"); }),
              "EISA ID \"PNP0A0\": not three letters A-Z and four hex digits 0-9, A-F");
    for (const char* hostile :
         {"", "PNP0A033", "pnp0a03", "PNP0a03", "PN10A03", "PNP0G03", "@NP0A03", "PNP 0A0"}) {
        EXPECT_THROW(eisa_id(hostile), std::invalid_argument) << hostile;
    }
}

TEST(AmlObjects, NamePackageBufferScopeAndDevice) {
    EXPECT_EQ(name("_UID", integer(0)), (Expected{0x08, '_', 'U', 'I', 'D', 0x00}));
    EXPECT_EQ(package({integer(5), integer(0)}), (Expected{0x12, 0x05, 0x02, 0x0a, 0x05, 0x00}))
        << "PackageOp, PkgLength, NumElements, elements";
    EXPECT_EQ(package({}), (Expected{0x12, 0x02, 0x00}));
    EXPECT_EQ(buffer(Expected{1, 2, 3}), (Expected{0x11, 0x06, 0x0a, 0x03, 1, 2, 3}))
        << "BufferOp, PkgLength, BufferSize, bytes";
    EXPECT_EQ(scope("\\_SB", {}), (Expected{0x10, 0x06, '\\', '_', 'S', 'B', '_'}));
    EXPECT_EQ(device("PCI0", {name("_UID", integer(0))}),
              (Expected{0x5b, 0x82, 0x0b, 'P', 'C', 'I', '0', 0x08, '_', 'U', 'I', 'D', 0x00}))
        << "ExtOpPrefix DeviceOp, PkgLength, name, terms";
}

TEST(AmlObjects, LargeContentsTakeLongerPkgLengths) {
    const Aml big = buffer(Expected(5000, 0xaa));
    EXPECT_EQ(Expected(big.begin(), big.begin() + 7), (Expected{0x11, 0x8e, 0x38, 0x01, 0x0b, 0x88, 0x13}))
        << "PkgLength 3 + BufferSize 3 + 5000 = 5006 = 0x138e in three bytes; size 5000 = 0x1388";
    EXPECT_EQ(big.size(), 1 + 5006u);

    std::vector<Aml> elements(255, integer(0x12345678));
    const Aml full = package(elements);
    EXPECT_EQ(full.size(), 1 + 2 + 1 + 255 * 5u);
    EXPECT_EQ(full[1] >> 6, 1) << "a two-byte PkgLength";
    elements.push_back(integer(0));
    EXPECT_EQ(error_of([&] { package(elements); }),
              "AML package of 256 elements: a Package holds at most 255");
}

TEST(AmlResources, DescriptorsMatchWhatIaslWritesForTheSameAsl) {
    EXPECT_EQ(resource::word_bus_number(0, 0xff), (Expected{0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0x00, 0x00,
                                                            0x00, 0x00, 0xff, 0x00, 0x00, 0x00, 0x00, 0x01}));
    EXPECT_EQ(resource::io(0xcf8, 8), (Expected{0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08}));
    EXPECT_EQ(resource::word_io(0xc000, 0x4000), (Expected{0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0x00, 0x00,
                                                           0x00, 0xc0, 0xff, 0xff, 0x00, 0x00, 0x00, 0x40}));
    EXPECT_EQ(resource::dword_memory(0xc0000000, 0x20000000),
              (Expected{0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                        0xc0, 0xff, 0xff, 0xff, 0xdf, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20}));
    EXPECT_EQ(resource_template({resource::io(0x60, 1)}),
              (Expected{0x11, 0x0d, 0x0a, 0x0a, 0x47, 0x01, 0x60, 0x00, 0x60, 0x00, 0x01, 0x01, 0x79, 0x00}))
        << "a Buffer of the descriptors and the end tag";
}

TEST(AmlResources, RefusesRangesTheDescriptorCannotHold) {
    EXPECT_NO_THROW(resource::word_io(0xffff, 1));
    EXPECT_NO_THROW(resource::word_io(0x0001, 0xffff));
    EXPECT_EQ(error_of([] { resource::word_io(0xc000, 0x4001); }),
              "WordIO at 0xc000 of 0x4001 ports: not a range whose ends and length fit 16 bits");
    EXPECT_THROW(resource::word_io(0, 0x10000), std::invalid_argument) << "a length of 0 in 16 bits";
    EXPECT_THROW(resource::word_io(0xc000, 0), std::invalid_argument);
    EXPECT_THROW(resource::word_io(0, UINT32_MAX), std::invalid_argument);

    EXPECT_NO_THROW(resource::dword_memory(0x80000000, 0x80000000));
    EXPECT_EQ(error_of([] { resource::dword_memory(0xc0000000, 0x40000001); }),
              "DWordMemory at 0xc0000000 of 0x40000001 bytes: not a range whose ends and length fit 32 bits");
    EXPECT_THROW(resource::dword_memory(0, 1ull << 32), std::invalid_argument) << "a length of 0 in 32 bits";
    EXPECT_THROW(resource::dword_memory(0, 0), std::invalid_argument);
    EXPECT_THROW(resource::dword_memory(1, UINT64_MAX), std::invalid_argument);
}

}  // namespace
}  // namespace vim::vmm::acpi::aml
