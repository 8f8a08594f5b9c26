#include "kvm_state.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace vim::vmm::machine {
namespace {

using state::State;
using state::StateError;

constexpr std::uint32_t kMsrTsc = 0x10;

State save_msrs(const kvm::Vcpu& vcpu, std::span<const std::uint32_t> indexes) {
    State msrs = State::array();
    for (const kvm::MsrEntry& msr : vcpu.readable_msrs(indexes)) {
        msrs.push_back(State::array({msr.index, msr.data}));
    }
    return msrs;
}

std::vector<kvm::MsrEntry> msrs_from(const State& state) {
    const State& list = state::field(state, "msrs");
    if (!list.is_array()) {
        throw StateError("msrs: not a list");
    }
    std::vector<kvm::MsrEntry> msrs;
    for (const State& entry : list) {
        if (!entry.is_array() || entry.size() != 2 || !entry[0].is_number_unsigned() ||
            !entry[1].is_number_unsigned() || entry[0].get<std::uint64_t>() > UINT32_MAX) {
            throw StateError("msrs: an entry is not [index, value]");
        }
        msrs.push_back({entry[0].get<std::uint32_t>(), entry[1].get<std::uint64_t>()});
    }
    // The TSC first: KVM adjusts TSC_ADJUST and the deadline timer to it.
    std::stable_partition(msrs.begin(), msrs.end(),
                          [](const kvm::MsrEntry& msr) { return msr.index == kMsrTsc; });
    return msrs;
}

}  // namespace

State save_vcpu(const kvm::Vcpu& vcpu, std::span<const std::uint32_t> msr_indexes) {
    return {{"id", vcpu.id()},
            {"registers", state::binary(vcpu.registers())},
            {"special_registers", state::binary(vcpu.special_registers())},
            {"xsave", state::binary(std::span<const std::uint8_t>(vcpu.xsave().bytes))},
            {"xcrs", state::binary(vcpu.xcrs())},
            {"lapic", state::binary(vcpu.lapic())},
            {"msrs", save_msrs(vcpu, msr_indexes)},
            {"mp_state", vcpu.mp_state().value},
            {"events", state::binary(vcpu.events())},
            {"debug_registers", state::binary(vcpu.debug_registers())}};
}

void restore_vcpu(kvm::Vcpu& vcpu, const State& state) {
    state::restoring("vCPU " + std::to_string(vcpu.id()), [&] {
        if (state::unsigned_field<std::uint32_t>(state, "id") != vcpu.id()) {
            throw StateError("id: the state of another vCPU");
        }
        // Every field is read before KVM is told anything, so a bad state
        // leaves the vCPU as it was.
        const auto registers = state::struct_field<kvm::Registers>(state, "registers");
        const auto special = state::struct_field<kvm::SpecialRegisters>(state, "special_registers");
        const kvm::XsaveState xsave{state::binary_field(state, "xsave")};
        const auto xcrs = state::struct_field<kvm::XcrState>(state, "xcrs");
        const auto lapic = state::struct_field<kvm::LapicState>(state, "lapic");
        const auto msrs = msrs_from(state);
        const kvm::MpState mp_state{state::unsigned_field<std::uint32_t>(state, "mp_state")};
        const auto events = state::struct_field<kvm::VcpuEvents>(state, "events");
        const auto debug = state::struct_field<kvm::DebugRegisters>(state, "debug_registers");
        // The order KVM needs: the mode (special registers) before the
        // general ones, the LAPIC before the MSRs that program its timer,
        // the pending events last, as they refer to all of it.
        vcpu.set_mp_state(mp_state);
        vcpu.set_special_registers(special);
        vcpu.set_registers(registers);
        vcpu.set_xsave(xsave);
        vcpu.set_xcrs(xcrs);
        vcpu.set_lapic(lapic);
        vcpu.set_msrs(msrs);
        vcpu.set_events(events);
        vcpu.set_debug_registers(debug);
        vcpu.report_stopped();
    });
}

State save_vm(const kvm::KvmVm& vm) {
    using Chip = kvm::IrqchipState::Chip;
    const kvm::ClockState clock = vm.clock();
    return {{"pic_master", state::binary(vm.irqchip(Chip::PicMaster))},
            {"pic_slave", state::binary(vm.irqchip(Chip::PicSlave))},
            {"ioapic", state::binary(vm.irqchip(Chip::Ioapic))},
            {"pit", state::binary(vm.pit())},
            {"clock_ns", clock.clock_ns},
            {"clock_realtime_ns", clock.realtime_ns}};
}

void restore_vm(kvm::KvmVm& vm, const State& state) {
    state::restoring("interrupt controllers and clocks", [&] {
        using Chip = kvm::IrqchipState::Chip;
        const std::pair<const char*, Chip> chips[] = {
            {"pic_master", Chip::PicMaster}, {"pic_slave", Chip::PicSlave}, {"ioapic", Chip::Ioapic}};
        std::vector<kvm::IrqchipState> irqchips;
        for (const auto& [name, chip] : chips) {
            irqchips.push_back(state::struct_field<kvm::IrqchipState>(state, name));
            std::uint32_t chip_id;
            std::memcpy(&chip_id, irqchips.back().bytes.data(), sizeof chip_id);
            if (chip_id != static_cast<std::uint32_t>(chip)) {
                throw StateError(std::string(name) + ": the state of another interrupt controller");
            }
        }
        const auto pit = state::struct_field<kvm::PitState>(state, "pit");
        const kvm::ClockState clock{state::unsigned_field<std::uint64_t>(state, "clock_ns"),
                                    state::unsigned_field<std::uint64_t>(state, "clock_realtime_ns")};
        for (const auto& irqchip : irqchips) {
            vm.set_irqchip(irqchip);
        }
        vm.set_pit(pit);
        vm.set_clock(clock);
    });
}

}  // namespace vim::vmm::machine
