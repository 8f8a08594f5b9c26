#include "real_mode_guest.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>

namespace vim::testing {

RealModeGuest::RealModeGuest(std::uint64_t ram_size)
    : kvm_(vmm::kvm::Kvm::open()),
      vm_(kvm_.create_vm()),
      ram_(vmm::sys::Mapping::map("test guest RAM", ram_size, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS)) {
    vm_.set_memory_slot({.slot = 0, .guest_address = 0, .size = ram_size, .host_address = ram_.data()});
}

void RealModeGuest::load(std::uint64_t address, std::span<const std::uint8_t> code) {
    std::copy(code.begin(), code.end(), ram_.data() + address);
}

vmm::kvm::Vcpu RealModeGuest::add_vcpu(std::uint32_t id, std::uint16_t entry) {
    auto vcpu = vm_.create_vcpu(id);
    auto sregs = vcpu.special_registers();
    for (vmm::kvm::Segment* segment : {&sregs.cs, &sregs.ds, &sregs.es, &sregs.ss}) {
        segment->base = 0;
        segment->selector = 0;
    }
    vcpu.set_special_registers(sregs);
    vmm::kvm::Registers registers{};
    registers.rip = entry;
    registers.rflags = 0x2;  // bit 1 is reserved and must be set
    vcpu.set_registers(registers);
    return vcpu;
}

void RecordingExitHandler::pio_read(std::uint16_t port, std::span<std::uint8_t> data) {
    std::fill(data.begin(), data.end(), read_value);
    pio.push_back({false, port, {data.begin(), data.end()}});
}

void RecordingExitHandler::pio_write(std::uint16_t port, std::span<const std::uint8_t> data) {
    pio.push_back({true, port, {data.begin(), data.end()}});
}

void RecordingExitHandler::mmio_read(std::uint64_t address, std::span<std::uint8_t> data) {
    std::fill(data.begin(), data.end(), read_value);
    mmio.push_back({false, address, {data.begin(), data.end()}});
}

void RecordingExitHandler::mmio_write(std::uint64_t address, std::span<const std::uint8_t> data) {
    mmio.push_back({true, address, {data.begin(), data.end()}});
}

}  // namespace vim::testing
