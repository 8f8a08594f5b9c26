#pragma once

// Offsets of the setup header fields. The header sits at the same offset in
// the bzImage file and in boot_params, so one table serves both.

#include <cstddef>

namespace vim::vmm::boot::detail {

inline constexpr std::size_t kSetupSects = 0x1f1;
inline constexpr std::size_t kSyssize = 0x1f4;
inline constexpr std::size_t kBootFlag = 0x1fe;
inline constexpr std::size_t kJump = 0x200;
inline constexpr std::size_t kHeaderMagic = 0x202;
inline constexpr std::size_t kVersion = 0x206;
inline constexpr std::size_t kTypeOfLoader = 0x210;
inline constexpr std::size_t kLoadflags = 0x211;
inline constexpr std::size_t kRamdiskImage = 0x218;
inline constexpr std::size_t kRamdiskSize = 0x21c;
inline constexpr std::size_t kCmdLinePtr = 0x228;
inline constexpr std::size_t kInitrdAddrMax = 0x22c;
inline constexpr std::size_t kKernelAlignment = 0x230;
inline constexpr std::size_t kRelocatableKernel = 0x234;
inline constexpr std::size_t kXloadflags = 0x236;
inline constexpr std::size_t kCmdlineSize = 0x238;
inline constexpr std::size_t kPayloadOffset = 0x248;
inline constexpr std::size_t kPayloadLength = 0x24c;
inline constexpr std::size_t kPrefAddress = 0x258;
inline constexpr std::size_t kInitSize = 0x260;
// One past init_size, the last field this loader reads.
inline constexpr std::size_t kMinimumHeaderEnd = 0x264;
// boot_params reserves [0x1f1, 0x290) for the header; more would overwrite
// the fields that follow it.
inline constexpr std::size_t kMaximumHeaderEnd = 0x290;

}  // namespace vim::vmm::boot::detail
