#include "vmm/pci/root_bus.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "host_bridge.h"
#include "vmm/sys/hex.h"

namespace vim::vmm::pci {
namespace {

using sys::hex;

constexpr std::uint32_t kAllOnes = 0xffffffff;
constexpr std::uint64_t kBarAddressMask = ~std::uint64_t{kBarFlagsMask};

// One BAR's range on the MMIO bus: forwards to the device with the BAR's
// number, so the device never needs to know where the guest put it.
class BarRegion final : public devices::BusDevice {
public:
    BarRegion(std::shared_ptr<PciDevice> device, std::size_t bar) : device_(std::move(device)), bar_(bar) {}

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
        device_->read_bar(bar_, offset, data);
    }
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
        device_->write_bar(bar_, offset, data);
    }

private:
    std::shared_ptr<PciDevice> device_;
    std::size_t bar_;
};

void write_register(PciDevice& device, std::size_t index, std::uint32_t value) {
    const std::array<std::uint8_t, 4> bytes{
        static_cast<std::uint8_t>(value), static_cast<std::uint8_t>(value >> 8),
        static_cast<std::uint8_t>(value >> 16), static_cast<std::uint8_t>(value >> 24)};
    device.write_config(index, 0, bytes);
}

bool overlaps(std::uint64_t start, std::uint64_t size, std::uint64_t other_start, std::uint64_t other_size) {
    return start < other_start + other_size && other_start < start + size;
}

}  // namespace

RootBus::RootBus(devices::Bus& mmio, MemoryWindow window, IntxRouting intx)
    : mmio_(mmio), window_(window), intx_(intx) {
    if (window.size == 0 || window.start + window.size < window.start) {
        throw std::invalid_argument("pci: memory window at " + hex(window.start) + " of size " +
                                    hex(window.size) + " is empty or wraps");
    }
    if (intx.gsi_count == 0) {
        throw std::invalid_argument("pci: no GSIs for INTx");
    }
    slots_[0] = std::make_unique<Function>();
    slots_[0]->name = "host bridge";
    host_bridge_ = std::make_shared<HostBridge>(kHostBridgeVendorId, kHostBridgeDeviceId);
    slots_[0]->device = host_bridge_;
}

std::uint32_t RootBus::intx_gsi(std::size_t slot) const {
    return intx_.first_gsi + static_cast<std::uint32_t>(slot % intx_.gsi_count);
}

void RootBus::add_device(std::size_t slot, std::string name, std::shared_ptr<PciDevice> device) {
    const std::string what = "pci: " + name + " in slot " + std::to_string(slot);
    if (slot == 0 || slot >= kSlotCount) {
        throw std::invalid_argument(what + ": slots are 1-" + std::to_string(kSlotCount - 1) +
                                    " (0 is the host bridge)");
    }
    if (!device) {
        throw std::invalid_argument(what + ": device is null");
    }
    std::lock_guard lock(mutex_);
    if (slots_[slot]) {
        throw std::invalid_argument(what + ": slot is taken by " + slots_[slot]->name);
    }
    auto function = std::make_unique<Function>();
    function->name = std::move(name);
    function->device = std::move(device);
    size_bars(*function);
    place_bars(*function);

    PciDevice& pci_device = *function->device;
    const std::uint32_t interrupt = pci_device.read_config(kInterruptRegister);
    if ((interrupt >> 8) & 0xff) {
        // 0xff is "unknown or not connected": what a GSI past a byte becomes.
        const std::uint8_t line = static_cast<std::uint8_t>(std::min<std::uint32_t>(intx_gsi(slot), 0xff));
        pci_device.write_config(kInterruptRegister, 0, std::span(&line, 1));
    }
    const bool has_bars = std::ranges::any_of(function->bars, [](const Bar& bar) { return bar.size != 0; });
    if (has_bars) {
        const auto command =
            static_cast<std::uint16_t>(pci_device.read_config(kCommandStatusRegister) | kCommandMemorySpace);
        const std::array<std::uint8_t, 2> bytes{static_cast<std::uint8_t>(command),
                                                static_cast<std::uint8_t>(command >> 8)};
        pci_device.write_config(kCommandStatusRegister, 0, bytes);
    }
    slots_[slot] = std::move(function);
    read_back(*slots_[slot]);
    update_mappings();
}

