#pragma once

#include <functional>
#include <string_view>
#include <vector>

namespace vim::vmm::kvm {

struct CapabilityStatus {
    std::string_view name;  // e.g. "KVM_CAP_IRQCHIP"
    int id;
    bool required;
    int value;  // what KVM_CHECK_EXTENSION said; 0 = not supported
};

// The capabilities this VMM relies on (required) or uses when present,
// each with what `query` (KVM_CHECK_EXTENSION) reports for it.
std::vector<CapabilityStatus> capability_report(const std::function<int(int)>& query);

// Throws std::runtime_error naming the first required capability whose value
// is 0, e.g. "KVM capability KVM_CAP_IRQFD (32) is not supported by this kernel".
void require_capabilities(const std::vector<CapabilityStatus>& report);

}  // namespace vim::vmm::kvm
