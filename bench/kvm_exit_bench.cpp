// The cost of a VM exit: a full round trip guest -> port-I/O exit to this
// process -> back into the guest, beside an exit KVM handles in the kernel
// (CPUID, which KVM always intercepts and answers itself). Inside a nested
// sandbox only the ratio of the two means something.

#include <benchmark/benchmark.h>

#include "real_mode_guest.h"

namespace {

using vim::testing::RealModeGuest;
using vim::vmm::kvm::VcpuExit;

struct NullHandler : vim::vmm::kvm::ExitHandler {
    void pio_read(std::uint16_t, std::span<std::uint8_t>) override {}
    void pio_write(std::uint16_t, std::span<const std::uint8_t>) override {}
    void mmio_read(std::uint64_t, std::span<std::uint8_t>) override {}
    void mmio_write(std::uint64_t, std::span<const std::uint8_t>) override {}
};

constexpr std::uint16_t kCode = 0x1000;

void run_expecting_port_io(vim::vmm::kvm::Vcpu& vcpu, NullHandler& handler, benchmark::State& state) {
    if (vcpu.run(handler) != VcpuExit::PortIo) {
        state.SkipWithError("the guest stopped with something other than port I/O");
    }
}

// Reports the time per exit as "time_per_exit" (seconds, SI-prefixed).
void report_time_per_exit(benchmark::State& state, double exits_per_iteration) {
    state.counters["time_per_exit"] =
        benchmark::Counter(static_cast<double>(state.iterations()) * exits_per_iteration,
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// One iteration = one exit to userspace and back.
void BM_PortIoExitToUserspace(benchmark::State& state) {
    RealModeGuest guest(0x10000);
    // One instruction per line, with its assembly:
    // clang-format off
    const std::uint8_t code[] = {
        0xEE,        // again: out dx, al
        0xEB, 0xFD,  // jmp again
    };
    // clang-format on
    guest.load(kCode, code);
    auto vcpu = guest.add_vcpu(0, kCode);
    NullHandler handler;
    for (auto _ : state) {
        run_expecting_port_io(vcpu, handler, state);
    }
    report_time_per_exit(state, 1);
}

// One iteration = kInKernelExits CPUIDs, each an exit KVM answers itself,
// then one port write that comes back to us.
constexpr int kInKernelExits = 1000;

void BM_InKernelCpuidExit(benchmark::State& state) {
    RealModeGuest guest(0x10000);
    // One instruction per line, with its assembly:
    // clang-format off
    const std::uint8_t code[] = {
        0xBE, kInKernelExits & 0xff, kInKernelExits >> 8,  // again: mov si, kInKernelExits
        0x66, 0x31, 0xC0,                                  // next:  xor eax, eax
        0x0F, 0xA2,                                        //        cpuid
        0x4E,                                              //        dec si
        0x75, 0xF8,                                        //        jnz next
        0xEE,                                              //        out dx, al (to us)
        0xEB, 0xF2,                                        //        jmp again
    };
    // clang-format on
    guest.load(kCode, code);
    auto vcpu = guest.add_vcpu(0, kCode);
    NullHandler handler;
    for (auto _ : state) {
        run_expecting_port_io(vcpu, handler, state);
    }
    report_time_per_exit(state, kInKernelExits);
}

BENCHMARK(BM_PortIoExitToUserspace);
BENCHMARK(BM_InKernelCpuidExit);

}  // namespace

BENCHMARK_MAIN();