void RootBus::size_bars(Function& function) {
    // As Linux does it: write all ones, read back the mask of writable
    // address bits, put the original back.
    PciDevice& device = *function.device;
    for (std::size_t index = 0; index < kBarCount; ++index) {
        const std::size_t reg = kFirstBarRegister + index;
        const std::uint32_t original = device.read_config(reg);
        if (original & kBarIoSpace) {
            throw std::invalid_argument("pci: " + function.name + ": BAR " + std::to_string(index) +
                                        " is an I/O BAR, which this bus does not place");
        }
        const bool is_64bit = (original & kBarTypeMask) == kBarMemory64 && index + 1 < kBarCount;
        write_register(device, reg, kAllOnes);
        std::uint64_t mask = device.read_config(reg) & kBarAddressMask & kAllOnes;
        write_register(device, reg, original);
        if (is_64bit) {
            const std::uint32_t original_high = device.read_config(reg + 1);
            write_register(device, reg + 1, kAllOnes);
            mask |= std::uint64_t{device.read_config(reg + 1)} << 32;
            write_register(device, reg + 1, original_high);
        }
        if (mask != 0) {
            Bar& bar = function.bars[index];
            bar.size = mask & (~mask + 1);  // the lowest writable address bit
            bar.is_64bit = is_64bit;
            bar.region = std::make_shared<BarRegion>(function.device, index);
        }
        index += is_64bit;
    }
}

void RootBus::place_bars(Function& function) {
    std::vector<Range> taken;
    for (const auto& other : slots_) {
        for (std::size_t index = 0; other && index < kBarCount; ++index) {
            const Bar& bar = other->bars[index];
            if (bar.size != 0 && inside_window(bar.programmed, bar.size)) {
                taken.push_back({bar.programmed, bar.size});
            }
        }
    }
    // Largest first, so that smaller BARs fill the alignment gaps after them.
    std::array<std::size_t, kBarCount> order;
    std::iota(order.begin(), order.end(), 0);
    std::ranges::stable_sort(order, std::greater{},
                             [&](std::size_t index) { return function.bars[index].size; });
    for (std::size_t index : order) {
        const Bar& bar = function.bars[index];
        if (bar.size == 0) {
            continue;
        }
        const std::optional<std::uint64_t> address = free_address(bar.size, taken);
        if (!address) {
            throw std::invalid_argument("pci: " + function.name + ": no room for BAR " +
                                        std::to_string(index) + " of size " + hex(bar.size) +
                                        " in the memory window " + hex(window_.start) + "-" +
                                        hex(window_.start + window_.size - 1));
        }
        taken.push_back({*address, bar.size});
        const std::size_t reg = kFirstBarRegister + index;
        write_register(*function.device, reg, static_cast<std::uint32_t>(*address));
        if (bar.is_64bit) {
            write_register(*function.device, reg + 1, static_cast<std::uint32_t>(*address >> 32));
        }
    }
}

std::optional<std::uint64_t> RootBus::free_address(std::uint64_t size,
                                                   const std::vector<Range>& taken) const {
    const auto align_up = [size](std::uint64_t address) -> std::optional<std::uint64_t> {
        if (address > ~std::uint64_t{0} - (size - 1)) {
            return std::nullopt;
        }
        return (address + size - 1) & ~(size - 1);
    };
    std::optional<std::uint64_t> address = align_up(window_.start);
    while (address && inside_window(*address, size)) {
        const auto clash = std::ranges::find_if(
            taken, [&](const Range& range) { return overlaps(*address, size, range.start, range.size); });
        if (clash == taken.end()) {
            return address;
        }
        address = align_up(clash->start + clash->size);
    }
    return std::nullopt;
}

RootBus::Function* RootBus::find(const ConfigAddress& address) {
    if (address.bus != 0 || address.device >= kSlotCount || address.function != 0) {
        return nullptr;
    }
    return slots_[address.device].get();
}

void RootBus::read_config(const ConfigAddress& address, std::span<std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    const std::size_t shift = address.offset % 4;
    Function* function = find(address);
    if (!function || address.offset >= kConfigSpaceSize || shift + data.size() > 4) {
        std::ranges::fill(data, std::uint8_t{0xff});
        return;
    }
    const std::uint32_t value = function->device->read_config(address.offset / 4);
    for (std::size_t i = 0; i < data.size(); ++i) {
        data[i] = static_cast<std::uint8_t>(value >> (8 * (shift + i)));
    }
}

