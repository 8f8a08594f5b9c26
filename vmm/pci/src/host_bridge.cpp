#include "host_bridge.h"

#include <algorithm>

namespace vim::vmm::pci {
namespace {

constexpr std::uint8_t kClassBridge = 0x06;
constexpr std::uint8_t kSubclassHostBridge = 0x00;

}  // namespace

HostBridge::HostBridge(std::uint16_t vendor_id, std::uint16_t device_id)
    : config_(DeviceIdentity{.vendor_id = vendor_id,
                             .device_id = device_id,
                             .class_code = kClassBridge,
                             .subclass = kSubclassHostBridge}) {}

std::uint32_t HostBridge::read_config(std::size_t index) {
    std::lock_guard lock(mutex_);
    return config_.read(index);
}

void HostBridge::write_config(std::size_t index, std::size_t offset, std::span<const std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    config_.write(index, offset, data);
}

state::State HostBridge::save() const {
    std::lock_guard lock(mutex_);
    return config_.save();
}

void HostBridge::restore(const state::State& state) {
    std::lock_guard lock(mutex_);
    config_.restore(state);
}

void HostBridge::read_bar(std::size_t /*bar*/, std::uint64_t /*offset*/, std::span<std::uint8_t> data) {
    std::ranges::fill(data, std::uint8_t{0xff});
}

void HostBridge::write_bar(std::size_t /*bar*/, std::uint64_t /*offset*/,
                           std::span<const std::uint8_t> /*data*/) {}

}  // namespace vim::vmm::pci
