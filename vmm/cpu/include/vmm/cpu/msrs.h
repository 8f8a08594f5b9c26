#pragma once

#include <cstdint>
#include <vector>

#include "vmm/kvm/x86_state.h"

namespace vim::vmm::cpu {

inline constexpr std::uint32_t kMsrIa32Tsc = 0x10;
inline constexpr std::uint32_t kMsrIa32SysenterCs = 0x174;
inline constexpr std::uint32_t kMsrIa32SysenterEsp = 0x175;
inline constexpr std::uint32_t kMsrIa32SysenterEip = 0x176;
inline constexpr std::uint32_t kMsrIa32MiscEnable = 0x1a0;
inline constexpr std::uint32_t kMsrMtrrDefType = 0x2ff;
inline constexpr std::uint32_t kMsrStar = 0xc0000081;
inline constexpr std::uint32_t kMsrLstar = 0xc0000082;
inline constexpr std::uint32_t kMsrCstar = 0xc0000083;
inline constexpr std::uint32_t kMsrSyscallMask = 0xc0000084;
inline constexpr std::uint32_t kMsrKernelGsBase = 0xc0000102;

inline constexpr std::uint64_t kMiscEnableFastStrings = 1u << 0;
inline constexpr std::uint64_t kMtrrDefTypeEnable = 1u << 11;
inline constexpr std::uint64_t kMtrrTypeWriteBack = 6;

// The MSR values every vCPU (boot CPU and APs alike) starts with, for
// KVM_SET_MSRS before the first KVM_RUN.
std::vector<kvm::MsrEntry> boot_msrs();

}  // namespace vim::vmm::cpu
