// A virtio-pci transport set going by the guest's driver, quiesced, saved and
// restored into a transport built the same way on a fresh machine (RAM copied,
// as the migration engine does): the driver reads the same registers, the
// device is activated again with the same queues, a request the driver queued
// before the source paused is served on the right queue at the right index,
// and its interrupt goes out through the same MSI-X route. Hostile states are
// refused with the device and the field named.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fakes/fake_vm.h"
#include "vim/testing/fake_interrupt_line.h"
#include "vim/testing/fake_msi_vectors.h"
#include "vim/testing/guest_ram.h"
#include "vim/testing/loop_steps.h"
#include "vim/testing/virtio_driver.h"
#include "vmm/devices/bus.h"
#include "vmm/pci/root_bus.h"
#include "vmm/state/state.h"
#include "vmm/sys/event_loop.h"
#include "vmm/virtio/pci_transport.h"

namespace vim::vmm::virtio {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using state::State;
using state::StateError;
using vim::testing::after_turns;
using vim::testing::DriverBuffer;
using vim::testing::FakeInterruptLine;
using vim::testing::FakeMsiVectors;
using vim::testing::FakeVm;
using vim::testing::GuestRam;
using vim::testing::RingLayout;
using vim::testing::run_loop_steps;
using vim::testing::VirtqueueDriver;

constexpr memory::GuestAddress kRam = 0x100000;
constexpr std::uint64_t kRamSize = 0x100000;
constexpr std::size_t kSlot = 3;
constexpr std::uint16_t kQueueSize = 64;

// struct virtio_pci_common_cfg.
constexpr std::uint64_t kDriverFeatureSelect = 0x08, kDriverFeature = 0x0c, kConfigMsixVector = 0x10;
constexpr std::uint64_t kDeviceStatus = 0x14, kQueueSelect = 0x16, kQueueSize_ = 0x18,
                        kQueueMsixVector = 0x1a;
constexpr std::uint64_t kQueueEnable = 0x1c, kQueueDesc = 0x20, kQueueDriver = 0x28, kQueueDevice = 0x30;
constexpr std::uint8_t kDriverReady =
    kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk;

// Two queues; each chain it pops is completed at once, with the position it
// was found at written into its one writable byte, and announced.
class EchoDevice final : public VirtioDevice {
public:
    explicit EchoDevice(std::uint32_t type = kDeviceTypeBlock) : type_(type) {}

    std::uint32_t device_type() const override { return type_; }
    std::uint64_t device_features() const override { return 0; }
    std::vector<std::uint16_t> queue_max_sizes() const override { return {kQueueSize, kQueueSize}; }
    void read_config(std::uint64_t, std::span<std::uint8_t> data) override { std::ranges::fill(data, word_); }
    void write_config(std::uint64_t, std::span<const std::uint8_t> data) override { word_ = data[0]; }

    void activate(const Activation& activation) override {
        activation_.emplace(activation);
        for (const Queue& queue : activation.queues) {
            activated_queues.push_back(queue.state());
        }
        for (std::size_t queue = 0; queue < activation.queues.size(); ++queue) {
            activation.loop.add(activation.notifications[queue], EPOLLIN, [this, queue](std::uint32_t) {
                std::uint64_t count;
                (void)::read(activation_->notifications[queue], &count, sizeof count);
                serve(queue);
            });
        }
    }
    void reset() override {
        ++resets;
        activation_.reset();
    }
    nlohmann::json stats() const override { return nlohmann::json::object(); }

    void quiesce() override { ++quiesced; }
    State save_device() const override { return {{"word", word_}}; }
    void restore_device(const State& state, std::uint64_t, std::span<const Queue>) override {
        word_ = state::unsigned_field<std::uint8_t>(state, "word");
    }

    std::vector<QueueState> activated_queues;
    std::vector<std::pair<std::size_t, std::uint16_t>> served;  // queue, next_avail when popped
    int quiesced = 0;
    int resets = 0;

private:
    void serve(std::size_t index) {
        Queue& queue = activation_->queues[index];
        while (true) {
            const std::uint16_t position = queue.state().next_avail;
            std::optional<DescriptorChain> chain = queue.pop(activation_->memory);
            if (!chain) {
                break;
            }
            served.emplace_back(index, position);
            const auto byte = static_cast<std::uint8_t>(position);
            chain->write(activation_->memory, 0, {&byte, 1});
            queue.add_used(activation_->memory, *chain, 1);
        }
        if (queue.needs_notification(activation_->memory)) {
            activation_->interrupt.used_buffers(index);
        }
    }

