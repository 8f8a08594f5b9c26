#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "low_memory.h"
#include "vmm/acpi/mp_table.h"
#include "vmm/acpi/tables.h"
#include "vmm/boot/layout.h"

namespace vmm::acpi {
namespace {

namespace layout = boot::layout;

// Reads the table back the way Linux's mpparse.c does: scan for the floating
// pointer, check both checksums, then walk the entries by their types.
class MpTable : public testing::LowMemory {
protected:
    // Linux's three scan regions, in its order, on 16-byte steps; returns
    // the address of the first valid floating pointer and how many steps it took.
    std::pair<std::uint64_t, int> scan() const {
        int steps = 0;
        for (const auto& [base, length] : {std::pair<std::uint64_t, std::uint64_t>{0, 0x400},
                                          {639 * 0x400, 0x400}, {0xf0000, 0x10000}}) {
            for (std::uint64_t address = base; address < base + length; address += 16, ++steps) {
                if (text(address, 4) == "_MP_" && read<std::uint8_t>(address + 8) == 1 &&
                    byte_sum(memory_.read_span(address, 16)) == 0 &&
                    (read<std::uint8_t>(address + 9) == 1 || read<std::uint8_t>(address + 9) == 4)) {
                    return {address, steps};
                }
            }
        }
        return {0, steps};
    }

    struct Entries {
        std::vector<std::uint8_t> cpu_apic_ids;
        std::vector<std::uint8_t> cpu_flags;
        std::vector<std::uint8_t> cpu_apic_versions;
        std::vector<std::string> buses;
        std::vector<std::uint8_t> ioapic_ids;
        std::vector<std::uint32_t> ioapic_addresses;
        std::map<std::uint8_t, std::pair<std::uint8_t, std::uint16_t>> irq_to_pin_and_flags;
        std::vector<std::uint8_t> irq_target_ioapics;
        std::vector<std::pair<std::uint8_t, std::uint8_t>> local_type_and_pin;
    };

