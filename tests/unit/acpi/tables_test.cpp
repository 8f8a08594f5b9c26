#include "vmm/acpi/tables.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <ostream>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "low_memory.h"
#include "vmm/boot/layout.h"

namespace vim::vmm::acpi {
namespace {

namespace layout = boot::layout;

std::uint64_t little_endian(std::span<const std::uint8_t> bytes, std::size_t offset, std::size_t size) {
    std::uint64_t value = 0;
    for (std::size_t index = size; index-- > 0;) {
        value = value << 8 | bytes[offset + index];
    }
    return value;
}

std::string read_text(const std::filesystem::path& path) {
    std::ifstream file(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

// Reads the AML forms the DSDT is made of as the guest's interpreter does,
// throwing at anything else.
class AmlReader {
public:
    explicit AmlReader(std::span<const std::uint8_t> bytes) : bytes_(bytes) {}

    std::size_t offset() const { return offset_; }
    std::uint8_t byte() {
        if (offset_ >= bytes_.size()) {
            throw std::out_of_range("AML ends at " + std::to_string(offset_));
        }
        return bytes_[offset_++];
    }
    void expect(std::initializer_list<std::uint8_t> bytes) {
        for (const std::uint8_t expected : bytes) {
            const std::size_t at = offset_;
            if (byte() != expected) {
                throw std::runtime_error("AML byte " + std::to_string(at) + " is not " +
                                         std::to_string(expected));
            }
        }
    }
    std::string name_seg() {
        std::string name;
        for (int index = 0; index < 4; ++index) {
            name += static_cast<char>(byte());
        }
        return name;
    }
    // Where the package whose PkgLength starts here ends.
    std::size_t package_end() {
        const std::size_t start = offset_;
        const std::uint8_t lead = byte();
        const int followers = lead >> 6;
        std::size_t length = followers == 0 ? lead & 0x3f : lead & 0x0f;
        for (int index = 0; index < followers; ++index) {
            length |= std::size_t{byte()} << (4 + 8 * index);
        }
        return start + length;
    }
    std::uint64_t integer() {
        const std::uint8_t op = byte();
        const std::map<std::uint8_t, std::size_t> prefix_sizes = {{0x0a, 1}, {0x0b, 2}, {0x0c, 4}, {0x0e, 8}};
        if (op == 0x00 || op == 0x01) {
            return op;  // ZeroOp, OneOp
        }
        if (!prefix_sizes.contains(op)) {
            throw std::runtime_error("AML opcode " + std::to_string(op) + " is not an integer");
        }
        const std::uint64_t value = little_endian(bytes_, offset_, prefix_sizes.at(op));
        offset_ += prefix_sizes.at(op);
        return value;
    }
    // Package(){...}, each element read by `element`, which must end where the package does.
    template <typename Element>
    std::vector<Element> package(Element (AmlReader::*element)()) {
        expect({0x12});
        const std::size_t end = package_end();
        std::vector<Element> elements(byte());
        for (Element& value : elements) {
            value = (this->*element)();
        }
        EXPECT_EQ(offset_, end) << "package length";
        return elements;
    }
    std::vector<std::uint64_t> integer_package() { return package(&AmlReader::integer); }
    std::vector<std::uint8_t> buffer() {
        expect({0x11});
        const std::size_t end = package_end();
        const std::uint64_t size = integer();
        EXPECT_EQ(offset_ + size, end) << "buffer size against its package length";
        if (size > bytes_.size() - offset_) {
            throw std::out_of_range("AML buffer of " + std::to_string(size) + " bytes at " +
                                    std::to_string(offset_) + " runs past the table");
        }
        const auto bytes = bytes_.subspan(offset_, size);
        offset_ += size;
        return {bytes.begin(), bytes.end()};
    }

private:
    std::span<const std::uint8_t> bytes_;
    std::size_t offset_ = 0;
};

struct PciHostBridge {
    std::vector<std::string> names;  // of its objects, in order
    std::uint64_t hid = 0;
    std::uint64_t uid = 1;
    std::uint64_t bbn = 1;
    std::vector<std::uint8_t> resources;
    std::vector<std::vector<std::uint64_t>> routing;
};

struct Resource {
    std::string kind;
    std::uint64_t base;
    std::uint64_t size;
    std::uint8_t type_flags;
    std::size_t field_size;
    bool operator==(const Resource&) const = default;
};

std::ostream& operator<<(std::ostream& out, const Resource& resource) {
    return out << resource.kind << " " << resource.base << "+" << resource.size << " flags "
               << int{resource.type_flags} << " fields " << resource.field_size;
}

class AcpiTables : public testing::LowMemory {
protected:
    std::string signature(std::uint64_t address, std::size_t size = 4) const { return text(address, size); }
    // A whole table, as long as its header says.
    std::span<const std::uint8_t> table(std::uint64_t address) const {
        return memory_.read_span(address, read<std::uint32_t>(address + 4));
    }
    std::vector<std::uint64_t> xsdt_entries() const {
        const std::uint64_t xsdt = read<std::uint64_t>(layout::kAcpiRsdpAddress + 24);
        std::vector<std::uint64_t> entries;
        for (std::uint32_t offset = 36; offset < read<std::uint32_t>(xsdt + 4); offset += 8) {
            entries.push_back(read<std::uint64_t>(xsdt + offset));
        }
        return entries;
    }
    std::uint64_t find_table(const std::string& wanted) const {
        for (const std::uint64_t address : xsdt_entries()) {
            if (signature(address) == wanted) {
                return address;
            }
        }
        ADD_FAILURE() << wanted << " is not in the XSDT";
        return 0;
    }

    // Walks the whole DSDT: Name(\_S5, ...), then Scope(\_SB){Device(PCI0){Name()...}}
    // up to the table's end, and returns what the device names.
    PciHostBridge read_dsdt() const {
        const auto dsdt = table(read<std::uint32_t>(find_table("FACP") + 40));
        AmlReader aml(dsdt.subspan(36));
        aml.expect({0x08, '\\', '_', 'S', '5', '_'});
        aml.integer_package();

        aml.expect({0x10});
        const std::size_t scope_end = aml.package_end();
        EXPECT_EQ(scope_end, dsdt.size() - 36) << "\\_SB's scope ends the table";
        aml.expect({'\\', '_', 'S', 'B', '_', 0x5b, 0x82});
        const std::size_t device_end = aml.package_end();
        EXPECT_EQ(device_end, scope_end) << "PCI0 is all \\_SB holds";
        aml.expect({'P', 'C', 'I', '0'});

        PciHostBridge bridge;
        while (aml.offset() < device_end) {
            aml.expect({0x08});
            const std::string name = bridge.names.emplace_back(aml.name_seg());
            if (name == "_CRS") {
                bridge.resources = aml.buffer();
            } else if (name == "_PRT") {
                bridge.routing = aml.package(&AmlReader::integer_package);
            } else {
                (name == "_HID" ? bridge.hid : name == "_UID" ? bridge.uid : bridge.bbn) = aml.integer();
            }
        }
        EXPECT_EQ(aml.offset(), device_end);
        return bridge;
    }
};

TEST_F(AcpiTables, RsdpIsAnAcpi2RsdpWithBothChecksums) {
    write_acpi_tables(memory_, 2);
    const std::uint64_t rsdp = layout::kAcpiRsdpAddress;
    EXPECT_EQ(signature(rsdp, 8), "RSD PTR ");
    EXPECT_EQ(read<std::uint8_t>(rsdp + 15), 2) << "revision";
    EXPECT_EQ(read<std::uint32_t>(rsdp + 20), 36u) << "length";
    EXPECT_EQ(byte_sum(memory_.read_span(rsdp, 20)), 0u) << "ACPI 1.0 checksum";
    EXPECT_EQ(byte_sum(memory_.read_span(rsdp, 36)), 0u) << "extended checksum";
    const std::uint64_t xsdt = read<std::uint64_t>(rsdp + 24);
    EXPECT_EQ(signature(xsdt), "XSDT");
    EXPECT_GE(xsdt, layout::kAcpiTablesAddress);
}

TEST_F(AcpiTables, XsdtPointsAtFadtAndMadt) {
    write_acpi_tables(memory_, 2);
    std::vector<std::string> signatures;
    for (const std::uint64_t address : xsdt_entries()) {
        signatures.push_back(signature(address));
    }
    std::sort(signatures.begin(), signatures.end());
    EXPECT_EQ(signatures, (std::vector<std::string>{"APIC", "FACP"}));
}

TEST_F(AcpiTables, EveryTableChecksumsToZeroAndEndsBeforeTheMpTable) {
    write_acpi_tables(memory_, kMaxVcpus);
    const std::uint64_t xsdt = read<std::uint64_t>(layout::kAcpiRsdpAddress + 24);
    std::vector<std::uint64_t> tables = xsdt_entries();
    tables.push_back(xsdt);
    tables.push_back(read<std::uint64_t>(find_table("FACP") + 140));  // DSDT
    for (const std::uint64_t address : tables) {
        const auto bytes = table(address);
        EXPECT_EQ(byte_sum(bytes), 0u) << signature(address);
        EXPECT_GE(address, layout::kAcpiTablesAddress) << signature(address);
        EXPECT_LE(address + bytes.size(), layout::kMpConfigTableAddress) << signature(address);
    }
}

TEST_F(AcpiTables, FadtDescribesThePm1BlocksAndTheSci) {
    write_acpi_tables(memory_, 1);
    const std::uint64_t fadt = find_table("FACP");
    EXPECT_EQ(read<std::uint32_t>(fadt + 4), 276u) << "ACPI 6 FADT length";
    EXPECT_EQ(read<std::uint8_t>(fadt + 8), 6) << "revision";
    EXPECT_EQ(read<std::uint16_t>(fadt + 46), layout::kAcpiSciIrq) << "SCI_INT";
    EXPECT_EQ(read<std::uint32_t>(fadt + 48), 0u) << "SMI_CMD: already in ACPI mode";
    EXPECT_EQ(read<std::uint32_t>(fadt + 56), layout::kAcpiPm1EventPort) << "PM1a_EVT_BLK";
    EXPECT_EQ(read<std::uint32_t>(fadt + 60), 0u) << "PM1b_EVT_BLK";
    EXPECT_EQ(read<std::uint32_t>(fadt + 64), layout::kAcpiPm1ControlPort) << "PM1a_CNT_BLK";
    EXPECT_EQ(read<std::uint32_t>(fadt + 68), 0u) << "PM1b_CNT_BLK";
    EXPECT_EQ(read<std::uint8_t>(fadt + 88), 4) << "PM1_EVT_LEN";
    EXPECT_EQ(read<std::uint8_t>(fadt + 89), 2) << "PM1_CNT_LEN";

    const auto boot_arch = read<std::uint16_t>(fadt + 109);
    EXPECT_EQ(boot_arch, 1u << 1) << "IAPC_BOOT_ARCH: 8042 only";
    const auto flags = read<std::uint32_t>(fadt + 112);
    EXPECT_TRUE(flags & (1u << 0)) << "WBINVD";
    EXPECT_FALSE(flags & (1u << 4)) << "PWR_BUTTON: the fixed-hardware power button in PM1";
    EXPECT_TRUE(flags & (1u << 5)) << "SLP_BUTTON not fixed hardware";
    EXPECT_FALSE(flags & (1u << 20)) << "HW_REDUCED_ACPI";

    // X_PM1a_EVT_BLK and X_PM1a_CNT_BLK: system I/O generic addresses.
    EXPECT_EQ(read<std::uint8_t>(fadt + 148), 1);
    EXPECT_EQ(read<std::uint8_t>(fadt + 149), 32);
    EXPECT_EQ(read<std::uint64_t>(fadt + 152), layout::kAcpiPm1EventPort);
    EXPECT_EQ(read<std::uint8_t>(fadt + 172), 1);
    EXPECT_EQ(read<std::uint8_t>(fadt + 173), 16);
    EXPECT_EQ(read<std::uint64_t>(fadt + 176), layout::kAcpiPm1ControlPort);
}

TEST_F(AcpiTables, FadtPointsAtDsdtAndFacs) {
    write_acpi_tables(memory_, 1);
    const std::uint64_t fadt = find_table("FACP");
    const std::uint32_t dsdt = read<std::uint32_t>(fadt + 40);
    EXPECT_EQ(read<std::uint64_t>(fadt + 140), dsdt) << "X_DSDT";
    EXPECT_EQ(signature(dsdt), "DSDT");

    const std::uint32_t facs = read<std::uint32_t>(fadt + 36);
    EXPECT_EQ(signature(facs), "FACS");
    EXPECT_EQ(read<std::uint32_t>(facs + 4), 64u);
    EXPECT_EQ(facs % 64, 0u) << "the FACS must be 64-byte aligned";
    EXPECT_EQ(read<std::uint64_t>(fadt + 132), 0u) << "X_FIRMWARE_CTRL unused";
}

TEST_F(AcpiTables, DsdtDefinesS5First) {
    write_acpi_tables(memory_, 1);
    const auto dsdt = table(read<std::uint32_t>(find_table("FACP") + 40));
    const std::uint8_t type = layout::kAcpiS5SleepType;
    // Name(\_S5, Package(4){type, type, Zero, Zero})
    const std::vector<std::uint8_t> s5 = {0x08, '\\', '_',  'S',  '5',  '_',  0x12, 0x08,
                                          0x04, 0x0a, type, 0x0a, type, 0x00, 0x00};
    ASSERT_GT(dsdt.size(), 36 + s5.size());
    EXPECT_TRUE(std::equal(s5.begin(), s5.end(), dsdt.begin() + 36));
}

TEST_F(AcpiTables, DsdtDeclaresThePciHostBridgeInSystemBus) {
    write_acpi_tables(memory_, 1);
    const PciHostBridge bridge = read_dsdt();
    EXPECT_EQ(bridge.names, (std::vector<std::string>{"_HID", "_UID", "_BBN", "_CRS", "_PRT"}));
    EXPECT_EQ(bridge.hid, 0x030ad041u) << "EISAID(\"PNP0A03\"): a PCI host bridge";
    EXPECT_EQ(bridge.uid, 0u);
    EXPECT_EQ(bridge.bbn, 0u);
}

TEST_F(AcpiTables, PciHostBridgeDecodesBusZeroItsWindowsAndConsumesItsConfigPorts) {
    write_acpi_tables(memory_, 1);
    const std::vector<std::uint8_t> resources = read_dsdt().resources;
    std::vector<Resource> found;
    std::size_t at = 0;
    while (at < resources.size() && resources[at] != 0x79) {
        const std::uint8_t tag = resources[at];
        const bool large = tag & 0x80;
        const std::size_t length = large ? little_endian(resources, at + 1, 2) : tag & 0x07;
        const std::size_t body = at + (large ? 3 : 1);
        ASSERT_LE(body + length, resources.size()) << "descriptor at " << at;
        if (tag == 0x47) {  // I/O port: decode, minimum, maximum, alignment, length
            ASSERT_EQ(length, 7u);
            EXPECT_EQ(resources[body], 1) << "16-bit decode";
            const std::uint64_t minimum = little_endian(resources, body + 1, 2);
            EXPECT_EQ(little_endian(resources, body + 3, 2), minimum) << "fixed: maximum = minimum";
            found.push_back({"IO", minimum, resources[body + 6], 0, 0});
        } else if (tag == 0x88 || tag == 0x87) {  // word / dword address space
            const std::size_t field = tag == 0x88 ? 2 : 4;
            ASSERT_EQ(length, 3 + 5 * field);
            const std::uint8_t space = resources[body];
            EXPECT_EQ(resources[body + 1], 0x0c) << "produced, fixed minimum and maximum, positive decode";
            const std::uint64_t minimum = little_endian(resources, body + 3 + field, field);
            const std::uint64_t maximum = little_endian(resources, body + 3 + 2 * field, field);
            EXPECT_EQ(little_endian(resources, body + 3 + 3 * field, field), 0u) << "no translation";
            const std::uint64_t size = little_endian(resources, body + 3 + 4 * field, field);
            EXPECT_EQ(size, maximum - minimum + 1) << "length";
            found.push_back({space == 0   ? "memory"
                             : space == 1 ? "io window"
                                          : "bus numbers",
                             minimum, size, resources[body + 2], field});
        } else {
            ADD_FAILURE() << "unexpected descriptor " << int{tag};
        }
        at = body + length;
    }
    EXPECT_EQ(std::vector<std::uint8_t>(resources.begin() + static_cast<std::ptrdiff_t>(at), resources.end()),
              (std::vector<std::uint8_t>{0x79, 0x00}))
        << "the end tag closes the template";
    EXPECT_EQ(found, (std::vector<Resource>{
                         {"bus numbers", 0, 1, 0, 2},
                         {"IO", layout::kPciConfigAddressPort, 8, 0, 0},
                         {"io window", layout::kPciIoStart, layout::kPciIoSize, 0b11, 2},
                         {"memory", layout::kPciMmioStart, layout::kPciMmioSize, 0b01, 4},
                     }))
        << "the I/O window serves ISA and non-ISA ports; memory is read-write, not cacheable";
}

TEST_F(AcpiTables, PrtRoutesEverySlotsFourPinsToGsis16To23) {
    write_acpi_tables(memory_, 1);
    const std::vector<std::vector<std::uint64_t>> routing = read_dsdt().routing;
    ASSERT_EQ(routing.size(), 31u * 4);
    std::map<std::pair<std::uint64_t, std::uint64_t>, std::uint64_t> gsis;
    for (const std::vector<std::uint64_t>& entry : routing) {
        ASSERT_EQ(entry.size(), 4u);
        EXPECT_EQ(entry[0] & 0xffff, 0xffffu) << "any function of the slot";
        EXPECT_EQ(entry[2], 0u) << "no link device: the source index is the GSI";
        gsis[{entry[0] >> 16, entry[1]}] = entry[3];
    }
    ASSERT_EQ(gsis.size(), routing.size()) << "no slot and pin twice";
    for (std::uint64_t slot = 1; slot < 32; ++slot) {
        EXPECT_EQ(gsis[std::pair(slot, 0)], 16 + slot % 8) << "INTA# of slot " << slot << " as layout.h says";
        for (std::uint64_t pin = 1; pin < 4; ++pin) {
            EXPECT_EQ(gsis[std::pair(slot, pin)], 16 + (slot + pin) % 8) << "slot " << slot << " pin " << pin;
        }
    }
}

// iasl, the ACPICA compiler that Linux's AML interpreter comes from, reads
// the DSDT back without a complaint, and compiling its reading gives the same
// AML: every length, name and integer was encoded as ACPICA expects.
TEST_F(AcpiTables, IaslDisassemblesTheDsdtAndCompilesItBackToTheSameAml) {
    if (std::system("command -v iasl >/dev/null 2>&1") != 0) {
        GTEST_SKIP() << "iasl is not installed (Debian package acpica-tools)";
    }
    write_acpi_tables(memory_, kMaxVcpus);
    const auto dsdt = table(read<std::uint32_t>(find_table("FACP") + 40));
    char pattern[] = "/tmp/acpi-unit-tests-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    const std::filesystem::path directory = pattern;
    std::ofstream(directory / "dsdt.dat", std::ios::binary)
        .write(reinterpret_cast<const char*>(dsdt.data()), static_cast<std::streamsize>(dsdt.size()));

    const std::string in_directory = "cd " + directory.string() + " && ";
    EXPECT_EQ(std::system((in_directory + "iasl -d dsdt.dat > disassemble.log 2>&1").c_str()), 0);
    const std::string disassembly_log = read_text(directory / "disassemble.log");
    EXPECT_EQ(disassembly_log.find("Warning"), std::string::npos) << disassembly_log;
    EXPECT_EQ(disassembly_log.find("Error"), std::string::npos) << disassembly_log;
    const std::string source = read_text(directory / "dsdt.dsl");
    for (const char* expected :
         {"Name (\\_S5, Package (0x04)", "Scope (\\_SB)", "Device (PCI0)", "Name (_HID, EisaId (\"PNP0A03\")",
          "Name (_CRS, ResourceTemplate ()", "WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode",
          "IO (Decode16", "WordIO (ResourceProducer", "DWordMemory (ResourceProducer",
          "Name (_PRT, Package (0x7C)"}) {
        EXPECT_NE(source.find(expected), std::string::npos) << expected << " not in\n" << source;
    }

    // -oa: no optimizations, so that iasl keeps names and integers as they were read.
    EXPECT_EQ(std::system((in_directory + "iasl -oa -p recompiled dsdt.dsl > compile.log 2>&1").c_str()), 0);
    const std::string compile_log = read_text(directory / "compile.log");
    EXPECT_NE(compile_log.find("0 Errors, 0 Warnings, 0 Remarks"), std::string::npos) << compile_log;
    const std::string recompiled_text = read_text(directory / "recompiled.aml");
    const std::vector<std::uint8_t> recompiled(recompiled_text.begin(), recompiled_text.end());
    ASSERT_EQ(recompiled.size(), dsdt.size()) << compile_log;
    EXPECT_TRUE(std::equal(dsdt.begin() + 36, dsdt.end(), recompiled.begin() + 36))
        << "the AML after the table header differs";
    std::filesystem::remove_all(directory);
}

TEST_F(AcpiTables, MadtListsEveryVcpuTheIoApicOverridesAndNmi) {
    constexpr std::uint32_t kVcpus = 5;
    write_acpi_tables(memory_, kVcpus);
    const std::uint64_t madt = find_table("APIC");
    EXPECT_EQ(read<std::uint32_t>(madt + 36), layout::kLapicAddress);
    EXPECT_EQ(read<std::uint32_t>(madt + 40), 1u) << "PCAT_COMPAT";

    std::vector<std::uint32_t> apic_ids;
    int io_apics = 0;
    std::vector<std::pair<std::uint8_t, std::uint32_t>> overrides;
    int nmis = 0;
    const std::uint32_t length = read<std::uint32_t>(madt + 4);
    std::uint32_t offset = 44;
    while (offset < length) {
        const std::uint64_t entry = madt + offset;
        const auto type = read<std::uint8_t>(entry);
        const auto entry_length = read<std::uint8_t>(entry + 1);
        ASSERT_GT(entry_length, 0);
        switch (type) {
        case 0:
            EXPECT_EQ(entry_length, 8);
            EXPECT_EQ(read<std::uint8_t>(entry + 2), read<std::uint8_t>(entry + 3)) << "UID = APIC ID";
            EXPECT_EQ(read<std::uint32_t>(entry + 4), 1u) << "enabled";
            apic_ids.push_back(read<std::uint8_t>(entry + 3));
            break;
        case 1:
            EXPECT_EQ(entry_length, 12);
            EXPECT_EQ(read<std::uint8_t>(entry + 2), kVcpus) << "I/O APIC ID";
            EXPECT_EQ(read<std::uint32_t>(entry + 4), layout::kIoapicAddress);
            EXPECT_EQ(read<std::uint32_t>(entry + 8), 0u) << "GSI base";
            ++io_apics;
            break;
        case 2:
            EXPECT_EQ(entry_length, 10);
            EXPECT_EQ(read<std::uint8_t>(entry + 2), 0) << "ISA bus";
            overrides.emplace_back(read<std::uint8_t>(entry + 3), read<std::uint32_t>(entry + 4));
            if (read<std::uint8_t>(entry + 3) == layout::kAcpiSciIrq) {
                EXPECT_EQ(read<std::uint16_t>(entry + 8), 0x0d) << "SCI: level, active high";
            }
            break;
        case 4:
            EXPECT_EQ(entry_length, 6);
            EXPECT_EQ(read<std::uint8_t>(entry + 2), 0xff) << "all processors";
            EXPECT_EQ(read<std::uint8_t>(entry + 5), 1) << "LINT1";
            ++nmis;
            break;
        default:
            ADD_FAILURE() << "unexpected MADT entry type " << int{type};
        }
        offset += entry_length;
    }
    EXPECT_EQ(offset, length) << "entries fill the table exactly";
    EXPECT_EQ(apic_ids, (std::vector<std::uint32_t>{0, 1, 2, 3, 4}));
    EXPECT_EQ(io_apics, 1);
    EXPECT_EQ(
        overrides,
        (std::vector<std::pair<std::uint8_t, std::uint32_t>>{{layout::kAcpiSciIrq, layout::kAcpiSciIrq}}));
    EXPECT_EQ(nmis, 1);
}

TEST_F(AcpiTables, TooManyVcpusAreRefusedBeforeAnythingIsWritten) {
    try {
        write_acpi_tables(memory_, kMaxVcpus + 1);
        FAIL() << "255 vCPUs accepted";
    } catch (const std::invalid_argument& error) {
        EXPECT_STREQ(error.what(), "ACPI MADT: 255 vCPUs exceed the 254 that 8-bit APIC IDs "
                                   "can number besides the I/O APIC");
    }
    EXPECT_TRUE(std::all_of(ram_.begin(), ram_.end(), [](std::uint8_t byte) { return byte == 0; }));
    EXPECT_THROW(write_acpi_tables(memory_, 0), std::invalid_argument);
}

TEST(AcpiTablesMemory, BiosAreaOutsideGuestRamIsAnError) {
    std::vector<std::uint8_t> ram(layout::kEbdaStart);
    auto memory = memory::GuestMemory::over({{0, ram.size(), ram.data()}});
    EXPECT_THROW(write_acpi_tables(memory, 1), memory::GuestMemoryError);
}

}  // namespace
}  // namespace vim::vmm::acpi
