// Configuration space, MSI-X and the root bus saved and restored: the guest
// reads the same registers, vectors reach the same routes, pending ones stay
// pending, and BARs decode where the restored registers say.
#include "vmm/state/state.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "test_device.h"
#include "vim/testing/fake_interrupt_line.h"
#include "vim/testing/fake_msi_vectors.h"
#include "vmm/devices/bus.h"
#include "vmm/pci/config_space.h"
#include "vmm/pci/msix.h"
#include "vmm/pci/root_bus.h"

namespace vim::vmm::pci {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using state::State;
using state::StateError;
using vim::testing::FakeMsiVectors;
using Route = std::pair<std::size_t, devices::MsiMessage>;

constexpr DeviceIdentity kIdentity = testing::TestDevice::kIdentity;
constexpr std::uint32_t kTable = 0x800;
constexpr std::uint32_t kPba = 0xc00;
constexpr std::uint16_t kEnable = 1u << 15;
constexpr std::uint16_t kFunctionMask = 1u << 14;

template <std::size_t N>
std::array<std::uint8_t, N> bytes_of(std::uint64_t value) {
    std::array<std::uint8_t, N> bytes{};
    for (std::size_t i = 0; i < N; ++i) {
        bytes[i] = static_cast<std::uint8_t>(value >> (8 * i));
    }
    return bytes;
}

template <typename Restore>
std::string error_of(Restore&& restore) {
    try {
        restore();
    } catch (const StateError& error) {
        return error.what();
    }
    return "";
}

// A function's config space and MSI-X as a device keeps them.
struct Function {
    explicit Function(std::size_t vectors = 4, DeviceIdentity identity = kIdentity)
        : vectors(vectors), config(identity), msix(this->vectors) {
        config.add_bar(0, {.size = 0x1000});
        capability = msix.add_capability(config, {0, kTable}, {0, kPba});
    }
    void write_config(std::size_t index, std::size_t offset, std::span<const std::uint8_t> data) {
        config.write(index, offset, data);
        msix.sync(config);
    }
    void set_control(std::uint16_t control) { write_config(capability / 4, 2, bytes_of<2>(control)); }
    void program(std::size_t vector, std::uint64_t address, std::uint32_t data, bool masked) {
        const std::uint64_t entry = kTable + vector * Msix::kTableEntrySize;
        msix.write(0, entry + 12, bytes_of<4>(1));  // masked while written, as Linux does
        msix.write(0, entry, bytes_of<8>(address));
        msix.write(0, entry + 8, bytes_of<4>(data));
        msix.write(0, entry + 12, bytes_of<4>(masked ? 1 : 0));
    }
    std::uint64_t pba() {
        std::array<std::uint8_t, 8> bytes{};
        msix.read(0, kPba, bytes);
        std::uint64_t value = 0;
        for (std::size_t i = 0; i < 8; ++i) {
            value |= std::uint64_t{bytes[i]} << (8 * i);
        }
        return value;
    }
    State save() const { return {{"config", config.save()}, {"msix", msix.save()}}; }
    void restore(const State& state) {
        config.restore(state.at("config"));
        msix.restore(state.at("msix"), config);
    }

