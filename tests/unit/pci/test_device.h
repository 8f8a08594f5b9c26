#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <tuple>
#include <utility>
#include <vector>

#include "vmm/devices/interrupts.h"
#include "vmm/pci/config_space.h"
#include "vmm/pci/intx.h"
#include "vmm/pci/msix.h"
#include "vmm/pci/pci_device.h"

namespace vim::vmm::pci::testing {

// A function shaped like a virtio-pci device, built from the library's
// parts as a real device would be: a ConfigSpace, Intx, and MSI-X with its
// table and PBA in BAR 0 (when BAR 0 is declared and big enough). It records
// what the bus tells it and what reaches its BARs; BAR reads outside the
// MSI-X structures answer 0xa0 + the BAR's number in every byte.
class TestDevice final : public PciDevice {
public:
    static constexpr DeviceIdentity kIdentity{.vendor_id = 0x1af4,
                                              .device_id = 0x1042,
                                              .revision = 1,
                                              .class_code = 0x01,
                                              .subclass = 0x00,
                                              .subsystem_vendor_id = 0x1af4,
                                              .subsystem_id = 0x0002};
    static constexpr std::uint32_t kMsixTableOffset = 0x800;
    static constexpr std::uint32_t kMsixPbaOffset = 0xc00;

    // The layout tests use unless they say otherwise: a 4 KiB 32-bit BAR 0
    // and a 16 KiB 64-bit prefetchable BAR 2.
    static std::vector<std::pair<std::size_t, MemoryBar>> default_bars() {
        return {{0, MemoryBar{.size = 0x1000}},
                {2, MemoryBar{.size = 0x4000, .is_64bit = true, .prefetchable = true}}};
    }

    TestDevice(devices::InterruptLine& line, devices::MsiVectors& vectors,
               const std::vector<std::pair<std::size_t, MemoryBar>>& bars = default_bars())
        : config_(kIdentity), intx_(config_, line) {
        for (const auto& [index, bar] : bars) {
            config_.add_bar(index, bar);
        }
        if (config_.bar_size(0) >= 0x1000) {
            msix_.emplace(vectors);
            msix_->add_capability(config_, {0, kMsixTableOffset}, {0, kMsixPbaOffset});
        }
    }

    std::uint32_t read_config(std::size_t index) override {
        std::lock_guard lock(mutex_);
        return config_.read(index);
    }
    void write_config(std::size_t index, std::size_t offset, std::span<const std::uint8_t> data) override {
        std::lock_guard lock(mutex_);
        config_.write(index, offset, data);
        intx_.sync(config_);
        if (msix_) {
            msix_->sync(config_);
        }
    }
    void read_bar(std::size_t bar, std::uint64_t offset, std::span<std::uint8_t> data) override {
        std::lock_guard lock(mutex_);
        if (msix_ && msix_->read(bar, offset, data)) {
            return;
        }
        for (auto& byte : data) {
            byte = static_cast<std::uint8_t>(0xa0 + bar);
        }
        accesses.emplace_back(bar, offset, data.size(), false);
    }
    void write_bar(std::size_t bar, std::uint64_t offset, std::span<const std::uint8_t> data) override {
        std::lock_guard lock(mutex_);
        if (msix_ && msix_->write(bar, offset, data)) {
            return;
        }
        accesses.emplace_back(bar, offset, data.size(), true);
    }
    void bar_moved(std::size_t bar, std::optional<std::uint64_t> from,
                   std::optional<std::uint64_t> to) override {
        std::lock_guard lock(mutex_);
        moves.emplace_back(bar, from, to);
    }

    // Raises the device's interrupt on MSI-X vector `vector`, or on INTx
    // while MSI-X is off, as a virtio device does.
    Msix::Delivery raise(std::size_t vector) {
        std::lock_guard lock(mutex_);
        const Msix::Delivery delivery = msix_ ? msix_->notify(vector) : Msix::Delivery::kDisabled;
        if (delivery == Msix::Delivery::kDisabled) {
            intx_.set_pending(config_, true);
        }
        return delivery;
    }
    // The guest acknowledged the interrupt (virtio: read the ISR).
    void acknowledge() {
        std::lock_guard lock(mutex_);
        intx_.set_pending(config_, false);
    }

    using Move = std::tuple<std::size_t, std::optional<std::uint64_t>, std::optional<std::uint64_t>>;
    using Access = std::tuple<std::size_t, std::uint64_t, std::size_t, bool>;  // bar, offset, size, is_write
    std::vector<Move> moves;
    std::vector<Access> accesses;

private:
    std::mutex mutex_;
    ConfigSpace config_;
    Intx intx_;
    std::optional<Msix> msix_;
};

}  // namespace vim::vmm::pci::testing
