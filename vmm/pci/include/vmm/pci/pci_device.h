#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace vim::vmm::pci {

// A PCI function as the root bus sees it: its configuration space and its
// BARs. Most devices keep a ConfigSpace (with Msix and Intx beside it) under
// a mutex of their own and forward to it.
//
// The bus treats the function as firmware and the guest do: it learns the
// BARs by sizing them through config writes, programs their addresses, and
// reads the command and BAR registers back after every guest write to them
// to decide where each BAR decodes. So the registers must behave as the
// specification says (ConfigSpace's do).
//
// Threads: config accesses come from one vCPU at a time (the bus serialises
// them) while BAR accesses come from any vCPU at once, and device threads
// run beside both. Config calls and bar_moved() arrive with the bus's lock
// held: none of them may call back into the RootBus.
class PciDevice {
public:
    virtual ~PciDevice() = default;

    // Register `index` (0-63) as the guest reads it.
    virtual std::uint32_t read_config(std::size_t index) = 0;
    // A guest write of data.size() bytes (1-4) at byte `offset` of register
    // `index`, with offset + data.size() <= 4.
    virtual void write_config(std::size_t index, std::size_t offset, std::span<const std::uint8_t> data) = 0;

    // An access to BAR `bar` at `offset` from its start: 1, 2, 4 or 8 bytes,
    // wholly inside the BAR.
    virtual void read_bar(std::size_t bar, std::uint64_t offset, std::span<std::uint8_t> data) = 0;
    virtual void write_bar(std::size_t bar, std::uint64_t offset, std::span<const std::uint8_t> data) = 0;

    // BAR `bar` now decodes at `to` instead of `from` (nullopt: nowhere),
    // after the MMIO bus was changed: the place to move what KVM decodes on
    // the device's behalf (ioeventfds). Called at the first mapping too.
    virtual void bar_moved(std::size_t /*bar*/, std::optional<std::uint64_t> /*from*/,
                           std::optional<std::uint64_t> /*to*/) {}
};

}  // namespace vim::vmm::pci