    FakeMsiVectors vectors;
    ConfigSpace config;
    Msix msix;
    std::size_t capability = 0;
};

TEST(ConfigSpaceStateTest, GuestWrittenRegistersSurviveTheTrip) {
    Function source;
    source.write_config(kCommandStatusRegister, 0, bytes_of<2>(kCommandMemorySpace | kCommandBusMaster));
    source.write_config(kFirstBarRegister, 0, bytes_of<4>(0xc0001000));
    source.write_config(kInterruptRegister, 0, bytes_of<1>(11));
    source.config.report_status_errors(0x2000);  // received master abort

    Function destination;
    destination.restore(source.save());
    for (std::size_t index = 0; index < kConfigRegisterCount; ++index) {
        EXPECT_EQ(destination.config.read(index), source.config.read(index)) << "register " << index;
    }
    EXPECT_EQ(destination.config.read(kFirstBarRegister), 0xc0001000u);
    EXPECT_EQ(destination.config.status() & 0x2000, 0x2000);
}

TEST(ConfigSpaceStateTest, RefusesAnotherDeviceOrAChangedReadOnlyBit) {
    Function other(4, DeviceIdentity{.vendor_id = 0x1af4, .device_id = 0x1041});
    Function destination;
    EXPECT_EQ(error_of([&] { destination.config.restore(other.config.save()); }),
              "registers: the state is of pci device 1af4:1041, this is pci device 1af4:1042");

    auto registers = state::struct_field<std::array<std::uint32_t, kConfigRegisterCount>>(
        destination.config.save(), "registers");
    registers[2] ^= 0xff000000;  // the class code
    EXPECT_THAT(error_of([&] {
                    destination.config.restore({{"registers", state::binary(registers)}});
                }),
                HasSubstr("registers: register 2 is"));

    EXPECT_EQ(error_of([&] {
                  destination.config.restore({{"registers", state::binary(std::vector<std::uint8_t>(255))}});
              }),
              "registers: 255 bytes, expected 256");
    EXPECT_EQ(error_of([&] { destination.config.restore(State::object()); }), "registers: missing");
}

TEST(MsixStateTest, LiveEntriesAreRoutedAgainAndPendingOnesStayPending) {
    Function source;
    source.program(0, 0xfee00000, 0x41, false);
    source.program(1, 0xfee01000, 0x42, true);
    source.set_control(kEnable);
    EXPECT_EQ(source.msix.notify(1), Msix::Delivery::kPending);

    Function destination;
    destination.restore(source.save());
    // Vector 0 is live: routed at once. Vector 1 is masked: no route yet, its PBA bit set.
    EXPECT_THAT(destination.vectors.routes, ElementsAre(Route{0, {0xfee00000, 0x41}}));
    EXPECT_TRUE(destination.vectors.triggers.empty());
    EXPECT_EQ(destination.pba(), 0b10u);
    EXPECT_TRUE(destination.msix.enabled());
    EXPECT_EQ(destination.msix.notify(0), Msix::Delivery::kSent);

    // Unmasking vector 1 routes it and delivers what was pending.
    destination.msix.write(0, kTable + Msix::kTableEntrySize + 12, bytes_of<4>(0));
    EXPECT_THAT(destination.vectors.routes,
                ElementsAre(Route{0, {0xfee00000, 0x41}}, Route{1, {0xfee01000, 0x42}}));
    EXPECT_THAT(destination.vectors.triggers, ElementsAre(0, 1));
    EXPECT_EQ(destination.pba(), 0u);
}

TEST(MsixStateTest, FunctionMaskHoldsEveryVectorBack) {
    Function source;
    source.program(0, 0xfee00000, 0x41, false);
    source.set_control(kEnable | kFunctionMask);
    EXPECT_EQ(source.msix.notify(0), Msix::Delivery::kPending);

    Function destination;
    destination.restore(source.save());
    EXPECT_TRUE(destination.vectors.routes.empty());
    destination.set_control(kEnable);
    EXPECT_THAT(destination.vectors.routes, ElementsAre(Route{0, {0xfee00000, 0x41}}));
    EXPECT_THAT(destination.vectors.triggers, ElementsAre(0));
}

TEST(MsixStateTest, RefusesHostileStates) {
    Function source;
    Function smaller(2);
    EXPECT_EQ(error_of([&] { smaller.msix.restore(source.msix.save(), smaller.config); }),
              "msix: entries: not an array of 2 entries");
    State state = source.msix.save();
    state["entries"][3]["data"] = std::uint64_t{1} << 32;
    EXPECT_THAT(error_of([&] { source.msix.restore(state, source.config); }),
                HasSubstr("msix: entry 3: data: not an unsigned integer of at most 4294967295"));
    state = source.msix.save();
    state["entries"][0].erase("masked");
    EXPECT_EQ(error_of([&] { source.msix.restore(state, source.config); }), "msix: entry 0: masked: missing");
}

// A function on the root bus whose config space travels.
class StatefulDevice final : public PciDevice {
public:
    std::uint32_t read_config(std::size_t index) override {
        std::lock_guard lock(mutex_);
        return config_.read(index);
    }
    void write_config(std::size_t index, std::size_t offset, std::span<const std::uint8_t> data) override {
        std::lock_guard lock(mutex_);
        config_.write(index, offset, data);
    }
    void read_bar(std::size_t bar, std::uint64_t, std::span<std::uint8_t> data) override {
        std::ranges::fill(data, static_cast<std::uint8_t>(0xa0 + bar));
    }
    void write_bar(std::size_t, std::uint64_t, std::span<const std::uint8_t>) override {}
    void bar_moved(std::size_t bar, std::optional<std::uint64_t> from,
                   std::optional<std::uint64_t> to) override {
        std::lock_guard lock(mutex_);
        moves.emplace_back(bar, from, to);
    }
    State save() const {
        std::lock_guard lock(mutex_);
        return config_.save();
    }
    void restore(const State& state) {
        std::lock_guard lock(mutex_);
        config_.restore(state);
    }

