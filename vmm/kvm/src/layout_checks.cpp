// The plain types in x86_state.h are copied to and from KVM's structs with
// memcpy; these checks keep that honest.

#include <linux/kvm.h>

#include <cstddef>

#include "vmm/kvm/x86_state.h"

namespace vim::vmm::kvm {

#define VIM_SAME_LAYOUT(ours, theirs) \
    static_assert(sizeof(ours) == sizeof(theirs), #ours " must match " #theirs)

VIM_SAME_LAYOUT(Registers, kvm_regs);
VIM_SAME_LAYOUT(Segment, kvm_segment);
VIM_SAME_LAYOUT(DescriptorTable, kvm_dtable);
VIM_SAME_LAYOUT(SpecialRegisters, kvm_sregs);
VIM_SAME_LAYOUT(FpuState, kvm_fpu);
VIM_SAME_LAYOUT(CpuidEntry, kvm_cpuid_entry2);
VIM_SAME_LAYOUT(LapicState, kvm_lapic_state);

static_assert(offsetof(Registers, rip) == offsetof(kvm_regs, rip));
static_assert(offsetof(Segment, unusable) == offsetof(kvm_segment, unusable));
static_assert(offsetof(SpecialRegisters, efer) == offsetof(kvm_sregs, efer));
static_assert(offsetof(SpecialRegisters, interrupt_bitmap) == offsetof(kvm_sregs, interrupt_bitmap));
static_assert(offsetof(FpuState, mxcsr) == offsetof(kvm_fpu, mxcsr));
static_assert(offsetof(CpuidEntry, edx) == offsetof(kvm_cpuid_entry2, edx));

#undef VIM_SAME_LAYOUT

}  // namespace vim::vmm::kvm
