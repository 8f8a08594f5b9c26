#include "vmm/acpi/tables.h"

#include <cstdio>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "aml.h"
#include "table_format.h"
#include "vmm/boot/layout.h"
#include "vmm/sys/hex.h"

namespace vim::vmm::acpi {
namespace {

namespace layout = boot::layout;

// Identification every table carries in its header.
constexpr std::string_view kOemId = "VIMVMM";         // 6 bytes
constexpr std::string_view kOemTableId = "VIMVMM  ";  // 8 bytes
constexpr std::string_view kCreatorId = "VIMV";       // 4 bytes
constexpr std::uint32_t kOemRevision = 1;
constexpr std::uint32_t kCreatorRevision = 1;

// System description table header: signature, length, revision, checksum, ...
constexpr std::size_t kLengthOffset = 4;
constexpr std::size_t kChecksumOffset = 9;

// Table revisions of ACPI 6.5 (FADT 6.5, MADT 5); DSDT revision 2 makes AML
// integers 64-bit.
constexpr std::uint8_t kXsdtRevision = 1;
constexpr std::uint8_t kFadtRevision = 6;
constexpr std::uint8_t kFadtMinorRevision = 5;
constexpr std::uint8_t kDsdtRevision = 2;
constexpr std::uint8_t kMadtRevision = 5;

constexpr std::uint8_t kRsdpRevision = 2;
constexpr std::uint32_t kRsdpSize = 36;
// The ACPI 1.0 checksum covers only the first 20 bytes of the RSDP.
constexpr std::size_t kRsdpV1Size = 20;
constexpr std::size_t kRsdpChecksumOffset = 8;
constexpr std::size_t kRsdpExtendedChecksumOffset = 32;

constexpr std::uint32_t kFacsSize = 64;
constexpr std::uint64_t kFacsAlignment = 64;
constexpr std::uint8_t kFacsVersion = 2;
constexpr std::uint64_t kTableAlignment = 16;

// Generic Address Structure fields.
constexpr std::uint8_t kAddressSpaceSystemIo = 1;
constexpr std::uint8_t kAccessSizeWord = 2;
constexpr std::size_t kGenericAddressSize = 12;

constexpr std::uint8_t kPm1EventLength = 4;  // PM1 status + PM1 enable, 16 bits each
constexpr std::uint8_t kPm1ControlLength = 2;

// FADT Flags. PWR_BUTTON (bit 4) stays clear: the power button is the
// fixed-hardware one in PM1 (PWRBTN_STS/PWRBTN_EN, raising the SCI), which
// the VMM's PM1 event block emulates so the host can ask for a graceful
// shutdown without any AML.
constexpr std::uint32_t kFadtWbinvd = 1u << 0;
// Set: there is no fixed-hardware sleep button (and no control-method one).
constexpr std::uint32_t kFadtSleepButtonNotFixed = 1u << 5;
// IAPC_BOOT_ARCH: without this bit Linux marks the i8042 absent and never
// probes it, losing keyboard reset and Ctrl-Alt-Del.
constexpr std::uint16_t kBootArch8042 = 1u << 1;
// Latencies above these limits say the C2 / C3 states do not exist.
constexpr std::uint16_t kNoC2Latency = 101;
constexpr std::uint16_t kNoC3Latency = 1001;

// MADT.
constexpr std::uint32_t kMadtPcatCompat = 1u << 0;  // there are 8259s to mask
constexpr std::uint8_t kMadtLocalApic = 0;
constexpr std::uint8_t kMadtIoApic = 1;
constexpr std::uint8_t kMadtInterruptOverride = 2;
constexpr std::uint8_t kMadtLocalApicNmi = 4;
constexpr std::uint8_t kMadtLocalApicLength = 8;
constexpr std::uint8_t kMadtIoApicLength = 12;
constexpr std::uint8_t kMadtInterruptOverrideLength = 10;
constexpr std::uint8_t kMadtLocalApicNmiLength = 6;
constexpr std::uint32_t kLocalApicEnabled = 1u << 0;

// The Bus field of an Interrupt Source Override: 0, meaning ISA, always.
constexpr std::uint8_t kMadtBusIsa = 0;

// The PCI host bridge's configuration mechanism #1 ports: address, then data.
constexpr std::uint16_t kPciConfigPortCount = layout::kPciConfigDataPort + 4 - layout::kPciConfigAddressPort;
// _PRT's Address field: the slot (device number) in the high word; 0xFFFF in
// the low one says "any function".
constexpr std::uint32_t kPrtAnyFunction = 0xffff;
// _PRT's Source field: Zero says the Source Index is a GSI, not a link device's index.
constexpr std::uint64_t kPrtGsiSource = 0;

static_assert(layout::kAcpiRsdpAddress % 16 == 0, "Linux scans for the RSDP on 16-byte boundaries");
static_assert(layout::kAcpiRsdpAddress + kRsdpSize <= layout::kAcpiTablesAddress,
              "the RSDP overlaps the tables");
static_assert(layout::kLapicAddress <= UINT32_MAX && layout::kIoapicAddress <= UINT32_MAX,
              "the MADT holds 32-bit APIC addresses");
static_assert(layout::kBiosAreaEnd <= UINT32_MAX, "FADT's 32-bit pointers must reach the tables");

using sys::hex;
using namespace detail;

Bytes begin_table(std::string_view signature, std::uint8_t revision) {
    Bytes table;
    table.text(signature);
    table.u32(0);  // length, set by finish_table
    table.u8(revision);
    table.u8(0);  // checksum, set by finish_table
    table.text(kOemId);
    table.text(kOemTableId);
    table.u32(kOemRevision);
    table.text(kCreatorId);
    table.u32(kCreatorRevision);
    return table;
}

std::vector<std::uint8_t> finish_table(Bytes table) {
    std::vector<std::uint8_t>& data = table.data();
    table.set_u32(kLengthOffset, static_cast<std::uint32_t>(data.size()));
    data[kChecksumOffset] = checksum(data);
    return std::move(data);
}

void io_register(Bytes& table, std::uint16_t port, std::uint8_t length) {
    table.u8(kAddressSpaceSystemIo);
    table.u8(static_cast<std::uint8_t>(length * 8));  // bit width
    table.u8(0);                                      // bit offset
    table.u8(kAccessSizeWord);
    table.u64(port);
}

void no_register(Bytes& table) { table.zeros(kGenericAddressSize); }

// The FACS is mandatory unless the FADT says "hardware-reduced": it holds the
// global lock and waking vector, and the guest's ACPICA dereferences it.
std::vector<std::uint8_t> facs() {
    Bytes table;
    table.text("FACS");
    table.u32(kFacsSize);
    table.u32(0);  // hardware signature
    table.u32(0);  // firmware waking vector: no S3, so never used
    table.u32(0);  // global lock
    table.u32(0);  // flags: no S4BIOS, no 64-bit wake
    table.u64(0);  // X firmware waking vector
    table.u8(kFacsVersion);
    table.zeros(3);
    table.u32(0);  // OSPM flags
    table.zeros(24);
    return std::move(table.data());
}

// \_S5 lets the guest power off: Linux's poweroff evaluates it and writes
// SLP_TYP | SLP_EN to the PM1a control block. Its elements are SLP_TYP for
// PM1a and for PM1b, then two reserved zeros.
aml::Aml sleep_state_s5() {
    const std::uint64_t type = layout::kAcpiS5SleepType;
    return aml::name(
        "\\_S5", aml::package({aml::integer(type), aml::integer(type), aml::integer(0), aml::integer(0)}));
}

// The ranges the host bridge decodes for the devices behind it, and its own
// configuration ports, which Linux's x86 PCI code finds here and drops from
// the windows.
aml::Aml pci_host_bridge_resources() {
    return aml::resource_template({
        aml::resource::word_bus_number(0, 0),
        aml::resource::io(layout::kPciConfigAddressPort, kPciConfigPortCount),
        aml::resource::word_io(layout::kPciIoStart, layout::kPciIoSize),
        aml::resource::dword_memory(static_cast<std::uint32_t>(layout::kPciMmioStart), layout::kPciMmioSize),
    });
}

// _PRT: every device slot's INTA#-INTD# to a GSI, as detail::pci_intx_gsi
// wires them. Static entries: there are no link devices to program.
aml::Aml pci_interrupt_routing() {
    std::vector<aml::Aml> entries;
    for (std::uint32_t slot = kPciFirstDeviceSlot; slot < layout::kPciMaxSlots; ++slot) {
        for (std::uint32_t pin = 0; pin < kPciIntxPins; ++pin) {
            entries.push_back(aml::package({
                aml::integer((slot << 16) | kPrtAnyFunction),
                aml::integer(pin),
                aml::integer(kPrtGsiSource),
                aml::integer(pci_intx_gsi(slot, pin)),
            }));
        }
    }
    return aml::package(entries);
}

// Linux scans PCI with ACPI only below a host bridge the DSDT declares:
// PNP0A03, a conventional PCI root reached through configuration mechanism
// #1 (PNP0A08 would promise PCIe and an MCFG). No _ADR: a device is named by
// a _HID or by an _ADR, not both (ACPI 6.5, section 6.1).
aml::Aml pci_host_bridge() {
    return aml::device("PCI0", {
                                   aml::name("_HID", aml::integer(aml::eisa_id("PNP0A03"))),
                                   aml::name("_UID", aml::integer(0)),
                                   aml::name("_BBN", aml::integer(0)),
                                   aml::name("_CRS", pci_host_bridge_resources()),
                                   aml::name("_PRT", pci_interrupt_routing()),
                               });
}

std::vector<std::uint8_t> dsdt() {
    Bytes table = begin_table("DSDT", kDsdtRevision);
    table.append(sleep_state_s5());
    table.append(aml::scope("\\_SB", {pci_host_bridge()}));
    return finish_table(std::move(table));
}

void interrupt_override(Bytes& table, std::uint8_t irq, std::uint32_t gsi, std::uint16_t flags) {
    table.u8(kMadtInterruptOverride);
    table.u8(kMadtInterruptOverrideLength);
    table.u8(kMadtBusIsa);
    table.u8(irq);
    table.u32(gsi);
    table.u16(flags);
}

std::vector<std::uint8_t> madt(std::uint32_t vcpu_count) {
    Bytes table = begin_table("APIC", kMadtRevision);
    table.u32(static_cast<std::uint32_t>(layout::kLapicAddress));
    table.u32(kMadtPcatCompat);
    for (std::uint32_t index = 0; index < vcpu_count; ++index) {
        table.u8(kMadtLocalApic);
        table.u8(kMadtLocalApicLength);
        table.u8(static_cast<std::uint8_t>(index));  // ACPI processor UID
        table.u8(static_cast<std::uint8_t>(index));  // APIC ID, as CPUID reports it
        table.u32(kLocalApicEnabled);
    }
    table.u8(kMadtIoApic);
    table.u8(kMadtIoApicLength);
    table.u8(static_cast<std::uint8_t>(vcpu_count));  // the first ID no vCPU uses
    table.u8(0);
    table.u32(static_cast<std::uint32_t>(layout::kIoapicAddress));
    table.u32(0);  // its pins are GSIs 0..kIoapicPins-1
    // No IRQ0 -> GSI 2 override as on a PC: KVM's default routing sends the
    // in-kernel PIT's IRQ0 to I/O APIC pin 0, so ISA IRQs stay identity-mapped
    // (as in Firecracker).
    // The SCI is level-triggered; ISA's default would be edge, active-high
    // (QEMU declares it the same way).
    interrupt_override(table, layout::kAcpiSciIrq, layout::kAcpiSciIrq, kIntiActiveHighLevel);
    table.u8(kMadtLocalApicNmi);
    table.u8(kMadtLocalApicNmiLength);
    table.u8(kAllLocalApics);
    table.u16(kIntiConforming);
    table.u8(kLint1);
    return finish_table(std::move(table));
}

// Not hardware-reduced, so that the guest uses the PM1 blocks the VMM traps.
// SMI_CMD is 0: there is no SMM to hand ACPI over, and the guest treats the
// platform as already in ACPI mode.
std::vector<std::uint8_t> fadt(std::uint64_t facs_address, std::uint64_t dsdt_address) {
    Bytes table = begin_table("FACP", kFadtRevision);
    table.u32(static_cast<std::uint32_t>(facs_address));  // FIRMWARE_CTRL
    table.u32(static_cast<std::uint32_t>(dsdt_address));  // DSDT
    table.u8(0);                                          // reserved
    table.u8(0);                                          // preferred PM profile: unspecified
    table.u16(layout::kAcpiSciIrq);                       // SCI_INT
    table.u32(0);                                         // SMI_CMD
    table.u8(0);                                          // ACPI_ENABLE
    table.u8(0);                                          // ACPI_DISABLE
    table.u8(0);                                          // S4BIOS_REQ
    table.u8(0);                                          // PSTATE_CNT
    table.u32(layout::kAcpiPm1EventPort);                 // PM1a_EVT_BLK
    table.u32(0);                                         // PM1b_EVT_BLK
    table.u32(layout::kAcpiPm1ControlPort);               // PM1a_CNT_BLK
    table.u32(0);                                         // PM1b_CNT_BLK
    table.u32(0);                                         // PM2_CNT_BLK
    table.u32(0);                                         // PM_TMR_BLK
    table.u32(0);                                         // GPE0_BLK
    table.u32(0);                                         // GPE1_BLK
    table.u8(kPm1EventLength);                            // PM1_EVT_LEN
    table.u8(kPm1ControlLength);                          // PM1_CNT_LEN
    table.u8(0);                                          // PM2_CNT_LEN
    table.u8(0);                                          // PM_TMR_LEN
    table.u8(0);                                          // GPE0_BLK_LEN
    table.u8(0);                                          // GPE1_BLK_LEN
    table.u8(0);                                          // GPE1_BASE
    table.u8(0);                                          // CST_CNT
    table.u16(kNoC2Latency);                              // P_LVL2_LAT
    table.u16(kNoC3Latency);                              // P_LVL3_LAT
    table.u16(0);                                         // FLUSH_SIZE
    table.u16(0);                                         // FLUSH_STRIDE
    table.u8(0);                                          // DUTY_OFFSET
    table.u8(0);                                          // DUTY_WIDTH
    table.u8(0);                                          // DAY_ALRM
    table.u8(0);                                          // MON_ALRM
    table.u8(0);                                          // CENTURY
    table.u16(kBootArch8042);                             // IAPC_BOOT_ARCH
    table.u8(0);                                          // reserved
    table.u32(kFadtWbinvd | kFadtSleepButtonNotFixed);
    no_register(table);  // RESET_REG
    table.u8(0);         // RESET_VALUE
    table.u16(0);        // ARM_BOOT_ARCH
    table.u8(kFadtMinorRevision);
    // X_FIRMWARE_CTRL must be zero when FIRMWARE_CTRL is set.
    table.u64(0);
    table.u64(dsdt_address);                                             // X_DSDT
    io_register(table, layout::kAcpiPm1EventPort, kPm1EventLength);      // X_PM1a_EVT_BLK
    no_register(table);                                                  // X_PM1b_EVT_BLK
    io_register(table, layout::kAcpiPm1ControlPort, kPm1ControlLength);  // X_PM1a_CNT_BLK
    no_register(table);                                                  // X_PM1b_CNT_BLK
    no_register(table);                                                  // X_PM2_CNT_BLK
    no_register(table);                                                  // X_PM_TMR_BLK
    no_register(table);                                                  // X_GPE0_BLK
    no_register(table);                                                  // X_GPE1_BLK
    no_register(table);  // SLEEP_CONTROL_REG: hardware-reduced platforms only
    no_register(table);  // SLEEP_STATUS_REG
    table.u64(0);        // hypervisor vendor identity
    return finish_table(std::move(table));
}

std::vector<std::uint8_t> xsdt(std::span<const std::uint64_t> entries) {
    Bytes table = begin_table("XSDT", kXsdtRevision);
    for (const std::uint64_t address : entries) {
        table.u64(address);
    }
    return finish_table(std::move(table));
}

std::vector<std::uint8_t> rsdp(std::uint64_t xsdt_address) {
    Bytes table;
    table.text("RSD PTR ");
    table.u8(0);  // checksum of the first 20 bytes
    table.text(kOemId);
    table.u8(kRsdpRevision);
    table.u32(0);  // RSDT address: there is only an XSDT
    table.u32(kRsdpSize);
    table.u64(xsdt_address);
    table.u8(0);  // extended checksum of all 36 bytes
    table.zeros(3);
    std::vector<std::uint8_t>& data = table.data();
    data[kRsdpChecksumOffset] = checksum(std::span(data).first(kRsdpV1Size));
    data[kRsdpExtendedChecksumOffset] = checksum(data);
    return std::move(data);
}

// Hands out addresses for the tables one after another.
class Placement {
public:
    explicit Placement(std::uint64_t start) : next_(start) {}

