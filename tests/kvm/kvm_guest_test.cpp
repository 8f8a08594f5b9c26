// Real guest code on real KVM: each test writes a few bytes of 16-bit machine
// code and checks what the VMM would see.

#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "real_mode_guest.h"

namespace {

using vim::testing::RealModeGuest;
using vim::testing::RecordingExitHandler;
using vim::vmm::kvm::VcpuExit;

constexpr std::uint64_t kRamSize = 0x20000;
constexpr std::uint16_t kCode = 0x1000;

// Runs until an exit that is neither port I/O nor MMIO.
VcpuExit run_until_stop(vim::vmm::kvm::Vcpu& vcpu, vim::vmm::kvm::ExitHandler& handler) {
    for (;;) {
        VcpuExit exit = vcpu.run(handler);
        if (exit != VcpuExit::PortIo && exit != VcpuExit::Mmio) {
            return exit;
        }
    }
}

TEST(KvmGuest, PortIoAndMmioExitsCarryTheGuestsValues) {
    RealModeGuest guest(0x8000);  // RAM ends at 0x8000: 0xF000 is not RAM, so it is MMIO
    // One instruction per line, with its assembly:
    // clang-format off
    const std::uint8_t code[] = {
        0xBA, 0xF8, 0x03,  // mov dx, 0x3f8
        0xB0, 'A',         // mov al, 'A'
        0xEE,              // out dx, al
        0xB8, 0xEF, 0xBE,  // mov ax, 0xbeef
        0xEF,              // out dx, ax
        0xEC,              // in al, dx          ; the VMM answers 0x5a
        0xA2, 0x00, 0xF0,  // mov [0xf000], al   ; MMIO write of what was read
        0xA0, 0x04, 0xF0,  // mov al, [0xf004]   ; MMIO read, answered 0x5a
        0x04, 0x01,        // add al, 1
        0xEE,              // out dx, al         ; proves the MMIO read reached the guest
        0xF4,              // hlt
    };
    // clang-format on
    guest.load(kCode, code);
    auto vcpu = guest.add_vcpu(0, kCode);
    RecordingExitHandler handler;
    handler.read_value = 0x5a;

    EXPECT_EQ(run_until_stop(vcpu, handler), VcpuExit::Halt);

    ASSERT_EQ(handler.pio.size(), 4u);
    EXPECT_TRUE(handler.pio[0].write);
    EXPECT_EQ(handler.pio[0].address, 0x3f8u);
    EXPECT_EQ(handler.pio[0].data, std::vector<std::uint8_t>{'A'});
    EXPECT_EQ(handler.pio[1].data, (std::vector<std::uint8_t>{0xef, 0xbe}));
    EXPECT_FALSE(handler.pio[2].write);
    EXPECT_EQ(handler.pio[2].data.size(), 1u);
    EXPECT_EQ(handler.pio[3].data, std::vector<std::uint8_t>{0x5b});

    ASSERT_EQ(handler.mmio.size(), 2u);
    EXPECT_TRUE(handler.mmio[0].write);
    EXPECT_EQ(handler.mmio[0].address, 0xf000u);
    EXPECT_EQ(handler.mmio[0].data, std::vector<std::uint8_t>{0x5a});
    EXPECT_FALSE(handler.mmio[1].write);
    EXPECT_EQ(handler.mmio[1].address, 0xf004u);

    EXPECT_EQ(vcpu.registers().rip, kCode + sizeof code);
}

TEST(KvmGuest, StringPortIoIsSplitIntoElements) {
    RealModeGuest guest(kRamSize);
    // One instruction per line, with its assembly:
    // clang-format off
    const std::uint8_t code[] = {
        0xBE, 0x00, 0x20,  // mov si, 0x2000
        0xB9, 0x03, 0x00,  // mov cx, 3
        0xBA, 0x80, 0x00,  // mov dx, 0x80
        0xF3, 0x6E,        // rep outsb
        0xF4,              // hlt
    };
    // clang-format on
    guest.load(kCode, code);
    const std::uint8_t text[] = {'x', 'y', 'z'};
    guest.load(0x2000, text);
    auto vcpu = guest.add_vcpu(0, kCode);
    RecordingExitHandler handler;
    EXPECT_EQ(run_until_stop(vcpu, handler), VcpuExit::Halt);
    std::string seen;
    for (const auto& access : handler.pio) {
        ASSERT_EQ(access.address, 0x80u);
        seen.append(access.data.begin(), access.data.end());
    }
    EXPECT_EQ(seen, "xyz");
}

TEST(KvmGuest, DirtyLogReportsExactlyTheWrittenPages) {
    RealModeGuest guest(0x8000);
    // Slot 1: 16 pages at 0x10000, dirty-logged; the guest reaches them through ES.
    auto data = vim::vmm::sys::Mapping::map("dirty pages", 16 * 4096, PROT_READ | PROT_WRITE,
                                            MAP_PRIVATE | MAP_ANONYMOUS);
    guest.vm().set_memory_slot({.slot = 1,
                                .guest_address = 0x10000,
                                .size = 16 * 4096,
                                .host_address = data.data(),
                                .log_dirty = true});
    // With KVM_DIRTY_LOG_INITIALLY_SET (Linux 5.8+) a slot starts all dirty,
    // write-protected only as its log is cleared.
    const auto initial = guest.vm().dirty_log(1);
    ASSERT_EQ(initial.size(), 1u);
    EXPECT_TRUE(initial[0] == 0xffff || initial[0] == 0) << std::hex << initial[0];
    guest.vm().clear_dirty_log(1, 0, initial);
    // One instruction per line, with its assembly:
    // clang-format off
    const std::uint8_t code[] = {
        0x26, 0xC6, 0x06, 0x00, 0x00, 0x01,  // mov byte es:[0x0000], 1   ; page 0
        0x26, 0xC6, 0x06, 0x10, 0x30, 0x02,  // mov byte es:[0x3010], 2   ; page 3
        0x26, 0xC6, 0x06, 0xFF, 0x3F, 0x03,  // mov byte es:[0x3fff], 3   ; page 3 again
        0x26, 0xC6, 0x06, 0x00, 0x90, 0x04,  // mov byte es:[0x9000], 4   ; page 9
        0x26, 0xA0, 0x00, 0xF0,              // mov al, es:[0xf000]       ; a read: page 15 stays clean
        0xF4,                                // hlt
        0x26, 0xC6, 0x06, 0x08, 0x50, 0x05,  // mov byte es:[0x5008], 5   ; page 5
        0xF4,                                // hlt
    };
    // clang-format on
    guest.load(kCode, code);
    auto vcpu = guest.add_vcpu(0, kCode);
    auto sregs = vcpu.special_registers();
    sregs.es.base = 0x10000;
    sregs.es.selector = 0x1000;
    vcpu.set_special_registers(sregs);
    RecordingExitHandler handler;

    ASSERT_EQ(run_until_stop(vcpu, handler), VcpuExit::Halt);
    auto dirty = guest.vm().dirty_log(1);
    ASSERT_EQ(dirty.size(), 1u);
    EXPECT_EQ(dirty[0], (1u << 0) | (1u << 3) | (1u << 9));
    EXPECT_EQ(data.data()[0x3fff], 3);  // the guest's writes reached our memory

    // Reading does not clear; clearing does, and nothing is dirty until the guest writes again.
    EXPECT_EQ(guest.vm().dirty_log(1), dirty);
    guest.vm().clear_dirty_log(1, 0, dirty);
    EXPECT_EQ(guest.vm().dirty_log(1), std::vector<std::uint64_t>{0});

    ASSERT_EQ(run_until_stop(vcpu, handler), VcpuExit::Halt);
    EXPECT_EQ(guest.vm().dirty_log(1), std::vector<std::uint64_t>{1u << 5});
}

TEST(KvmGuest, DirtyLogOfAnUnknownSlotIsAClearError) {
    RealModeGuest guest(kRamSize);
    try {
        (void)guest.vm().dirty_log(7);
        FAIL();
    } catch (const std::invalid_argument& error) {
        EXPECT_STREQ(error.what(), "memory slot 7 does not exist");
    }
}

TEST(KvmGuest, TwoVcpusRunConcurrently) {
    RealModeGuest guest(kRamSize);
    // Each vCPU writes its own port 1000 times, then halts.
    auto loop = [](std::uint8_t port) {
        return std::vector<std::uint8_t>{
            0xBA, port, 0x00,  // mov dx, port
            0xB9, 0xE8, 0x03,  // mov cx, 1000
            0xEE,              // again: out dx, al
            0x49,              // dec cx
            0x75, 0xFC,        // jnz again
            0xF4,              // hlt
        };
    };
    guest.load(0x1000, loop(0x10));
    guest.load(0x2000, loop(0x11));
    std::vector<vim::vmm::kvm::Vcpu> vcpus;
    vcpus.push_back(guest.add_vcpu(0, 0x1000));
    vcpus.push_back(guest.add_vcpu(1, 0x2000));

    // Each vCPU's first exit waits until the other vCPU has exited too: if the
    // two were serialised, this rendezvous would time out instead of meeting.
    std::mutex mutex;
    std::condition_variable changed;
    int arrived = 0;
    std::atomic<bool> met = true;

    struct CountingHandler : RecordingExitHandler {
        std::function<void()> on_first;
        int writes = 0;
        void pio_write(std::uint16_t port, std::span<const std::uint8_t> data) override {
            if (writes++ == 0) {
                on_first();
            }
            if (pio.empty()) {
                RecordingExitHandler::pio_write(port, data);
            }
        }
    };
    CountingHandler handlers[2];
    for (auto& handler : handlers) {
        handler.on_first = [&] {
            std::unique_lock lock(mutex);
            ++arrived;
            changed.notify_all();
            if (!changed.wait_for(lock, std::chrono::seconds(30), [&] { return arrived == 2; })) {
                met = false;
            }
        };
    }
    VcpuExit exits[2];
    std::thread threads[2];
    for (int i = 0; i < 2; ++i) {
        threads[i] = std::thread([&, i] { exits[i] = run_until_stop(vcpus[i], handlers[i]); });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    EXPECT_TRUE(met) << "the two vCPUs never ran at the same time";
    for (int i = 0; i < 2; ++i) {
        EXPECT_EQ(exits[i], VcpuExit::Halt);
        EXPECT_EQ(handlers[i].writes, 1000);
        ASSERT_EQ(handlers[i].pio.size(), 1u);
        EXPECT_EQ(handlers[i].pio[0].address, 0x10u + i);
    }
}

TEST(KvmGuest, TripleFaultEndsTheRunWithANamedExit) {
    RealModeGuest guest(kRamSize);
    const std::uint8_t code[] = {0x0F, 0x0B};  // ud2 with no usable interrupt table
    guest.load(kCode, code);
    auto vcpu = guest.add_vcpu(0, kCode);
    auto sregs = vcpu.special_registers();
    sregs.idt.limit = 0;  // #UD -> #GP -> double fault -> triple fault
    vcpu.set_special_registers(sregs);
    RecordingExitHandler handler;
    VcpuExit exit = run_until_stop(vcpu, handler);
    EXPECT_EQ(exit, VcpuExit::TripleFault);
    EXPECT_EQ(vim::vmm::kvm::describe(exit), "triple fault (KVM_EXIT_SHUTDOWN)");
}

TEST(KvmGuest, ImmediateExitKicksASpinningVcpuOut) {
    RealModeGuest guest(kRamSize);
    const std::uint8_t code[] = {0xEB, 0xFE};  // jmp $ : spins forever in the guest
    guest.load(kCode, code);
    auto vcpu = guest.add_vcpu(0, kCode);

    // The kick: a signal whose handler does nothing, so KVM_RUN returns EINTR.
    struct sigaction action {};
    action.sa_handler = [](int) {};
    sigaction(SIGUSR1, &action, nullptr);

    std::atomic<bool> running = false;
    VcpuExit exit = VcpuExit::PortIo;
    std::thread runner([&] {
        RecordingExitHandler handler;
        running = true;
        exit = vcpu.run(handler);
    });
    while (!running) {
        std::this_thread::yield();
    }
    // Setting immediate_exit before signalling closes the race where the signal
    // lands just before the thread enters KVM_RUN.
    vcpu.set_immediate_exit(true);
    pthread_kill(runner.native_handle(), SIGUSR1);
    runner.join();
    EXPECT_EQ(exit, VcpuExit::Interrupted);
    EXPECT_EQ(vcpu.registers().rip, kCode);  // still spinning on its jmp
}

TEST(KvmGuest, IrqchipPitAndCapabilitiesAreAvailable) {
    auto kvm = vim::vmm::kvm::Kvm::open();
    auto vm = kvm.create_vm();
    vm.set_tss_address(0xfffbd000);
    vm.create_irqchip();
    vm.create_pit();
    EXPECT_NO_THROW(vm.set_irq_line(4, true));
    EXPECT_NO_THROW(vm.set_irq_line(4, false));
    EXPECT_GT(kvm.max_vcpus(), 1);
    auto cpuid = kvm.supported_cpuid();
    EXPECT_FALSE(cpuid.empty());

    // State a boot needs to set goes in and comes back out.
    auto vcpu = vm.create_vcpu(0);
    EXPECT_NO_THROW(vcpu.set_cpuid(cpuid));
    constexpr std::uint32_t kSysenterCs = 0x174;
    const vim::vmm::kvm::MsrEntry msr{kSysenterCs, 0x10};
    vcpu.set_msrs({&msr, 1});
    const std::uint32_t index = kSysenterCs;
    EXPECT_EQ(vcpu.msrs({&index, 1}).at(0).data, 0x10u);
    auto lapic = vcpu.lapic();
    lapic.registers[0x80] = 0x20;  // task priority
    vcpu.set_lapic(lapic);
    EXPECT_EQ(vcpu.lapic().registers[0x80], 0x20);
    auto fpu = vcpu.fpu();
    fpu.fcw = 0x37f;
    vcpu.set_fpu(fpu);
    EXPECT_EQ(vcpu.fpu().fcw, 0x37f);
    for (const auto& status : kvm.capability_report()) {
        if (status.required) {
            EXPECT_GT(status.value, 0) << status.name;
        }
    }
}

TEST(KvmGuest, OpeningAMissingDeviceNamesIt) {
    try {
        (void)vim::vmm::kvm::Kvm::open("/nonexistent/kvm");
        FAIL();
    } catch (const std::system_error& error) {
        EXPECT_STREQ(error.what(), "open /nonexistent/kvm: No such file or directory");
    }
}

}  // namespace
