// The virtio 1.x PCI transport driven as Linux's virtio_pci_modern driver
// drives it (drivers/virtio/virtio_pci_modern.c, virtio_pci_modern_dev.c):
// configuration cycles through mechanism #1 on a port-I/O bus, register
// accesses on the MMIO bus at the address the root bus gave BAR 0 and the
// offsets the capabilities name. Behind the transport is a fake device that
// records what it is handed; the event loop runs on a thread of its own, as
// in the vmm, while the test's thread plays the vCPU. No KVM: ioeventfds are
// recorded by a fake VM, so notifications reach the device through the
// transport's MMIO fallback.
#include "vmm/virtio/pci_transport.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <span>
#include <stdexcept>
#include <thread>
#include <vector>

#include "fakes/fake_vm.h"
#include "vim/testing/fake_interrupt_line.h"
#include "vim/testing/fake_msi_vectors.h"
#include "vim/testing/guest_ram.h"
#include "vim/testing/virtio_driver.h"
#include "vmm/devices/bus.h"
#include "vmm/pci/config_io.h"
#include "vmm/pci/root_bus.h"
#include "vmm/sys/event_loop.h"
#include "vmm/virtio/split_ring.h"

namespace vim::vmm::virtio {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::StrEq;
using ::testing::ThrowsMessage;
using ::testing::UnorderedElementsAreArray;
using vim::testing::FakeInterruptLine;
using vim::testing::FakeMsiVectors;
using vim::testing::FakeVm;
using vim::testing::RingLayout;

constexpr std::uint64_t kWindowStart = 0xc0000000;
constexpr std::uint64_t kWindowSize = 256ull << 20;
constexpr std::uint16_t kConfigAddressPort = 0xcf8;
constexpr std::uint16_t kConfigDataPort = 0xcfc;
constexpr std::size_t kSlot = 2;
constexpr memory::GuestAddress kRam = 0x100000;
constexpr std::uint64_t kRamSize = 0x100000;
constexpr memory::GuestAddress kOutsideRam = 0x80000000;
// Nothing in this test has more to wait for than a loop turn.
constexpr auto kPatience = 10s;

// Configuration space (PCI 3.0, 6.1).
constexpr std::size_t kVendorIdOffset = 0x00;
constexpr std::size_t kCommandOffset = 0x04;
constexpr std::size_t kStatusOffset = 0x06;
constexpr std::size_t kRevisionOffset = 0x08;
constexpr std::size_t kClassOffset = 0x0a;
constexpr std::size_t kBar0Offset = 0x10;
constexpr std::size_t kSubsystemOffset = 0x2c;
constexpr std::size_t kCapabilityPointerOffset = 0x34;
constexpr std::size_t kInterruptPinOffset = 0x3d;
constexpr std::uint8_t kCapabilityIdVendor = 0x09;
constexpr std::uint8_t kCapabilityIdMsix = 0x11;
constexpr std::uint16_t kStatusInterruptBit = 1u << 3;
constexpr std::uint16_t kStatusCapabilitiesBit = 1u << 4;

// MSI-X (PCI 3.0, 6.8.2).
constexpr std::uint16_t kMsixEnable = 1u << 15;
constexpr std::uint16_t kMsixMaskAll = 1u << 14;
constexpr std::uint64_t kEntryAddressLow = 0, kEntryAddressHigh = 4, kEntryData = 8, kEntryControl = 12;

// struct virtio_pci_cap and virtio_pci_notify_cap (spec 4.1.4), offsets from
// the capability's start, and the cfg_type values.
constexpr std::size_t kCapLength = 2, kCapType = 3, kCapBar = 4, kCapOffset = 8, kCapRegionLength = 12;
constexpr std::size_t kCapNotifyMultiplier = 16;
constexpr std::uint8_t kCommonCfg = 1, kNotifyCfg = 2, kIsrCfg = 3, kDeviceCfg = 4;

// struct virtio_pci_common_cfg (Linux's VIRTIO_PCI_COMMON_*).
constexpr std::uint64_t kDeviceFeatureSelect = 0x00;
constexpr std::uint64_t kDeviceFeature = 0x04;
constexpr std::uint64_t kDriverFeatureSelect = 0x08;
constexpr std::uint64_t kDriverFeature = 0x0c;
constexpr std::uint64_t kConfigMsixVector = 0x10;
constexpr std::uint64_t kNumQueues = 0x12;
constexpr std::uint64_t kDeviceStatus = 0x14;
constexpr std::uint64_t kConfigGeneration = 0x15;
constexpr std::uint64_t kQueueSelect = 0x16;
constexpr std::uint64_t kQueueSize = 0x18;
constexpr std::uint64_t kQueueMsixVector = 0x1a;
constexpr std::uint64_t kQueueEnable = 0x1c;
constexpr std::uint64_t kQueueNotifyOff = 0x1e;
constexpr std::uint64_t kQueueDescLow = 0x20, kQueueDescHigh = 0x24;
constexpr std::uint64_t kQueueAvailLow = 0x28;
constexpr std::uint64_t kQueueUsedLow = 0x30, kQueueUsedHigh = 0x34;
constexpr std::uint64_t kCommonCfgSize = 0x38;
constexpr std::uint16_t kNoVector = 0xffff;  // VIRTIO_MSI_NO_VECTOR
constexpr std::uint8_t kIsrQueue = 1, kIsrConfig = 2;

constexpr std::uint8_t kDriverReady =
    kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk;

std::uint64_t value_of(std::span<const std::uint8_t> bytes) {
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < bytes.size() && i < 8; ++i) {
        value |= std::uint64_t{bytes[i]} << (8 * i);
    }
    return value;
}

std::vector<std::uint8_t> bytes_of(std::uint64_t value, std::size_t size) {
    std::vector<std::uint8_t> bytes(size);
    for (std::size_t i = 0; i < size && i < 8; ++i) {
        bytes[i] = static_cast<std::uint8_t>(value >> (8 * i));
    }
    return bytes;
}

// A block-typed device with two queues and an 8-byte configuration (a
// read-only word, then one the driver may write) that records what the
// transport hands it and which queues the driver notified.
class FakeDevice final : public VirtioDevice {
public:
    static constexpr std::uint64_t kFeatures = feature_bit(0) | feature_bit(kFeatureRingEventIdx);
    static constexpr std::array<std::uint16_t, 2> kQueueMaxSizes{256, 64};
    static constexpr std::uint32_t kReadOnlyWord = 0x12345678;

    struct Activated {
        std::uint64_t features;
        std::vector<QueueState> queues;
        std::vector<int> notifications;
        std::thread::id thread;
    };

    std::uint32_t device_type() const override { return kDeviceTypeBlock; }
    std::uint64_t device_features() const override { return kFeatures; }
    std::vector<std::uint16_t> queue_max_sizes() const override {
        return {kQueueMaxSizes.begin(), kQueueMaxSizes.end()};
    }

