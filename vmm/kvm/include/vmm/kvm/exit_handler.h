#pragma once

#include <cstdint>
#include <span>

namespace vim::vmm::kvm {

// What the VMM supplies to handle a vCPU's port-I/O and MMIO exits. The KVM
// layer splits string I/O (rep ins/outs) into one call per element, so a
// handler only ever sees one access of 1, 2, 4 or 8 bytes.
class ExitHandler {
public:
    virtual ~ExitHandler() = default;
    // Fill `data` with what the guest reads from `port`.
    virtual void pio_read(std::uint16_t port, std::span<std::uint8_t> data) = 0;
    virtual void pio_write(std::uint16_t port, std::span<const std::uint8_t> data) = 0;
    virtual void mmio_read(std::uint64_t address, std::span<std::uint8_t> data) = 0;
    virtual void mmio_write(std::uint64_t address, std::span<const std::uint8_t> data) = 0;
};

}  // namespace vim::vmm::kvm
