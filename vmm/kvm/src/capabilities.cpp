#include "vmm/kvm/capabilities.h"

#include <linux/kvm.h>

#include <stdexcept>
#include <string>

namespace vim::vmm::kvm {
namespace {

struct Capability {
    std::string_view name;
    int id;
    bool required;
};

#define VIM_CAP(name, required) (Capability{#name, name, required})

// Like kvmtool's table: checked once at start-up so a missing feature is a
// clear message, not a failed ioctl deep inside device setup.
constexpr Capability kCapabilities[] = {
    VIM_CAP(KVM_CAP_USER_MEMORY, true),
    VIM_CAP(KVM_CAP_SYNC_MMU, true),
    VIM_CAP(KVM_CAP_IRQCHIP, true),
    VIM_CAP(KVM_CAP_PIT2, true),
    VIM_CAP(KVM_CAP_SET_TSS_ADDR, true),
    VIM_CAP(KVM_CAP_SET_IDENTITY_MAP_ADDR, true),
    VIM_CAP(KVM_CAP_EXT_CPUID, true),
    VIM_CAP(KVM_CAP_MP_STATE, true),
    VIM_CAP(KVM_CAP_ADJUST_CLOCK, true),
    VIM_CAP(KVM_CAP_IRQFD, true),
    VIM_CAP(KVM_CAP_IOEVENTFD, true),
    VIM_CAP(KVM_CAP_IRQ_ROUTING, true),
    VIM_CAP(KVM_CAP_IMMEDIATE_EXIT, true),
    VIM_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, true),
    VIM_CAP(KVM_CAP_DIRTY_LOG_RING, false),
    VIM_CAP(KVM_CAP_X86_DISABLE_EXITS, false),
    VIM_CAP(KVM_CAP_TSC_DEADLINE_TIMER, false),
};

#undef VIM_CAP

}  // namespace

std::vector<CapabilityStatus> capability_report(const std::function<int(int)>& query) {
    std::vector<CapabilityStatus> report;
    for (const Capability& capability : kCapabilities) {
        report.push_back({capability.name, capability.id, capability.required, query(capability.id)});
    }
    return report;
}

void require_capabilities(const std::vector<CapabilityStatus>& report) {
    for (const CapabilityStatus& status : report) {
        if (status.required && status.value <= 0) {
            throw std::runtime_error("KVM capability " + std::string(status.name) + " (" +
                                     std::to_string(status.id) + ") is not supported by this kernel");
        }
    }
}

}  // namespace vim::vmm::kvm
