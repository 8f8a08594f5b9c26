#pragma once

// A VM for tests of code that talks to kvm::Vm: it records memory slots,
// interrupt lines, irqfds and ioevents, and hands out dirty logs the test
// injects, so device, memory and migration code runs without /dev/kvm.

#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "vmm/kvm/vm.h"

namespace vim::testing {

class FakeVm final : public vmm::kvm::Vm {
public:
    std::map<std::uint32_t, vmm::kvm::MemorySlot> slots;
    std::vector<std::pair<std::uint32_t, bool>> irq_levels;
    std::vector<std::pair<int, std::uint32_t>> irqfds;
    std::vector<vmm::kvm::IoEvent> ioevents;     // registered and not yet removed
    std::vector<vmm::kvm::MsiRoute> msi_routes;  // the last set
    // What dirty_log() returns for a slot until cleared; set by the test.
    std::map<std::uint32_t, std::vector<std::uint64_t>> injected_dirty;

    void set_memory_slot(const vmm::kvm::MemorySlot& slot) override { slots[slot.slot] = slot; }

    std::vector<std::uint64_t> dirty_log(std::uint32_t slot) override {
        const auto& memory_slot = require(slot);
        auto bitmap = injected_dirty[slot];
        bitmap.resize((memory_slot.size / vmm::kvm::kPageSize + 63) / 64);
        return bitmap;
    }

    void clear_dirty_log(std::uint32_t slot, std::uint64_t first_page,
                         std::span<const std::uint64_t> pages) override {
        require(slot);
        if (first_page % 64 != 0) {
            throw std::invalid_argument("clear dirty log: first page is not a multiple of 64");
        }
        auto& bitmap = injected_dirty[slot];
        const std::size_t first_word = first_page / 64;
        for (std::size_t i = 0; i < pages.size() && first_word + i < bitmap.size(); ++i) {
            bitmap[first_word + i] &= ~pages[i];
        }
    }

    void set_irq_line(std::uint32_t irq, bool high) override { irq_levels.emplace_back(irq, high); }
    void register_irqfd(int eventfd, std::uint32_t gsi) override { irqfds.emplace_back(eventfd, gsi); }
    void register_ioevent(const vmm::kvm::IoEvent& event) override { ioevents.push_back(event); }
    void unregister_ioevent(const vmm::kvm::IoEvent& event) override {
        auto same = [&](const vmm::kvm::IoEvent& other) {
            return other.space == event.space && other.address == event.address &&
                   other.length == event.length && other.eventfd == event.eventfd &&
                   other.has_datamatch == event.has_datamatch && other.datamatch == event.datamatch;
        };
        if (std::erase_if(ioevents, same) == 0) {
            throw std::invalid_argument("no such ioevent");
        }
    }
    void set_msi_routes(std::span<const vmm::kvm::MsiRoute> routes) override {
        msi_routes.assign(routes.begin(), routes.end());
    }

private:
    const vmm::kvm::MemorySlot& require(std::uint32_t slot) const {
        auto found = slots.find(slot);
        if (found == slots.end()) {
            throw std::invalid_argument("memory slot " + std::to_string(slot) + " does not exist");
        }
        return found->second;
    }
};

}  // namespace vim::testing
