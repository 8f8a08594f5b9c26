#include "vmm/cpu/msrs.h"

namespace vim::vmm::cpu {

std::vector<kvm::MsrEntry> boot_msrs() {
    return {
        // No SYSENTER/SYSCALL entry points until the guest kernel installs its own.
        {kMsrIa32SysenterCs, 0},
        {kMsrIa32SysenterEsp, 0},
        {kMsrIa32SysenterEip, 0},
        {kMsrStar, 0},
        {kMsrLstar, 0},
        {kMsrCstar, 0},
        {kMsrSyscallMask, 0},
        {kMsrKernelGsBase, 0},
        // Every vCPU starts from the same TSC value; KVM keeps them in step.
        {kMsrIa32Tsc, 0},
        // Firmware enables fast REP MOVS/STOS on real machines; Linux expects it.
        {kMsrIa32MiscEnable, kMiscEnableFastStrings},
        // There is no firmware to program the MTRRs: without a write-back default,
        // Linux would treat all of RAM as uncached.
        {kMsrMtrrDefType, kMtrrDefTypeEnable | kMtrrTypeWriteBack},
    };
}

}  // namespace vim::vmm::cpu
