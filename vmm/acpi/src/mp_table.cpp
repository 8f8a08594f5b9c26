#include "vmm/acpi/mp_table.h"

#include <stdexcept>
#include <string>
#include <string_view>

#include "table_format.h"
#include "vmm/acpi/tables.h"
#include "vmm/boot/layout.h"

namespace vim::vmm::acpi {
namespace {

namespace layout = boot::layout;
using namespace detail;

constexpr std::uint8_t kSpecRevision = 4;                // MPS 1.4
constexpr std::string_view kOemId = "VIMVMM  ";          // 8 bytes
constexpr std::string_view kProductId = "VIMVMM      ";  // 12 bytes

// Floating pointer: "_MP_", configuration table address, length in 16-byte
// units, revision, checksum, five feature bytes.
constexpr std::uint8_t kFloatingPointerParagraphs = 1;
constexpr std::size_t kFloatingPointerChecksumOffset = 10;

// Configuration table: a header, then entries of two sizes.
constexpr std::size_t kHeaderSize = 44;
constexpr std::size_t kProcessorEntrySize = 20;
constexpr std::size_t kOtherEntrySize = 8;
constexpr std::size_t kBaseLengthOffset = 4;
constexpr std::size_t kHeaderChecksumOffset = 7;
constexpr std::size_t kEntryCountOffset = 34;

constexpr std::uint8_t kEntryProcessor = 0;
constexpr std::uint8_t kEntryBus = 1;
constexpr std::uint8_t kEntryIoApic = 2;
constexpr std::uint8_t kEntryIoInterrupt = 3;
constexpr std::uint8_t kEntryLocalInterrupt = 4;

// KVM's local APIC reports version 0x14 (integrated), its I/O APIC 0x11.
constexpr std::uint8_t kLocalApicVersion = 0x14;
constexpr std::uint8_t kIoApicVersion = 0x11;
constexpr std::uint8_t kCpuEnabled = 1u << 0;
constexpr std::uint8_t kCpuBootProcessor = 1u << 1;
constexpr std::uint8_t kIoApicEnabled = 1u << 0;

// PCI's bus ID is its bus number: Linux's IO_APIC_get_PCI_irq_vector looks
// for the guest's PCI bus number among the interrupt entries' source bus IDs
// (MPS 1.4 asks for the same). ISA takes the next ID.
constexpr std::uint8_t kBusPci = 0;
constexpr std::uint8_t kBusIsa = 1;
constexpr std::uint32_t kBusEntries = 2;
constexpr std::uint32_t kPciInterruptEntries = (layout::kPciMaxSlots - kPciFirstDeviceSlot) * kPciIntxPins;

constexpr std::uint8_t kIsaIrqs = 16;
constexpr std::uint8_t kInterruptVectored = 0;  // "INT": the APIC supplies the vector
constexpr std::uint8_t kInterruptNmi = 1;
constexpr std::uint8_t kInterruptExtInt = 3;  // the 8259's own vector

static_assert(layout::kMpFloatingPointerAddress % 16 == 0, "Linux scans on 16-byte boundaries");
static_assert(layout::kMpConfigTableAddress >= layout::kBiosAreaStart &&
              layout::kMpConfigTableAddress < layout::kBiosAreaEnd);

std::vector<std::uint8_t> configuration_table(std::uint32_t vcpu_count) {
    Bytes table;
    table.text("PCMP");
    table.u16(0);  // base table length, set below
    table.u8(kSpecRevision);
    table.u8(0);  // checksum, set below
    table.text(kOemId);
    table.text(kProductId);
    table.u32(0);  // no OEM table
    table.u16(0);
    table.u16(0);  // entry count, set below
    table.u32(static_cast<std::uint32_t>(layout::kLapicAddress));
    table.u16(0);  // no extended entries
    table.u8(0);
    table.u8(0);
    std::uint16_t entries = 0;

    for (std::uint32_t index = 0; index < vcpu_count; ++index, ++entries) {
        table.u8(kEntryProcessor);
        table.u8(static_cast<std::uint8_t>(index));  // APIC ID, as CPUID and the MADT say
        table.u8(kLocalApicVersion);
        table.u8(kCpuEnabled | (index == 0 ? kCpuBootProcessor : 0));
        // CPU signature and feature flags: Linux reads neither, and the
        // guest's CPUID is the authority on both.
        table.u32(0);
        table.u32(0);
        table.zeros(8);
    }
    // In order of bus ID, as MPS 1.4 asks.
    for (const auto& [id, type] : {std::pair{kBusPci, "PCI   "}, std::pair{kBusIsa, "ISA   "}}) {
        table.u8(kEntryBus);
        table.u8(id);
        table.text(type);
        ++entries;
    }

    const auto ioapic_id = static_cast<std::uint8_t>(vcpu_count);  // the first ID no vCPU uses
    table.u8(kEntryIoApic);
    table.u8(ioapic_id);
    table.u8(kIoApicVersion);
    table.u8(kIoApicEnabled);
    table.u32(static_cast<std::uint32_t>(layout::kIoapicAddress));
    ++entries;

    // Identity-mapped as in the MADT (KVM routes the PIT's IRQ0 to pin 0);
    // the SCI is level-triggered there too.
    for (std::uint8_t irq = 0; irq < kIsaIrqs; ++irq, ++entries) {
        table.u8(kEntryIoInterrupt);
        table.u8(kInterruptVectored);
        table.u16(irq == layout::kAcpiSciIrq ? kIntiActiveHighLevel : kIntiConforming);
        table.u8(kBusIsa);
        table.u8(irq);
        table.u8(ioapic_id);
        table.u8(irq);  // I/O APIC pin
    }
    // Every slot's INTA#-INTD#, present device or not, as the DSDT's _PRT.
    for (std::uint32_t slot = kPciFirstDeviceSlot; slot < layout::kPciMaxSlots; ++slot) {
        for (std::uint32_t pin = 0; pin < kPciIntxPins; ++pin, ++entries) {
            table.u8(kEntryIoInterrupt);
            table.u8(kInterruptVectored);
            table.u16(kIntiActiveLowLevel);
            table.u8(kBusPci);
            table.u8(static_cast<std::uint8_t>((slot << 2) | pin));  // the PCI bus's IRQ naming
            table.u8(ioapic_id);
            table.u8(static_cast<std::uint8_t>(pci_intx_gsi(slot, pin)));
        }
    }
    // The PC wiring of every local APIC: the 8259 on LINT0, NMI on LINT1.
    for (const auto& [type, pin] : {std::pair{kInterruptExtInt, kLint0}, std::pair{kInterruptNmi, kLint1}}) {
        table.u8(kEntryLocalInterrupt);
        table.u8(type);
        table.u16(kIntiConforming);
        table.u8(kBusIsa);
        table.u8(0);
        table.u8(kAllLocalApics);
        table.u8(pin);
        ++entries;
    }

    std::vector<std::uint8_t>& data = table.data();
    table.set_u16(kBaseLengthOffset, static_cast<std::uint16_t>(data.size()));
    table.set_u16(kEntryCountOffset, entries);
    data[kHeaderChecksumOffset] = checksum(data);
    return std::move(data);
}

std::vector<std::uint8_t> floating_pointer(std::uint64_t table_address) {
    Bytes pointer;
    pointer.text("_MP_");
    pointer.u32(static_cast<std::uint32_t>(table_address));
    pointer.u8(kFloatingPointerParagraphs);
    pointer.u8(kSpecRevision);
    pointer.u8(0);     // checksum, set below
    pointer.zeros(5);  // feature bytes: a configuration table, no IMCR (virtual wire mode)
    std::vector<std::uint8_t>& data = pointer.data();
    data[kFloatingPointerChecksumOffset] = checksum(data);
    return std::move(data);
}

}  // namespace

void write_mp_table(memory::GuestMemory& memory, std::uint32_t vcpu_count) {
    if (vcpu_count == 0 || vcpu_count > kMaxVcpus) {
        throw std::invalid_argument("MP table: " + std::to_string(vcpu_count) + " vCPUs; it numbers 1 to " +
                                    std::to_string(kMaxVcpus));
    }
    const std::vector<std::uint8_t> table = configuration_table(vcpu_count);
    // Buses, I/O APIC, ISA and PCI interrupts and two local interrupts besides the CPUs.
    static_assert(layout::kBiosAreaEnd - layout::kMpConfigTableAddress >=
                      kHeaderSize + kMaxVcpus * kProcessorEntrySize +
                          (kBusEntries + 1 + kIsaIrqs + kPciInterruptEntries + 2) * kOtherEntrySize,
                  "the largest configuration table fits below the BIOS area's end");
    memory.write(layout::kMpConfigTableAddress, table);
    memory.write(layout::kMpFloatingPointerAddress, floating_pointer(layout::kMpConfigTableAddress));
}

}  // namespace vim::vmm::acpi
