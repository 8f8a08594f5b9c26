#include "vmm/kvm/capabilities.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace {

using vim::vmm::kvm::CapabilityStatus;

int id_of(const std::vector<CapabilityStatus>& report, std::string_view name) {
    auto found = std::find_if(report.begin(), report.end(),
                              [&](const CapabilityStatus& status) { return status.name == name; });
    EXPECT_NE(found, report.end()) << name;
    return found == report.end() ? -1 : found->id;
}

TEST(Capabilities, AllPresentPasses) {
    auto report = vim::vmm::kvm::capability_report([](int) { return 1; });
    EXPECT_NO_THROW(vim::vmm::kvm::require_capabilities(report));
}

TEST(Capabilities, MissingRequiredCapabilityIsNamed) {
    auto everything = vim::vmm::kvm::capability_report([](int) { return 1; });
    int irqfd = id_of(everything, "KVM_CAP_IRQFD");
    auto report = vim::vmm::kvm::capability_report([&](int id) { return id == irqfd ? 0 : 1; });
    try {
        vim::vmm::kvm::require_capabilities(report);
        FAIL() << "a missing KVM_CAP_IRQFD was accepted";
    } catch (const std::runtime_error& error) {
        EXPECT_EQ(std::string(error.what()), "KVM capability KVM_CAP_IRQFD (" + std::to_string(irqfd) +
                                                 ") is not supported by this kernel");
    }
}

TEST(Capabilities, MissingOptionalCapabilityIsOnlyReported) {
    auto everything = vim::vmm::kvm::capability_report([](int) { return 1; });
    int ring = id_of(everything, "KVM_CAP_DIRTY_LOG_RING");
    auto report = vim::vmm::kvm::capability_report([&](int id) { return id == ring ? 0 : 1; });
    EXPECT_NO_THROW(vim::vmm::kvm::require_capabilities(report));
    auto entry = std::find_if(report.begin(), report.end(),
                              [&](const CapabilityStatus& status) { return status.id == ring; });
    ASSERT_NE(entry, report.end());
    EXPECT_FALSE(entry->required);
    EXPECT_EQ(entry->value, 0);
}

}  // namespace
