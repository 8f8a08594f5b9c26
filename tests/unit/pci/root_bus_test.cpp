#include "vmm/pci/root_bus.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_device.h"
#include "vim/testing/fake_interrupt_line.h"
#include "vim/testing/fake_msi_vectors.h"
#include "vmm/pci/config_io.h"

namespace vim::vmm::pci {
namespace {

using vim::testing::FakeInterruptLine;
using vim::testing::FakeMsiVectors;
using testing::TestDevice;
using Move = TestDevice::Move;

constexpr std::uint64_t kWindowStart = 0xc0000000;
constexpr std::uint64_t kWindowSize = 512ull << 20;
constexpr std::uint64_t kWindowEnd = kWindowStart + kWindowSize;
constexpr std::uint16_t kConfigAddressPort = 0xcf8;
constexpr std::uint16_t kConfigDataPort = 0xcfc;
constexpr std::size_t kSlot = 3;

std::uint64_t value_of(std::span<const std::uint8_t> bytes) {
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        value |= std::uint64_t{bytes[i]} << (8 * i);
    }
    return value;
}

std::vector<std::uint8_t> bytes_of(std::uint64_t value, std::size_t size) {
    std::vector<std::uint8_t> bytes(size);
    for (std::size_t i = 0; i < size; ++i) {
        bytes[i] = static_cast<std::uint8_t>(value >> (8 * i));
    }
    return bytes;
}

// A PCI bus as a guest sees it: mechanism #1 on a port-I/O bus, BARs on an
// MMIO bus, and test devices in slots.
class RootBusTest : public ::testing::Test {
protected:
    RootBusTest() {
        pio.add("pci config", kConfigAddressPort, ConfigIo::kPortSpan, std::make_shared<ConfigIo>(root));
    }

    std::shared_ptr<TestDevice> add(std::size_t slot, FakeInterruptLine& line, FakeMsiVectors& vectors) {
        auto device = std::make_shared<TestDevice>(line, vectors);
        root->add_device(slot, "test" + std::to_string(slot), device);
        return device;
    }
    std::shared_ptr<TestDevice> add(std::size_t slot = kSlot) { return add(slot, line, vectors); }

    // Port accesses as Linux's pci_conf1_read() and pci_conf1_write() make
    // them: the dword address, then the data port at the register's byte.
    void select(std::uint8_t bus, std::size_t slot, std::size_t function, std::size_t offset) {
        const std::uint32_t address = 0x80000000u | std::uint32_t{bus} << 16 |
                                      static_cast<std::uint32_t>(slot) << 11 |
                                      static_cast<std::uint32_t>(function) << 8 | (offset & 0xfc);
        pio.write(kConfigAddressPort, bytes_of(address, 4));
    }
    std::uint32_t config_read(std::size_t slot, std::size_t offset, std::size_t size, std::uint8_t bus = 0,
                              std::size_t function = 0) {
        select(bus, slot, function, offset);
        std::vector<std::uint8_t> data(size);
        pio.read(kConfigDataPort + (offset & 3), data);
        return static_cast<std::uint32_t>(value_of(data));
    }
    void config_write(std::size_t slot, std::size_t offset, std::size_t size, std::uint32_t value) {
        select(0, slot, 0, offset);
        pio.write(kConfigDataPort + (offset & 3), bytes_of(value, size));
    }
    std::uint32_t bar_register(std::size_t slot, std::size_t bar) {
        return config_read(slot, 0x10 + 4 * bar, 4);
    }
    std::uint64_t bar_address(std::size_t slot, std::size_t bar) {
        const std::uint32_t low = bar_register(slot, bar);
        const std::uint64_t high = (low & kBarTypeMask) == kBarMemory64 ? bar_register(slot, bar + 1) : 0;
        return high << 32 | (low & ~0xfu);
    }
    void set_command(std::size_t slot, std::uint16_t command) { config_write(slot, 0x04, 2, command); }
    std::uint16_t command(std::size_t slot) { return static_cast<std::uint16_t>(config_read(slot, 0x04, 2)); }

