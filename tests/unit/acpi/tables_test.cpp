#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "low_memory.h"
#include "vmm/acpi/tables.h"
#include "vmm/boot/layout.h"

namespace vmm::acpi {
namespace {

namespace layout = boot::layout;

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

TEST_F(AcpiTables, DsdtDefinesS5) {
    write_acpi_tables(memory_, 1);
    const auto dsdt = table(read<std::uint32_t>(find_table("FACP") + 40));
    const std::uint8_t type = layout::kAcpiS5SleepType;
    // Name(\_S5, Package(4){type, type, 0, 0})
    const std::vector<std::uint8_t> s5 = {0x08, '\\', '_', 'S', '5', '_', 0x12, 0x0a, 0x04,
                                          0x0a, type, 0x0a, type, 0x0a, 0x00, 0x0a, 0x00};
    EXPECT_NE(std::search(dsdt.begin(), dsdt.end(), s5.begin(), s5.end()), dsdt.end());
    EXPECT_EQ(dsdt.size(), 36 + s5.size());
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
    EXPECT_EQ(overrides, (std::vector<std::pair<std::uint8_t, std::uint32_t>>{
                             {layout::kAcpiSciIrq, layout::kAcpiSciIrq}}));
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
}  // namespace vmm::acpi
