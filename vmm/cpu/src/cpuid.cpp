#include "vmm/cpu/cpuid.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace vim::vmm::cpu {
namespace {

// KVM_CPUID_FLAG_SIGNIFICANT_INDEX: the entry answers only for its own subleaf.
constexpr std::uint32_t kSignificantIndex = 1;

constexpr std::uint32_t kLeafVendor = 0x0;
constexpr std::uint32_t kLeafFeatures = 0x1;
constexpr std::uint32_t kLeafCacheParameters = 0x4;
constexpr std::uint32_t kLeafStructuredFeatures = 0x7;
constexpr std::uint32_t kLeafPerformanceMonitoring = 0xa;
constexpr std::uint32_t kLeafTopology = 0xb;
constexpr std::uint32_t kLeafTopologyV2 = 0x1f;
constexpr std::uint32_t kLeafExtendedFeatures = 0x80000001;
constexpr std::uint32_t kLeafAmdSizes = 0x80000008;
constexpr std::uint32_t kLeafAmdCacheTopology = 0x8000001d;
constexpr std::uint32_t kLeafAmdTopology = 0x8000001e;

// Leaf 0x1 ECX / EDX bits.
constexpr unsigned kVmxBit = 5;
constexpr unsigned kPdcmBit = 15;
constexpr unsigned kHypervisorBit = 31;
constexpr unsigned kHttBit = 28;
// Leaf 0x7 subleaf 0 bits.
constexpr unsigned kSgxEbxBit = 2;
constexpr unsigned kWaitpkgEcxBit = 5;
constexpr unsigned kSgxLaunchControlEcxBit = 30;
// Leaf 0x80000001 ECX.
constexpr unsigned kSvmBit = 2;

// Domain types of leaves 0xB / 0x1F (ECX[15:8]); 0 ends the list.
constexpr std::uint32_t kDomainInvalid = 0;
constexpr std::uint32_t kDomainThread = 1;
constexpr std::uint32_t kDomainCore = 2;

// CLFLUSH line size in 8-byte units: 64-byte cache lines.
constexpr std::uint32_t kClflushLineSize = 8;

void set_bit(std::uint32_t& reg, unsigned bit, bool value) {
    reg = (reg & ~(1u << bit)) | (static_cast<std::uint32_t>(value) << bit);
}

// Replaces bits [low, low + width) of `reg` with `value`; callers clamp
// `value` to the field first.
void set_field(std::uint32_t& reg, unsigned low, unsigned width, std::uint32_t value) {
    const std::uint32_t mask = ((1u << width) - 1u) << low;
    reg = (reg & ~mask) | ((value << low) & mask);
}

std::uint32_t field(std::uint32_t reg, unsigned low, unsigned width) {
    return (reg >> low) & ((1u << width) - 1u);
}

// Smallest shift s with 2^s >= count: the x2APIC ID bits a package of
// `count` single-thread cores needs.
std::uint32_t bits_for(std::uint32_t count) {
    std::uint32_t shift = 0;
    while ((1u << shift) < count) {
        ++shift;
    }
    return shift;
}

bool has_leaf(std::span<const kvm::CpuidEntry> entries, std::uint32_t function) {
    return std::any_of(entries.begin(), entries.end(),
                       [&](const kvm::CpuidEntry& entry) { return entry.function == function; });
}

bool is_amd(std::span<const kvm::CpuidEntry> supported) {
    for (const kvm::CpuidEntry& entry : supported) {
        if (entry.function == kLeafVendor) {
            char vendor[12];
            std::memcpy(vendor, &entry.ebx, 4);
            std::memcpy(vendor + 4, &entry.edx, 4);
            std::memcpy(vendor + 8, &entry.ecx, 4);
            const std::string name(vendor, sizeof vendor);
            // Hygon's Dhyana is a Zen derivative with AMD's topology leaves.
            return name == "AuthenticAMD" || name == "HygonGenuine";
        }
    }
    return false;
}

struct Topology {
    std::uint32_t apic_id;
    std::uint32_t count;
    std::uint32_t core_shift;
    // Logical-processor IDs the package reserves: 2^core_shift.
    std::uint32_t addressable;
};

// Leaves 0xB and 0x1F describe the same two domains: one thread per core,
// all cores in one package. KVM_GET_SUPPORTED_CPUID gives only a zeroed
// subleaf 0 since Linux 6.2, so all subleaves are written here, ending with
// an explicit invalid-domain subleaf that stops the guest's enumeration.
void append_topology_leaf(std::vector<kvm::CpuidEntry>& entries, std::uint32_t function,
                          const Topology& topology) {
    struct Domain {
        std::uint32_t shift, processors, type;
    };
    const Domain domains[] = {
        {0, 1, kDomainThread},
        {topology.core_shift, topology.count, kDomainCore},
        {0, 0, kDomainInvalid},
    };
    std::uint32_t subleaf = 0;
    for (const Domain& domain : domains) {
        kvm::CpuidEntry entry{};
        entry.function = function;
        entry.index = subleaf;
        entry.flags = kSignificantIndex;
        entry.eax = domain.shift;
        entry.ebx = domain.processors;
        entry.ecx = subleaf | (domain.type << 8);
        entry.edx = topology.apic_id;
        entries.push_back(entry);
        ++subleaf;
    }
}

// EAX[25:14] of Intel leaf 4 and AMD leaf 0x8000001D: logical processors
// sharing this cache, minus one. L1/L2 belong to one core (one thread here);
// L3 and beyond are shared by the whole package.
void set_cache_sharing(kvm::CpuidEntry& entry, const Topology& topology) {
    const std::uint32_t level = field(entry.eax, 5, 3);
    const std::uint32_t sharing = level >= 3 ? topology.addressable : 1;
    set_field(entry.eax, 14, 12, sharing - 1);
}

void normalize(kvm::CpuidEntry& entry, const Topology& topology, bool amd) {
    switch (entry.function) {
    case kLeafFeatures:
        set_field(entry.ebx, 8, 8, kClflushLineSize);
        // The field is 8 bits wide; 255 rounds up to the same 256 IDs.
        set_field(entry.ebx, 16, 8, std::min<std::uint32_t>(topology.addressable, 0xff));
        set_field(entry.ebx, 24, 8, topology.apic_id);
        // EBX[23:16] is only meaningful with HTT set; one vCPU has no siblings.
        set_bit(entry.edx, kHttBit, topology.count > 1);
        set_bit(entry.ecx, kHypervisorBit, true);
        // IA32_PERF_CAPABILITIES belongs to the PMU, hidden below with leaf 0xA.
        set_bit(entry.ecx, kPdcmBit, false);
        // Nested virtualization state (KVM_GET_NESTED_STATE) is not saved by
        // our snapshots or migration, so a nested guest would not survive them.
        set_bit(entry.ecx, kVmxBit, false);
        // TSC-deadline (ECX[24]) stays as KVM reports it: the in-kernel LAPIC
        // emulates it.
        break;
    case kLeafCacheParameters:
        // Subleaves past the last cache have type 0 and must stay all-zero.
        if (!amd && field(entry.eax, 0, 5) != 0) {
            set_cache_sharing(entry, topology);
            // EAX[31:26]: addressable core IDs in the package, minus one (6 bits).
            set_field(entry.eax, 26, 6, std::min<std::uint32_t>(topology.addressable, 64) - 1);
        }
        break;
    case kLeafStructuredFeatures:
        if (entry.index == 0) {
            // SGX needs EPC memory that the VMM would have to provide.
            set_bit(entry.ebx, kSgxEbxBit, false);
            set_bit(entry.ecx, kSgxLaunchControlEcxBit, false);
            // UMWAIT/TPAUSE would idle the physical CPU from inside the guest,
            // and IA32_UMWAIT_CONTROL is not part of our migrated MSR state.
            set_bit(entry.ecx, kWaitpkgEcxBit, false);
        }
        break;
    case kLeafPerformanceMonitoring:
        // No virtual PMU, as in Firecracker: its counters are host-specific
        // and their MSRs are not part of our migrated state.
        entry.eax = entry.ebx = entry.ecx = entry.edx = 0;
        break;
    case kLeafExtendedFeatures:
        // Same reason as VMX in leaf 0x1.
        set_bit(entry.ecx, kSvmBit, false);
        break;
    case kLeafAmdSizes:
        // ECX is reserved on Intel.
        if (amd) {
            set_field(entry.ecx, 0, 8, topology.count - 1);    // NC
            set_field(entry.ecx, 12, 4, topology.core_shift);  // ApicIdSize
        }
        break;
    case kLeafAmdCacheTopology:
        if (field(entry.eax, 0, 5) != 0) {
            set_cache_sharing(entry, topology);
        }
        break;
    case kLeafAmdTopology:
        entry.eax = topology.apic_id;  // extended APIC ID
        // EBX: core ID = APIC ID, ThreadsPerCore - 1 = 0.
        entry.ebx = topology.apic_id;
        // ECX: node 0, one node per package.
        entry.ecx = 0;
        entry.edx = 0;
        break;
    default:
        // Everything else, KVM's paravirtual leaves 0x40000000 (signature)
        // and 0x40000001 (kvmclock and other features) included, is passed
        // on as KVM reports it.
        break;
    }
}

}  // namespace

