#include "vmm/acpi/mp_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "low_memory.h"
#include "vmm/acpi/tables.h"
#include "vmm/boot/layout.h"

namespace vim::vmm::acpi {
namespace {

namespace layout = boot::layout;

// The bus IDs the table gives: PCI's must be its bus number, 0, because
// Linux's IO_APIC_get_PCI_irq_vector matches the PCI bus number against the
// interrupt entries' source bus IDs.
constexpr std::uint8_t kBusPci = 0;
constexpr std::uint8_t kBusIsa = 1;

struct Interrupt {
    std::uint16_t flags;
    std::uint8_t source_bus;
    std::uint8_t source_irq;
    std::uint8_t ioapic;
    std::uint8_t pin;
};

// Reads the table back the way Linux's mpparse.c does: scan for the floating
// pointer, check both checksums, then walk the entries by their types.
class MpTable : public testing::LowMemory {
protected:
    // Linux's three scan regions, in its order, on 16-byte steps; returns
    // the address of the first valid floating pointer and how many steps it took.
    std::pair<std::uint64_t, int> scan() const {
        int steps = 0;
        for (const auto& [base, length] :
             {std::pair<std::uint64_t, std::uint64_t>{0, 0x400}, {639 * 0x400, 0x400}, {0xf0000, 0x10000}}) {
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
        std::vector<std::pair<std::uint8_t, std::string>> buses;  // ID and type
        std::vector<std::uint8_t> ioapic_ids;
        std::vector<std::uint32_t> ioapic_addresses;
        std::vector<Interrupt> interrupts;
        std::vector<std::pair<std::uint8_t, std::uint8_t>> local_type_and_pin;
        std::vector<std::uint8_t> local_source_buses;
    };

    // The I/O interrupt entries from one bus: its IRQ (a PCI device's is
    // slot << 2 | pin) to the I/O APIC pin and the flags.
    using PinAndFlags = std::pair<std::uint8_t, std::uint16_t>;
    static std::map<std::uint8_t, PinAndFlags> from_bus(const Entries& found, std::uint8_t bus) {
        std::map<std::uint8_t, PinAndFlags> irq_to_pin_and_flags;
        for (const Interrupt& interrupt : found.interrupts) {
            if (interrupt.source_bus != bus) {
                continue;
            }
            const PinAndFlags pin_and_flags{interrupt.pin, interrupt.flags};
            const bool first = irq_to_pin_and_flags.insert({interrupt.source_irq, pin_and_flags}).second;
            EXPECT_TRUE(first) << "bus " << int{bus} << " IRQ " << int{interrupt.source_irq} << " twice";
        }
        return irq_to_pin_and_flags;
    }

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
                found.buses.emplace_back(read<std::uint8_t>(at + 1), text(at + 2, 6));
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
                found.interrupts.push_back({read<std::uint16_t>(at + 2), read<std::uint8_t>(at + 4),
                                            read<std::uint8_t>(at + 5), read<std::uint8_t>(at + 6),
                                            read<std::uint8_t>(at + 7)});
                at += 8;
                break;
            case 4:
                EXPECT_EQ(read<std::uint8_t>(at + 6), 0xff) << "every local APIC";
                found.local_type_and_pin.push_back({read<std::uint8_t>(at + 1), read<std::uint8_t>(at + 7)});
                found.local_source_buses.push_back(read<std::uint8_t>(at + 4));
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
    EXPECT_EQ(read<std::uint16_t>(table + 34), kMaxVcpus + 2 + 1 + 16 + 31 * 4 + 2)
        << "CPUs, buses, I/O APIC, ISA and PCI interrupts, local interrupts";
}

TEST_F(MpTable, ProcessorsMatchTheMadtAndVcpuZeroBoots) {
    write_mp_table(memory_, 4);
    const Entries found = entries(layout::kMpConfigTableAddress);
    EXPECT_EQ(found.cpu_apic_ids, (std::vector<std::uint8_t>{0, 1, 2, 3}));
    EXPECT_EQ(found.cpu_flags, (std::vector<std::uint8_t>{0b11, 0b01, 0b01, 0b01})) << "enabled; BSP";
    EXPECT_TRUE(std::all_of(found.cpu_apic_versions.begin(), found.cpu_apic_versions.end(),
                            [](std::uint8_t version) { return version == 0x14; }));
}

TEST_F(MpTable, BusZeroIsPciAndBusOneIsa) {
    write_mp_table(memory_, 1);
    const Entries found = entries(layout::kMpConfigTableAddress);
    EXPECT_EQ(found.buses,
              (std::vector<std::pair<std::uint8_t, std::string>>{{kBusPci, "PCI   "}, {kBusIsa, "ISA   "}}));
}

TEST_F(MpTable, IsaIrqsAreIdentityMappedOnTheIoApicAfterTheCpus) {
    write_mp_table(memory_, 3);
    const Entries found = entries(layout::kMpConfigTableAddress);
    EXPECT_EQ(found.ioapic_ids, (std::vector<std::uint8_t>{3}));
    EXPECT_EQ(found.ioapic_addresses, (std::vector<std::uint32_t>{layout::kIoapicAddress}));
    const auto isa = from_bus(found, kBusIsa);
    ASSERT_EQ(isa.size(), 16u);
    for (const auto& [irq, pin_and_flags] : isa) {
        EXPECT_EQ(pin_and_flags.first, irq);
        EXPECT_EQ(pin_and_flags.second, irq == layout::kAcpiSciIrq ? 0b1101 : 0) << "IRQ " << int(irq);
    }
    EXPECT_TRUE(std::all_of(found.interrupts.begin(), found.interrupts.end(),
                            [](const Interrupt& interrupt) { return interrupt.ioapic == 3; }));
    EXPECT_EQ(found.local_type_and_pin, (std::vector<std::pair<std::uint8_t, std::uint8_t>>{{3, 0}, {1, 1}}))
        << "ExtINT LINT0, NMI LINT1";
    EXPECT_EQ(found.local_source_buses, (std::vector<std::uint8_t>{kBusIsa, kBusIsa}));
}

TEST_F(MpTable, EverySlotsFourPinsReachGsis16To23LevelTriggeredActiveLowAsThePrtSays) {
    write_mp_table(memory_, 2);
    const Entries found = entries(layout::kMpConfigTableAddress);
    const auto pci = from_bus(found, kBusPci);
    EXPECT_EQ(pci.size(), 31u * 4);
    EXPECT_EQ(found.interrupts.size(), 16 + 31u * 4) << "no entries from other buses";
    for (unsigned slot = 1; slot < 32; ++slot) {
        for (unsigned pin = 0; pin < 4; ++pin) {
            const auto irq = static_cast<std::uint8_t>(slot << 2 | pin);
            ASSERT_TRUE(pci.contains(irq)) << "slot " << slot << " pin " << pin;
            EXPECT_EQ(pci.at(irq).first, 16 + (slot + pin) % 8) << "slot " << slot << " pin " << pin;
            EXPECT_EQ(pci.at(irq).second, 0b1111) << "level-triggered, active low";
        }
    }
    EXPECT_EQ(pci.at(5 << 2).first, 16 + 5) << "INTA# of slot S on GSI 16 + S % 8, as layout.h wires it";
    EXPECT_EQ(pci.at(13 << 2).first, 16 + 5);
    EXPECT_FALSE(pci.contains(0)) << "slot 0 is the host bridge";
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
}  // namespace vim::vmm::acpi
