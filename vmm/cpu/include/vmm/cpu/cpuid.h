#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "vmm/kvm/x86_state.h"

namespace vim::vmm::cpu {

// xAPIC IDs are 8 bits wide and 255 is the broadcast ID, so vCPU indices
// 0..254 are the ones a guest can address.
inline constexpr std::uint32_t kMaxVcpus = 255;

// The CPUID table for vCPU `vcpu_index` of `vcpu_count`, derived from what
// KVM_GET_SUPPORTED_CPUID returned. Every vCPU gets the same topology: one
// package of `vcpu_count` cores with one thread each, and APIC ID (and x2APIC
// ID) = vcpu_index. Throws std::invalid_argument when the index or count is
// out of range or `supported` lacks leaf 0x1.
std::vector<kvm::CpuidEntry> cpuid_for_vcpu(std::span<const kvm::CpuidEntry> supported,
                                            std::uint32_t vcpu_index, std::uint32_t vcpu_count);

}  // namespace vim::vmm::cpu
