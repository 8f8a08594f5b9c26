#pragma once

// A minimal real-mode guest for KVM-layer tests and benchmarks: one VM, guest
// RAM at address 0, vCPUs that start at a given address with flat segments.

#include <cstdint>
#include <span>
#include <vector>

#include "vmm/kvm/kvm.h"
#include "vmm/sys/mapping.h"

namespace vim::testing {

class RealModeGuest {
public:
    // `ram_size` bytes of RAM at guest address 0, in memory slot 0.
    explicit RealModeGuest(std::uint64_t ram_size);

    vmm::kvm::KvmVm& vm() { return vm_; }
    std::span<std::uint8_t> ram() { return ram_.bytes(); }

    void load(std::uint64_t address, std::span<const std::uint8_t> code);
    // A vCPU in real mode with CS = DS = ES = 0 and IP = `entry`.
    vmm::kvm::Vcpu add_vcpu(std::uint32_t id, std::uint16_t entry);

private:
    vmm::kvm::Kvm kvm_;
    vmm::kvm::KvmVm vm_;
    vmm::sys::Mapping ram_;
};

// Records every exit it is handed; reads answer `read_value`.
struct RecordingExitHandler : vmm::kvm::ExitHandler {
    struct Access {
        bool write;
        std::uint64_t address;
        std::vector<std::uint8_t> data;
    };
    std::vector<Access> pio;
    std::vector<Access> mmio;
    std::uint8_t read_value = 0;

    void pio_read(std::uint16_t port, std::span<std::uint8_t> data) override;
    void pio_write(std::uint16_t port, std::span<const std::uint8_t> data) override;
    void mmio_read(std::uint64_t address, std::span<std::uint8_t> data) override;
    void mmio_write(std::uint64_t address, std::span<const std::uint8_t> data) override;
};

}  // namespace vim::testing
