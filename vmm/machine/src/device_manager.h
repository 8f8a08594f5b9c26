#pragma once

// Every device of the machine, the buses that reach them, and the wiring of
// their interrupts. Adding a device touches this one place: it is created,
// put on a bus, given its interrupts, described to the guest's firmware
// tables, and reported in `stats`.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <vector>

#include "kvm_interrupts.h"
#include "vmm/config/vm_config.h"
#include "vmm/devices/acpi_pm.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/cmos.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/serial.h"
#include "vmm/kvm/exit_handler.h"
#include "vmm/kvm/vm.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/pci/root_bus.h"
#include "vmm/state/state.h"
#include "vmm/sys/event_loop.h"
#include "vmm/virtio/balloon/balloon_device.h"
#include "vmm/virtio/device.h"
#include "vmm/virtio/pci_transport.h"

namespace vim::vmm::machine {

// Where the legacy PC devices report to the rest of the machine.
struct LegacyDeviceHooks {
    devices::Serial::OutputSink serial_output;
    std::function<void()> serial_input_drained;
    std::function<void()> guest_reset;
    std::function<void()> guest_power_off;
};

class DeviceManager {
public:
    DeviceManager(kvm::Vm& vm, memory::GuestMemory& memory, sys::EventLoop& loop);
    DeviceManager(const DeviceManager&) = delete;
    DeviceManager& operator=(const DeviceManager&) = delete;

    // The serial port, the i8042, the CMOS/RTC and the ACPI PM1 blocks.
    void add_legacy_devices(LegacyDeviceHooks hooks);
    // Puts `device` on the PCI bus behind the virtio-pci transport, in the
    // next free slot; `name` ("virtio-blk0") names it in messages and stats.
    void add_virtio_device(std::string name, std::shared_ptr<virtio::VirtioDevice> device);
    // The memory balloon, "virtio-balloon0", in the next free slot. Every VM
    // has one: with free page reporting the host gets back what the guest
    // frees without anyone asking, and the `balloon` command takes more.
    void add_balloon(const config::BalloonConfig& config);
    // After add_balloon().
    virtio::balloon::BalloonDevice& balloon() { return *balloon_; }

    // ACPI and the MP table, with what every device adds to them.
    void write_firmware_tables(std::uint32_t vcpu_count);

    // Routes the vCPUs' port-I/O and MMIO exits to the buses.
    kvm::ExitHandler& exit_handler() { return exit_handler_; }

    devices::Serial& serial() { return *serial_; }
    devices::I8042& i8042() { return *i8042_; }
    devices::AcpiPm1EventBlock& power_button() { return *pm_events_; }

    nlohmann::json stats() const;

    // For a snapshot or a migration, vCPUs paused. quiesce() runs on the
    // event loop's thread: every device finishes its work in flight.
    void quiesce();
    // Every device's state by its name: "serial", "i8042", "cmos",
    // "acpi-pm1-event", "acpi-pm1-control", "pci" (the root bus), and each
    // virtio device's ("virtio-blk0", "virtio-balloon0", ...).
    state::State save() const;
    // Into a machine built from the source's configuration, before any vCPU
    // or the event loop runs. The state must name exactly the devices this
    // machine has; then every BAR decodes where the restored registers say.
    // Throws state::StateError naming the device and the field.
    void restore(const state::State& state);

private:
    class BusExitHandler final : public kvm::ExitHandler {
    public:
        BusExitHandler(devices::Bus& pio, devices::Bus& mmio) : pio_(pio), mmio_(mmio) {}
        void pio_read(std::uint16_t port, std::span<std::uint8_t> data) override { pio_.read(port, data); }
        void pio_write(std::uint16_t port, std::span<const std::uint8_t> data) override {
            pio_.write(port, data);
        }
        void mmio_read(std::uint64_t address, std::span<std::uint8_t> data) override {
            mmio_.read(address, data);
        }
        void mmio_write(std::uint64_t address, std::span<const std::uint8_t> data) override {
            mmio_.write(address, data);
        }

    private:
        devices::Bus& pio_;
        devices::Bus& mmio_;
    };

    devices::InterruptLine& interrupt_line(std::uint32_t gsi);

    kvm::Vm& vm_;
    memory::GuestMemory& memory_;
    sys::EventLoop& loop_;
    devices::Bus pio_bus_{"port I/O", 0x10000};
    devices::Bus mmio_bus_{"MMIO", 0};
    BusExitHandler exit_handler_{pio_bus_, mmio_bus_};
    MsiRouter msi_router_{vm_};
    std::map<std::uint32_t, std::shared_ptr<GsiLevel>> gsi_levels_;
    std::vector<std::unique_ptr<KvmInterruptLine>> interrupt_lines_;
    std::shared_ptr<pci::RootBus> pci_root_;
    std::vector<std::shared_ptr<virtio::PciTransport>> virtio_devices_;
    std::shared_ptr<virtio::balloon::BalloonDevice> balloon_;

    std::shared_ptr<devices::Serial> serial_;
    std::shared_ptr<devices::I8042> i8042_;
    std::shared_ptr<devices::AcpiPm1EventBlock> pm_events_;
    std::shared_ptr<devices::AcpiPm1ControlBlock> pm_control_;
    std::shared_ptr<devices::Cmos> cmos_;

    // The devices with state, by the names save() gives them.
    std::vector<std::pair<std::string, state::Stateful*>> stateful_devices() const;
};

}  // namespace vim::vmm::machine