    Entries entries(std::uint64_t table) const {
        Entries found;
        const std::uint16_t length = read<std::uint16_t>(table + 4);
        const std::uint16_t count = read<std::uint16_t>(table + 34);
        std::uint64_t at = table + 44;
        for (std::uint16_t index = 0; index < count; ++index) {
            switch (read<std::uint8_t>(at)) {
                case 0:
                    found.cpu_apic_ids.push_back(read<std::uint8_t>(at + 1));
                    found.cpu_apic_versions.push_back(read<std::uint8_t>(at + 2));
                    found.cpu_flags.push_back(read<std::uint8_t>(at + 3));
                    at += 20;
                    break;
                case 1:
                    found.buses.push_back(text(at + 2, 6));
                    at += 8;
                    break;
                case 2:
                    found.ioapic_ids.push_back(read<std::uint8_t>(at + 1));
                    EXPECT_EQ(read<std::uint8_t>(at + 3) & 1, 1) << "I/O APIC enabled";
                    found.ioapic_addresses.push_back(read<std::uint32_t>(at + 4));
                    at += 8;
                    break;
                case 3:
                    EXPECT_EQ(read<std::uint8_t>(at + 1), 0) << "vectored interrupt";
                    EXPECT_EQ(read<std::uint8_t>(at + 4), 0) << "from the ISA bus";
                    found.irq_to_pin_and_flags[read<std::uint8_t>(at + 5)] = {read<std::uint8_t>(at + 7),
                                                                              read<std::uint16_t>(at + 2)};
                    found.irq_target_ioapics.push_back(read<std::uint8_t>(at + 6));
                    at += 8;
                    break;
                case 4:
                    EXPECT_EQ(read<std::uint8_t>(at + 6), 0xff) << "every local APIC";
                    found.local_type_and_pin.push_back({read<std::uint8_t>(at + 1), read<std::uint8_t>(at + 7)});
                    at += 8;
                    break;
                default:
                    ADD_FAILURE() << "unknown entry type " << int(read<std::uint8_t>(at)) << " at " << at;
                    return found;
            }
        }
        EXPECT_EQ(at, table + length) << "the entries fill the base table exactly";
        return found;
    }

};

TEST_F(MpTable, LinuxFindsTheFloatingPointerAtTheStartOfItsSecondScanRegion) {
    write_mp_table(memory_, 2);
    const auto [address, steps] = scan();
    EXPECT_EQ(address, layout::kMpFloatingPointerAddress);
    EXPECT_EQ(steps, 0x400 / 16) << "only the first KiB is scanned before it";
    EXPECT_EQ(read<std::uint8_t>(address + 9), 4) << "MPS 1.4";
    EXPECT_EQ(read<std::uint8_t>(address + 11), 0) << "not a default configuration: a table follows";
    EXPECT_EQ(read<std::uint32_t>(address + 4), layout::kMpConfigTableAddress);
}

TEST_F(MpTable, ConfigurationTableHeaderChecksumsToZero) {
    write_mp_table(memory_, kMaxVcpus);
    const std::uint64_t table = layout::kMpConfigTableAddress;
    EXPECT_EQ(text(table, 4), "PCMP");
    EXPECT_EQ(read<std::uint8_t>(table + 6), 4) << "MPS 1.4";
    const std::uint16_t length = read<std::uint16_t>(table + 4);
    EXPECT_LE(table + length, layout::kBiosAreaEnd);
    EXPECT_EQ(byte_sum(memory_.read_span(table, length)), 0u);
    EXPECT_EQ(read<std::uint32_t>(table + 36), layout::kLapicAddress);
    EXPECT_EQ(read<std::uint16_t>(table + 40), 0) << "no extended entries";
}

TEST_F(MpTable, ProcessorsMatchTheMadtAndVcpuZeroBoots) {
    write_mp_table(memory_, 4);
    const Entries found = entries(layout::kMpConfigTableAddress);
    EXPECT_EQ(found.cpu_apic_ids, (std::vector<std::uint8_t>{0, 1, 2, 3}));
    EXPECT_EQ(found.cpu_flags, (std::vector<std::uint8_t>{0b11, 0b01, 0b01, 0b01})) << "enabled; BSP";
    EXPECT_TRUE(std::all_of(found.cpu_apic_versions.begin(), found.cpu_apic_versions.end(),
                            [](std::uint8_t version) { return version == 0x14; }));
}

TEST_F(MpTable, IsaIrqsAreIdentityMappedOnTheIoApicAfterTheCpus) {
    write_mp_table(memory_, 3);
    const Entries found = entries(layout::kMpConfigTableAddress);
    EXPECT_EQ(found.buses, (std::vector<std::string>{"ISA   "}));
    EXPECT_EQ(found.ioapic_ids, (std::vector<std::uint8_t>{3}));
    EXPECT_EQ(found.ioapic_addresses, (std::vector<std::uint32_t>{layout::kIoapicAddress}));
    ASSERT_EQ(found.irq_to_pin_and_flags.size(), 16u);
    for (const auto& [irq, pin_and_flags] : found.irq_to_pin_and_flags) {
        EXPECT_EQ(pin_and_flags.first, irq);
        EXPECT_EQ(pin_and_flags.second, irq == layout::kAcpiSciIrq ? 0b1101 : 0) << "IRQ " << int(irq);
    }
    EXPECT_TRUE(std::all_of(found.irq_target_ioapics.begin(), found.irq_target_ioapics.end(),
                            [](std::uint8_t id) { return id == 3; }));
    EXPECT_EQ(found.local_type_and_pin,
              (std::vector<std::pair<std::uint8_t, std::uint8_t>>{{3, 0}, {1, 1}})) << "ExtINT LINT0, NMI LINT1";
}

TEST_F(MpTable, DoesNotOverlapTheAcpiTables) {
    write_acpi_tables(memory_, kMaxVcpus);
    const std::vector<std::uint8_t> acpi(ram_.begin(), ram_.end());
    write_mp_table(memory_, kMaxVcpus);
    for (std::size_t address = 0; address < ram_.size(); ++address) {
        if (acpi[address] != 0) {
            ASSERT_EQ(ram_[address], acpi[address]) << "ACPI byte overwritten at " << address;
        }
    }
}

TEST_F(MpTable, RejectsNoVcpusAndMoreThanApicIdsCanNumberWritingNothing) {
    try {
        write_mp_table(memory_, kMaxVcpus + 1);
        FAIL() << "255 vCPUs accepted";
    } catch (const std::invalid_argument& error) {
        EXPECT_STREQ(error.what(), "MP table: 255 vCPUs; it numbers 1 to 254");
    }
    EXPECT_THROW(write_mp_table(memory_, 0), std::invalid_argument);
    EXPECT_TRUE(std::all_of(ram_.begin(), ram_.end(), [](std::uint8_t byte) { return byte == 0; }));
}

TEST(MpTableMemory, TablePlaceOutsideGuestRamIsAnError) {
    std::vector<std::uint8_t> ram(layout::kEbdaStart);
    auto memory = memory::GuestMemory::over({{0, ram.size(), ram.data()}});
    EXPECT_THROW(write_mp_table(memory, 1), memory::GuestMemoryError);
}

}  // namespace
}  // namespace vmm::acpi
