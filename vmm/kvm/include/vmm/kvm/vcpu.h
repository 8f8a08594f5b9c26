#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "vmm/kvm/exit_handler.h"
#include "vmm/kvm/x86_state.h"
#include "vmm/sys/fd.h"
#include "vmm/sys/mapping.h"

namespace vim::vmm::kvm {

// Why Vcpu::run() returned. Port I/O and MMIO have already been handed to the
// ExitHandler when run() returns them. Exits the guest cannot recover from
// (failed entry, KVM internal error) are thrown as VcpuError instead.
enum class VcpuExit {
    PortIo,
    Mmio,
    Halt,            // HLT with no in-kernel irqchip to wait for an interrupt
    TripleFault,     // KVM_EXIT_SHUTDOWN: the CPU would reset
    SystemShutdown,  // KVM_SYSTEM_EVENT_SHUTDOWN (e.g. PSCI; not on x86 today)
    SystemReset,
    Interrupted,  // a signal or set_immediate_exit() kicked the vCPU out
};

std::string_view describe(VcpuExit exit);

// One virtual CPU: its fd and the shared kvm_run page. Made by KvmVm::create_vcpu().
class Vcpu {
public:
    Vcpu(Vcpu&&) noexcept = default;
    Vcpu& operator=(Vcpu&&) noexcept = default;

    std::uint32_t id() const noexcept { return id_; }

    Registers registers() const;
    void set_registers(const Registers& registers);
    SpecialRegisters special_registers() const;
    void set_special_registers(const SpecialRegisters& registers);
    FpuState fpu() const;
    void set_fpu(const FpuState& fpu);
    void set_cpuid(std::span<const CpuidEntry> entries);
    // Reads the MSRs named by the entries' indexes; returns them with data filled in.
    std::vector<MsrEntry> msrs(std::span<const std::uint32_t> indexes) const;
    void set_msrs(std::span<const MsrEntry> entries);
    LapicState lapic() const;
    void set_lapic(const LapicState& state);
    XsaveState xsave() const;
    void set_xsave(const XsaveState& state);
    XcrState xcrs() const;
    void set_xcrs(const XcrState& state);
    VcpuEvents events() const;
    void set_events(const VcpuEvents& events);
    DebugRegisters debug_registers() const;
    void set_debug_registers(const DebugRegisters& registers);
    MpState mp_state() const;
    void set_mp_state(MpState state);
    // Tells the guest's kvmclock that the vCPU was stopped (KVM_KVMCLOCK_CTRL),
    // so its soft-lockup watchdog does not take the time it was away for a
    // hang. False where the guest does not use kvmclock.
    bool report_stopped();
    // Reads every MSR of `indexes` this vCPU has; skips the ones KVM lists
    // but refuses for this guest's CPUID (KVM_GET_MSRS stops at those).
    std::vector<MsrEntry> readable_msrs(std::span<const std::uint32_t> indexes) const;

    // Enters the guest until the next exit that needs the VMM. Retries nothing:
    // EINTR comes back as VcpuExit::Interrupted so the caller can look at why.
    VcpuExit run(ExitHandler& handler);

    // While set, run() returns Interrupted at once instead of entering the
    // guest. Set it from another thread, then signal this vCPU's thread, to
    // kick it out of the guest without a race.
    void set_immediate_exit(bool exit) noexcept;

private:
    friend class KvmVm;
    Vcpu(sys::Fd fd, sys::Mapping run, std::uint32_t id, std::size_t xsave_size) noexcept
        : fd_(std::move(fd)), run_(std::move(run)), id_(id), xsave_size_(xsave_size) {}

    VcpuExit dispatch_io(ExitHandler& handler);
    VcpuExit dispatch_mmio(ExitHandler& handler);

    // The fd is declared first so the kvm_run mapping is released before it.
    sys::Fd fd_;
    sys::Mapping run_;
    std::uint32_t id_;
    std::size_t xsave_size_;  // KVM_CAP_XSAVE2's size; 4096 where the VM has no larger area
};

}  // namespace vim::vmm::kvm
