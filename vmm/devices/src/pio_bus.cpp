#include "vmm/devices/pio_bus.h"

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <mutex>
#include <stdexcept>

namespace vmm::devices {
namespace {

constexpr std::uint32_t kPortSpace = 0x10000;

std::string describe(const std::string& name, std::uint32_t base, std::uint32_t end) {
    char ports[32];
    std::snprintf(ports, sizeof ports, "0x%x-0x%x", base, end - 1);
    return name + " at ports " + ports;
}

}  // namespace

void PioBus::add_device(std::string name, std::uint16_t base, std::uint16_t length,
                        std::shared_ptr<PioDevice> device) {
    if (!device) {
        throw std::invalid_argument("pio bus: device " + name + " is null");
    }
    if (length == 0) {
        throw std::invalid_argument("pio bus: device " + name + " has an empty port range");
    }
    const std::uint32_t end = std::uint32_t{base} + length;
    if (end > kPortSpace) {
        throw std::invalid_argument("pio bus: " + describe(name, base, end) +
                                    " runs past port 0xffff");
    }

    std::unique_lock lock(mutex_);
    // Only the nearest range on each side can overlap, since ranges are disjoint.
    const auto next = ranges_.lower_bound(base);
    if (next != ranges_.end() && next->first < end) {
        throw std::invalid_argument("pio bus: " + describe(name, base, end) + " overlaps " +
                                    describe(next->second.name, next->first, next->second.end));
    }
    if (next != ranges_.begin()) {
        const auto previous = std::prev(next);
        if (previous->second.end > base) {
            throw std::invalid_argument(
                "pio bus: " + describe(name, base, end) + " overlaps " +
                describe(previous->second.name, previous->first, previous->second.end));
        }
    }
    ranges_.emplace(base, Range{std::move(name), end, std::move(device)});
}

const PioBus::Range* PioBus::find(std::uint16_t port, std::size_t size,
                                  std::uint16_t& base) const {
    auto it = ranges_.upper_bound(port);
    if (it == ranges_.begin()) {
        return nullptr;
    }
    --it;
    if (std::uint64_t{port} + size > it->second.end) {
        return nullptr;
    }
    base = it->first;
    return &it->second;
}

bool PioBus::read(std::uint16_t port, std::span<std::uint8_t> data) {
    std::shared_lock lock(mutex_);
    std::uint16_t base = 0;
    if (const Range* range = find(port, data.size(), base)) {
        range->device->read(static_cast<std::uint16_t>(port - base), data);
        return true;
    }
    std::ranges::fill(data, std::uint8_t{0xff});
    unhandled_reads_.fetch_add(1, std::memory_order_relaxed);
    return false;
}

bool PioBus::write(std::uint16_t port, std::span<const std::uint8_t> data) {
    std::shared_lock lock(mutex_);
    std::uint16_t base = 0;
    if (const Range* range = find(port, data.size(), base)) {
        range->device->write(static_cast<std::uint16_t>(port - base), data);
        return true;
    }
    unhandled_writes_.fetch_add(1, std::memory_order_relaxed);
    return false;
}

std::uint64_t PioBus::unhandled_reads() const {
    return unhandled_reads_.load(std::memory_order_relaxed);
}

std::uint64_t PioBus::unhandled_writes() const {
    return unhandled_writes_.load(std::memory_order_relaxed);
}

}  // namespace vmm::devices