    void read_config(std::uint64_t offset, std::span<std::uint8_t> data) override {
        std::lock_guard lock(mutex_);
        for (std::size_t i = 0; i < data.size(); ++i) {
            data[i] = offset + i < config_.size() ? config_[offset + i] : 0;
        }
    }
    void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) override {
        std::lock_guard lock(mutex_);
        for (std::size_t i = 0; i < data.size(); ++i) {
            if (offset + i >= 4 && offset + i < config_.size()) {
                config_[offset + i] = data[i];
            }
        }
    }

    void activate(const Activation& activation) override {
        Activated activated{activation.features, {}, {}, std::this_thread::get_id()};
        for (const Queue& queue : activation.queues) {
            activated.queues.push_back(queue.state());
        }
        activated.notifications.assign(activation.notifications.begin(), activation.notifications.end());
        for (std::size_t queue = 0; queue < activation.notifications.size(); ++queue) {
            const int fd = activation.notifications[queue];
            activation.loop.add(fd, EPOLLIN, [this, fd, queue](std::uint32_t) {
                std::uint64_t count = 0;
                if (::read(fd, &count, sizeof count) != sizeof count) {
                    ADD_FAILURE() << "queue " << queue << "'s notification was readable but empty";
                }
                std::lock_guard lock(mutex_);
                notified_.push_back(queue);
                changed_.notify_all();
            });
        }
        loop_ = &activation.loop;
        interrupt_ = &activation.interrupt;
        std::lock_guard lock(mutex_);
        activations_.push_back(std::move(activated));
    }

    void reset() override {
        const std::vector<Activated> activated = activations();
        for (int fd : activated.back().notifications) {
            loop_->remove(fd);
        }
        interrupt_ = nullptr;
        std::lock_guard lock(mutex_);
        ++resets_;
    }

    nlohmann::json stats() const override { return {{"fake_requests", 7}}; }

    // On the loop's thread, while active: what the device interrupts with.
    DeviceInterrupt* interrupt() const { return interrupt_; }

    std::vector<Activated> activations() const {
        std::lock_guard lock(mutex_);
        return activations_;
    }
    int resets() const {
        std::lock_guard lock(mutex_);
        return resets_;
    }
    // The queues notified so far, in order.
    std::vector<std::size_t> notified() const {
        std::lock_guard lock(mutex_);
        return notified_;
    }
    // The same, once there are `count` of them (or what there is after
    // kPatience).
    std::vector<std::size_t> wait_for_notifications(std::size_t count) {
        std::unique_lock lock(mutex_);
        changed_.wait_for(lock, kPatience, [&] { return notified_.size() >= count; });
        return notified_;
    }
    std::uint32_t writable_word() const {
        std::lock_guard lock(mutex_);
        return static_cast<std::uint32_t>(value_of(std::span(config_).subspan(4)));
    }

private:
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::array<std::uint8_t, 8> config_{0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0};
    std::vector<Activated> activations_;
    int resets_ = 0;
    std::vector<std::size_t> notified_;
    sys::EventLoop* loop_ = nullptr;        // the loop's thread only
    DeviceInterrupt* interrupt_ = nullptr;  // the loop's thread only
};

// Runs an event loop on a thread of its own until destroyed.
class LoopThread {
public:
    explicit LoopThread(sys::EventLoop& loop) : loop_(loop), thread_([&loop] { loop.run(); }) {}
    ~LoopThread() {
        loop_.stop();
        thread_.join();
    }

    // Runs `task` on the loop after everything posted before it; returns once
    // it has run.
    void run(std::function<void()> task) {
        auto done = std::make_shared<std::promise<void>>();
        std::future<void> finished = done->get_future();
        loop_.post([task = std::move(task), done] {
            task();
            done->set_value();
        });
        if (finished.wait_for(kPatience) != std::future_status::ready) {
            ADD_FAILURE() << "the event loop never ran the task";
        }
    }
    std::thread::id id() const { return thread_.get_id(); }

private:
    sys::EventLoop& loop_;
    std::thread thread_;
};

// Where a virtio_pci_cap points.
struct Region {
    std::size_t capability = 0;  // its offset in configuration space
    std::uint8_t bar = 0;
    std::uint32_t offset = 0;
    std::uint32_t length = 0;
};

// Plays Linux's virtio_pci_modern driver: what it reads and writes, where,
// with which access sizes, in its order.
class LinuxDriver {
public:
    LinuxDriver(devices::Bus& pio, devices::Bus& mmio) : pio_(pio), mmio_(mmio) {}

    // pci_read_config_{byte,word,dword} and the writes: mechanism #1.
    std::uint32_t config_read(std::size_t offset, std::size_t size) {
        select(offset);
        std::vector<std::uint8_t> data(size);
        pio_.read(kConfigDataPort + (offset & 3), data);
        return static_cast<std::uint32_t>(value_of(data));
    }
    void config_write(std::size_t offset, std::size_t size, std::uint32_t value) {
        select(offset);
        pio_.write(kConfigDataPort + (offset & 3), bytes_of(value, size));
    }
    std::uint64_t bar0_address() { return config_read(kBar0Offset, 4) & ~std::uint64_t{0xf}; }

    // vp_modern_probe(): the first vendor capability of each type (with a
    // BAR number that exists), mapped at BAR 0's address.
    bool probe() {
        for (std::size_t position = config_read(kCapabilityPointerOffset, 1) & ~3u; position != 0;
             position = config_read(position + 1, 1) & ~3u) {
            const std::uint8_t id = static_cast<std::uint8_t>(config_read(position, 1));
            if (id == kCapabilityIdMsix) {
                msix_capability = position;
            }
            const std::uint8_t bar = static_cast<std::uint8_t>(config_read(position + kCapBar, 1));
            if (id != kCapabilityIdVendor || bar > 5) {
                continue;
            }
            const Region region{position, bar, config_read(position + kCapOffset, 4),
                                config_read(position + kCapRegionLength, 4)};
            std::optional<Region>* found = nullptr;
            switch (config_read(position + kCapType, 1)) {
            case kCommonCfg:
                found = &common;
                break;
            case kNotifyCfg:
                found = &notify;
                break;
            case kIsrCfg:
                found = &isr;
                break;
            case kDeviceCfg:
                found = &device;
                break;
            }
            if (found && !*found) {
                *found = region;
            }
        }
        if (!common || !notify || !isr || !device) {
            ADD_FAILURE() << "missing capabilities " << bool(common) << bool(notify) << bool(isr)
                          << bool(device);
            return false;
        }
        notify_multiplier = config_read(notify->capability + kCapNotifyMultiplier, 4);
        bar0 = bar0_address();
        return true;
    }

    // vp_ioread*/vp_iowrite* on the mapped regions.
    std::uint64_t mmio_read(std::uint64_t address, std::size_t size) {
        std::vector<std::uint8_t> data(size);
        mmio_.read(address, data);
        return value_of(data);
    }
    void mmio_write(std::uint64_t address, std::size_t size, std::uint64_t value) {
        mmio_.write(address, bytes_of(value, size));
    }
    std::uint64_t common_read(std::uint64_t field, std::size_t size) {
        return mmio_read(bar0 + common->offset + field, size);
    }
    void common_write(std::uint64_t field, std::size_t size, std::uint64_t value) {
        mmio_write(bar0 + common->offset + field, size, value);
    }

    std::uint8_t status() { return static_cast<std::uint8_t>(common_read(kDeviceStatus, 1)); }
    void set_status(std::uint8_t status) { common_write(kDeviceStatus, 1, status); }
    // virtio_add_status().
    void add_status(std::uint8_t bits) { set_status(status() | bits); }
    // vp_reset(): write 0, then wait for the device to read 0.
    bool reset() {
        set_status(0);
        const auto deadline = std::chrono::steady_clock::now() + kPatience;
        while (status() != 0) {
            if (std::chrono::steady_clock::now() > deadline) {
                return false;
            }
            std::this_thread::sleep_for(1ms);
        }
        return true;
    }

