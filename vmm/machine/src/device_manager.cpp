#include "device_manager.h"

#include "vmm/acpi/mp_table.h"
#include "vmm/acpi/tables.h"
#include "vmm/boot/layout.h"
#include "vmm/config/vm_config.h"
#include "vmm/pci/config_io.h"

namespace vim::vmm::machine {
namespace {

namespace layout = boot::layout;

// "virtio-blk1" -> "virtio-blk": what the configuration counts.
std::string kind_of(const std::string& name) {
    const std::size_t end = name.find_last_not_of("0123456789");
    return end == std::string::npos ? name : name.substr(0, end + 1);
}

}  // namespace

DeviceManager::DeviceManager(kvm::Vm& vm, memory::GuestMemory& memory, sys::EventLoop& loop)
    : vm_(vm),
      memory_(memory),
      loop_(loop),
      pci_root_(std::make_shared<pci::RootBus>(
          mmio_bus_, pci::RootBus::MemoryWindow{layout::kPciMmioStart, layout::kPciMmioSize},
          pci::RootBus::IntxRouting{layout::kPciIntxFirstGsi, layout::kPciIntxGsiCount})) {
    pio_bus_.add("pci-config", layout::kPciConfigAddressPort, pci::ConfigIo::kPortSpan,
                 std::make_shared<pci::ConfigIo>(pci_root_));
}

void DeviceManager::add_virtio_device(std::string name, std::shared_ptr<virtio::VirtioDevice> device) {
    // Slot 0 is the host bridge's.
    const std::size_t slot = virtio_devices_.size() + 1;
    if (slot >= layout::kPciMaxSlots) {
        throw config::UsageError(name + ": no PCI slot left (at most " +
                                 std::to_string(layout::kPciMaxSlots - 1) + " devices)");
    }
    const std::size_t queues = device->queue_max_sizes().size();
    auto transport = std::make_shared<virtio::PciTransport>(
        name, std::move(device), memory_, loop_, vm_,
        msi_router_.create_vectors(virtio::PciTransport::vector_count(queues)),
        interrupt_line(pci_root_->intx_gsi(slot)));
    pci_root_->add_device(slot, name, transport);
    virtio_devices_.push_back(std::move(transport));
}

void DeviceManager::add_balloon(const config::BalloonConfig& config) {
    balloon_ = std::make_shared<virtio::balloon::BalloonDevice>(virtio::balloon::BalloonDevice::Options{
        .free_page_reporting = config.free_page_reporting, .deflate_on_oom = config.deflate_on_oom});
    add_virtio_device("virtio-balloon0", balloon_);
}

devices::InterruptLine& DeviceManager::interrupt_line(std::uint32_t gsi) {
    auto& level = gsi_levels_[gsi];
    if (!level) {
        level = std::make_shared<GsiLevel>(vm_, gsi);
    }
    interrupt_lines_.push_back(std::make_unique<KvmInterruptLine>(level));
    return *interrupt_lines_.back();
}

void DeviceManager::add_legacy_devices(LegacyDeviceHooks hooks) {
    serial_ =
        std::make_shared<devices::Serial>(interrupt_line(layout::kSerialIrq), std::move(hooks.serial_output),
                                          std::move(hooks.serial_input_drained));
    i8042_ =
        std::make_shared<devices::I8042>(interrupt_line(layout::kI8042KeyboardIrq),
                                         interrupt_line(layout::kI8042AuxIrq), std::move(hooks.guest_reset));
    pm_events_ = std::make_shared<devices::AcpiPm1EventBlock>(interrupt_line(layout::kAcpiSciIrq));
    pm_control_ = std::make_shared<devices::AcpiPm1ControlBlock>(layout::kAcpiS5SleepType,
                                                                 std::move(hooks.guest_power_off));

    std::uint64_t below_4g = 0, above_4g = 0;
    for (const memory::Region& region : memory_.regions()) {
        (region.start < layout::kMmioHoleEnd ? below_4g : above_4g) += region.size;
    }
    cmos_ = std::make_shared<devices::Cmos>(devices::Cmos::MemorySize{below_4g, above_4g});

    pio_bus_.add("serial", layout::kSerialPort, devices::Serial::kPortSpan, serial_);
    pio_bus_.add("i8042", layout::kI8042DataPort, devices::I8042::kPortSpan, i8042_);
    pio_bus_.add("cmos", layout::kCmosPort, devices::Cmos::kPortSpan, cmos_);
    pio_bus_.add("acpi-pm1-event", layout::kAcpiPm1EventPort, devices::AcpiPm1EventBlock::kPortSpan,
                 pm_events_);
    pio_bus_.add("acpi-pm1-control", layout::kAcpiPm1ControlPort, devices::AcpiPm1ControlBlock::kPortSpan,
                 pm_control_);
}

void DeviceManager::write_firmware_tables(std::uint32_t vcpu_count) {
    acpi::write_acpi_tables(memory_, vcpu_count);
    acpi::write_mp_table(memory_, vcpu_count);
}

nlohmann::json DeviceManager::stats() const {
    nlohmann::json virtio = nlohmann::json::object();
    for (const auto& transport : virtio_devices_) {
        virtio[transport->name()] = transport->stats();
    }
    return {{"unhandled_port_reads", pio_bus_.unhandled_reads()},
            {"unhandled_port_writes", pio_bus_.unhandled_writes()},
            {"unhandled_mmio_reads", mmio_bus_.unhandled_reads()},
            {"unhandled_mmio_writes", mmio_bus_.unhandled_writes()},
            {"refused_pci_bar_mappings", pci_root_->refused_bar_mappings()},
            {"devices", virtio}};
}

std::vector<std::pair<std::string, state::Stateful*>> DeviceManager::stateful_devices() const {
    std::vector<std::pair<std::string, state::Stateful*>> devices;
    const auto add = [&devices](std::string name, state::Stateful* device) {
        if (device != nullptr) {
            devices.emplace_back(std::move(name), device);
        }
    };
    add("serial", serial_.get());
    add("i8042", i8042_.get());
    add("cmos", cmos_.get());
    add("acpi-pm1-event", pm_events_.get());
    add("acpi-pm1-control", pm_control_.get());
    for (const auto& transport : virtio_devices_) {
        add(transport->name(), transport.get());
    }
    // Last: its mappings follow the functions' restored registers.
    add("pci", pci_root_.get());
    return devices;
}

void DeviceManager::quiesce() {
    for (const auto& [name, device] : stateful_devices()) {
        device->quiesce();
    }
}

state::State DeviceManager::save() const {
    state::State result = state::State::object();
    for (const auto& [name, device] : stateful_devices()) {
        result[name] = device->save();
    }
    return result;
}

void DeviceManager::restore(const state::State& state) {
    if (!state.is_object()) {
        throw state::StateError("devices: the state is not an object of devices by name");
    }
    const auto devices = stateful_devices();
    const auto count_kind = [](const std::string& kind, auto&& names) {
        std::size_t count = 0;
        for (const std::string& name : names) {
            count += kind_of(name) == kind;
        }
        return count;
    };
    std::vector<std::string> here, there;
    for (const auto& [name, device] : devices) {
        here.push_back(name);
    }
    for (const auto& [name, value] : state.items()) {
        there.push_back(name);
    }
    const auto mismatch = [&](const std::string& name, bool missing_in_state) {
        const std::string kind = kind_of(name);
        return state::StateError("devices: " +
                                 (missing_in_state ? "the state has no " + name + ", which this machine has"
                                                   : "the state has " + name + ", which this machine lacks") +
                                 ": this machine has " + std::to_string(count_kind(kind, here)) + " " + kind +
                                 ", the source had " + std::to_string(count_kind(kind, there)) +
                                 " (it was configured differently)");
    };
    for (const std::string& name : here) {
        if (!state.contains(name)) {
            throw mismatch(name, true);
        }
    }
    for (const std::string& name : there) {
        if (std::ranges::find(here, name) == here.end()) {
            throw mismatch(name, false);
        }
    }
    for (const auto& [name, device] : devices) {
        device->restore(state.at(name));
    }
    pci_root_->restore_mappings();
}

}  // namespace vim::vmm::machine
