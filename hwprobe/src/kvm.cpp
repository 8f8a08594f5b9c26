#include "vmm/kvm/kvm.h"

#include <cerrno>
#include <exception>
#include <optional>
#include <system_error>

#include "sections.h"

namespace vim::hwprobe::detail {
namespace {

// Without one of these vendor modules, kvm.ko alone makes no /dev/kvm.
// kvm_pvm is the PVM hypervisor, which runs KVM guests inside a VM.
constexpr const char* kVendorModules[] = {"kvm_intel", "kvm_amd", "kvm_pvm"};

bool vendor_module_loaded(HostFiles& files) {
    std::error_code error;
    for (const char* module : kVendorModules) {
        if (std::filesystem::exists(files.sys(std::string("module/") + module), error)) {
            return true;
        }
    }
    return false;
}

KvmAbsence absence_for(int error, HostFiles& files) {
    switch (error) {
    case EACCES:
    case EPERM:
        return KvmAbsence::permission_denied;
    case ENOENT:
        return vendor_module_loaded(files) ? KvmAbsence::no_device : KvmAbsence::module_not_loaded;
    // A device node without its driver.
    case ENXIO:
    case ENODEV:
        return KvmAbsence::module_not_loaded;
    default:
        return KvmAbsence::unusable;
    }
}

// Every leaf hwprobe decodes is asked for with the index KVM lists it under
// (0 for the leaves whose index means nothing).
CpuidFunction lookup_in(const std::vector<CpuidLeaf>& table) {
    return [&table](std::uint32_t leaf, std::uint32_t subleaf) {
        for (const CpuidLeaf& entry : table) {
            if (entry.function == leaf && entry.index == subleaf) {
                return CpuidRegisters{entry.eax, entry.ebx, entry.ecx, entry.edx};
            }
        }
        return CpuidRegisters{};
    };
}

void read_from(const vmm::kvm::Kvm& device, Kvm& kvm) {
    kvm.api_version = device.api_version();
    kvm.recommended_vcpus = device.recommended_vcpus();
    kvm.max_vcpus = device.max_vcpus();
    kvm.required_capabilities_met = true;
    for (const vmm::kvm::CapabilityStatus& status : device.capability_report()) {
        kvm.capabilities.push_back({std::string(status.name), status.id, status.required, status.value});
        if (status.required && status.value <= 0) {
            kvm.required_capabilities_met = false;
        }
    }
    kvm.dirty_ring_max_bytes = device.dirty_ring_max_bytes();
    kvm.dirty_ring_acquire_release_max_bytes = device.dirty_ring_acquire_release_max_bytes();
    for (const vmm::kvm::CpuidEntry& entry : device.supported_cpuid()) {
        kvm.supported_cpuid.push_back(
            {entry.function, entry.index, entry.eax, entry.ebx, entry.ecx, entry.edx});
    }
    kvm.guest_features = cpuid_features(lookup_in(kvm.supported_cpuid));
}

}  // namespace

Kvm probe_kvm(HostFiles& files, const std::filesystem::path& dev_root) {
    Kvm kvm;
    const std::string path = (dev_root / "kvm").string();
    std::optional<vmm::kvm::Kvm> device;
    try {
        device.emplace(vmm::kvm::Kvm::open_unchecked(path));
    } catch (const std::system_error& error) {
        kvm.absence = absence_for(error.code().value(), files);
        kvm.absence_detail = error.what();
        return kvm;
    }
    try {
        read_from(*device, kvm);
        kvm.present = true;
    } catch (const std::exception& error) {
        // It opened but a query failed: not a KVM device, or a kernel too old to answer.
        kvm = Kvm{};
        kvm.absence = KvmAbsence::unusable;
        kvm.absence_detail = error.what();
    }
    return kvm;
}

}  // namespace vim::hwprobe::detail