    std::uint64_t device_features() {
        common_write(kDeviceFeatureSelect, 4, 0);
        std::uint64_t features = common_read(kDeviceFeature, 4);
        common_write(kDeviceFeatureSelect, 4, 1);
        return features | common_read(kDeviceFeature, 4) << 32;
    }
    void set_driver_features(std::uint64_t features) {
        common_write(kDriverFeatureSelect, 4, 0);
        common_write(kDriverFeature, 4, features & 0xffffffff);
        common_write(kDriverFeatureSelect, 4, 1);
        common_write(kDriverFeature, 4, features >> 32);
    }
    std::uint64_t driver_features() {
        common_write(kDriverFeatureSelect, 4, 0);
        std::uint64_t features = common_read(kDriverFeature, 4);
        common_write(kDriverFeatureSelect, 4, 1);
        return features | common_read(kDriverFeature, 4) << 32;
    }
    // virtio_dev_probe() up to virtio_features_ok(): whether FEATURES_OK stuck.
    bool negotiate(std::uint64_t features) {
        add_status(kStatusAcknowledge);
        add_status(kStatusDriver);
        set_driver_features(features);
        add_status(kStatusFeaturesOk);
        return status() & kStatusFeaturesOk;
    }

    void select_queue(std::uint16_t queue) { common_write(kQueueSelect, 2, queue); }
    // setup_vq(): size, the three addresses as two dwords each, then the
    // vector, which reads back as assigned or NO_VECTOR.
    std::uint16_t setup_queue(std::uint16_t queue, std::uint16_t size, const RingLayout& rings,
                              std::uint16_t vector) {
        select_queue(queue);
        common_write(kQueueSize, 2, size);
        write_two_part(kQueueDescLow, rings.descriptor_table);
        write_two_part(kQueueAvailLow, rings.avail_ring);
        write_two_part(kQueueUsedLow, rings.used_ring);
        if (vector == kNoVector) {
            return kNoVector;
        }
        common_write(kQueueMsixVector, 2, vector);
        return static_cast<std::uint16_t>(common_read(kQueueMsixVector, 2));
    }
    void enable_queue(std::uint16_t queue) {
        select_queue(queue);
        common_write(kQueueEnable, 2, 1);
    }
    std::uint64_t queue_register(std::uint16_t queue, std::uint64_t field, std::size_t size) {
        select_queue(queue);
        return common_read(field, size);
    }
    std::uint64_t queue_address(std::uint16_t queue, std::uint64_t low_field) {
        select_queue(queue);
        return common_read(low_field, 4) | common_read(low_field + 4, 4) << 32;
    }
    std::uint16_t set_config_vector(std::uint16_t vector) {
        common_write(kConfigMsixVector, 2, vector);
        return static_cast<std::uint16_t>(common_read(kConfigMsixVector, 2));
    }

    // vp_notify(): the queue's index, 16 bits, at its notification address.
    std::uint64_t notify_address(std::uint16_t queue) {
        return bar0 + notify->offset + queue_register(queue, kQueueNotifyOff, 2) * notify_multiplier;
    }
    void notify_queue(std::uint16_t queue) { mmio_write(notify_address(queue), 2, queue); }

    std::uint8_t read_isr() { return static_cast<std::uint8_t>(mmio_read(bar0 + isr->offset, 1)); }
    std::uint8_t config_generation() { return static_cast<std::uint8_t>(common_read(kConfigGeneration, 1)); }
    std::uint64_t device_config(std::uint64_t offset, std::size_t size) {
        return mmio_read(bar0 + device->offset + offset, size);
    }

    // pci_alloc_irq_vectors() and request_irq() for MSI-X: enable with all
    // vectors masked, program each entry, unmask the function, switch INTx
    // off, then unmask each entry.
    static devices::MsiMessage message_for(std::size_t vector) {
        return {0xfee00000 + (vector << 12), static_cast<std::uint32_t>(0x4030 + vector)};
    }
    void enable_msix() {
        const std::size_t control = msix_capability + 2;
        const std::size_t vectors = (config_read(control, 2) & 0x7ff) + 1;
        config_write(control, 2, kMsixEnable | kMsixMaskAll);
        for (std::size_t vector = 0; vector < vectors; ++vector) {
            const devices::MsiMessage message = message_for(vector);
            mmio_write(msix_entry(vector) + kEntryAddressLow, 4, message.address & 0xffffffff);
            mmio_write(msix_entry(vector) + kEntryAddressHigh, 4, message.address >> 32);
            mmio_write(msix_entry(vector) + kEntryData, 4, message.data);
        }
        config_write(control, 2, kMsixEnable);
        config_write(kCommandOffset, 2, config_read(kCommandOffset, 2) | pci::kCommandIntxDisable);
        for (std::size_t vector = 0; vector < vectors; ++vector) {
            set_vector_masked(vector, false);
        }
    }
    void set_vector_masked(std::size_t vector, bool masked) {
        mmio_write(msix_entry(vector) + kEntryControl, 4, masked ? 1 : 0);
    }
    std::uint64_t pending_bits() {
        const std::uint32_t pba = config_read(msix_capability + 8, 4);
        return mmio_read(bar0 + (pba & ~7u), 8);
    }

    std::optional<Region> common, notify, isr, device;
    std::uint32_t notify_multiplier = 0;
    std::size_t msix_capability = 0;
    std::uint64_t bar0 = 0;  // where BAR 0 was when probe() mapped it

private:
    void select(std::size_t offset) {
        const std::uint32_t address =
            0x80000000u | static_cast<std::uint32_t>(kSlot) << 11 | static_cast<std::uint32_t>(offset & 0xfc);
        pio_.write(kConfigAddressPort, bytes_of(address, 4));
    }
    void write_two_part(std::uint64_t low_field, std::uint64_t value) {
        common_write(low_field, 4, value & 0xffffffff);
        common_write(low_field + 4, 4, value >> 32);
    }
    std::uint64_t msix_entry(std::size_t vector) {
        const std::uint32_t table = config_read(msix_capability + 4, 4);
        return bar0 + (table & ~7u) + vector * pci::Msix::kTableEntrySize;
    }

    devices::Bus& pio_;
    devices::Bus& mmio_;
};

// The rings the test's driver gives queue `queue` of `size`: each queue its
// own 64 KiB of RAM.
RingLayout rings_for(std::uint16_t queue, std::uint16_t size) {
    return RingLayout::packed(kRam + queue * 0x10000, size);
}

// What the driver asks for: all the device offers, VERSION_1 among it.
constexpr std::uint64_t kNegotiated = FakeDevice::kFeatures | feature_bit(kFeatureVersion1);
// The sizes the driver picks: below the device's maxima, as a driver may.
constexpr std::array<std::uint16_t, 2> kQueueSizes{128, 64};

// A machine's PCI side with one virtio device in slot kSlot: mechanism #1 on
// port I/O, the root bus placing BARs on the MMIO bus, and the transport
// over a fake device, guest RAM, a fake VM and the event loop.
class PciTransportTest : public ::testing::Test {
protected:
    PciTransportTest() {
        pio.add("pci config", kConfigAddressPort, pci::ConfigIo::kPortSpan,
                std::make_shared<pci::ConfigIo>(root));
        auto owned_vectors = std::make_unique<FakeMsiVectors>(PciTransport::vector_count(2));
        vectors = owned_vectors.get();
        auto transport = std::make_shared<PciTransport>("virtio-test0", device, ram.memory(), loop, vm,
                                                        std::move(owned_vectors), line);
        root->add_device(kSlot, "virtio-test0", transport);
        this->transport = transport;
    }

    // The driver's whole bring-up (virtio_dev_probe() with MSI-X or INTx):
    // reset, features, vectors, both queues, DRIVER_OK.
    bool bring_up(bool msix = true) {
        if (!driver.probe() || !driver.reset() || !driver.negotiate(kNegotiated)) {
            return false;
        }
        if (msix) {
            driver.enable_msix();
            if (driver.set_config_vector(0) != 0) {
                return false;
            }
        }
        for (std::uint16_t queue = 0; queue < 2; ++queue) {
            const std::uint16_t vector = msix ? static_cast<std::uint16_t>(queue + 1) : kNoVector;
            if (driver.setup_queue(queue, kQueueSizes[queue], rings_for(queue, kQueueSizes[queue]), vector) !=
                vector) {
                return false;
            }
        }
        for (std::uint16_t queue = 0; queue < 2; ++queue) {
            driver.enable_queue(queue);
        }
        driver.add_status(kStatusDriverOk);
        loop_thread.run([] {});
        return device->activations().size() == 1;
    }

