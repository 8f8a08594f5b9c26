#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vmm/devices/bus.h"
#include "vmm/pci/config_space.h"
#include "vmm/pci/pci_device.h"
#include "vmm/state/state.h"

namespace vim::vmm::pci {

class HostBridge;

// A function's place in configuration space, as mechanism #1's CONFIG_ADDRESS
// (or ECAM) names it.
struct ConfigAddress {
    std::uint8_t bus = 0;
    std::uint8_t device = 0;  // the slot
    std::uint8_t function = 0;
    std::uint16_t offset = 0;  // byte offset in the function's configuration space
};

// Bus 0 behind the host bridge: the bridge's own function at 00:00.0, one
// single-function device per slot 1-31, and where their BARs decode.
//
// The bus plays firmware when a device is added: it sizes the BARs, places
// each naturally aligned in the memory window, fills in the interrupt line
// and turns memory decoding on. From then on it follows the guest: after
// every write to a command or BAR register it reads them back, and each BAR
// decodes on the MMIO bus at its programmed address while memory decoding is
// on. So a BAR write with decoding on moves the range, clearing the memory-
// space bit removes the ranges, setting it maps them again, and sizing writes
// made with decoding off (as Linux makes them) move nothing. A programmed
// address outside the window or over another BAR is refused: the BAR stays
// unmapped until the guest programs a usable one, and the refusal is counted.
//
// Thread-safe. Config accesses are serialised under one lock (they are rare,
// and a BAR move must see the whole table of BARs); BAR accesses go from the
// MMIO bus to the device with no lock of the root's held.
class RootBus final : public state::Stateful {
public:
    static constexpr std::size_t kSlotCount = 32;
    static constexpr std::uint16_t kHostBridgeVendorId = 0x8086;  // Intel
    static constexpr std::uint16_t kHostBridgeDeviceId = 0x0d57;

    struct MemoryWindow {
        std::uint64_t start = 0;
        std::uint64_t size = 0;
    };
    // Slot S's INTA# is wired to GSI first_gsi + S % gsi_count.
    struct IntxRouting {
        std::uint32_t first_gsi = 0;
        std::uint32_t gsi_count = 1;
    };

    // `mmio` must outlive the RootBus. Throws std::invalid_argument for an
    // empty or wrapping window, or no INTx GSIs.
    RootBus(devices::Bus& mmio, MemoryWindow window, IntxRouting intx);
    RootBus(const RootBus&) = delete;
    RootBus& operator=(const RootBus&) = delete;

    // The GSI slot `slot`'s INTA# is wired to, for the InterruptLine the
    // device's Intx drives.
    std::uint32_t intx_gsi(std::size_t slot) const;

    // Puts `device` in slot `slot` (1-31). `name` appears in the MMIO bus's
    // messages ("virtio-blk0 BAR 0"). Throws std::invalid_argument for a bad
    // or taken slot, a null device, an I/O BAR, or a BAR that finds no room
    // left in the window.
    void add_device(std::size_t slot, std::string name, std::shared_ptr<PciDevice> device);

    // A guest config access of 1-4 bytes within one dword. A function that
    // does not exist (an empty slot, a function other than 0, a bus other
    // than 0) reads all ones and ignores writes, as do offsets past 256
    // bytes and accesses that cross a dword.
    void read_config(const ConfigAddress& address, std::span<std::uint8_t> data);
    void write_config(const ConfigAddress& address, std::span<const std::uint8_t> data);

    // BAR addresses the guest programmed with decoding on that could not be
    // mapped (outside the window, or over another BAR), each counted once.
    std::uint64_t refused_bar_mappings() const;

    // The host bridge's configuration space; the other functions' are their
    // devices' to save.
    state::State save() const override;
    void restore(const state::State& state) override;
    // After every function's configuration space was restored: each BAR
    // decodes where the restored registers say (bar_moved() telling its
    // device), as after a guest's write to them.
    void restore_mappings();

private:
    struct Bar {
        std::uint64_t size = 0;  // 0: none (or the upper half of a 64-bit BAR)
        bool is_64bit = false;
        std::uint64_t programmed = 0;          // what the registers say
        std::optional<std::uint64_t> mapped;   // where it decodes on the MMIO bus
        std::optional<std::uint64_t> refused;  // the address last counted as refused
        std::shared_ptr<devices::BusDevice> region;
    };
    struct Range {
        std::uint64_t start = 0;
        std::uint64_t size = 0;
    };
    struct Function {
        std::string name;
        std::shared_ptr<PciDevice> device;
        bool memory_enabled = false;
        std::array<Bar, kBarCount> bars;
    };

    // The function at `address`, or null when none answers there.
    Function* find(const ConfigAddress& address);
    void size_bars(Function& function);
    void place_bars(Function& function);
    // The lowest address in the window aligned to `size` whose range misses
    // every range in `taken`; none when the window is full.
    std::optional<std::uint64_t> free_address(std::uint64_t size, const std::vector<Range>& taken) const;
    // Reads the command and BAR registers back after the guest wrote one.
    void read_back(Function& function);
    // Makes every BAR decode where its function's registers say, if it may.
    void update_mappings();
    std::optional<std::uint64_t> wanted_address(const Function& function, const Bar& bar) const;
    bool inside_window(std::uint64_t address, std::uint64_t size) const;

    devices::Bus& mmio_;
    const MemoryWindow window_;
    const IntxRouting intx_;
    mutable std::mutex mutex_;
    std::array<std::unique_ptr<Function>, kSlotCount> slots_;
    std::shared_ptr<HostBridge> host_bridge_;  // slots_[0]'s device
    std::uint64_t refused_bar_mappings_ = 0;
};

}  // namespace vim::vmm::pci
