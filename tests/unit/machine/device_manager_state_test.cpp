// The machine's devices saved by name and restored into a machine built from
// the same configuration: what the guest left in them reads back the same. A
// state that names devices this machine lacks, or lacks one it has, is
// refused with the device named.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>

#include "device_manager.h"
#include "fakes/fake_vm.h"
#include "vim/testing/guest_ram.h"
#include "vmm/boot/layout.h"
#include "vmm/state/state.h"
#include "vmm/virtio/rng/rng_device.h"

namespace vim::vmm::machine {
namespace {

using ::testing::HasSubstr;
using state::State;

struct Machine {
    explicit Machine(int rng_devices) {
        devices.add_legacy_devices(
            LegacyDeviceHooks{[](std::span<const std::uint8_t>) {}, [] {}, [] {}, [] {}});
        for (int index = 0; index < rng_devices; ++index) {
            devices.add_virtio_device("virtio-rng" + std::to_string(index),
                                      std::make_shared<virtio::RngDevice>());
        }
        devices.add_balloon({});
    }
    std::uint8_t port_read(std::uint16_t port) {
        std::uint8_t byte = 0;
        devices.exit_handler().pio_read(port, {&byte, 1});
        return byte;
    }
    void port_write(std::uint16_t port, std::uint8_t value) {
        devices.exit_handler().pio_write(port, {&value, 1});
    }

    vim::testing::FakeVm vm;
    vim::testing::GuestRam ram{0, 16 << 20};
    sys::EventLoop loop;
    DeviceManager devices{vm, ram.memory(), loop};
};

std::string restore_error(Machine& machine, const State& state) {
    try {
        machine.devices.restore(state);
    } catch (const state::StateError& error) {
        return error.what();
    }
    return "";
}

TEST(DeviceManagerStateTest, SavesEveryDeviceByNameAndRestoresWhatTheGuestLeft) {
    Machine source(1);
    source.port_write(boot::layout::kSerialPort + 7, 0x5a);  // the UART's scratch register
    source.port_write(boot::layout::kCmosPort, 0x40);
    source.port_write(boot::layout::kCmosPort + 1, 0xa5);
    source.devices.balloon().set_target(2048);
    source.devices.quiesce();
    const State saved = source.devices.save();
    for (const char* name : {"serial", "i8042", "cmos", "acpi-pm1-event", "acpi-pm1-control", "virtio-rng0",
                             "virtio-balloon0", "pci"}) {
        EXPECT_TRUE(saved.contains(name)) << name;
    }
    EXPECT_EQ(saved.size(), 8u);

    Machine destination(1);
    destination.devices.restore(saved);
    EXPECT_EQ(destination.port_read(boot::layout::kSerialPort + 7), 0x5a);
    destination.port_write(boot::layout::kCmosPort, 0x40);
    EXPECT_EQ(destination.port_read(boot::layout::kCmosPort + 1), 0xa5);
    EXPECT_EQ(destination.devices.balloon().target(), 2048u);
}

TEST(DeviceManagerStateTest, RefusesAStateOfAMachineConfiguredDifferently) {
    Machine source(1);
    const State saved = source.devices.save();
    Machine more(2);
    EXPECT_EQ(
        restore_error(more, saved),
        "devices: the state has no virtio-rng1, which this machine has: this machine has 2 virtio-rng, the "
        "source had 1 (it was configured differently)");
    Machine fewer(0);
    EXPECT_EQ(
        restore_error(fewer, saved),
        "devices: the state has virtio-rng0, which this machine lacks: this machine has 0 virtio-rng, the "
        "source had 1 (it was configured differently)");
    EXPECT_EQ(restore_error(fewer, State::array()), "devices: the state is not an object of devices by name");
}

TEST(DeviceManagerStateTest, NamesTheDeviceAndFieldOfAHostileValue) {
    Machine source(1);
    State saved = source.devices.save();
    saved["serial"]["scratch"] = "x";
    Machine destination(1);
    EXPECT_THAT(restore_error(destination, saved), HasSubstr("serial: scratch: not an unsigned integer"));
    saved = source.devices.save();
    saved["virtio-balloon0"]["queues"][0]["descriptor_table"] = 1ull << 40;
    saved["virtio-balloon0"]["queues"][0]["ready"] = true;
    EXPECT_THAT(
        restore_error(destination, saved),
        HasSubstr("virtio-balloon0: queue 0: virtio-balloon0 queue 0: descriptor table 0x10000000000"));
}

}  // namespace
}  // namespace vim::vmm::machine