    const std::uint32_t type_;
    std::optional<Activation> activation_;
    std::uint8_t word_ = 0;
};

// A machine with the transport in slot kSlot of a root bus, as the vmm builds it.
struct Side {
    explicit Side(std::uint32_t type = kDeviceTypeBlock) : device(std::make_shared<EchoDevice>(type)) {
        auto owned_vectors = std::make_unique<FakeMsiVectors>(PciTransport::vector_count(2));
        vectors = owned_vectors.get();
        transport = std::make_shared<PciTransport>("virtio-test0", device, ram.memory(), loop, vm,
                                                   std::move(owned_vectors), intx);
        root.add_device(kSlot, "virtio-test0", transport);
    }

    std::uint32_t config_read(std::uint16_t offset) {
        std::array<std::uint8_t, 4> data{};
        root.read_config({.device = kSlot, .offset = offset}, data);
        return data[0] | data[1] << 8 | data[2] << 16 | std::uint32_t{data[3]} << 24;
    }
    void config_write(std::uint16_t offset, std::uint32_t value, std::size_t size) {
        std::vector<std::uint8_t> data(size);
        for (std::size_t i = 0; i < size; ++i) {
            data[i] = static_cast<std::uint8_t>(value >> (8 * i));
        }
        root.write_config({.device = kSlot, .offset = offset}, data);
    }
    std::uint64_t bar0() { return config_read(0x10) & ~0xfull; }
    std::uint64_t bar_read(std::uint64_t offset, std::size_t size) {
        std::array<std::uint8_t, 8> data{};
        mmio.read(bar0() + offset, std::span(data).first(size));
        std::uint64_t value = 0;
        std::memcpy(&value, data.data(), size);
        return value;
    }
    void bar_write(std::uint64_t offset, std::size_t size, std::uint64_t value) {
        std::array<std::uint8_t, 8> data{};
        std::memcpy(data.data(), &value, size);
        mmio.write(bar0() + offset, std::span(data).first(size));
    }
    std::size_t msix_capability() {
        for (std::uint32_t at = config_read(0x34) & 0xfc; at != 0; at = (config_read(at) >> 8) & 0xfc) {
            if ((config_read(at) & 0xff) == 0x11) {
                return at;
            }
        }
        ADD_FAILURE() << "no MSI-X capability";
        return 0;
    }