    using Move = std::tuple<std::size_t, std::optional<std::uint64_t>, std::optional<std::uint64_t>>;
    std::vector<Move> moves;

private:
    static ConfigSpace make_config() {
        ConfigSpace config(kIdentity);
        config.add_bar(0, {.size = 0x1000});
        return config;
    }
    mutable std::mutex mutex_;
    ConfigSpace config_ = make_config();
};

struct Machine {
    Machine() { root.add_device(1, "test", device); }
    std::uint32_t config_read(std::uint8_t slot, std::uint16_t offset) {
        std::array<std::uint8_t, 4> data{};
        root.read_config({.device = slot, .offset = offset}, data);
        return data[0] | data[1] << 8 | data[2] << 16 | std::uint32_t{data[3]} << 24;
    }
    void config_write(std::uint8_t slot, std::uint16_t offset, std::uint32_t value) {
        root.write_config({.device = slot, .offset = offset}, bytes_of<4>(value));
    }
    std::uint8_t mmio_byte(std::uint64_t address) {
        std::uint8_t byte = 0;
        mmio.read(address, {&byte, 1});
        return byte;
    }

    devices::Bus mmio{"MMIO", 0};
    RootBus root{mmio, {0xc0000000, 256ull << 20}, {16, 4}};
    std::shared_ptr<StatefulDevice> device = std::make_shared<StatefulDevice>();
};

TEST(RootBusStateTest, BarsDecodeWhereTheRestoredRegistersSay) {
    Machine source;
    const std::uint32_t placed = source.config_read(1, 0x10);
    source.config_write(1, 0x10, 0xc8000000);  // the guest moves BAR 0
    source.config_write(0, 0x04, 0x0006);      // and writes the host bridge's command register
    ASSERT_EQ(source.mmio_byte(0xc8000000), 0xa0);

    Machine destination;
    destination.device->restore(source.device->save());
    destination.root.restore(source.root.save());
    destination.device->moves.clear();
    destination.root.restore_mappings();

    EXPECT_THAT(destination.device->moves,
                ElementsAre(StatefulDevice::Move{0, std::uint64_t{placed}, std::uint64_t{0xc8000000}}));
    EXPECT_EQ(destination.mmio_byte(0xc8000000), 0xa0);
    destination.mmio_byte(placed);
    EXPECT_EQ(destination.mmio.unhandled_reads(), 1u);
    EXPECT_EQ(destination.config_read(0, 0x04) & 0xffff, 0x0006u);
}

TEST(RootBusStateTest, MemoryDecodingOffUnmapsTheBars) {
    Machine source;
    const std::uint32_t placed = source.config_read(1, 0x10);
    source.config_write(1, 0x04, 0);  // memory space off
    Machine destination;
    destination.device->restore(source.device->save());
    destination.device->moves.clear();
    destination.root.restore_mappings();
    EXPECT_THAT(destination.device->moves,
                ElementsAre(StatefulDevice::Move{0, std::uint64_t{placed}, std::nullopt}));
}

TEST(RootBusStateTest, RefusesAHostBridgeStateOfAnotherDevice) {
    Machine machine;
    EXPECT_EQ(
        error_of([&] {
            machine.root.restore({{"host_bridge", machine.device->save()}});
        }),
        "pci: host bridge: registers: the state is of pci device 1af4:1042, this is pci device 8086:0d57");
    EXPECT_EQ(error_of([&] { machine.root.restore(State::object()); }),
              "pci: host bridge: host_bridge: missing");
}

}  // namespace
}  // namespace vim::vmm::pci
