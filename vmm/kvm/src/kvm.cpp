#include "vmm/kvm/kvm.h"

#include <fcntl.h>
#include <linux/kvm.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "ioctl.h"

namespace vim::vmm::kvm {

Kvm Kvm::open(const std::string& device) {
    Kvm kvm = open_unchecked(device);
    int version = kvm.api_version();
    if (version != KVM_API_VERSION) {
        throw std::runtime_error(device + ": KVM API version " + std::to_string(version) + ", expected " +
                                 std::to_string(KVM_API_VERSION));
    }
    require_capabilities(kvm.capability_report());
    return kvm;
}

Kvm Kvm::open_unchecked(const std::string& device) {
    sys::Fd fd(::open(device.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) {
        sys::throw_errno("open " + device);
    }
    return Kvm(std::move(fd));
}

int Kvm::check_extension(int capability) const {
    int value = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, capability);
    return value < 0 ? 0 : value;
}

std::vector<CapabilityStatus> Kvm::capability_report() const {
    return kvm::capability_report([this](int capability) { return check_extension(capability); });
}

std::vector<std::uint32_t> Kvm::msr_index_list() const {
    // The first call, with room for none, fails with E2BIG and says how many there are.
    std::uint32_t count = 0;
    if (::ioctl(fd_.get(), detail::kGetMsrIndexList, &count) < 0 && errno != E2BIG) {
        sys::throw_errno("KVM_GET_MSR_INDEX_LIST");
    }
    std::vector<std::uint32_t> list(1 + count);  // the count, then the indices
    list[0] = count;
    detail::ioctl_or_throw(fd_.get(), detail::kGetMsrIndexList, list.data(), "KVM_GET_MSR_INDEX_LIST");
    list.resize(1 + std::min(count, list[0]));
    list.erase(list.begin());
    return list;
}

KvmVm Kvm::create_vm() {
    int vm_fd;
    // KVM_CREATE_VM can fail with EINTR while the kernel sets up the MMU.
    do {
        vm_fd = ::ioctl(fd_.get(), KVM_CREATE_VM, 0);
    } while (vm_fd < 0 && errno == EINTR);
    if (vm_fd < 0) {
        sys::throw_errno("KVM_CREATE_VM");
    }
    sys::Fd vm(vm_fd);
    int run_size = detail::ioctl_or_throw(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE");

    KvmVm created(std::move(vm), static_cast<std::size_t>(run_size));
    created.enable_manual_dirty_log_protect();
    return created;
}

namespace {

constexpr std::uint32_t kCpuidLeafFeatures = 0x1;
constexpr std::uint32_t kCpuidTscDeadlineBit = 1u << 24;  // leaf 0x1 ECX

}  // namespace

std::vector<CpuidEntry> Kvm::supported_cpuid() const {
    // Grow the buffer until KVM stops answering E2BIG.
    for (std::size_t capacity = 128;; capacity *= 2) {
        detail::FlexibleArray<kvm_cpuid_entry2> cpuid(capacity);
        if (::ioctl(fd_.get(), detail::kGetSupportedCpuid, cpuid.data()) == 0) {
            std::vector<CpuidEntry> entries(cpuid.header()->count);
            std::memcpy(entries.data(), cpuid.entries(), entries.size() * sizeof(kvm_cpuid_entry2));
            if (check_extension(KVM_CAP_TSC_DEADLINE_TIMER) > 0) {
                for (CpuidEntry& entry : entries) {
                    if (entry.function == kCpuidLeafFeatures) {
                        entry.ecx |= kCpuidTscDeadlineBit;
                    }
                }
            }
            return entries;
        }
        if (errno != E2BIG || capacity > 4096) {
            sys::throw_errno("KVM_GET_SUPPORTED_CPUID");
        }
    }
}

int Kvm::max_vcpus() const {
    int max = check_extension(KVM_CAP_MAX_VCPUS);
    return max > 0 ? max : check_extension(KVM_CAP_NR_VCPUS);
}

int Kvm::recommended_vcpus() const { return check_extension(KVM_CAP_NR_VCPUS); }

int Kvm::api_version() const {
    return detail::ioctl_or_throw(fd_.get(), KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION");
}

int Kvm::dirty_ring_max_bytes() const { return check_extension(KVM_CAP_DIRTY_LOG_RING); }

int Kvm::dirty_ring_acquire_release_max_bytes() const {
    return check_extension(KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
}

}  // namespace vim::vmm::kvm