void RootBus::write_config(const ConfigAddress& address, std::span<const std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    const std::size_t shift = address.offset % 4;
    Function* function = find(address);
    if (!function || address.offset >= kConfigSpaceSize || shift + data.size() > 4 || data.empty()) {
        return;
    }
    const std::size_t index = address.offset / 4;
    function->device->write_config(index, shift, data);
    if (index == kCommandStatusRegister ||
        (index >= kFirstBarRegister && index < kFirstBarRegister + kBarCount)) {
        read_back(*function);
        update_mappings();
    }
}

void RootBus::read_back(Function& function) {
    PciDevice& device = *function.device;
    function.memory_enabled = device.read_config(kCommandStatusRegister) & kCommandMemorySpace;
    for (std::size_t index = 0; index < kBarCount; ++index) {
        Bar& bar = function.bars[index];
        if (bar.size == 0) {
            continue;
        }
        bar.programmed = device.read_config(kFirstBarRegister + index) & kBarAddressMask & kAllOnes;
        if (bar.is_64bit) {
            bar.programmed |= std::uint64_t{device.read_config(kFirstBarRegister + index + 1)} << 32;
        }
    }
}

bool RootBus::inside_window(std::uint64_t address, std::uint64_t size) const {
    return address >= window_.start && address - window_.start <= window_.size &&
           window_.size - (address - window_.start) >= size;
}

std::optional<std::uint64_t> RootBus::wanted_address(const Function& function, const Bar& bar) const {
    if (!function.memory_enabled || !inside_window(bar.programmed, bar.size)) {
        return std::nullopt;
    }
    return bar.programmed;
}

void RootBus::update_mappings() {
    const auto for_each_bar = [this](auto&& visit) {
        for (auto& function : slots_) {
            for (std::size_t index = 0; function && index < kBarCount; ++index) {
                if (function->bars[index].size != 0) {
                    visit(*function, index, function->bars[index]);
                }
            }
        }
    };
    std::vector<std::optional<std::uint64_t>> before;
    for_each_bar([&](Function&, std::size_t, Bar& bar) { before.push_back(bar.mapped); });

    // Moves and removals first, so that BARs trading places find the other's
    // old range free when they are added back below.
    for_each_bar([&](Function& function, std::size_t, Bar& bar) {
        const std::optional<std::uint64_t> wanted = wanted_address(function, bar);
        if (!bar.mapped || bar.mapped == wanted) {
            return;
        }
        if (wanted) {
            try {
                mmio_.move(*bar.mapped, *wanted);
                bar.mapped = wanted;
                return;
            } catch (const std::invalid_argument&) {
                // Taken: the old range must stop decoding all the same.
            }
        }
        mmio_.remove(*bar.mapped);
        bar.mapped.reset();
    });
    for_each_bar([&](Function& function, std::size_t index, Bar& bar) {
        const std::optional<std::uint64_t> wanted = wanted_address(function, bar);
        if (!wanted || bar.mapped) {
            return;
        }
        try {
            mmio_.add(function.name + " BAR " + std::to_string(index), *wanted, bar.size, bar.region);
            bar.mapped = wanted;
        } catch (const std::invalid_argument&) {
            // Over another range: refused below.
        }
    });

    std::size_t position = 0;
    for_each_bar([&](Function& function, std::size_t index, Bar& bar) {
        // Sizing with decoding on (not what Linux does, but legal) leaves the
        // mask in the register for a moment; it is no address to complain of.
        const std::uint64_t sizing_pattern =
            ~(bar.size - 1) & kBarAddressMask & (bar.is_64bit ? ~std::uint64_t{0} : kAllOnes);
        const bool refused = function.memory_enabled && !bar.mapped && bar.programmed != sizing_pattern;
        if (!refused) {
            bar.refused.reset();
        } else if (bar.refused != bar.programmed) {
            ++refused_bar_mappings_;
            bar.refused = bar.programmed;
        }
        const std::optional<std::uint64_t> from = before[position++];
        if (from != bar.mapped) {
            function.device->bar_moved(index, from, bar.mapped);
        }
    });
}

state::State RootBus::save() const { return {{"host_bridge", host_bridge_->save()}}; }

void RootBus::restore(const state::State& state) {
    state::restoring("pci: host bridge", [&] { host_bridge_->restore(state::field(state, "host_bridge")); });
}

void RootBus::restore_mappings() {
    std::lock_guard lock(mutex_);
    for (auto& function : slots_) {
        if (function) {
            read_back(*function);
        }
    }
    update_mappings();
}

std::uint64_t RootBus::refused_bar_mappings() const {
    std::lock_guard lock(mutex_);
    return refused_bar_mappings_;
}

}  // namespace vim::vmm::pci