    // `action` runs on the loop, as the device's work does.
    void from_device(std::function<void(DeviceInterrupt&)> action) {
        loop_thread.run([&] {
            if (DeviceInterrupt* interrupt = device->interrupt()) {
                action(*interrupt);
            } else {
                ADD_FAILURE() << "the device is not active";
            }
        });
    }

    std::vector<std::uint64_t> ioevent_addresses() const {
        std::vector<std::uint64_t> addresses;
        for (const kvm::IoEvent& event : vm.ioevents) {
            addresses.push_back(event.address);
        }
        return addresses;
    }

    // Everything the transport lends references to outlives it, and the
    // loop's thread stops (last member) before anything goes.
    FakeVm vm;
    vim::testing::GuestRam ram{kRam, kRamSize};
    FakeInterruptLine line;
    sys::EventLoop loop;
    devices::Bus mmio{"MMIO", 0};
    devices::Bus pio{"port I/O", 0x10000};
    std::shared_ptr<pci::RootBus> root = std::make_shared<pci::RootBus>(
        mmio, pci::RootBus::MemoryWindow{kWindowStart, kWindowSize}, pci::RootBus::IntxRouting{16, 8});
    std::shared_ptr<FakeDevice> device = std::make_shared<FakeDevice>();
    FakeMsiVectors* vectors = nullptr;  // the transport's
    std::shared_ptr<PciTransport> transport;
    LinuxDriver driver{pio, mmio};
    LoopThread loop_thread{loop};
};

TEST_F(PciTransportTest, IdentifiesAsAModernVirtioFunction) {
    EXPECT_EQ(driver.config_read(kVendorIdOffset, 2), 0x1af4u);
    EXPECT_EQ(driver.config_read(kVendorIdOffset + 2, 2), 0x1040u + kDeviceTypeBlock);
    EXPECT_EQ(driver.config_read(kRevisionOffset, 1), 1u);  // modern: revision 1 or more
    EXPECT_EQ(driver.config_read(kClassOffset, 2), 0x0100u);
    EXPECT_EQ(driver.config_read(kSubsystemOffset, 2), 0x1af4u);
    EXPECT_GE(driver.config_read(kSubsystemOffset + 2, 2), 0x40u);  // spec 4.1.2.1, non-transitional
    EXPECT_EQ(driver.config_read(kInterruptPinOffset, 1), pci::kInterruptPinA);
    EXPECT_TRUE(driver.config_read(kStatusOffset, 2) & kStatusCapabilitiesBit);
}

TEST_F(PciTransportTest, CapabilitiesPlaceEveryRegionInsideBarZero) {
    ASSERT_TRUE(driver.probe());
    // pci_resource_len(): BAR 0 sized as the kernel sizes it, decoding off.
    const std::uint32_t command = driver.config_read(kCommandOffset, 2);
    driver.config_write(kCommandOffset, 2, command & ~pci::kCommandMemorySpace);
    const std::uint32_t original = driver.config_read(kBar0Offset, 4);
    driver.config_write(kBar0Offset, 4, 0xffffffff);
    const std::uint32_t mask = driver.config_read(kBar0Offset, 4);
    driver.config_write(kBar0Offset, 4, original);
    driver.config_write(kCommandOffset, 2, command);
    EXPECT_EQ(mask & 0xf, 0u) << "a 32-bit, non-prefetchable memory BAR";
    const std::uint64_t bar_size = (~std::uint64_t{mask & ~0xfu} + 1) & 0xffffffff;
    EXPECT_EQ(bar_size, PciTransport::kBarSize);
    EXPECT_EQ(driver.bar0_address(), driver.bar0);
    EXPECT_GE(driver.bar0, kWindowStart);

    // vp_modern_map_capability()'s checks, with the minimum lengths and
    // alignments vp_modern_probe() asks for each region.
    struct Expected {
        const std::optional<Region>& region;
        std::uint8_t cap_length;
        std::uint32_t minimum_length;
        std::uint32_t alignment;
    };
    for (const Expected& expected :
         {Expected{driver.common, 16, kCommonCfgSize, 4}, Expected{driver.isr, 16, 1, 1},
          Expected{driver.device, 16, 0, 4}, Expected{driver.notify, 20, 2, 2}}) {
        const Region& region = *expected.region;
        SCOPED_TRACE(region.capability);
        EXPECT_EQ(driver.config_read(region.capability + kCapLength, 1), expected.cap_length);
        EXPECT_EQ(region.bar, 0);
        EXPECT_GE(region.length, expected.minimum_length);
        EXPECT_EQ(region.offset % expected.alignment, 0u);
        EXPECT_LE(std::uint64_t{region.offset} + region.length, bar_size);
    }
    EXPECT_EQ(driver.device->length, PciTransport::kDeviceConfigSize);
    // Each queue has its own notification address inside the region.
    EXPECT_EQ(driver.notify_multiplier, PciTransport::kNotifyOffsetMultiplier);
    EXPECT_EQ(driver.common_read(kNumQueues, 2), 2u);
    std::vector<std::uint64_t> addresses;
    for (std::uint16_t queue = 0; queue < 2; ++queue) {
        const std::uint64_t notify_off = driver.queue_register(queue, kQueueNotifyOff, 2);
        EXPECT_LE(notify_off * driver.notify_multiplier + 2, driver.notify->length) << "queue " << queue;
        addresses.push_back(driver.notify_address(queue));
    }
    EXPECT_NE(addresses[0], addresses[1]);

    ASSERT_NE(driver.msix_capability, 0u);
    EXPECT_EQ((driver.config_read(driver.msix_capability + 2, 2) & 0x7ff) + 1, PciTransport::vector_count(2));
    EXPECT_EQ(driver.config_read(driver.msix_capability + 4, 4), PciTransport::kMsixTableOffset);  // BIR 0
    EXPECT_EQ(driver.config_read(driver.msix_capability + 8, 4), PciTransport::kMsixPbaOffset);
}

