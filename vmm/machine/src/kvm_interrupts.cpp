#include "kvm_interrupts.h"

#include <stdexcept>
#include <string>

namespace vim::vmm::machine {
namespace {

// KVM's routing table holds up to KVM_MAX_IRQ_ROUTES (4096) entries; the
// controllers' pins take the first kFirstMsiGsi GSIs.
constexpr std::uint32_t kMaxGsi = 4096;

class KvmMsiVectors final : public devices::MsiVectors {
public:
    KvmMsiVectors(MsiRouter& router, std::uint32_t first_gsi, std::size_t count) : router_(router) {
        for (std::size_t i = 0; i < count; ++i) {
            gsis_.push_back(first_gsi + static_cast<std::uint32_t>(i));
            irqfds_.push_back(std::make_unique<sys::EventFd>("MSI vector"));
        }
    }

    std::size_t size() const override { return gsis_.size(); }
    void set_route(std::size_t vector, const devices::MsiMessage& message) override {
        router_.set_route(gsis_.at(vector), message);
    }
    void trigger(std::size_t vector) override { irqfds_.at(vector)->signal(); }

    std::uint32_t gsi(std::size_t vector) const { return gsis_[vector]; }
    int irqfd(std::size_t vector) const { return irqfds_[vector]->get(); }

private:
    MsiRouter& router_;
    std::vector<std::uint32_t> gsis_;
    std::vector<std::unique_ptr<sys::EventFd>> irqfds_;
};

}  // namespace

void GsiLevel::change(bool high) {
    std::lock_guard lock(mutex_);
    const bool was_high = high_lines_ > 0;
    high_lines_ = high ? high_lines_ + 1 : high_lines_ - 1;
    if ((high_lines_ > 0) != was_high) {
        vm_.set_irq_line(gsi_, high_lines_ > 0);
    }
}

void KvmInterruptLine::set_level(bool high) {
    // Only changes count towards the GSI's level.
    if (high_.exchange(high) != high) {
        gsi_->change(high);
    }
}

std::unique_ptr<devices::MsiVectors> MsiRouter::create_vectors(std::size_t count) {
    std::uint32_t first;
    {
        std::lock_guard lock(mutex_);
        if (count > kMaxGsi - next_gsi_) {
            throw std::runtime_error("no GSIs left for " + std::to_string(count) + " MSI vectors");
        }
        first = next_gsi_;
        next_gsi_ += static_cast<std::uint32_t>(count);
    }
    auto vectors = std::make_unique<KvmMsiVectors>(*this, first, count);
    for (std::size_t i = 0; i < count; ++i) {
        vm_.register_irqfd(vectors->irqfd(i), vectors->gsi(i));
    }
    return vectors;
}

void MsiRouter::set_route(std::uint32_t gsi, const devices::MsiMessage& message) {
    std::lock_guard lock(mutex_);
    auto [entry, added] = routes_.try_emplace(gsi, message);
    if (!added) {
        if (entry->second == message) {
            return;  // the guest rewrote an entry unchanged: no table rewrite
        }
        entry->second = message;
    }
    std::vector<kvm::MsiRoute> table;
    for (const auto& [route_gsi, route_message] : routes_) {
        table.push_back({route_gsi, route_message.address, route_message.data});
    }
    vm_.set_msi_routes(table);
}

}  // namespace vim::vmm::machine
