#pragma once

#include <cstddef>
#include <mutex>
#include <utility>
#include <vector>

#include "vmm/devices/interrupts.h"

namespace vim::testing {

// Records every route the guest's table programming produced and every
// vector raised, in order.
class FakeMsiVectors final : public vmm::devices::MsiVectors {
public:
    explicit FakeMsiVectors(std::size_t count) : count_(count) {}

    std::size_t size() const override { return count_; }
    void set_route(std::size_t vector, const vmm::devices::MsiMessage& message) override {
        std::lock_guard lock(mutex_);
        routes.emplace_back(vector, message);
    }
    void trigger(std::size_t vector) override {
        std::lock_guard lock(mutex_);
        triggers.push_back(vector);
    }

    std::vector<std::pair<std::size_t, vmm::devices::MsiMessage>> routes;
    std::vector<std::size_t> triggers;

private:
    std::size_t count_;
    std::mutex mutex_;
};

}  // namespace vim::testing
