#pragma once

#include <mutex>

#include "vmm/pci/config_space.h"
#include "vmm/pci/pci_device.h"

namespace vim::vmm::pci {

// The host bridge's function at 00:00.0: what Linux expects to find first on
// bus 0. It has no BARs and no interrupt; only its identity matters.
class HostBridge final : public PciDevice {
public:
    HostBridge(std::uint16_t vendor_id, std::uint16_t device_id);

    std::uint32_t read_config(std::size_t index) override;
    void write_config(std::size_t index, std::size_t offset, std::span<const std::uint8_t> data) override;
    // Never reached: a function without BARs decodes no memory.
    void read_bar(std::size_t bar, std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write_bar(std::size_t bar, std::uint64_t offset, std::span<const std::uint8_t> data) override;

    state::State save() const;
    void restore(const state::State& state);

private:
    mutable std::mutex mutex_;
    ConfigSpace config_;
};

}  // namespace vim::vmm::pci
