#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

#include "vmm/devices/bus_device.h"
#include "vmm/pci/root_bus.h"

namespace vim::vmm::pci {

// Configuration mechanism #1 on the port-I/O bus: CONFIG_ADDRESS, a dword at
// 0xcf8 (enable bit 31, bus, device, function, register), then CONFIG_DATA at
// 0xcfc-0xcff, which reaches the addressed register with 1-, 2- and 4-byte
// accesses at any byte offset that stays inside it.
//
// Only dword writes at 0xcf8 set the address: byte writes to 0xcf8-0xcfb are
// other chipset registers on real hardware (Linux's probe for mechanism #1
// writes 0xcfb and expects the address untouched). With the enable bit clear
// the data port reads all ones. Bits 27:24 carry register bits 11:8 (AMD's
// extended configuration access); such registers lie past 256 bytes and read
// all ones.
//
// vCPUs share the one address register, as they do on hardware: the guest
// serialises its address-then-data pairs (Linux under pci_config_lock).
class ConfigIo final : public devices::BusDevice {
public:
    static constexpr std::uint64_t kPortSpan = 8;

    explicit ConfigIo(std::shared_ptr<RootBus> root);

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

private:
    // Where CONFIG_DATA at `offset` (4-7) points, if the enable bit is set.
    bool decode(std::uint64_t offset, ConfigAddress& address) const;

    std::shared_ptr<RootBus> root_;
    std::atomic<std::uint32_t> address_{0};
};

}  // namespace vim::vmm::pci
