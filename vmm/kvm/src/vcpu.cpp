#include "vmm/kvm/vcpu.h"

#include <linux/kvm.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "ioctl.h"

namespace vim::vmm::kvm {
namespace {

template <typename Ours, typename Theirs>
Ours convert(const Theirs& theirs) {
    static_assert(sizeof(Ours) == sizeof(Theirs));
    Ours ours;
    std::memcpy(&ours, &theirs, sizeof ours);
    return ours;
}

}  // namespace

std::string_view describe(VcpuExit exit) {
    switch (exit) {
    case VcpuExit::PortIo:
        return "port I/O";
    case VcpuExit::Mmio:
        return "MMIO";
    case VcpuExit::Halt:
        return "HLT";
    case VcpuExit::TripleFault:
        return "triple fault (KVM_EXIT_SHUTDOWN)";
    case VcpuExit::SystemShutdown:
        return "system shutdown event";
    case VcpuExit::SystemReset:
        return "system reset event";
    case VcpuExit::Interrupted:
        return "interrupted";
    }
    return "unknown";
}

Registers Vcpu::registers() const {
    kvm_regs regs{};
    detail::ioctl_or_throw(fd_.get(), KVM_GET_REGS, &regs, "KVM_GET_REGS");
    return convert<Registers>(regs);
}

void Vcpu::set_registers(const Registers& registers) {
    auto regs = convert<kvm_regs>(registers);
    detail::ioctl_or_throw(fd_.get(), KVM_SET_REGS, &regs, "KVM_SET_REGS");
}

SpecialRegisters Vcpu::special_registers() const {
    kvm_sregs sregs{};
    detail::ioctl_or_throw(fd_.get(), KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
    return convert<SpecialRegisters>(sregs);
}

void Vcpu::set_special_registers(const SpecialRegisters& registers) {
    auto sregs = convert<kvm_sregs>(registers);
    detail::ioctl_or_throw(fd_.get(), KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
}

FpuState Vcpu::fpu() const {
    kvm_fpu fpu{};
    detail::ioctl_or_throw(fd_.get(), KVM_GET_FPU, &fpu, "KVM_GET_FPU");
    return convert<FpuState>(fpu);
}

void Vcpu::set_fpu(const FpuState& state) {
    auto fpu = convert<kvm_fpu>(state);
    detail::ioctl_or_throw(fd_.get(), KVM_SET_FPU, &fpu, "KVM_SET_FPU");
}

void Vcpu::set_cpuid(std::span<const CpuidEntry> entries) {
    detail::FlexibleArray<kvm_cpuid_entry2> cpuid(entries.size());
    std::memcpy(cpuid.entries(), entries.data(), entries.size_bytes());
    detail::ioctl_or_throw(fd_.get(), detail::kSetCpuid2, cpuid.data(), "KVM_SET_CPUID2");
}

std::vector<MsrEntry> Vcpu::msrs(std::span<const std::uint32_t> indexes) const {
    detail::FlexibleArray<kvm_msr_entry> msrs(indexes.size());
    for (std::size_t i = 0; i < indexes.size(); ++i) {
        msrs.entries()[i].index = indexes[i];
    }
    int read = detail::ioctl_or_throw(fd_.get(), detail::kGetMsrs, msrs.data(), "KVM_GET_MSRS");
    if (static_cast<std::size_t>(read) != indexes.size()) {
        throw std::runtime_error("KVM_GET_MSRS: MSR " + std::to_string(indexes[read]) + " is not supported");
    }
    std::vector<MsrEntry> entries;
    for (std::size_t i = 0; i < indexes.size(); ++i) {
        entries.push_back({msrs.entries()[i].index, msrs.entries()[i].data});
    }
    return entries;
}

void Vcpu::set_msrs(std::span<const MsrEntry> entries) {
    detail::FlexibleArray<kvm_msr_entry> msrs(entries.size());
    for (std::size_t i = 0; i < entries.size(); ++i) {
        msrs.entries()[i].index = entries[i].index;
        msrs.entries()[i].data = entries[i].data;
    }
    int written = detail::ioctl_or_throw(fd_.get(), detail::kSetMsrs, msrs.data(), "KVM_SET_MSRS");
    // KVM stops at the first MSR it refuses and returns how many it set.
    if (static_cast<std::size_t>(written) != entries.size()) {
        throw std::runtime_error("KVM_SET_MSRS: MSR " + std::to_string(entries[written].index) +
                                 " was refused");
    }
}

LapicState Vcpu::lapic() const {
    kvm_lapic_state state{};
    detail::ioctl_or_throw(fd_.get(), KVM_GET_LAPIC, &state, "KVM_GET_LAPIC");
    return convert<LapicState>(state);
}

void Vcpu::set_lapic(const LapicState& state) {
    auto lapic = convert<kvm_lapic_state>(state);
    detail::ioctl_or_throw(fd_.get(), KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC");
}

XsaveState Vcpu::xsave() const {
    XsaveState state;
    state.bytes.resize(xsave_size_);
    if (xsave_size_ > detail::kXsaveLegacySize) {
        detail::ioctl_or_throw(fd_.get(), detail::kGetXsave2, state.bytes.data(), "KVM_GET_XSAVE2");
    } else {
        detail::ioctl_or_throw(fd_.get(), detail::kGetXsave, state.bytes.data(), "KVM_GET_XSAVE");
    }
    return state;
}

void Vcpu::set_xsave(const XsaveState& state) {
    // KVM reads as many bytes as KVM_CAP_XSAVE2 says: a shorter area would
    // make it read past the buffer.
    if (state.bytes.size() != xsave_size_) {
        throw std::invalid_argument("KVM_SET_XSAVE: an area of " + std::to_string(state.bytes.size()) +
                                    " bytes, where this host's vCPUs have " + std::to_string(xsave_size_));
    }
    detail::ioctl_or_throw(fd_.get(), detail::kSetXsave, const_cast<std::uint8_t*>(state.bytes.data()),
                           "KVM_SET_XSAVE");
}

namespace {

// The get/set pair of a state KVM hands over as one structure.
template <typename Ours, typename Theirs>
Ours get_whole(int fd, unsigned long request, const char* what) {
    static_assert(sizeof(Ours) == sizeof(Theirs));
    Theirs theirs{};
    detail::ioctl_or_throw(fd, request, &theirs, what);
    return convert<Ours>(theirs);
}

template <typename Theirs, typename Ours>
void set_whole(int fd, unsigned long request, const Ours& ours, const char* what) {
    auto theirs = convert<Theirs>(ours);
    detail::ioctl_or_throw(fd, request, &theirs, what);
}

}  // namespace

XcrState Vcpu::xcrs() const { return get_whole<XcrState, kvm_xcrs>(fd_.get(), KVM_GET_XCRS, "KVM_GET_XCRS"); }

void Vcpu::set_xcrs(const XcrState& state) {
    set_whole<kvm_xcrs>(fd_.get(), KVM_SET_XCRS, state, "KVM_SET_XCRS");
}

VcpuEvents Vcpu::events() const {
    return get_whole<VcpuEvents, kvm_vcpu_events>(fd_.get(), KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS");
}

void Vcpu::set_events(const VcpuEvents& events) {
    set_whole<kvm_vcpu_events>(fd_.get(), KVM_SET_VCPU_EVENTS, events, "KVM_SET_VCPU_EVENTS");
}

DebugRegisters Vcpu::debug_registers() const {
    return get_whole<DebugRegisters, kvm_debugregs>(fd_.get(), KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS");
}

void Vcpu::set_debug_registers(const DebugRegisters& registers) {
    set_whole<kvm_debugregs>(fd_.get(), KVM_SET_DEBUGREGS, registers, "KVM_SET_DEBUGREGS");
}

MpState Vcpu::mp_state() const {
    return get_whole<MpState, kvm_mp_state>(fd_.get(), KVM_GET_MP_STATE, "KVM_GET_MP_STATE");
}

void Vcpu::set_mp_state(MpState state) {
    set_whole<kvm_mp_state>(fd_.get(), KVM_SET_MP_STATE, state, "KVM_SET_MP_STATE");
}

bool Vcpu::report_stopped() {
    if (::ioctl(fd_.get(), KVM_KVMCLOCK_CTRL, 0) == 0) {
        return true;
    }
    if (errno == EINVAL) {
        return false;  // the guest has not set up kvmclock
    }
    sys::throw_errno("KVM_KVMCLOCK_CTRL on vCPU " + std::to_string(id_));
}

std::vector<MsrEntry> Vcpu::readable_msrs(std::span<const std::uint32_t> indexes) const {
    std::vector<MsrEntry> entries;
    while (!indexes.empty()) {
        detail::FlexibleArray<kvm_msr_entry> msrs(indexes.size());
        for (std::size_t i = 0; i < indexes.size(); ++i) {
            msrs.entries()[i].index = indexes[i];
        }
        const auto read = static_cast<std::size_t>(
            detail::ioctl_or_throw(fd_.get(), detail::kGetMsrs, msrs.data(), "KVM_GET_MSRS"));
        for (std::size_t i = 0; i < read; ++i) {
            entries.push_back({msrs.entries()[i].index, msrs.entries()[i].data});
        }
        // KVM stopped at an MSR this vCPU does not have: skip it, read on.
        indexes = indexes.subspan(std::min(read + 1, indexes.size()));
    }
    return entries;
}

void Vcpu::set_immediate_exit(bool exit) noexcept {
    reinterpret_cast<kvm_run*>(run_.data())->immediate_exit = exit ? 1 : 0;
}

VcpuExit Vcpu::run(ExitHandler& handler) {
    if (::ioctl(fd_.get(), KVM_RUN, 0) < 0) {
        if (errno == EINTR || errno == EAGAIN) {
            return VcpuExit::Interrupted;
        }
        sys::throw_errno("KVM_RUN on vCPU " + std::to_string(id_));
    }
    const auto* run = reinterpret_cast<const kvm_run*>(run_.data());
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        return dispatch_io(handler);
    case KVM_EXIT_MMIO:
        return dispatch_mmio(handler);
    case KVM_EXIT_HLT:
        return VcpuExit::Halt;
    case KVM_EXIT_SHUTDOWN:
        return VcpuExit::TripleFault;
    case KVM_EXIT_INTR:
        return VcpuExit::Interrupted;
    case KVM_EXIT_SYSTEM_EVENT:
        if (run->system_event.type == KVM_SYSTEM_EVENT_RESET) {
            return VcpuExit::SystemReset;
        }
        return VcpuExit::SystemShutdown;
    case KVM_EXIT_FAIL_ENTRY:
        throw std::runtime_error("vCPU " + std::to_string(id_) +
                                 ": KVM could not enter the guest (hardware reason " +
                                 std::to_string(run->fail_entry.hardware_entry_failure_reason) + ")");
    case KVM_EXIT_INTERNAL_ERROR:
        throw std::runtime_error("vCPU " + std::to_string(id_) + ": KVM internal error, suberror " +
                                 std::to_string(run->internal.suberror));
    default:
        throw std::runtime_error("vCPU " + std::to_string(id_) + ": unexpected KVM exit reason " +
                                 std::to_string(run->exit_reason));
    }
}

VcpuExit Vcpu::dispatch_io(ExitHandler& handler) {
    auto* run = reinterpret_cast<kvm_run*>(run_.data());
    auto& io = run->io;
    if (io.data_offset + std::uint64_t{io.size} * io.count > run_.size()) {
        throw std::runtime_error("vCPU " + std::to_string(id_) + ": port I/O data outside kvm_run");
    }
    std::uint8_t* data = run_.data() + io.data_offset;
    for (std::uint32_t i = 0; i < io.count; ++i, data += io.size) {
        if (io.direction == KVM_EXIT_IO_OUT) {
            handler.pio_write(io.port, {data, io.size});
        } else {
            handler.pio_read(io.port, {data, io.size});
        }
    }
    return VcpuExit::PortIo;
}

VcpuExit Vcpu::dispatch_mmio(ExitHandler& handler) {
    auto* run = reinterpret_cast<kvm_run*>(run_.data());
    auto& mmio = run->mmio;
    std::uint32_t length = std::min<std::uint32_t>(mmio.len, sizeof mmio.data);
    if (mmio.is_write) {
        handler.mmio_write(mmio.phys_addr, {mmio.data, length});
    } else {
        handler.mmio_read(mmio.phys_addr, {mmio.data, length});
    }
    return VcpuExit::Mmio;
}

}  // namespace vim::vmm::kvm
