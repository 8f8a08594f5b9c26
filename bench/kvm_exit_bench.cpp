// The cost of a VM exit: a full round trip guest -> port-I/O exit to this
// process -> back into the guest, beside an exit KVM handles in the kernel
// (a read of the in-kernel PIT's counter). Inside a nested sandbox only the
// ratio of the two means something.

#include <benchmark/benchmark.h>

#include "real_mode_guest.h"

namespace {

using vim::testing::RealModeGuest;
using vmm::kvm::VcpuExit;

struct NullHandler : vmm::kvm::ExitHandler {
    void pio_read(std::uint16_t, std::span<std::uint8_t>) override {}
    void pio_write(std::uint16_t, std::span<const std::uint8_t>) override {}
    void mmio_read(std::uint64_t, std::span<std::uint8_t>) override {}
    void mmio_write(std::uint64_t, std::span<const std::uint8_t>) override {}
};

constexpr std::uint16_t kCode = 0x1000;

void run_expecting_port_io(vmm::kvm::Vcpu& vcpu, NullHandler& handler, benchmark::State& state) {
    if (vcpu.run(handler) != VcpuExit::PortIo) {
        state.SkipWithError("the guest stopped with something other than port I/O");
    }
}

// One iteration = one exit to userspace and back.
void BM_PortIoExitToUserspace(benchmark::State& state) {
    RealModeGuest guest(0x10000);
    const std::uint8_t code[] = {
        0xEE,        // again: out dx, al
        0xEB, 0xFD,  // jmp again
    };
    guest.load(kCode, code);
    auto vcpu = guest.add_vcpu(0, kCode);
    NullHandler handler;
    for (auto _ : state) {
        run_expecting_port_io(vcpu, handler, state);
    }
    state.counters["ns_per_exit"] =
        benchmark::Counter(static_cast<double>(state.iterations()) * 1e-9,
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// One iteration = kInKernelExits reads of the PIT, each an exit KVM answers
// itself, then one port write that comes back to us.
constexpr int kInKernelExits = 1000;

void BM_InKernelPortIoExit(benchmark::State& state) {
    RealModeGuest guest(0x10000);
    guest.vm().set_tss_address(0xfffbd000);
    guest.vm().create_irqchip();
    guest.vm().create_pit();
    const std::uint8_t code[] = {
        0xB9, kInKernelExits & 0xff, kInKernelExits >> 8,  // again: mov cx, kInKernelExits
        0xE4, 0x40,                                        // read:  in al, 0x40 (PIT, in kernel)
        0x49,                                              //        dec cx
        0x75, 0xFB,                                        //        jnz read
        0xEE,                                              //        out dx, al (to us)
        0xEB, 0xF4,                                        //        jmp again
    };
    guest.load(kCode, code);
    auto vcpu = guest.add_vcpu(0, kCode);
    NullHandler handler;
    for (auto _ : state) {
        run_expecting_port_io(vcpu, handler, state);
    }
    state.counters["ns_per_exit"] =
        benchmark::Counter(static_cast<double>(state.iterations()) * kInKernelExits * 1e-9,
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

BENCHMARK(BM_PortIoExitToUserspace);
BENCHMARK(BM_InKernelPortIoExit);

}  // namespace

BENCHMARK_MAIN();