    // An MMIO read of 4 bytes: whether a device answered.
    bool mmio_reaches(std::uint64_t address) {
        std::array<std::uint8_t, 4> data{};
        return mmio.read(address, data);
    }

    devices::Bus mmio{"MMIO", 0};
    devices::Bus pio{"port I/O", 0x10000};
    std::shared_ptr<RootBus> root = std::make_shared<RootBus>(
        mmio, RootBus::MemoryWindow{kWindowStart, kWindowSize}, RootBus::IntxRouting{16, 8});
    FakeInterruptLine line;
    FakeMsiVectors vectors{3};
};

TEST_F(RootBusTest, ScanFindsTheHostBridgeAndTheDevice) {
    add();
    for (std::size_t slot = 0; slot < RootBus::kSlotCount; ++slot) {
        const std::uint32_t expected = slot == 0 ? 0x0d578086 : slot == kSlot ? 0x10421af4 : 0xffffffff;
        EXPECT_EQ(config_read(slot, 0x00, 4), expected) << "slot " << slot;
        EXPECT_EQ(config_read(slot, 0x00, 2), expected & 0xffff) << "slot " << slot;
        EXPECT_EQ(config_read(slot, 0x02, 2), expected >> 16) << "slot " << slot;
        EXPECT_EQ(config_read(slot, 0x01, 1), (expected >> 8) & 0xff) << "slot " << slot;
    }
    EXPECT_EQ(config_read(0, 0x0a, 2), 0x0600u);  // class: host bridge
    EXPECT_EQ(config_read(0, 0x0e, 1), 0u);       // header type 0, single function
    EXPECT_EQ(config_read(kSlot, 0x0e, 1), 0u);
    EXPECT_EQ(config_read(kSlot, 0x0b, 1), 0x01u);
    EXPECT_EQ(config_read(kSlot, 0x2c, 4), 0x00021af4u);
    EXPECT_EQ(config_read(kSlot, 0x00, 4, 0, 1), 0xffffffffu);  // no function 1
    EXPECT_EQ(config_read(kSlot, 0x00, 4, 1), 0xffffffffu);     // no bus 1
    EXPECT_EQ(config_read(0, 0x10, 4), 0u);                     // the bridge has no BARs
}

TEST_F(RootBusTest, PassesLinuxsProbeForMechanismOne) {
    // pci_check_type1(): a byte write to 0xcfb, then the dword round trip.
    select(0, 5, 0, 0x40);
    const std::array<std::uint8_t, 1> one{0x01};
    pio.write(0xcfb, one);
    std::array<std::uint8_t, 4> address{};
    pio.read(kConfigAddressPort, address);
    EXPECT_EQ(value_of(address), 0x80002840u);
    pio.write(kConfigAddressPort, bytes_of(0x80000000, 4));
    pio.read(kConfigAddressPort, address);
    EXPECT_EQ(value_of(address), 0x80000000u);
    // Reserved bits (1:0, 30:28) read as zero.
    pio.write(kConfigAddressPort, bytes_of(0xffffffff, 4));
    pio.read(kConfigAddressPort, address);
    EXPECT_EQ(value_of(address), 0x8ffffffcu);
}

TEST_F(RootBusTest, DataPortNeedsTheEnableBit) {
    add();
    pio.write(kConfigAddressPort, bytes_of(std::uint32_t{kSlot} << 11 | 0x04, 4));
    std::array<std::uint8_t, 4> data{};
    pio.read(kConfigDataPort, data);
    EXPECT_EQ(value_of(data), 0xffffffffu);
    pio.write(kConfigDataPort, bytes_of(0, 4));  // would turn memory decoding off
    EXPECT_EQ(command(kSlot) & kCommandMemorySpace, kCommandMemorySpace);
}

TEST_F(RootBusTest, OddPortAccessesReadAllOnes) {
    add();
    select(0, kSlot, 0, 0);
    std::array<std::uint8_t, 4> straddling{};
    pio.read(0xcfa, straddling);
    EXPECT_EQ(value_of(straddling), 0xffffffffu);
    // Register bits 11:8 in bits 27:24: past the 256 bytes there are.
    pio.write(kConfigAddressPort, bytes_of(0x81000000u | std::uint32_t{kSlot} << 11, 4));
    std::array<std::uint8_t, 4> extended{};
    pio.read(kConfigDataPort, extended);
    EXPECT_EQ(value_of(extended), 0xffffffffu);
}

TEST_F(RootBusTest, AddPlacesBarsAsFirmwareWould) {
    auto device = add();
    const std::uint64_t bar0 = bar_address(kSlot, 0);
    const std::uint64_t bar2 = bar_address(kSlot, 2);
    EXPECT_EQ(bar2, kWindowStart);  // the larger BAR first
    EXPECT_EQ(bar0, kWindowStart + 0x4000);
    EXPECT_EQ(bar_register(kSlot, 2) & 0xf, kBarMemory64 | kBarPrefetchable);
    EXPECT_EQ(bar_register(kSlot, 3), 0u);
    EXPECT_EQ(command(kSlot), kCommandMemorySpace);
    EXPECT_EQ(config_read(kSlot, 0x3c, 2), 0x0100u + 16 + kSlot);  // INTA#, GSI 19
    EXPECT_EQ(device->moves, (std::vector<Move>{{0, std::nullopt, bar0}, {2, std::nullopt, bar2}}));

    std::array<std::uint8_t, 4> data{};
    EXPECT_TRUE(mmio.read(bar0 + 0x10, data));
    EXPECT_EQ(value_of(data), 0xa0a0a0a0u);
    EXPECT_TRUE(mmio.read(bar2 + 0x3ffc, data));
    EXPECT_EQ(value_of(data), 0xa2a2a2a2u);
    EXPECT_EQ(device->accesses,
              (std::vector<TestDevice::Access>{{0, 0x10, 4, false}, {2, 0x3ffc, 4, false}}));
    EXPECT_FALSE(mmio_reaches(bar0 + 0x1000));

    // A second device packs in after the first.
    FakeInterruptLine other_line;
    FakeMsiVectors other_vectors{3};
    add(9, other_line, other_vectors);
    EXPECT_EQ(bar_address(9, 2), kWindowStart + 0x8000);
    EXPECT_EQ(bar_address(9, 0), kWindowStart + 0x5000);
    EXPECT_EQ(config_read(9, 0x3c, 1), 17u);
    EXPECT_EQ(root->intx_gsi(9), 17u);
}

TEST_F(RootBusTest, LinuxsBarSizingMovesNothing) {
    auto device = add();
    const std::uint64_t bar0 = bar_address(kSlot, 0);
    const std::uint64_t bar2 = bar_address(kSlot, 2);
    device->moves.clear();

    // __pci_read_base(): decoding off, then for each BAR save, write all
    // ones, read the mask, restore; then the command register back.
    const std::uint16_t original_command = command(kSlot);
    set_command(kSlot, original_command & ~kCommandMemorySpace);
    std::vector<std::uint32_t> masks;
    for (std::size_t reg = 0; reg < kBarCount; ++reg) {
        const std::size_t offset = 0x10 + 4 * reg;
        const std::uint32_t saved = config_read(kSlot, offset, 4);
        config_write(kSlot, offset, 4, 0xffffffff);
        masks.push_back(config_read(kSlot, offset, 4));
        config_write(kSlot, offset, 4, saved);
    }
    EXPECT_EQ(device->moves.size(), 2u);  // only the decoding switch so far
    set_command(kSlot, original_command);

    EXPECT_EQ(masks, (std::vector<std::uint32_t>{0xfffff000, 0, 0xffffc00c, 0xffffffff, 0, 0}));
    EXPECT_EQ(bar_address(kSlot, 0), bar0);
    EXPECT_EQ(bar_address(kSlot, 2), bar2);
    EXPECT_EQ(device->moves, (std::vector<Move>{{0, bar0, std::nullopt},
                                                {2, bar2, std::nullopt},
                                                {0, std::nullopt, bar0},
                                                {2, std::nullopt, bar2}}));
    EXPECT_TRUE(mmio_reaches(bar0));
    EXPECT_TRUE(mmio_reaches(bar2));
    EXPECT_EQ(root->refused_bar_mappings(), 0u);
}

TEST_F(RootBusTest, BarWriteWithDecodingOnMovesTheRange) {
    auto device = add();
    const std::uint64_t old_address = bar_address(kSlot, 0);
    constexpr std::uint64_t kNewAddress = 0xc8000000;
    config_write(kSlot, 0x10, 4, kNewAddress);

    EXPECT_EQ(device->moves.back(), (Move{0, old_address, kNewAddress}));
    EXPECT_FALSE(mmio_reaches(old_address));
    EXPECT_TRUE(mmio_reaches(kNewAddress + 0xffc));
    EXPECT_EQ(std::get<1>(device->accesses.back()), 0xffcu);
}

TEST_F(RootBusTest, SixtyFourBitBarMovesAsLinuxUpdatesIt) {
    auto device = add();
    const std::uint64_t old_address = bar_address(kSlot, 2);
    device->moves.clear();
    // pci_std_update_resource() turns decoding off around the two halves.
    set_command(kSlot, 0);
    config_write(kSlot, 0x18, 4, 0xd0000000);
    config_write(kSlot, 0x1c, 4, 0);
    set_command(kSlot, kCommandMemorySpace);

    EXPECT_EQ(bar_address(kSlot, 2), 0xd0000000u);
    EXPECT_EQ(device->moves.size(), 4u);  // both BARs off, both on
    EXPECT_EQ(device->moves[3], (Move{2, std::nullopt, 0xd0000000}));
    EXPECT_FALSE(mmio_reaches(old_address));
    EXPECT_TRUE(mmio_reaches(0xd0000000));
}

TEST_F(RootBusTest, MemoryDecodingBitMapsAndUnmaps) {
    auto device = add();
    const std::uint64_t bar0 = bar_address(kSlot, 0);
    set_command(kSlot, kCommandBusMaster);
    EXPECT_FALSE(mmio_reaches(bar0));
    // BAR writes while decoding is off move nothing.
    config_write(kSlot, 0x10, 4, 0xc1000000);
    EXPECT_FALSE(mmio_reaches(0xc1000000));
    set_command(kSlot, kCommandBusMaster | kCommandMemorySpace);
    EXPECT_TRUE(mmio_reaches(0xc1000000));
    EXPECT_FALSE(mmio_reaches(bar0));
    EXPECT_EQ(device->moves.back(), (Move{2, std::nullopt, bar_address(kSlot, 2)}));
    EXPECT_EQ(root->refused_bar_mappings(), 0u);
}

TEST_F(RootBusTest, AddressesOutsideTheWindowAreRefused) {
    auto device = add();
    const std::uint64_t bar0 = bar_address(kSlot, 0);
    config_write(kSlot, 0x10, 4, 0x00100000);  // guest RAM
    EXPECT_FALSE(mmio_reaches(0x00100000));
    EXPECT_FALSE(mmio_reaches(bar0));
    EXPECT_EQ(device->moves.back(), (Move{0, bar0, std::nullopt}));
    EXPECT_EQ(root->refused_bar_mappings(), 1u);
    config_write(kSlot, 0x3c, 1, 5);  // other writes do not count it again
    set_command(kSlot, kCommandMemorySpace);
    EXPECT_EQ(root->refused_bar_mappings(), 1u);

    config_write(kSlot, 0x10, 4, kWindowEnd);  // just past the end
    EXPECT_EQ(root->refused_bar_mappings(), 2u);
    config_write(kSlot, 0x10, 4, kWindowEnd - 0x1000);  // the last page: fine
    EXPECT_TRUE(mmio_reaches(kWindowEnd - 4));
    // A 64-bit BAR above 4 GiB, outside this window.
    config_write(kSlot, 0x1c, 4, 1);
    EXPECT_FALSE(mmio_reaches(bar_address(kSlot, 2)));
    EXPECT_EQ(root->refused_bar_mappings(), 3u);
    EXPECT_FALSE(mmio_reaches(0x1'0000'0000 + kWindowStart));
}

TEST_F(RootBusTest, AddressesOverAnotherBarAreRefused) {
    auto first = add(1);
    FakeInterruptLine second_line;
    FakeMsiVectors second_vectors{3};
    auto second = add(2, second_line, second_vectors);
    const std::uint64_t taken = bar_address(1, 0);
    const std::uint64_t second_bar0 = bar_address(2, 0);

    config_write(2, 0x10, 4, taken);
    EXPECT_EQ(root->refused_bar_mappings(), 1u);
    EXPECT_FALSE(mmio_reaches(second_bar0));
    first->accesses.clear();
    EXPECT_TRUE(mmio_reaches(taken));
    EXPECT_EQ(first->accesses.size(), 1u);  // still the first device's
    EXPECT_TRUE(second->accesses.empty());
    // Its own other BAR counts as well: BAR 0 over BAR 2.
    config_write(1, 0x10, 4, bar_address(1, 2));
    EXPECT_EQ(root->refused_bar_mappings(), 2u);
    // Freed, so the second device's BAR now maps where it was programmed.
    EXPECT_TRUE(mmio_reaches(taken));
    EXPECT_EQ(second->accesses.size(), 1u);
    EXPECT_EQ(second->moves.back(), (Move{0, std::nullopt, taken}));
}

TEST_F(RootBusTest, DevicesTradingBarAddressesBothEndMapped) {
    auto first = add(1);
    FakeInterruptLine second_line;
    FakeMsiVectors second_vectors{3};
    auto second = add(2, second_line, second_vectors);
    const std::uint64_t a = bar_address(1, 0);
    const std::uint64_t b = bar_address(2, 0);

    config_write(1, 0x10, 4, b);  // refused for now: b is the second's
    config_write(2, 0x10, 4, a);
    EXPECT_EQ(first->moves.back(), (Move{0, std::nullopt, b}));
    EXPECT_EQ(second->moves.back(), (Move{0, b, a}));
    first->accesses.clear();
    second->accesses.clear();
    EXPECT_TRUE(mmio_reaches(a));
    EXPECT_TRUE(mmio_reaches(b));
    EXPECT_EQ(first->accesses.size(), 1u);
    EXPECT_EQ(second->accesses.size(), 1u);
    EXPECT_EQ(std::get<0>(first->accesses[0]), 0u);
}

TEST_F(RootBusTest, HostileConfigWritesDoNoHarm) {
    auto device = add();
    const std::uint32_t capability_pointer = config_read(kSlot, 0x34, 1);
    ASSERT_NE(capability_pointer, 0u);
    const std::uint32_t msix_capability = config_read(kSlot, capability_pointer, 4);
    for (std::size_t slot = 0; slot < RootBus::kSlotCount; ++slot) {
        for (std::size_t offset = 0; offset < kConfigSpaceSize; offset += 4) {
            config_write(slot, offset, 4, 0xffffffff);
        }
        for (std::size_t offset = 0; offset < kConfigSpaceSize; ++offset) {
            config_write(slot, offset, 1, 0xff);
            config_write(slot, offset & ~1u, 2, 0xffff);
        }
    }
    EXPECT_EQ(config_read(0, 0, 4), 0x0d578086u);
    EXPECT_EQ(config_read(0, 0x08, 4), 0x06000000u);
    EXPECT_EQ(config_read(kSlot, 0, 4), 0x10421af4u);
    EXPECT_EQ(config_read(kSlot, 0x0e, 1), 0u);  // header type
    EXPECT_EQ(config_read(kSlot, 0x34, 1), capability_pointer);
    EXPECT_EQ(config_read(kSlot, capability_pointer, 4), msix_capability | 0xc0000000);
    EXPECT_EQ(config_read(kSlot, 0x3d, 1), kInterruptPinA);
    // Every BAR holds its size mask, which is sizing, not an address: decoded
    // nowhere and not counted. Only BAR 2 was refused once, between its two
    // halves (0xffffc000, below 4 GiB but outside the window).
    EXPECT_EQ(bar_register(kSlot, 0), 0xfffff000u);
    EXPECT_EQ(root->refused_bar_mappings(), 1u);
    EXPECT_EQ(device->moves.back(), (Move{2, kWindowStart, std::nullopt}));

    // The guest can still put things right.
    config_write(kSlot, 0x10, 4, 0xc0100000);
    EXPECT_TRUE(mmio_reaches(0xc0100000));
}

TEST_F(RootBusTest, IntxReachesTheLineUntilDisabled) {
    auto device = add();
    EXPECT_EQ(device->raise(0), Msix::Delivery::kDisabled);
    EXPECT_TRUE(line.high());
    EXPECT_EQ(config_read(kSlot, 0x06, 2) & kStatusInterrupt, kStatusInterrupt);
    set_command(kSlot, kCommandMemorySpace | kCommandIntxDisable);
    EXPECT_FALSE(line.high());
    EXPECT_EQ(config_read(kSlot, 0x06, 2) & kStatusInterrupt, kStatusInterrupt);
    set_command(kSlot, kCommandMemorySpace);
    EXPECT_TRUE(line.high());
    device->acknowledge();
    EXPECT_FALSE(line.high());
    EXPECT_EQ(config_read(kSlot, 0x06, 2) & kStatusInterrupt, 0u);
}

TEST_F(RootBusTest, MsixProgrammedThroughTheBuses) {
    auto device = add();
    const std::uint64_t table = bar_address(kSlot, 0) + TestDevice::kMsixTableOffset;
    // Find the capability as Linux's pci_find_capability() does.
    std::size_t capability = config_read(kSlot, 0x34, 1);
    while (capability != 0 && config_read(kSlot, capability, 1) != kCapabilityMsix) {
        capability = config_read(kSlot, capability + 1, 1);
    }
    ASSERT_NE(capability, 0u);
    EXPECT_EQ(config_read(kSlot, capability + 2, 2) & 0x7ff, 2u);  // 3 vectors

    config_write(kSlot, capability + 2, 2, 0xc000);  // enable, function masked
    mmio.write(table + 16, bytes_of(0xfee00000, 4));
    mmio.write(table + 20, bytes_of(0, 4));
    mmio.write(table + 24, bytes_of(0x4041, 4));
    mmio.write(table + 28, bytes_of(0, 4));
    EXPECT_EQ(device->raise(1), Msix::Delivery::kPending);
    std::array<std::uint8_t, 8> pba{};
    mmio.read(bar_address(kSlot, 0) + TestDevice::kMsixPbaOffset, pba);
    EXPECT_EQ(value_of(pba), 0b10u);

    config_write(kSlot, capability + 2, 2, 0x8000);
    EXPECT_EQ(vectors.routes,
              (std::vector<std::pair<std::size_t, devices::MsiMessage>>{{1, {0xfee00000, 0x4041}}}));
    EXPECT_EQ(vectors.triggers, std::vector<std::size_t>{1});
    EXPECT_EQ(device->raise(1), Msix::Delivery::kSent);
    EXPECT_FALSE(line.high());
    EXPECT_TRUE(device->accesses.empty());  // the table and PBA are not the device's registers
}

// A function with an I/O BAR, which the bus does not place.
class IoBarDevice final : public PciDevice {
public:
    std::uint32_t read_config(std::size_t index) override { return index == kFirstBarRegister ? 0xfff1 : 0; }
    void write_config(std::size_t, std::size_t, std::span<const std::uint8_t>) override {}
    void read_bar(std::size_t, std::uint64_t, std::span<std::uint8_t>) override {}
    void write_bar(std::size_t, std::uint64_t, std::span<const std::uint8_t>) override {}
};

std::string add_error(RootBus& root, std::size_t slot, std::shared_ptr<PciDevice> device) {
    try {
        root.add_device(slot, "disk", std::move(device));
    } catch (const std::invalid_argument& error) {
        return error.what();
    }
    return "";
}

TEST_F(RootBusTest, RefusesBadAdditions) {
    auto device = std::make_shared<TestDevice>(line, vectors);
    EXPECT_EQ(add_error(*root, 0, device), "pci: disk in slot 0: slots are 1-31 (0 is the host bridge)");
    EXPECT_EQ(add_error(*root, 32, device), "pci: disk in slot 32: slots are 1-31 (0 is the host bridge)");
    EXPECT_EQ(add_error(*root, 1, nullptr), "pci: disk in slot 1: device is null");
    EXPECT_EQ(add_error(*root, 1, std::make_shared<IoBarDevice>()),
              "pci: disk: BAR 0 is an I/O BAR, which this bus does not place");
    EXPECT_EQ(config_read(1, 0, 4), 0xffffffffu);  // nothing half-added
    EXPECT_EQ(add_error(*root, 1, device), "");
    auto again = std::make_shared<TestDevice>(line, vectors);
    EXPECT_EQ(add_error(*root, 1, again), "pci: disk in slot 1: slot is taken by disk");
}

TEST(RootBus, RefusesBarsThatDoNotFit) {
    devices::Bus mmio("MMIO", 0);
    RootBus root(mmio, {kWindowStart, 0x6000}, {16, 8});
    FakeInterruptLine line;
    FakeMsiVectors vectors(3);
    root.add_device(1, "first", std::make_shared<TestDevice>(line, vectors));
    try {
        root.add_device(2, "second", std::make_shared<TestDevice>(line, vectors));
        FAIL() << "a BAR outside the window was placed";
    } catch (const std::invalid_argument& error) {
        EXPECT_STREQ(
            error.what(),
            "pci: second: no room for BAR 2 of size 0x4000 in the memory window 0xc0000000-0xc0005fff");
    }
    std::array<std::uint8_t, 4> data{};
    EXPECT_FALSE(mmio.read(kWindowStart + 0x5000, data));  // the second never appeared
}

TEST(RootBus, RefusesBadWindows) {
    devices::Bus mmio("MMIO", 0);
    EXPECT_THROW(RootBus(mmio, {kWindowStart, 0}, {16, 8}), std::invalid_argument);
    EXPECT_THROW(RootBus(mmio, {~std::uint64_t{0} - 0xfff, 0x2000}, {16, 8}), std::invalid_argument);
    EXPECT_THROW(RootBus(mmio, {kWindowStart, kWindowSize}, {16, 0}), std::invalid_argument);
}

TEST_F(RootBusTest, BarAccessesRaceTheGuestMovingTheBar) {
    auto device = add();
    const std::uint64_t home = bar_address(kSlot, 0);
    constexpr std::uint64_t kAway = 0xd0000000;
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> answered{0};
    std::vector<std::thread> vcpus;
    for (int i = 0; i < 3; ++i) {
        vcpus.emplace_back([&] {
            std::array<std::uint8_t, 4> data{};
            while (!stop.load()) {
                for (std::uint64_t address : {home, kAway}) {
                    if (mmio.read(address + 8, data)) {
                        answered.fetch_add(value_of(data) == 0xa0a0a0a0u);
                    }
                }
            }
        });
    }
    for (int i = 0; i < 200; ++i) {
        config_write(kSlot, 0x10, 4, i % 2 ? home : kAway);
        set_command(kSlot, i % 3 ? kCommandMemorySpace : 0);
    }
    set_command(kSlot, kCommandMemorySpace);
    while (answered.load() == 0) {
        std::this_thread::yield();
    }
    stop = true;
    for (auto& vcpu : vcpus) {
        vcpu.join();
    }
    EXPECT_EQ(bar_address(kSlot, 0), home);
    EXPECT_TRUE(mmio_reaches(home));
    EXPECT_FALSE(mmio_reaches(kAway));
}

}  // namespace
}  // namespace vim::vmm::pci