std::vector<kvm::CpuidEntry> cpuid_for_vcpu(std::span<const kvm::CpuidEntry> supported,
                                            std::uint32_t vcpu_index, std::uint32_t vcpu_count) {
    if (vcpu_count == 0 || vcpu_count > kMaxVcpus) {
        throw std::invalid_argument("cpuid: vCPU count " + std::to_string(vcpu_count) + " is outside 1.." +
                                    std::to_string(kMaxVcpus) + " (8-bit xAPIC IDs)");
    }
    if (vcpu_index >= vcpu_count) {
        throw std::invalid_argument("cpuid: vCPU index " + std::to_string(vcpu_index) +
                                    " is not below the vCPU count " + std::to_string(vcpu_count));
    }
    if (!has_leaf(supported, kLeafFeatures)) {
        throw std::invalid_argument("cpuid: the supported CPUID list has no leaf 0x1, "
                                    "so the vCPU's APIC ID cannot be set");
    }

    const std::uint32_t core_shift = bits_for(vcpu_count);
    const Topology topology{vcpu_index, vcpu_count, core_shift, 1u << core_shift};
    const bool amd = is_amd(supported);

    std::vector<kvm::CpuidEntry> entries;
    entries.reserve(supported.size() + 4);
    for (const kvm::CpuidEntry& entry : supported) {
        if (entry.function == kLeafTopology || entry.function == kLeafTopologyV2) {
            if (!has_leaf(entries, entry.function)) {
                append_topology_leaf(entries, entry.function, topology);
            }
            continue;
        }
        entries.push_back(entry);
        normalize(entries.back(), topology, amd);
    }
    return entries;
}

}  // namespace vim::vmm::cpu
