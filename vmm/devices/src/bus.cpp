#include "vmm/devices/bus.h"

#include <algorithm>
#include <iterator>
#include <mutex>
#include <stdexcept>

#include "vmm/sys/hex.h"

namespace vim::vmm::devices {

using sys::hex;

Bus::Bus(std::string name, std::uint64_t end) : name_(std::move(name)), end_(end) {}

std::string Bus::describe(const std::string& device_name, std::uint64_t base, std::uint64_t length) const {
    return device_name + " at " + hex(base) + "-" + hex(base + length - 1);
}

void Bus::check_free(const std::string& device_name, std::uint64_t base, std::uint64_t length,
                     const Range* ignored) const {
    if (length == 0) {
        throw std::invalid_argument(name_ + " bus: device " + device_name + " has an empty range");
    }
    // base + length - 1 is the last address; it must neither wrap nor pass the end.
    const std::uint64_t last = base + length - 1;
    if (last < base || (end_ != 0 && last >= end_)) {
        throw std::invalid_argument(name_ + " bus: " + device_name + " at " + hex(base) + " of length " +
                                    hex(length) + " runs past the end of the space");
    }
    // Only the nearest range on each side can overlap, since ranges are disjoint.
    auto next = ranges_.lower_bound(base);
    if (next != ranges_.end() && &next->second == ignored) {
        ++next;
    }
    if (next != ranges_.end() && next->first <= last) {
        throw std::invalid_argument(name_ + " bus: " + describe(device_name, base, length) + " overlaps " +
                                    describe(next->second.name, next->first, next->second.length));
    }
    auto previous = ranges_.lower_bound(base);
    while (previous != ranges_.begin()) {
        --previous;
        if (&previous->second == ignored) {
            continue;
        }
        if (previous->first + (previous->second.length - 1) >= base) {
            throw std::invalid_argument(
                name_ + " bus: " + describe(device_name, base, length) + " overlaps " +
                describe(previous->second.name, previous->first, previous->second.length));
        }
        break;
    }
}

void Bus::add(std::string device_name, std::uint64_t base, std::uint64_t length,
              std::shared_ptr<BusDevice> device) {
    if (!device) {
        throw std::invalid_argument(name_ + " bus: device " + device_name + " is null");
    }
    std::unique_lock lock(mutex_);
    check_free(device_name, base, length, nullptr);
    ranges_.emplace(base, Range{std::move(device_name), length, std::move(device)});
}

void Bus::remove(std::uint64_t base) {
    std::unique_lock lock(mutex_);
    if (ranges_.erase(base) == 0) {
        throw std::invalid_argument(name_ + " bus: no device starts at " + hex(base));
    }
}

void Bus::move(std::uint64_t base, std::uint64_t new_base) {
    std::unique_lock lock(mutex_);
    auto found = ranges_.find(base);
    if (found == ranges_.end()) {
        throw std::invalid_argument(name_ + " bus: no device starts at " + hex(base));
    }
    if (new_base == base) {
        return;
    }
    check_free(found->second.name, new_base, found->second.length, &found->second);
    auto node = ranges_.extract(found);
    node.key() = new_base;
    ranges_.insert(std::move(node));
}

std::shared_ptr<BusDevice> Bus::find(std::uint64_t address, std::size_t size, std::uint64_t& offset) const {
    std::shared_lock lock(mutex_);
    auto it = ranges_.upper_bound(address);
    if (it == ranges_.begin() || size == 0) {
        return nullptr;
    }
    --it;
    offset = address - it->first;
    if (offset >= it->second.length || size > it->second.length - offset) {
        return nullptr;
    }
    return it->second.device;
}

bool Bus::read(std::uint64_t address, std::span<std::uint8_t> data) {
    std::uint64_t offset = 0;
    if (auto device = find(address, data.size(), offset)) {
        device->read(offset, data);
        return true;
    }
    std::ranges::fill(data, std::uint8_t{0xff});
    unhandled_reads_.fetch_add(1, std::memory_order_relaxed);
    return false;
}

bool Bus::write(std::uint64_t address, std::span<const std::uint8_t> data) {
    std::uint64_t offset = 0;
    if (auto device = find(address, data.size(), offset)) {
        device->write(offset, data);
        return true;
    }
    unhandled_writes_.fetch_add(1, std::memory_order_relaxed);
    return false;
}

std::uint64_t Bus::unhandled_reads() const { return unhandled_reads_.load(std::memory_order_relaxed); }

std::uint64_t Bus::unhandled_writes() const { return unhandled_writes_.load(std::memory_order_relaxed); }

}  // namespace vim::vmm::devices
