#include "vmm/kvm/kvm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>

#include "hwprobe/probe.h"

// hwprobe's KVM section against the vmm's own start-up check on the same host.
namespace vim::hwprobe {
namespace {

TEST(KvmSection, MatchesTheVmmsCapabilityCheck) {
    const Inventory inventory = probe();
    ASSERT_TRUE(inventory.kvm.present) << inventory.kvm.absence_detail;
    EXPECT_FALSE(inventory.kvm.absence);

    const vmm::kvm::Kvm device = vmm::kvm::Kvm::open_unchecked();
    const std::vector<vmm::kvm::CapabilityStatus> expected = device.capability_report();
    ASSERT_EQ(inventory.kvm.capabilities.size(), expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
        EXPECT_EQ(inventory.kvm.capabilities[i].name, expected[i].name);
        EXPECT_EQ(inventory.kvm.capabilities[i].id, expected[i].id);
        EXPECT_EQ(inventory.kvm.capabilities[i].required, expected[i].required);
        EXPECT_EQ(inventory.kvm.capabilities[i].value, expected[i].value) << expected[i].name;
    }
    bool vmm_starts = true;
    try {
        vmm::kvm::Kvm::open();
    } catch (const std::runtime_error&) {
        vmm_starts = false;
    }
    EXPECT_EQ(inventory.kvm.required_capabilities_met, vmm_starts);

    EXPECT_EQ(inventory.kvm.api_version, 12);  // KVM_API_VERSION since Linux 2.6.22
    EXPECT_EQ(inventory.kvm.max_vcpus, device.max_vcpus());
    EXPECT_EQ(inventory.kvm.recommended_vcpus, device.recommended_vcpus());
    EXPECT_GE(inventory.kvm.max_vcpus, inventory.kvm.recommended_vcpus);
    EXPECT_EQ(inventory.kvm.dirty_ring_max_bytes, device.dirty_ring_max_bytes());

    const std::vector<vmm::kvm::CpuidEntry> cpuid = device.supported_cpuid();
    ASSERT_EQ(inventory.kvm.supported_cpuid.size(), cpuid.size());
    for (std::size_t i = 0; i < cpuid.size(); ++i) {
        const CpuidLeaf& leaf = inventory.kvm.supported_cpuid[i];
        EXPECT_EQ(leaf.function, cpuid[i].function);
        EXPECT_EQ(leaf.index, cpuid[i].index);
        // KVM copies some fields from the CPU the ioctl ran on, and the two
        // reads may run on different CPUs: the initial APIC ID (leaf 1 EBX
        // bits 31-24), the x2APIC ID (leaves 0xB and 0x1F, EDX) and AMD's
        // extended APIC ID and compute unit (leaf 0x8000001E, EAX and EBX's
        // low byte).
        std::uint32_t eax_mask = ~0u, ebx_mask = ~0u, edx_mask = ~0u;
        if (leaf.function == 0x1) {
            ebx_mask = 0x00ffffff;
        } else if (leaf.function == 0xb || leaf.function == 0x1f) {
            edx_mask = 0;
        } else if (leaf.function == 0x8000001e) {
            eax_mask = 0;
            ebx_mask = 0xffffff00;
        }
        EXPECT_EQ(leaf.eax & eax_mask, cpuid[i].eax & eax_mask) << std::hex << leaf.function;
        EXPECT_EQ(leaf.ebx & ebx_mask, cpuid[i].ebx & ebx_mask) << std::hex << leaf.function;
        EXPECT_EQ(leaf.ecx, cpuid[i].ecx) << std::hex << leaf.function;
        EXPECT_EQ(leaf.edx & edx_mask, cpuid[i].edx & edx_mask) << std::hex << leaf.function;
    }
    // KVM emulates the x2APIC and the TSC-deadline timer on every host it runs on.
    for (const char* feature : {"x2apic", "tsc_deadline_timer"}) {
        EXPECT_TRUE(
            std::count(inventory.kvm.guest_features.begin(), inventory.kvm.guest_features.end(), feature))
            << feature;
    }
}

}  // namespace
}  // namespace vim::hwprobe
