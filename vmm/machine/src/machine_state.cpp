#include "machine_state.h"

#include "kvm_state.h"

namespace vim::vmm::machine {

using state::State;
using state::StateError;

std::vector<std::uint8_t> save_machine_state(const MachineParts& machine,
                                             std::span<const std::uint32_t> msr_indexes) {
    State vcpus = State::array();
    for (std::size_t index = 0; index < machine.vcpus.size(); ++index) {
        vcpus.push_back(save_vcpu(machine.vcpus.vcpu(index), msr_indexes));
    }
    return State::to_cbor(
        State{{"vcpus", vcpus}, {"vm", save_vm(machine.vm)}, {"devices", machine.devices.save()}});
}

void restore_machine_state(const MachineParts& machine, std::span<const std::uint8_t> cbor) {
    State state;
    try {
        state = State::from_cbor(cbor);
    } catch (const nlohmann::json::exception& error) {
        throw StateError(std::string("machine state: not CBOR: ") + error.what());
    }
    const State& vcpus = state::field(state, "vcpus");
    if (!vcpus.is_array() || vcpus.size() != machine.vcpus.size()) {
        throw StateError("machine state: " + std::to_string(vcpus.is_array() ? vcpus.size() : 0) +
                         " vCPUs, where this VM has " + std::to_string(machine.vcpus.size()));
    }
    // The interrupt controllers before the vCPUs' LAPICs, which they feed;
    // the devices last, as restoring them may raise interrupts.
    restore_vm(machine.vm, state::field(state, "vm"));
    for (std::size_t index = 0; index < machine.vcpus.size(); ++index) {
        restore_vcpu(machine.vcpus.vcpu(index), vcpus[index]);
    }
    machine.devices.restore(state::field(state, "devices"));
}

}  // namespace vim::vmm::machine
