#include "device_manager.h"

#include "vmm/acpi/mp_table.h"
#include "vmm/acpi/tables.h"
#include "vmm/boot/layout.h"
#include "vmm/devices/cmos.h"

namespace vmm::machine {
namespace {

namespace layout = boot::layout;

}  // namespace

DeviceManager::DeviceManager(kvm::Vm& vm, memory::GuestMemory& memory) : vm_(vm), memory_(memory) {}

devices::InterruptLine& DeviceManager::interrupt_line(std::uint32_t gsi) {
    interrupt_lines_.push_back(std::make_unique<KvmInterruptLine>(vm_, gsi));
    return *interrupt_lines_.back();
}

void DeviceManager::add_legacy_devices(LegacyDeviceHooks hooks) {
    serial_ = std::make_shared<devices::Serial>(interrupt_line(layout::kSerialIrq), std::move(hooks.serial_output),
                                                std::move(hooks.serial_input_drained));
    i8042_ = std::make_shared<devices::I8042>(interrupt_line(layout::kI8042KeyboardIrq),
                                              interrupt_line(layout::kI8042AuxIrq), std::move(hooks.guest_reset));
    pm_events_ = std::make_shared<devices::AcpiPm1EventBlock>(interrupt_line(layout::kAcpiSciIrq));
    auto pm_control =
        std::make_shared<devices::AcpiPm1ControlBlock>(layout::kAcpiS5SleepType, std::move(hooks.guest_power_off));

    std::uint64_t below_4g = 0, above_4g = 0;
    for (const memory::Region& region : memory_.regions()) {
        (region.start < layout::kMmioHoleEnd ? below_4g : above_4g) += region.size;
    }
    auto cmos = std::make_shared<devices::Cmos>(devices::Cmos::MemorySize{below_4g, above_4g});

    pio_bus_.add("serial", layout::kSerialPort, devices::Serial::kPortSpan, serial_);
    pio_bus_.add("i8042", layout::kI8042DataPort, devices::I8042::kPortSpan, i8042_);
    pio_bus_.add("cmos", layout::kCmosPort, devices::Cmos::kPortSpan, cmos);
    pio_bus_.add("acpi-pm1-event", layout::kAcpiPm1EventPort, devices::AcpiPm1EventBlock::kPortSpan, pm_events_);
    pio_bus_.add("acpi-pm1-control", layout::kAcpiPm1ControlPort, devices::AcpiPm1ControlBlock::kPortSpan,
                 pm_control);
}

void DeviceManager::write_firmware_tables(std::uint32_t vcpu_count) {
    acpi::write_acpi_tables(memory_, vcpu_count);
    acpi::write_mp_table(memory_, vcpu_count);
}

nlohmann::json DeviceManager::stats() const {
    return {{"unhandled_port_reads", pio_bus_.unhandled_reads()},
            {"unhandled_port_writes", pio_bus_.unhandled_writes()},
            {"unhandled_mmio_reads", mmio_bus_.unhandled_reads()},
            {"unhandled_mmio_writes", mmio_bus_.unhandled_writes()}};
}

}  // namespace vmm::machine
