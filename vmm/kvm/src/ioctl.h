#pragma once

// Private to the KVM layer: the one place ioctls are issued.

#include <sys/ioctl.h>

#include <cerrno>
#include <string>

#include "vmm/sys/error.h"

namespace vim::vmm::kvm::detail {

// ioctl() that throws std::system_error("<what>: <strerror>") on failure.
template <typename Arg>
int ioctl_or_throw(int fd, unsigned long request, Arg arg, const char* what) {
    int result;
    do {
        result = ::ioctl(fd, request, arg);
    } while (result < 0 && errno == EINTR);
    if (result < 0) {
        sys::throw_errno(what);
    }
    return result;
}

}  // namespace vim::vmm::kvm::detail

#include <linux/kvm.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace vim::vmm::kvm::detail {

// kvm_cpuid2, kvm_msrs and kvm_irq_routing are an 8-byte header {count, padding} followed by
// an array. <linux/kvm.h> spells the array with __DECLARE_FLEX_ARRAY, which in
// C++ inserts an empty struct: the header grows to 12 bytes, the array moves,
// and the ioctl numbers (which encode the size) stop matching the kernel's.
// So the C layout is built by hand here, and the numbers computed from it.
struct FlexibleArrayHeader {
    std::uint32_t count;
    std::uint32_t padding;
};
static_assert(sizeof(FlexibleArrayHeader) == 8);

inline constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, FlexibleArrayHeader);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, FlexibleArrayHeader);
inline constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, FlexibleArrayHeader);
inline constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, FlexibleArrayHeader);
// kvm_msr_list's header is a lone u32 count: its indices start at byte 4.
inline constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, std::uint32_t);
inline constexpr unsigned long kSetGsiRouting = _IOW(KVMIO, 0x6a, FlexibleArrayHeader);

// kvm_xsave ends in a flexible array too (the area past 4 KiB, for
// KVM_GET_XSAVE2), which makes it 4100 bytes in C++ and its ioctl numbers
// wrong: they encode the 4096-byte legacy area.
inline constexpr std::size_t kXsaveLegacySize = 4096;
struct XsaveLegacyArea {
    std::uint8_t bytes[kXsaveLegacySize];
};
inline constexpr unsigned long kGetXsave = _IOR(KVMIO, 0xa4, XsaveLegacyArea);
inline constexpr unsigned long kSetXsave = _IOW(KVMIO, 0xa5, XsaveLegacyArea);
inline constexpr unsigned long kGetXsave2 = _IOR(KVMIO, 0xcf, XsaveLegacyArea);

template <typename Entry>
class FlexibleArray {
public:
    explicit FlexibleArray(std::size_t count)
        : storage_((sizeof(FlexibleArrayHeader) + count * sizeof(Entry) + 7) / 8) {
        static_assert(alignof(Entry) <= 8);
        header()->count = static_cast<std::uint32_t>(count);
    }

    void* data() { return storage_.data(); }
    FlexibleArrayHeader* header() { return reinterpret_cast<FlexibleArrayHeader*>(storage_.data()); }
    Entry* entries() {
        return reinterpret_cast<Entry*>(reinterpret_cast<std::uint8_t*>(storage_.data()) +
                                        sizeof(FlexibleArrayHeader));
    }

private:
    std::vector<std::uint64_t> storage_;  // zero-filled: KVM rejects non-zero padding
};

}  // namespace vim::vmm::kvm::detail
