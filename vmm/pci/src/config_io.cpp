#include "vmm/pci/config_io.h"

#include <algorithm>
#include <stdexcept>

namespace vim::vmm::pci {
namespace {

constexpr std::uint64_t kDataOffset = 4;
constexpr std::uint32_t kEnable = 1u << 31;
// Bits 1:0 and 30:28 are reserved and read as zero.
constexpr std::uint32_t kAddressBits = 0x8ffffffc;

}  // namespace

ConfigIo::ConfigIo(std::shared_ptr<RootBus> root) : root_(std::move(root)) {
    if (!root_) {
        throw std::invalid_argument("pci configuration ports: root bus is null");
    }
}

bool ConfigIo::decode(std::uint64_t offset, ConfigAddress& address) const {
    const std::uint32_t value = address_.load(std::memory_order_relaxed);
    if (!(value & kEnable)) {
        return false;
    }
    address.bus = static_cast<std::uint8_t>(value >> 16);
    address.device = static_cast<std::uint8_t>((value >> 11) & 0x1f);
    address.function = static_cast<std::uint8_t>((value >> 8) & 0x7);
    address.offset =
        static_cast<std::uint16_t>((value & 0xfc) | ((value >> 16) & 0xf00) | (offset - kDataOffset));
    return true;
}

void ConfigIo::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    ConfigAddress address;
    if (offset + data.size() <= kDataOffset) {
        const std::uint32_t value = address_.load(std::memory_order_relaxed);
        for (std::size_t i = 0; i < data.size(); ++i) {
            data[i] = static_cast<std::uint8_t>(value >> (8 * (offset + i)));
        }
    } else if (offset >= kDataOffset && decode(offset, address)) {
        root_->read_config(address, data);
    } else {
        // Disabled, or straddling the two registers.
        std::ranges::fill(data, std::uint8_t{0xff});
    }
}

void ConfigIo::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    ConfigAddress address;
    if (offset == 0 && data.size() == 4) {
        const std::uint32_t value = data[0] | std::uint32_t{data[1]} << 8 | std::uint32_t{data[2]} << 16 |
                                    std::uint32_t{data[3]} << 24;
        address_.store(value & kAddressBits, std::memory_order_relaxed);
    } else if (offset >= kDataOffset && decode(offset, address)) {
        root_->write_config(address, data);
    }
}

}  // namespace vim::vmm::pci
