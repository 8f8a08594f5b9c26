#include "vmm/cpu/cpuid.h"

#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace vim::vmm::cpu {
namespace {

constexpr std::uint32_t kSignificantIndex = 1;

kvm::CpuidEntry leaf(std::uint32_t function, std::uint32_t index, std::uint32_t eax, std::uint32_t ebx,
                     std::uint32_t ecx, std::uint32_t edx, std::uint32_t flags = 0) {
    kvm::CpuidEntry entry{};
    entry.function = function;
    entry.index = index;
    entry.flags = flags;
    entry.eax = eax;
    entry.ebx = ebx;
    entry.ecx = ecx;
    entry.edx = edx;
    return entry;
}

kvm::CpuidEntry vendor_leaf(const char (&vendor)[13]) {
    std::uint32_t ebx, edx, ecx;
    std::memcpy(&ebx, vendor, 4);
    std::memcpy(&edx, vendor + 4, 4);
    std::memcpy(&ecx, vendor + 8, 4);
    return leaf(0x0, 0, 0x1f, ebx, ecx, edx);
}

constexpr std::uint32_t bit(unsigned n) { return 1u << n; }

// Leaf 4 EAX: cache type in 4:0, level in 7:5, plus host sharing counts that
// the topology must replace.
constexpr std::uint32_t cache_eax(std::uint32_t type, std::uint32_t level) {
    return type | (level << 5) | (0x3fu << 26) | (0x7u << 14);
}

// Shaped like KVM_GET_SUPPORTED_CPUID on an Intel host (Linux >= 6.2).
std::vector<kvm::CpuidEntry> intel_supported() {
    return {
        vendor_leaf("GenuineIntel"),
        // APIC ID 0x2a, 0x10 logical CPUs, CLFLUSH 0x10 from the host; VMX,
        // PDCM, x2APIC, TSC-deadline, hypervisor clear.
        leaf(0x1, 0, 0x000806f8, 0x2a101000, bit(5) | bit(15) | bit(21) | bit(24), 0x0fabfbff),
        leaf(0x4, 0, cache_eax(1, 1), 1, 2, 3, kSignificantIndex),
        leaf(0x4, 1, cache_eax(2, 1), 1, 2, 3, kSignificantIndex),
        leaf(0x4, 2, cache_eax(3, 2), 1, 2, 3, kSignificantIndex),
        leaf(0x4, 3, cache_eax(3, 3), 1, 2, 3, kSignificantIndex),
        leaf(0x4, 4, 0, 0, 0, 0, kSignificantIndex),
        leaf(0x6, 0, 0x4, 0, 0, 0),
        leaf(0x7, 0, 2, bit(2) | bit(0), bit(5) | bit(30) | bit(1), bit(29), kSignificantIndex),
        leaf(0x7, 1, 0, 0, 0, 0, kSignificantIndex),
        leaf(0xa, 0, 0x07300805, 0, 0, 0x603),
        leaf(0xb, 0, 0, 0, 0, 0, kSignificantIndex),
        leaf(0x1f, 0, 0, 0, 0, 0, kSignificantIndex),
        leaf(0x40000000, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d),
        leaf(0x40000001, 0, 0x01007afb, 0, 0, 0),
        leaf(0x80000000, 0, 0x80000008, 0, 0, 0),
        leaf(0x80000001, 0, 0, 0, 0x121, 0x2c100800),
        leaf(0x80000008, 0, 0x3027, 0, 0, 0),
    };
}

// Shaped like KVM_GET_SUPPORTED_CPUID on an AMD host.
std::vector<kvm::CpuidEntry> amd_supported() {
    return {
        vendor_leaf("AuthenticAMD"),
        leaf(0x1, 0, 0x00a10f11, 0x05100800, bit(24), 0x178bfbff),
        leaf(0x4, 0, 0, 0, 0, 0, kSignificantIndex),
        leaf(0xb, 0, 0, 0, 0, 0, kSignificantIndex),
        leaf(0x80000000, 0, 0x80000021, 0, 0, 0),
        leaf(0x80000001, 0, 0, 0, bit(2) | bit(22), 0x2fd3fbff),
        leaf(0x80000008, 0, 0x3030, 0, 0x0000707f, 0),
        leaf(0x8000001d, 0, cache_eax(1, 1), 1, 2, 3, kSignificantIndex),
        leaf(0x8000001d, 1, cache_eax(3, 3), 1, 2, 3, kSignificantIndex),
        leaf(0x8000001d, 2, 0, 0, 0, 0, kSignificantIndex),
        leaf(0x8000001e, 0, 0x2a, 0x0105, 0x0101, 0),
    };
}

std::optional<kvm::CpuidEntry> find(const std::vector<kvm::CpuidEntry>& entries, std::uint32_t function,
                                    std::uint32_t index = 0) {
    for (const kvm::CpuidEntry& entry : entries) {
        if (entry.function == function && entry.index == index) {
            return entry;
        }
    }
    return std::nullopt;
}

std::size_t count(const std::vector<kvm::CpuidEntry>& entries, std::uint32_t function) {
    std::size_t n = 0;
    for (const kvm::CpuidEntry& entry : entries) {
        n += entry.function == function;
    }
    return n;
}

std::uint32_t field(std::uint32_t reg, unsigned low, unsigned width) {
    return (reg >> low) & ((1u << width) - 1u);
}

TEST(CpuidForVcpu, Leaf1CarriesEachVcpusApicIdAndTheLogicalProcessorCount) {
    const auto supported = intel_supported();
    for (std::uint32_t index = 0; index < 4; ++index) {
        const auto leaf1 = find(cpuid_for_vcpu(supported, index, 4), 0x1);
        ASSERT_TRUE(leaf1);
        EXPECT_EQ(field(leaf1->ebx, 24, 8), index);
        EXPECT_EQ(field(leaf1->ebx, 16, 8), 4u);
        EXPECT_EQ(field(leaf1->ebx, 8, 8), 8u) << "CLFLUSH size";
        EXPECT_TRUE(leaf1->edx & bit(28)) << "HTT";
    }
}

TEST(CpuidForVcpu, LogicalProcessorCountRoundsUpToAPowerOfTwo) {
    const auto supported = intel_supported();
    EXPECT_EQ(field(find(cpuid_for_vcpu(supported, 0, 3), 0x1)->ebx, 16, 8), 4u);
    EXPECT_EQ(field(find(cpuid_for_vcpu(supported, 0, 5), 0x1)->ebx, 16, 8), 8u);
    // 256 does not fit in the 8-bit field; 255 means the same 256 IDs.
    EXPECT_EQ(field(find(cpuid_for_vcpu(supported, 200, 255), 0x1)->ebx, 16, 8), 255u);
}

TEST(CpuidForVcpu, SingleVcpuHasNoHyperThreading) {
    const auto leaf1 = find(cpuid_for_vcpu(intel_supported(), 0, 1), 0x1);
    EXPECT_FALSE(leaf1->edx & bit(28));
    EXPECT_EQ(field(leaf1->ebx, 16, 8), 1u);
    EXPECT_EQ(field(leaf1->ebx, 24, 8), 0u);
}

TEST(CpuidForVcpu, Leaf1FeatureBits) {
    const auto leaf1 = find(cpuid_for_vcpu(intel_supported(), 0, 2), 0x1);
    EXPECT_TRUE(leaf1->ecx & bit(31)) << "hypervisor";
    EXPECT_TRUE(leaf1->ecx & bit(24)) << "TSC-deadline kept";
    EXPECT_TRUE(leaf1->ecx & bit(21)) << "x2APIC kept";
    EXPECT_FALSE(leaf1->ecx & bit(5)) << "VMX";
    EXPECT_FALSE(leaf1->ecx & bit(15)) << "PDCM";
    EXPECT_EQ(leaf1->eax, 0x000806f8u);
    EXPECT_EQ(leaf1->edx & ~bit(28), 0x0fabfbffu & ~bit(28));

    auto without_deadline = intel_supported();
    without_deadline[1].ecx &= ~bit(24);
    EXPECT_FALSE(find(cpuid_for_vcpu(without_deadline, 0, 2), 0x1)->ecx & bit(24))
        << "TSC-deadline is not invented";
}

TEST(CpuidForVcpu, ExtendedTopologyLeavesDescribeOneThreadPerCoreInOnePackage) {
    const auto supported = intel_supported();
    for (const std::uint32_t function : {0xbu, 0x1fu}) {
        for (std::uint32_t index = 0; index < 6; ++index) {
            const auto entries = cpuid_for_vcpu(supported, index, 6);
            ASSERT_EQ(count(entries, function), 3u);

            const auto thread = find(entries, function, 0);
            EXPECT_EQ(thread->eax, 0u);
            EXPECT_EQ(thread->ebx, 1u);
            EXPECT_EQ(thread->ecx, 0u | (1u << 8));
            EXPECT_EQ(thread->edx, index);
            EXPECT_EQ(thread->flags, kSignificantIndex);

            const auto core = find(entries, function, 1);
            EXPECT_EQ(core->eax, 3u) << "6 cores need 3 bits of x2APIC ID";
            EXPECT_EQ(core->ebx, 6u);
            EXPECT_EQ(core->ecx, 1u | (2u << 8));
            EXPECT_EQ(core->edx, index);
            EXPECT_EQ(core->flags, kSignificantIndex);

            const auto end = find(entries, function, 2);
            EXPECT_EQ(end->ebx, 0u);
            EXPECT_EQ(end->ecx, 2u) << "invalid domain type ends the list";
            EXPECT_EQ(end->edx, index);
        }
    }
}

TEST(CpuidForVcpu, ReplacesEveryTopologySubleafKvmGave) {
    auto supported = intel_supported();
    // Kernels before 6.2 report host subleaves beyond 0.
    supported.push_back(leaf(0xb, 1, 5, 32, 0x201, 7, kSignificantIndex));
    supported.push_back(leaf(0xb, 2, 0, 0, 2, 7, kSignificantIndex));
    const auto entries = cpuid_for_vcpu(supported, 1, 2);
    EXPECT_EQ(count(entries, 0xb), 3u);
    EXPECT_EQ(find(entries, 0xb, 1)->ebx, 2u);
    EXPECT_EQ(find(entries, 0xb, 1)->edx, 1u);
}

TEST(CpuidForVcpu, NoTopologyLeavesAreInventedWhenKvmHasNone) {
    auto supported = intel_supported();
    std::erase_if(supported,
                  [](const kvm::CpuidEntry& e) { return e.function == 0xb || e.function == 0x1f; });
    const auto entries = cpuid_for_vcpu(supported, 0, 2);
    EXPECT_EQ(count(entries, 0xb), 0u);
    EXPECT_EQ(count(entries, 0x1f), 0u);
    EXPECT_EQ(entries.size(), supported.size());
}

TEST(CpuidForVcpu, IntelCacheLeafSaysWhoSharesEachCache) {
    const auto entries = cpuid_for_vcpu(intel_supported(), 2, 5);
    const auto supported = intel_supported();
    for (std::uint32_t subleaf = 0; subleaf < 4; ++subleaf) {
        const auto cache = find(entries, 0x4, subleaf);
        const std::uint32_t level = field(cache->eax, 5, 3);
        EXPECT_EQ(field(cache->eax, 26, 6), 7u) << "8 addressable cores, minus one";
        EXPECT_EQ(field(cache->eax, 14, 12), level == 3 ? 7u : 0u) << "level " << level;
        EXPECT_EQ(field(cache->eax, 0, 8), field(find(supported, 0x4, subleaf)->eax, 0, 8))
            << "type and level kept";
        EXPECT_EQ(cache->ebx, 1u);
    }
    const auto end = find(entries, 0x4, 4);
    EXPECT_EQ(end->eax, 0u) << "the terminating subleaf stays empty";
}

TEST(CpuidForVcpu, StructuredFeaturesLoseSgxAndWaitpkgOnly) {
    const auto leaf7 = find(cpuid_for_vcpu(intel_supported(), 0, 1), 0x7, 0);
    EXPECT_EQ(leaf7->ebx, bit(0));
    EXPECT_EQ(leaf7->ecx, bit(1));
    EXPECT_EQ(leaf7->edx, bit(29));
    EXPECT_EQ(leaf7->eax, 2u);
}

TEST(CpuidForVcpu, PerformanceMonitoringIsHidden) {
    const auto leaf_a = find(cpuid_for_vcpu(intel_supported(), 0, 1), 0xa);
    ASSERT_TRUE(leaf_a);
    EXPECT_EQ(leaf_a->eax | leaf_a->ebx | leaf_a->ecx | leaf_a->edx, 0u);
}

TEST(CpuidForVcpu, KvmParavirtualLeavesPassThrough) {
    const auto supported = intel_supported();
    const auto entries = cpuid_for_vcpu(supported, 1, 2);
    for (const std::uint32_t function : {0x40000000u, 0x40000001u}) {
        const auto given = find(supported, function);
        const auto taken = find(entries, function);
        ASSERT_TRUE(taken);
        EXPECT_EQ(std::memcmp(&*given, &*taken, sizeof(kvm::CpuidEntry)), 0) << std::hex << function;
    }
}

TEST(CpuidForVcpu, IntelKeepsReservedAmdTopologyFields) {
    const auto entries = cpuid_for_vcpu(intel_supported(), 3, 4);
    EXPECT_EQ(find(entries, 0x80000008)->ecx, 0u);
}

TEST(CpuidForVcpu, AmdTopologyLeaves) {
    const auto supported = amd_supported();
    for (std::uint32_t index = 0; index < 3; ++index) {
        const auto entries = cpuid_for_vcpu(supported, index, 3);

        const auto sizes = find(entries, 0x80000008);
        EXPECT_EQ(field(sizes->ecx, 0, 8), 2u) << "NC = count - 1";
        EXPECT_EQ(field(sizes->ecx, 12, 4), 2u) << "ApicIdSize";
        EXPECT_EQ(sizes->eax, 0x3030u);

        const auto topology = find(entries, 0x8000001e);
        EXPECT_EQ(topology->eax, index) << "extended APIC ID";
        EXPECT_EQ(field(topology->ebx, 0, 8), index) << "core ID";
        EXPECT_EQ(field(topology->ebx, 8, 8), 0u) << "one thread per core";
        EXPECT_EQ(topology->ecx, 0u) << "node 0 of 1";

        EXPECT_EQ(field(find(entries, 0x8000001d, 0)->eax, 14, 12), 0u);
        EXPECT_EQ(field(find(entries, 0x8000001d, 1)->eax, 14, 12), 3u);
        EXPECT_EQ(find(entries, 0x8000001d, 2)->eax, 0u);

        EXPECT_EQ(find(entries, 0xb, 1)->edx, index);
        EXPECT_EQ(field(find(entries, 0x1)->ebx, 24, 8), index);
    }
}

TEST(CpuidForVcpu, AmdLosesSvmButKeepsTopologyExtensions) {
    const auto extended = find(cpuid_for_vcpu(amd_supported(), 0, 1), 0x80000001);
    EXPECT_EQ(extended->ecx, bit(22));
}

TEST(CpuidForVcpu, RejectsBadIndexAndCount) {
    const auto supported = intel_supported();
    try {
        cpuid_for_vcpu(supported, 4, 4);
        FAIL() << "index 4 of 4 accepted";
    } catch (const std::invalid_argument& error) {
        EXPECT_STREQ(error.what(), "cpuid: vCPU index 4 is not below the vCPU count 4");
    }
    EXPECT_THROW(cpuid_for_vcpu(supported, 0, 0), std::invalid_argument);
    try {
        cpuid_for_vcpu(supported, 0, 256);
        FAIL() << "256 vCPUs accepted";
    } catch (const std::invalid_argument& error) {
        EXPECT_NE(std::string(error.what()).find("256"), std::string::npos) << error.what();
    }
    EXPECT_NO_THROW(cpuid_for_vcpu(supported, 254, 255));
}

TEST(CpuidForVcpu, RejectsAListWithoutLeaf1) {
    auto supported = intel_supported();
    std::erase_if(supported, [](const kvm::CpuidEntry& e) { return e.function == 0x1; });
    EXPECT_THROW(cpuid_for_vcpu(supported, 0, 1), std::invalid_argument);
}

}  // namespace
}  // namespace vim::vmm::cpu
