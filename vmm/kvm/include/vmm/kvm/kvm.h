#pragma once

#include <string>
#include <vector>

#include "vmm/kvm/capabilities.h"
#include "vmm/kvm/vm.h"
#include "vmm/kvm/x86_state.h"
#include "vmm/sys/fd.h"

namespace vim::vmm::kvm {

// The KVM system fd: the only way to make a VM.
class Kvm {
public:
    // Opens `device`, checks the API version and every required capability;
    // throws naming the first one missing.
    static Kvm open(const std::string& device = "/dev/kvm");
    // Opens `device` and checks nothing more, for reporting what a host offers
    // (hwprobe) rather than running a VM on it; throws only when the open fails.
    static Kvm open_unchecked(const std::string& device = "/dev/kvm");

    Kvm(Kvm&&) noexcept = default;
    Kvm& operator=(Kvm&&) noexcept = default;

    // KVM_CHECK_EXTENSION: 0 when absent, else 1 or a capability-specific value.
    int check_extension(int capability) const;
    std::vector<CapabilityStatus> capability_report() const;

    // Turns on manual dirty-log clearing, so dirty_log() reads without clearing.
    KvmVm create_vm();

    // KVM_GET_SUPPORTED_CPUID, plus the TSC-deadline timer (leaf 0x1 ECX[24])
    // where KVM_CAP_TSC_DEADLINE_TIMER says the in-kernel LAPIC emulates it:
    // KVM leaves that bit out of the table because it depends on the
    // in-kernel irqchip, which every VM of ours has. Without it the guest
    // calibrates its LAPIC timer against the PIT at boot.
    std::vector<CpuidEntry> supported_cpuid() const;
    // The most vCPUs one VM may have.
    int max_vcpus() const;
    // KVM_CAP_NR_VCPUS: the vCPUs per VM the kernel recommends (about the host's CPU count).
    int recommended_vcpus() const;
    // KVM_GET_MSR_INDEX_LIST: every MSR KVM saves and restores for a vCPU.
    std::vector<std::uint32_t> msr_index_list() const;

    // KVM_GET_API_VERSION.
    int api_version() const;
    // The largest dirty ring, in bytes, that KVM_CAP_DIRTY_LOG_RING (and its
    // acquire/release flavour, which weakly ordered hosts need) accepts; 0 when absent.
    int dirty_ring_max_bytes() const;
    int dirty_ring_acquire_release_max_bytes() const;

private:
    explicit Kvm(sys::Fd fd) noexcept : fd_(std::move(fd)) {}

    sys::Fd fd_;
};

}  // namespace vim::vmm::kvm