TEST_F(PciTransportTest, FeaturesNegotiateThroughTheSelectRegisters) {
    ASSERT_TRUE(driver.probe());
    EXPECT_EQ(driver.status(), 0);
    driver.add_status(kStatusAcknowledge);
    driver.add_status(kStatusDriver);
    EXPECT_EQ(driver.status(), kStatusAcknowledge | kStatusDriver);
    EXPECT_EQ(driver.device_features(), kNegotiated);
    // A select past the two feature words reads no features.
    driver.common_write(kDeviceFeatureSelect, 4, 2);
    EXPECT_EQ(driver.common_read(kDeviceFeature, 4), 0u);

    driver.set_driver_features(kNegotiated);
    EXPECT_EQ(driver.driver_features(), kNegotiated);
    driver.add_status(kStatusFeaturesOk);
    EXPECT_EQ(driver.status(), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    // Features are fixed from FEATURES_OK on.
    driver.set_driver_features(feature_bit(kFeatureVersion1));
    EXPECT_EQ(driver.driver_features(), kNegotiated);
}

TEST_F(PciTransportTest, FeaturesOkIsRefusedForAFeatureNotOffered) {
    ASSERT_TRUE(driver.probe());
    EXPECT_FALSE(driver.negotiate(kNegotiated | feature_bit(3)));
    EXPECT_EQ(driver.status(), kStatusAcknowledge | kStatusDriver);
}

TEST_F(PciTransportTest, FeaturesOkIsRefusedWithoutVersion1) {
    ASSERT_TRUE(driver.probe());
    EXPECT_FALSE(driver.negotiate(FakeDevice::kFeatures));
    EXPECT_EQ(driver.status(), kStatusAcknowledge | kStatusDriver);
    // Nor does DRIVER_OK start a device whose features were refused.
    driver.add_status(kStatusDriverOk);
    loop_thread.run([] {});
    EXPECT_THAT(device->activations(), IsEmpty());
}

TEST_F(PciTransportTest, QueueRegistersReadBackAsProgrammed) {
    ASSERT_TRUE(driver.probe());
    ASSERT_TRUE(driver.negotiate(kNegotiated));
    for (std::uint16_t queue = 0; queue < 2; ++queue) {
        SCOPED_TRACE(queue);
        EXPECT_EQ(driver.queue_register(queue, kQueueSize, 2), FakeDevice::kQueueMaxSizes[queue]);
        EXPECT_EQ(driver.queue_register(queue, kQueueEnable, 2), 0u);
        EXPECT_EQ(driver.queue_register(queue, kQueueMsixVector, 2), kNoVector);
    }
    // Addresses above 4 GiB show that both halves land.
    const RingLayout high{0x123456789000, 0x12345678a000, 0x12345678b000};
    EXPECT_EQ(driver.setup_queue(1, 32, high, 2), 2);
    EXPECT_EQ(driver.queue_register(1, kQueueSize, 2), 32u);
    EXPECT_EQ(driver.queue_address(1, kQueueDescLow), high.descriptor_table);
    EXPECT_EQ(driver.queue_address(1, kQueueAvailLow), high.avail_ring);
    EXPECT_EQ(driver.queue_address(1, kQueueUsedLow), high.used_ring);
    EXPECT_EQ(driver.queue_register(1, kQueueDescLow, 8), high.descriptor_table);  // one qword read too
    // Queue 0 kept its own registers.
    EXPECT_EQ(driver.queue_register(0, kQueueSize, 2), 256u);
    EXPECT_EQ(driver.queue_address(0, kQueueDescLow), 0u);
    EXPECT_EQ(driver.queue_register(0, kQueueMsixVector, 2), kNoVector);
}

TEST_F(PciTransportTest, VectorsPastTheTableReadBackAsNoVector) {
    ASSERT_TRUE(driver.probe());
    const auto vectors = static_cast<std::uint16_t>(PciTransport::vector_count(2));
    EXPECT_EQ(driver.set_config_vector(vectors - 1), vectors - 1);
    EXPECT_EQ(driver.set_config_vector(vectors), kNoVector);
    EXPECT_EQ(driver.setup_queue(0, 128, rings_for(0, 128), vectors - 1), vectors - 1);
    EXPECT_EQ(driver.setup_queue(0, 128, rings_for(0, 128), vectors), kNoVector);
    EXPECT_EQ(driver.setup_queue(0, 128, rings_for(0, 128), 0x7fff), kNoVector);
}

TEST_F(PciTransportTest, DriverOkActivatesTheDeviceOnTheLoop) {
    ASSERT_TRUE(driver.probe());
    ASSERT_TRUE(driver.negotiate(kNegotiated));
    driver.enable_msix();
    driver.set_config_vector(0);
    for (std::uint16_t queue = 0; queue < 2; ++queue) {
        driver.setup_queue(queue, kQueueSizes[queue], rings_for(queue, kQueueSizes[queue]),
                           static_cast<std::uint16_t>(queue + 1));
        driver.enable_queue(queue);
        EXPECT_EQ(driver.queue_register(queue, kQueueEnable, 2), 1u);
    }
    loop_thread.run([] {});
    EXPECT_THAT(device->activations(), IsEmpty()) << "activated before DRIVER_OK";

    driver.add_status(kStatusDriverOk);
    EXPECT_EQ(driver.status(), kDriverReady);
    loop_thread.run([] {});
    const auto activations = device->activations();
    ASSERT_EQ(activations.size(), 1u);
    const FakeDevice::Activated& activated = activations[0];
    EXPECT_EQ(activated.thread, loop_thread.id());
    EXPECT_EQ(activated.features, kNegotiated);
    ASSERT_EQ(activated.queues.size(), 2u);
    for (std::uint16_t queue = 0; queue < 2; ++queue) {
        SCOPED_TRACE(queue);
        const QueueState& state = activated.queues[queue];
        const RingLayout rings = rings_for(queue, kQueueSizes[queue]);
        EXPECT_TRUE(state.ready);
        EXPECT_EQ(state.size, kQueueSizes[queue]);
        EXPECT_EQ(state.descriptor_table, rings.descriptor_table);
        EXPECT_EQ(state.avail_ring, rings.avail_ring);
        EXPECT_EQ(state.used_ring, rings.used_ring);
        EXPECT_TRUE(state.event_idx) << "VIRTIO_F_RING_EVENT_IDX was negotiated";
    }
    ASSERT_EQ(activated.notifications.size(), 2u);
    EXPECT_NE(activated.notifications[0], activated.notifications[1]);
}

TEST_F(PciTransportTest, DriverOkWithoutFeaturesOkActivatesNothing) {
    ASSERT_TRUE(driver.probe());
    driver.add_status(kStatusAcknowledge);
    driver.add_status(kStatusDriver);
    driver.add_status(kStatusDriverOk);
    loop_thread.run([] {});
    EXPECT_THAT(device->activations(), IsEmpty());
}

TEST_F(PciTransportTest, NotificationWritesOnTheMmioBusReachTheQueue) {
    ASSERT_TRUE(bring_up());
    driver.notify_queue(1);
    EXPECT_THAT(device->wait_for_notifications(1), ElementsAre(1u));
    driver.notify_queue(0);
    EXPECT_THAT(device->wait_for_notifications(2), ElementsAre(1u, 0u));
}

TEST_F(PciTransportTest, UsedBuffersRaiseTheQueuesMsixVector) {
    ASSERT_TRUE(bring_up());
    // Each vector was routed once, with the message the driver programmed,
    // when its entry was unmasked.
    const std::vector<std::pair<std::size_t, devices::MsiMessage>> routes{
        {0, LinuxDriver::message_for(0)}, {1, LinuxDriver::message_for(1)}, {2, LinuxDriver::message_for(2)}};
    EXPECT_EQ(vectors->routes, routes);

    from_device([](DeviceInterrupt& interrupt) { interrupt.used_buffers(1); });
    from_device([](DeviceInterrupt& interrupt) { interrupt.used_buffers(0); });
    EXPECT_THAT(vectors->triggers, ElementsAre(2u, 1u));
    EXPECT_FALSE(line.high());
    EXPECT_EQ(driver.read_isr(), 0) << "with MSI-X, the ISR stays clear";
}

TEST_F(PciTransportTest, MaskedVectorIsPendingUntilUnmasked) {
    ASSERT_TRUE(bring_up());
    driver.set_vector_masked(2, true);
    from_device([](DeviceInterrupt& interrupt) { interrupt.used_buffers(1); });
    EXPECT_THAT(vectors->triggers, IsEmpty());
    EXPECT_EQ(driver.pending_bits(), 1u << 2);

    driver.set_vector_masked(2, false);
    EXPECT_THAT(vectors->triggers, ElementsAre(2u));
    EXPECT_EQ(driver.pending_bits(), 0u);
}

TEST_F(PciTransportTest, QueueWithoutAVectorRaisesNothingUnderMsix) {
    ASSERT_TRUE(driver.probe());
    ASSERT_TRUE(driver.reset());
    ASSERT_TRUE(driver.negotiate(kNegotiated));
    driver.enable_msix();
    driver.setup_queue(0, 128, rings_for(0, 128), kNoVector);
    driver.enable_queue(0);
    driver.add_status(kStatusDriverOk);
    loop_thread.run([] {});
    from_device([](DeviceInterrupt& interrupt) { interrupt.used_buffers(0); });
    EXPECT_THAT(vectors->triggers, IsEmpty());
    EXPECT_FALSE(line.high());
}

TEST_F(PciTransportTest, WithoutMsixInterruptsGoThroughIsrAndIntx) {
    ASSERT_TRUE(bring_up(/*msix=*/false));
    EXPECT_FALSE(line.high());
    from_device([](DeviceInterrupt& interrupt) { interrupt.used_buffers(0); });
    EXPECT_TRUE(line.high());
    EXPECT_TRUE(driver.config_read(kStatusOffset, 2) & kStatusInterruptBit);
    EXPECT_THAT(vectors->triggers, IsEmpty());

    // vp_interrupt(): reading the ISR acknowledges it.
    EXPECT_EQ(driver.read_isr(), kIsrQueue);
    EXPECT_FALSE(line.high());
    EXPECT_FALSE(driver.config_read(kStatusOffset, 2) & kStatusInterruptBit);
    EXPECT_EQ(driver.read_isr(), 0);

    const std::uint8_t generation = driver.config_generation();
    from_device([](DeviceInterrupt& interrupt) { interrupt.used_buffers(1); });
    from_device([](DeviceInterrupt& interrupt) { interrupt.config_changed(); });
    EXPECT_TRUE(line.high());
    EXPECT_EQ(driver.read_isr(), kIsrQueue | kIsrConfig);
    EXPECT_FALSE(line.high());
    EXPECT_EQ(driver.config_generation(), static_cast<std::uint8_t>(generation + 1));
    EXPECT_TRUE(line.only_changes());
}

TEST_F(PciTransportTest, IntxDisableKeepsTheLineLow) {
    ASSERT_TRUE(bring_up(/*msix=*/false));
    driver.config_write(kCommandOffset, 2, driver.config_read(kCommandOffset, 2) | pci::kCommandIntxDisable);
    from_device([](DeviceInterrupt& interrupt) { interrupt.used_buffers(0); });
    EXPECT_FALSE(line.high());
    EXPECT_EQ(driver.read_isr(), kIsrQueue);  // the condition is still shown, as on hardware
}

TEST_F(PciTransportTest, ConfigChangeBumpsTheGenerationAndRaisesTheConfigVector) {
    ASSERT_TRUE(bring_up());
    const std::uint8_t generation = driver.config_generation();
    from_device([](DeviceInterrupt& interrupt) { interrupt.config_changed(); });
    EXPECT_THAT(vectors->triggers, ElementsAre(0u));
    EXPECT_EQ(driver.config_generation(), static_cast<std::uint8_t>(generation + 1));
}

TEST_F(PciTransportTest, DeviceConfigurationIsTheDevicesOwn) {
    ASSERT_TRUE(driver.probe());
    // vp_get(): the generation before and after, unchanged.
    const std::uint8_t generation = driver.config_generation();
    EXPECT_EQ(driver.device_config(0, 4), FakeDevice::kReadOnlyWord);
    EXPECT_EQ(driver.device_config(1, 1), 0x56u);
    EXPECT_EQ(driver.config_generation(), generation);
    driver.mmio_write(driver.bar0 + driver.device->offset + 4, 4, 0xcafef00d);
    EXPECT_EQ(device->writable_word(), 0xcafef00du);
    EXPECT_EQ(driver.device_config(0, 8), 0xcafef00d12345678u);
    // Past the device's 8 bytes, inside the region: zero.
    EXPECT_EQ(driver.device_config(8, 4), 0u);
    EXPECT_EQ(driver.device_config(PciTransport::kDeviceConfigSize - 4, 4), 0u);
}

TEST_F(PciTransportTest, ResetWhileActiveFinishesOnTheLoop) {
    ASSERT_TRUE(bring_up());
    loop.pause();
    driver.set_status(0);
    // The driver polls until the device is done (vp_reset()); a status
    // written meanwhile changes nothing.
    EXPECT_EQ(driver.status(), kDriverReady);
    driver.set_status(kStatusAcknowledge);
    EXPECT_EQ(driver.status(), kDriverReady);
    EXPECT_EQ(device->resets(), 0);
    loop.resume();
    ASSERT_TRUE(driver.reset());
    EXPECT_EQ(device->resets(), 1);

    // Every register is back at its reset value.
    EXPECT_EQ(driver.common_read(kConfigMsixVector, 2), kNoVector);
    EXPECT_EQ(driver.common_read(kQueueSelect, 2), 0u);
    EXPECT_EQ(driver.driver_features(), 0u);
    for (std::uint16_t queue = 0; queue < 2; ++queue) {
        SCOPED_TRACE(queue);
        EXPECT_EQ(driver.queue_register(queue, kQueueSize, 2), FakeDevice::kQueueMaxSizes[queue]);
        EXPECT_EQ(driver.queue_register(queue, kQueueEnable, 2), 0u);
        EXPECT_EQ(driver.queue_register(queue, kQueueMsixVector, 2), kNoVector);
        EXPECT_EQ(driver.queue_address(queue, kQueueDescLow), 0u);
        EXPECT_EQ(driver.queue_address(queue, kQueueAvailLow), 0u);
        EXPECT_EQ(driver.queue_address(queue, kQueueUsedLow), 0u);
    }
    // MSI-X belongs to PCI, not to the virtio device: it stays enabled.
    EXPECT_TRUE(transport->stats()["msix_enabled"].get<bool>());

    // And the driver can start over.
    ASSERT_TRUE(driver.negotiate(kNegotiated));
    driver.setup_queue(0, 128, rings_for(0, 128), 1);
    driver.enable_queue(0);
    driver.add_status(kStatusDriverOk);
    loop_thread.run([] {});
    const auto activations = device->activations();
    ASSERT_EQ(activations.size(), 2u);
    EXPECT_TRUE(activations[1].queues[0].ready);
    EXPECT_FALSE(activations[1].queues[1].ready);
}

TEST_F(PciTransportTest, ResetBeforeDriverOkIsImmediate) {
    ASSERT_TRUE(driver.probe());
    ASSERT_TRUE(driver.negotiate(kNegotiated));
    driver.setup_queue(0, 128, rings_for(0, 128), kNoVector);
    loop.pause();
    driver.set_status(0);
    EXPECT_EQ(driver.status(), 0);
    EXPECT_EQ(driver.queue_register(0, kQueueSize, 2), 256u);
    loop.resume();
    loop_thread.run([] {});
    EXPECT_EQ(device->resets(), 0) << "a device never activated is not reset";
}

TEST_F(PciTransportTest, QueueRegistersAreIgnoredWhileActive) {
    ASSERT_TRUE(driver.probe());
    ASSERT_TRUE(driver.negotiate(kNegotiated));
    driver.setup_queue(0, 128, rings_for(0, 128), kNoVector);
    driver.enable_queue(0);
    driver.add_status(kStatusDriverOk);
    loop_thread.run([] {});
    ASSERT_EQ(device->activations().size(), 1u);

    const RingLayout elsewhere = rings_for(2, 16);
    driver.setup_queue(0, 16, elsewhere, kNoVector);
    EXPECT_EQ(driver.queue_register(0, kQueueSize, 2), 128u);
    EXPECT_EQ(driver.queue_address(0, kQueueDescLow), rings_for(0, 128).descriptor_table);
    EXPECT_EQ(driver.queue_address(0, kQueueUsedLow), rings_for(0, 128).used_ring);
    // A queue left out before DRIVER_OK stays out.
    driver.setup_queue(1, 16, elsewhere, kNoVector);
    driver.enable_queue(1);
    EXPECT_EQ(driver.queue_register(1, kQueueEnable, 2), 0u);
    EXPECT_EQ(driver.queue_register(1, kQueueSize, 2), 64u);
    EXPECT_EQ(driver.queue_address(1, kQueueDescLow), 0u);
    EXPECT_EQ(driver.status(), kDriverReady);
}

TEST_F(PciTransportTest, NeedsResetFromTheDeviceIsShownAndAnnounced) {
    ASSERT_TRUE(bring_up());
    const std::uint8_t generation = driver.config_generation();
    from_device([](DeviceInterrupt& interrupt) { interrupt.needs_reset(); });
    EXPECT_EQ(driver.status(), kDriverReady | kStatusNeedsReset);
    EXPECT_THAT(vectors->triggers, ElementsAre(0u));
    EXPECT_EQ(driver.config_generation(), static_cast<std::uint8_t>(generation + 1));

    ASSERT_TRUE(driver.reset());
    EXPECT_EQ(device->resets(), 1);
    EXPECT_EQ(driver.status(), 0);
}

// A queue the driver enabled with a configuration the device cannot use.
struct BadQueue {
    const char* what;
    std::uint16_t size;
    RingLayout rings;
};

void PrintTo(const BadQueue& bad_queue, std::ostream* out) { *out << bad_queue.what; }

class BadQueueTest : public PciTransportTest, public ::testing::WithParamInterface<BadQueue> {};

TEST_P(BadQueueTest, SetsNeedsResetAndKeepsTheDeviceStopped) {
    ASSERT_TRUE(driver.probe());
    ASSERT_TRUE(driver.negotiate(kNegotiated));
    driver.setup_queue(0, GetParam().size, GetParam().rings, kNoVector);
    driver.enable_queue(0);
    EXPECT_EQ(driver.queue_register(0, kQueueEnable, 2), 0u);
    EXPECT_EQ(driver.status(), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusNeedsReset);
    driver.add_status(kStatusDriverOk);
    loop_thread.run([] {});
    EXPECT_THAT(device->activations(), IsEmpty());

    // A reset clears it, and a good configuration then works.
    ASSERT_TRUE(driver.reset());
    EXPECT_TRUE(bring_up());
}

INSTANTIATE_TEST_SUITE_P(
    Configurations, BadQueueTest,
    ::testing::Values(
        BadQueue{"SizeNotAPowerOfTwo", 100, rings_for(0, 100)}, BadQueue{"SizeZero", 0, rings_for(0, 128)},
        BadQueue{"SizePastTheMaximum", 512, rings_for(0, 512)},
        BadQueue{"DescriptorTableOutsideRam",
                 128,
                 {kOutsideRam, rings_for(0, 128).avail_ring, rings_for(0, 128).used_ring}},
        BadQueue{"UsedRingAcrossTheEndOfRam",
                 128,
                 {rings_for(0, 128).descriptor_table, rings_for(0, 128).avail_ring, kRam + kRamSize - 8}},
        BadQueue{"UsedRingMisaligned",
                 128,
                 {rings_for(0, 128).descriptor_table, rings_for(0, 128).avail_ring,
                  rings_for(0, 128).used_ring + 2}}),
    [](const ::testing::TestParamInfo<BadQueue>& info) { return info.param.what; });

TEST_F(PciTransportTest, IoeventfdsFollowBarZero) {
    ASSERT_TRUE(bring_up());
    const auto notifications = device->activations()[0].notifications;
    // Each queue's notification address, a 16-bit write, signals the very
    // eventfd the device waits on: KVM's exit-free path.
    auto expect_ioevents_at = [&](std::uint64_t bar) {
        ASSERT_EQ(vm.ioevents.size(), 2u);
        for (std::uint16_t queue = 0; queue < 2; ++queue) {
            SCOPED_TRACE(queue);
            const kvm::IoEvent& event = vm.ioevents[queue];
            EXPECT_EQ(event.space, kvm::IoEvent::Space::Mmio);
            EXPECT_EQ(event.address, bar + driver.notify->offset + queue * driver.notify_multiplier);
            EXPECT_EQ(event.length, 2u);
            EXPECT_EQ(event.eventfd, notifications[queue]);
            EXPECT_FALSE(event.has_datamatch);
        }
    };
    const std::uint64_t first = driver.bar0;
    expect_ioevents_at(first);

    // The guest moves BAR 0 with decoding on.
    const std::uint64_t second = kWindowStart + 0x100000;
    driver.config_write(kBar0Offset, 4, static_cast<std::uint32_t>(second));
    expect_ioevents_at(second);
    std::array<std::uint8_t, 2> data{};
    EXPECT_FALSE(mmio.read(first + driver.common->offset + kDeviceStatus, data));

    // Linux's way: decoding off (which unmaps, so the ioeventfds go), the
    // new address, decoding on.
    const std::uint32_t command = driver.config_read(kCommandOffset, 2);
    driver.config_write(kCommandOffset, 2, command & ~pci::kCommandMemorySpace);
    EXPECT_THAT(vm.ioevents, IsEmpty());
    const std::uint64_t third = kWindowStart + 0x200000;
    driver.config_write(kBar0Offset, 4, static_cast<std::uint32_t>(third));
    EXPECT_THAT(vm.ioevents, IsEmpty());
    driver.config_write(kCommandOffset, 2, command);
    expect_ioevents_at(third);

    // The driver remaps and goes on where the BAR is now.
    ASSERT_TRUE(driver.probe());
    EXPECT_EQ(driver.bar0, third);
    EXPECT_EQ(driver.status(), kDriverReady);
    driver.notify_queue(1);
    EXPECT_THAT(device->wait_for_notifications(1), ElementsAre(1u));
}

TEST_F(PciTransportTest, AnUnusableBarAddressUnregistersTheIoeventfds) {
    ASSERT_TRUE(driver.probe());
    ASSERT_EQ(vm.ioevents.size(), 2u);
    // Outside the window: the root bus refuses to map it.
    driver.config_write(kBar0Offset, 4, 0x10000000);
    EXPECT_THAT(vm.ioevents, IsEmpty());
    driver.config_write(kBar0Offset, 4, static_cast<std::uint32_t>(driver.bar0));
    EXPECT_THAT(ioevent_addresses(),
                UnorderedElementsAreArray({driver.bar0 + driver.notify->offset,
                                           driver.bar0 + driver.notify->offset + driver.notify_multiplier}));
}

// Every field of the common configuration as the driver reads it, plus the
// queues' registers and the device's status.
std::vector<std::uint64_t> register_snapshot(LinuxDriver& driver) {
    std::vector<std::uint64_t> values;
    const std::uint64_t select = driver.common_read(kQueueSelect, 2);
    for (std::uint64_t field : {kDeviceFeatureSelect, kDriverFeatureSelect, kDeviceFeature, kDriverFeature}) {
        values.push_back(driver.common_read(field, 4));
    }
    for (std::uint64_t field : {kConfigMsixVector, kNumQueues, kQueueSelect}) {
        values.push_back(driver.common_read(field, 2));
    }
    values.push_back(driver.common_read(kDeviceStatus, 1));
    values.push_back(driver.common_read(kConfigGeneration, 1));
    for (std::uint16_t queue = 0; queue < 2; ++queue) {
        for (std::uint64_t field : {kQueueSize, kQueueMsixVector, kQueueEnable, kQueueNotifyOff}) {
            values.push_back(driver.queue_register(queue, field, 2));
        }
        for (std::uint64_t field : {kQueueDescLow, kQueueAvailLow, kQueueUsedLow}) {
            values.push_back(driver.queue_address(queue, field));
        }
    }
    driver.select_queue(static_cast<std::uint16_t>(select));
    return values;
}

TEST_F(PciTransportTest, HostileCommonConfigWritesChangeNothing) {
    ASSERT_TRUE(driver.probe());
    ASSERT_TRUE(driver.negotiate(kNegotiated));
    driver.setup_queue(0, 128, rings_for(0, 128), kNoVector);
    const auto before = register_snapshot(driver);

    // Read-only fields.
    driver.common_write(kDeviceFeature, 4, 0xffffffff);
    driver.common_write(kNumQueues, 2, 0x1234);
    driver.common_write(kConfigGeneration, 1, 0x55);
    driver.common_write(kQueueNotifyOff, 2, 0x77);
    // Accesses that straddle two fields, or run past the structure's end.
    driver.common_write(kNumQueues + 1, 2, 0xffff);
    driver.common_write(kConfigMsixVector, 8, ~std::uint64_t{0});
    driver.common_write(kQueueSize + 1, 4, 0xffffffff);
    driver.common_write(kQueueUsedHigh, 8, ~std::uint64_t{0});
    driver.common_write(kQueueUsedHigh + 2, 4, 0xffffffff);
    driver.common_write(kDeviceFeatureSelect + 2, 8, ~std::uint64_t{0});
    // Past the structure, before the ISR.
    for (std::uint64_t offset = kCommonCfgSize; offset < driver.isr->offset; offset += 4) {
        driver.common_write(offset, 4, 0xffffffff);
    }
    // The ISR is read-only.
    driver.mmio_write(driver.bar0 + driver.isr->offset, 1, 0xff);
    EXPECT_EQ(register_snapshot(driver), before);

    // A queue that does not exist: reads as absent, takes no writes, and
    // spares the queues that do.
    driver.select_queue(0xffff);
    EXPECT_EQ(driver.common_read(kQueueSize, 2), 0u);
    EXPECT_EQ(driver.common_read(kQueueEnable, 2), 0u);
    EXPECT_EQ(driver.common_read(kQueueMsixVector, 2), kNoVector);
    driver.setup_queue(0xffff, 16, rings_for(2, 16), 1);
    driver.enable_queue(0xffff);
    driver.select_queue(2);
    driver.common_write(kQueueSize, 2, 16);
    driver.common_write(kQueueMsixVector, 2, 1);
    driver.common_write(kQueueEnable, 2, 1);
    driver.select_queue(0);
    EXPECT_EQ(register_snapshot(driver), before);
    EXPECT_EQ(driver.status(), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
}

TEST_F(PciTransportTest, PartialWritesMergeIntoTheirField) {
    ASSERT_TRUE(driver.probe());
    // Byte and word writes inside one field touch only their bytes, as a
    // 64-bit address's two dword halves do.
    driver.select_queue(0);
    driver.common_write(kQueueDescLow, 4, 0x11223344);
    driver.common_write(kQueueDescLow + 1, 1, 0xaa);
    driver.common_write(kQueueDescHigh + 2, 2, 0xbbcc);
    EXPECT_EQ(driver.common_read(kQueueDescLow, 8), 0xbbcc00001122aa44u);
    EXPECT_EQ(driver.common_read(kQueueDescHigh + 2, 2), 0xbbccu);
    EXPECT_EQ(driver.common_read(kQueueDescLow + 1, 1), 0xaau);
    driver.common_write(kDeviceFeatureSelect + 3, 1, 0x01);
    EXPECT_EQ(driver.common_read(kDeviceFeatureSelect, 4), 0x01000000u);
    EXPECT_EQ(driver.common_read(kDeviceFeature, 4), 0u);
}

TEST_F(PciTransportTest, EveryAccessOfEverySizeIsSurvived) {
    ASSERT_TRUE(bring_up());
    const auto before = register_snapshot(driver);
    // Reads anywhere, of any size the bus carries, aligned or not.
    for (std::uint64_t offset = 0; offset < PciTransport::kBarSize; ++offset) {
        for (std::size_t size : {1, 2, 3, 4, 5, 8}) {
            if (offset + size <= PciTransport::kBarSize) {
                driver.mmio_read(driver.bar0 + offset, size);
            }
        }
    }
    // Writes wherever the transport has nothing to change: between the
    // regions, over the ISR, past the queues' notification addresses, past
    // the PBA.
    const auto vector_count = PciTransport::vector_count(2);
    const std::uint64_t pba_end = PciTransport::kMsixPbaOffset + (vector_count + 63) / 64 * 8;
    const std::array<std::pair<std::uint64_t, std::uint64_t>, 4> inert{{
        {kCommonCfgSize, PciTransport::kDeviceConfigOffset},
        {PciTransport::kNotifyOffset + 2 * PciTransport::kNotifyOffsetMultiplier,
         PciTransport::kMsixTableOffset},
        {PciTransport::kMsixTableOffset + vector_count * pci::Msix::kTableEntrySize,
         PciTransport::kMsixPbaOffset},
        {pba_end, PciTransport::kBarSize},
    }};
    for (const auto& [start, end] : inert) {
        for (std::uint64_t offset = start; offset < end; ++offset) {
            for (std::size_t size : {1, 2, 3, 4, 8}) {
                if (offset + size <= end) {
                    driver.mmio_write(driver.bar0 + offset, size, ~std::uint64_t{0});
                }
            }
        }
    }
    EXPECT_EQ(register_snapshot(driver), before);
    EXPECT_EQ(driver.status(), kDriverReady);
    // No stray write signalled a queue: two loop turns would have served it.
    loop_thread.run([] {});
    loop_thread.run([] {});
    EXPECT_THAT(device->notified(), IsEmpty());
    driver.notify_queue(0);
    EXPECT_THAT(device->wait_for_notifications(1), ElementsAre(0u));
    EXPECT_THAT(vectors->triggers, IsEmpty());
}

TEST_F(PciTransportTest, StatsShowTheTransportAndTheDevice) {
    ASSERT_TRUE(bring_up());
    from_device([](DeviceInterrupt& interrupt) { interrupt.used_buffers(0); });
    const nlohmann::json stats = transport->stats();
    EXPECT_EQ(stats["fake_requests"], 7);
    EXPECT_EQ(stats["status"], kDriverReady);
    EXPECT_EQ(stats["msix_enabled"], true);
    EXPECT_EQ(stats["interrupts"], 1);
    EXPECT_EQ(stats["resets"], 1) << "the driver's reset before it started";
}

TEST(PciTransportConstruction, RefusesAVectorCountThatDoesNotMatchTheQueues) {
    FakeVm vm;
    vim::testing::GuestRam ram{kRam, kRamSize};
    FakeInterruptLine line;
    sys::EventLoop loop;
    EXPECT_THAT(
        [&] {
            PciTransport("virtio-test0", std::make_shared<FakeDevice>(), ram.memory(), loop, vm,
                         std::make_unique<FakeMsiVectors>(2), line);
        },
        ThrowsMessage<std::invalid_argument>(StrEq("virtio-test0: 2 MSI vectors for 2 queues")));
}

TEST(PciTransportConstruction, DestructionUnregistersTheIoeventfds) {
    FakeVm vm;
    vim::testing::GuestRam ram{kRam, kRamSize};
    FakeInterruptLine line;
    sys::EventLoop loop;
    auto transport =
        std::make_unique<PciTransport>("virtio-test0", std::make_shared<FakeDevice>(), ram.memory(), loop, vm,
                                       std::make_unique<FakeMsiVectors>(3), line);
    transport->bar_moved(0, std::nullopt, kWindowStart);  // as the root bus maps it
    EXPECT_EQ(vm.ioevents.size(), 2u);
    transport.reset();
    EXPECT_THAT(vm.ioevents, IsEmpty());
}

}  // namespace
}  // namespace vim::vmm::virtio