    std::uint64_t place(std::size_t size, std::uint64_t alignment) {
        const std::uint64_t address = (next_ + alignment - 1) / alignment * alignment;
        next_ = address + size;
        return address;
    }
    std::uint64_t end() const { return next_; }

private:
    std::uint64_t next_;
};

struct PlacedTable {
    std::uint64_t address;
    std::vector<std::uint8_t> bytes;
};

}  // namespace

void write_acpi_tables(memory::GuestMemory& memory, std::uint32_t vcpu_count) {
    if (vcpu_count == 0) {
        throw std::invalid_argument("ACPI tables: a machine needs at least one vCPU");
    }
    if (vcpu_count > kMaxVcpus) {
        throw std::invalid_argument("ACPI MADT: " + std::to_string(vcpu_count) + " vCPUs exceed the " +
                                    std::to_string(kMaxVcpus) +
                                    " that 8-bit APIC IDs can number besides the I/O APIC");
    }

    // Each table is built once the addresses it points at are known.
    std::vector<PlacedTable> tables;
    Placement placement(layout::kAcpiTablesAddress);
    const auto place = [&](std::vector<std::uint8_t> bytes, std::uint64_t alignment) {
        const std::uint64_t address = placement.place(bytes.size(), alignment);
        tables.push_back({address, std::move(bytes)});
        return address;
    };
    const std::uint64_t facs_address = place(facs(), kFacsAlignment);
    const std::uint64_t dsdt_address = place(dsdt(), kTableAlignment);
    const std::uint64_t madt_address = place(madt(vcpu_count), kTableAlignment);
    const std::uint64_t fadt_address = place(fadt(facs_address, dsdt_address), kTableAlignment);
    const std::uint64_t xsdt_entries[] = {fadt_address, madt_address};
    const std::uint64_t xsdt_address = place(xsdt(xsdt_entries), kTableAlignment);

    if (placement.end() > layout::kMpConfigTableAddress) {
        throw std::length_error("ACPI tables for " + std::to_string(vcpu_count) + " vCPUs end at " +
                                hex(placement.end()) + ", past the MP table's start at " +
                                hex(layout::kMpConfigTableAddress));
    }
    memory.write(layout::kAcpiRsdpAddress, rsdp(xsdt_address));
    for (const PlacedTable& table : tables) {
        memory.write(table.address, table.bytes);
    }
}

}  // namespace vim::vmm::acpi