    GuestRam ram{kRam, kRamSize};
    sys::EventLoop loop;
    FakeVm vm;
    devices::Bus mmio{"MMIO", 0};
    pci::RootBus root{mmio, {0xc0000000, 256ull << 20}, {16, 4}};
    FakeInterruptLine intx;
    FakeMsiVectors* vectors = nullptr;
    std::shared_ptr<EchoDevice> device;
    std::shared_ptr<PciTransport> transport;
};

// What the guest's driver did before the source paused: MSI-X on with a
// vector per queue and one for config, both queues up, DRIVER_OK, one request
// served on queue 1, and one more queued there without a notification yet.
class TransportStateTest : public ::testing::Test {
protected:
    TransportStateTest() {
        const std::size_t msix = source.msix_capability();
        for (std::uint64_t vector = 0; vector < 3; ++vector) {
            const std::uint64_t entry = PciTransport::kMsixTableOffset + vector * 16;
            source.bar_write(entry, 8, 0xfee00000 + (vector << 12));
            source.bar_write(entry + 8, 4, 0x40 + vector);
            source.bar_write(entry + 12, 4, 0);
        }
        source.config_write(static_cast<std::uint16_t>(msix + 2), 0x8000, 2);  // MSI-X enable
        source.bar_write(kDeviceStatus, 1, kStatusAcknowledge | kStatusDriver);
        source.bar_write(kDriverFeatureSelect, 4, 1);
        source.bar_write(kDriverFeature, 4, 1);  // VERSION_1
        source.bar_write(kDeviceStatus, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
        source.bar_write(kConfigMsixVector, 2, 2);
        for (std::uint16_t queue = 0; queue < 2; ++queue) {
            const VirtqueueDriver& driver = drivers[queue];
            source.bar_write(kQueueSelect, 2, queue);
            source.bar_write(kQueueSize_, 2, kQueueSize);
            source.bar_write(kQueueMsixVector, 2, queue);
            source.bar_write(kQueueDesc, 8, driver.descriptor_table());
            source.bar_write(kQueueDriver, 8, driver.avail_ring());
            source.bar_write(kQueueDevice, 8, driver.used_ring());
            source.bar_write(kQueueEnable, 2, 1);
        }
        source.bar_write(0x2000, 1, 0x5c);  // the device's config
        source.bar_write(kDeviceStatus, 1, kDriverReady);

        first = drivers[1].writable(1);
        second = drivers[1].writable(1);
        run_loop_steps(source.loop,
                       {{[&] {
                             drivers[1].add_chain(std::array{first});
                             source.bar_write(PciTransport::kNotifyOffset + 4, 2, 1);
                         },
                         [&] { return drivers[1].used_idx() == 1; }},
                        {[&] {
                             drivers[1].add_chain(std::array{second});  // the vCPUs pause before the notify
                             source.transport->quiesce();
                             saved = source.transport->save();
                         },
                         after_turns(1)}});
        std::memcpy(destination.ram.memory().regions()[0].host, source.ram.memory().regions()[0].host,
                    kRamSize);
    }

    std::string restore_error(const State& state) {
        Side side;
        try {
            side.transport->restore(state);
        } catch (const StateError& error) {
            return error.what();
        }
        return "";
    }

    Side source;
    Side destination;
    std::array<VirtqueueDriver, 2> drivers{
        VirtqueueDriver(source.ram.memory(), kQueueSize, RingLayout::packed(kRam, kQueueSize), kRam + 0x10000,
                        0x10000),
        VirtqueueDriver(source.ram.memory(), kQueueSize, RingLayout::packed(kRam + 0x4000, kQueueSize),
                        kRam + 0x20000, 0x10000)};
    DriverBuffer first{};
    DriverBuffer second{};
    State saved;
};

TEST_F(TransportStateTest, QueuedRequestIsServedOnTheRightQueueThroughTheSameRoute) {
    ASSERT_EQ(source.device->quiesced, 1);
    ASSERT_THAT(source.device->served, ElementsAre(std::pair<std::size_t, std::uint16_t>{1, 0}));

    destination.transport->restore(saved);
    destination.root.restore(source.root.save());
    destination.root.restore_mappings();
    // Routes of the live MSI-X entries are set before anything runs.
    EXPECT_THAT(destination.vectors->routes,
                Contains(std::pair<std::size_t, devices::MsiMessage>{1, {0xfee01000, 0x41}}));

    run_loop_steps(destination.loop, {{[] {}, after_turns(3)}});
    ASSERT_EQ(destination.device->activated_queues.size(), 2u);
    EXPECT_EQ(destination.device->activated_queues[0], source.device->activated_queues[0]);
    EXPECT_EQ(destination.device->activated_queues[1].next_avail, 1);
    EXPECT_EQ(destination.device->activated_queues[1].descriptor_table, drivers[1].descriptor_table());
    EXPECT_THAT(destination.device->served, ElementsAre(std::pair<std::size_t, std::uint16_t>{1, 1}));
    // The request written in the destination's RAM, at used index 1.
    VirtqueueDriver on_destination(destination.ram.memory(), kQueueSize,
                                   RingLayout::packed(kRam + 0x4000, kQueueSize), kRam + 0x20000, 0x10000);
    EXPECT_EQ(on_destination.used_idx(), 2);
    EXPECT_EQ(on_destination.used_element(1).id, 1u);
    EXPECT_EQ(on_destination.read<std::uint8_t>(second.address), 1);
    EXPECT_THAT(destination.vectors->triggers, ElementsAre(1));
}

TEST_F(TransportStateTest, DriverReadsTheSameRegisters) {
    destination.transport->restore(saved);
    destination.root.restore_mappings();
    EXPECT_EQ(destination.bar_read(kDeviceStatus, 1), kDriverReady);
    destination.bar_write(kDriverFeatureSelect, 4, 1);
    EXPECT_EQ(destination.bar_read(kDriverFeature, 4), 1u);
    EXPECT_EQ(destination.bar_read(kConfigMsixVector, 2), 2u);
    for (std::uint16_t queue = 0; queue < 2; ++queue) {
        destination.bar_write(kQueueSelect, 2, queue);
        EXPECT_EQ(destination.bar_read(kQueueMsixVector, 2), queue);
        EXPECT_EQ(destination.bar_read(kQueueEnable, 2), 1u);
        EXPECT_EQ(destination.bar_read(kQueueDesc, 8), drivers[queue].descriptor_table());
        EXPECT_EQ(destination.bar_read(kQueueDriver, 8), drivers[queue].avail_ring());
        EXPECT_EQ(destination.bar_read(kQueueDevice, 8), drivers[queue].used_ring());
    }
    EXPECT_EQ(destination.bar_read(0x2000, 1), 0x5cu);
    EXPECT_EQ(destination.config_read(0x04), source.config_read(0x04));
    const std::size_t msix = destination.msix_capability();
    EXPECT_EQ(destination.config_read(static_cast<std::uint16_t>(msix)) >> 16 & 0x8000, 0x8000u);
    EXPECT_EQ(destination.bar_read(PciTransport::kMsixTableOffset + 16, 8), 0xfee01000u);
}

// The driver wrote 0 to the status and waits for the reset to be done: the
// state saved is the one after it, and the reset is not done twice.
TEST_F(TransportStateTest, QuiesceFinishesAResetTheDriverAskedFor) {
    Side side;
    side.bar_write(kDeviceStatus, 1, kStatusAcknowledge | kStatusDriver);
    side.bar_write(kDriverFeatureSelect, 4, 1);
    side.bar_write(kDriverFeature, 4, 1);
    side.bar_write(kDeviceStatus, 1, kDriverReady);
    State state;
    vim::testing::run_loop_steps(side.loop, {{[] {}, after_turns(1)},
                                             {[&] {
                                                  side.bar_write(kDeviceStatus, 1, 0);
                                                  EXPECT_EQ(side.bar_read(kDeviceStatus, 1), kDriverReady);
                                                  side.transport->quiesce();
                                                  state = side.transport->save();
                                              },
                                              after_turns(2)}});
    EXPECT_EQ(side.device->resets, 1);
    EXPECT_EQ(state["status"], 0);
    EXPECT_EQ(side.bar_read(kDeviceStatus, 1), 0u);
}

TEST_F(TransportStateTest, DeviceNeverSetGoingIsNotActivated) {
    Side fresh_source;
    Side fresh_destination;
    fresh_destination.transport->restore(fresh_source.transport->save());
    run_loop_steps(fresh_destination.loop, {{[] {}, after_turns(2)}});
    EXPECT_TRUE(fresh_destination.device->activated_queues.empty());
    EXPECT_EQ(fresh_destination.bar_read(kDeviceStatus, 1), 0u);
}

TEST_F(TransportStateTest, RefusesAQueueOutsideGuestRam) {
    State state = saved;
    state["queues"][1]["used_ring"] = 0x80000000;
    EXPECT_THAT(restore_error(state),
                HasSubstr("virtio-test0: queue 1: virtio-test0 queue 1: used ring 0x80000000"));
    EXPECT_THAT(restore_error(state), HasSubstr("is not in guest RAM"));
    state = saved;
    state["queues"][0]["size"] = 100;
    EXPECT_THAT(restore_error(state),
                HasSubstr("virtio-test0: queue 0: virtio-test0 queue 0: size 100 is not a power of two"));
}

TEST_F(TransportStateTest, RefusesHostileRegisters) {
    State state = saved;
    state["queues"][0]["vector"] = 3;
    EXPECT_EQ(restore_error(state), "virtio-test0: queue 0: vector: 3 is past the 3 MSI-X vectors");
    state = saved;
    state["driver_features"] = std::uint64_t{1} << 40 | std::uint64_t{1} << 32;
    EXPECT_THAT(restore_error(state), HasSubstr("virtio-test0: driver_features: 0x10100000000 accepted"));
    state = saved;
    state["queues"].erase(1);
    EXPECT_EQ(restore_error(state), "virtio-test0: queues: not an array of the device's 2 queues");
    state = saved;
    state["isr"] = 4;
    EXPECT_EQ(restore_error(state), "virtio-test0: isr: 4 has bits other than 0 and 1");
    state = saved;
    state.erase("status");
    EXPECT_EQ(restore_error(state), "virtio-test0: status: missing");
    state = saved;
    state["device"]["word"] = -1;
    EXPECT_THAT(restore_error(state), HasSubstr("virtio-test0: device: word: not an unsigned integer"));
    state = saved;
    state["msix"]["entries"] = 5;
    EXPECT_EQ(restore_error(state), "virtio-test0: msix: entries: not an array of 3 entries");
}

TEST_F(TransportStateTest, RefusesTheStateOfAnotherDeviceType) {
    Side network(kDeviceTypeNet);
    try {
        network.transport->restore(saved);
        FAIL() << "restored a block device's state into a network device";
    } catch (const StateError& error) {
        EXPECT_STREQ(
            error.what(),
            "virtio-test0: config space: registers: the state is of pci device 1af4:1042, this is pci "
            "device 1af4:1041");
    }
}

}  // namespace
}  // namespace vim::vmm::virtio
