// The vmm binary booting Debian's own kernel with the test initramfs, checked
// from the outside: what the guest prints, what the control socket answers,
// and how the process ends.

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "vmm/boot/elf_kernel.h"
#include "vmm/control/client.h"
#include "vmm/sys/hex.h"
#include "vmm_fixture.h"
#include "vmm_process.h"

namespace {

using namespace vim::testing;
using nlohmann::json;

void expect_report(VmmProcess& vmm, int cpus, std::uint64_t memory_kib) {
    ASSERT_TRUE(vmm.wait_for_line("VIM-GUEST-READY", kBootTimeout)) << vmm.console() << vmm.errors();
    auto cpu_line = vmm.wait_for_line("guest-cpus=", 30s);
    ASSERT_TRUE(cpu_line) << vmm.console();
    EXPECT_EQ(value_after(*cpu_line, "guest-cpus="), std::to_string(cpus));
    auto ram_line = vmm.wait_for_line("guest-e820-ram-kib=", 30s);
    ASSERT_TRUE(ram_line) << vmm.console();
    // All the RAM asked for, less the legacy hole the e820 map reserves below 1 MiB.
    std::uint64_t seen = std::stoull(value_after(*ram_line, "guest-e820-ram-kib="));
    EXPECT_LE(seen, memory_kib);
    EXPECT_GE(seen, memory_kib - 1024);
    // The LAPIC's TSC-deadline mode, which KVM reports outside its CPUID
    // table: without it the guest calibrates its timer against the PIT.
    auto deadline_line = vmm.wait_for_line("guest-tsc-deadline=", 30s);
    ASSERT_TRUE(deadline_line) << vmm.console();
    EXPECT_EQ(value_after(*deadline_line, "guest-tsc-deadline="), "yes");
    // The guest's `poweroff -f` ends the vmm, cleanly.
    EXPECT_EQ(vmm.wait_exit(kExitTimeout), 0) << vmm.errors();
    EXPECT_EQ(vmm.errors(), "");
}

TEST_F(VmmBoot, OneCpuSeesItsMemoryAndPowersOff) {
    VmmProcess vmm(boot_arguments("report", 1, "256M"));
    expect_report(vmm, 1, 256 * 1024);
}

TEST_F(VmmBoot, FourCpusComeOnline) {
    VmmProcess vmm(boot_arguments("report", 4, "512M"));
    expect_report(vmm, 4, 512 * 1024);
}

// Booted with acpi=off, Linux learns its CPUs from the MP table alone.
TEST_F(VmmBoot, WithoutAcpiTheMpTableBringsUpEveryCpu) {
    auto arguments = boot_arguments("report", 2, "256M");
    arguments.back() += " acpi=off";
    VmmProcess vmm(arguments);
    ASSERT_TRUE(vmm.wait_for_line("VIM-GUEST-READY", kBootTimeout)) << vmm.console() << vmm.errors();
    auto cpu_line = vmm.wait_for_line("guest-cpus=", 30s);
    ASSERT_TRUE(cpu_line) << vmm.console();
    EXPECT_EQ(value_after(*cpu_line, "guest-cpus="), "2") << vmm.console();
    // Without ACPI there is no way to power off: the guest halts, and the
    // test's end kills the vmm.
}

// The same kernel, unpacked by unpack-kernel to its ELF vmlinux, boots
// without decompressing itself and sees the same machine.
TEST_F(VmmBoot, UnpackedKernelBoots) {
    if (std::string(VIM_GUEST_VMLINUX).empty()) {
        GTEST_SKIP() << "no /boot/vmlinuz-* was there to unpack when the build was configured";
    }
    auto arguments = boot_arguments("report", 2, "256M");
    arguments[1] = VIM_GUEST_VMLINUX;
    VmmProcess vmm(arguments);
    expect_report(vmm, 2, 256 * 1024);
}

TEST_F(VmmBoot, ConsoleTakesInputAndGuestRebootEndsTheVm) {
    VmmProcess vmm(boot_arguments("shell", 1, "256M"), VmmProcess::Input::Pipe);
    ASSERT_TRUE(vmm.wait_for_line("VIM-GUEST-SHELL", kBootTimeout)) << vmm.console() << vmm.errors();
    // What the user types reaches the guest's shell, and its answer comes back.
    vmm.type("echo answer=$((6 * 7))\n");
    EXPECT_TRUE(vmm.wait_for_line("answer=42", 60s)) << vmm.console();
    // The guest's clock comes from the emulated RTC and kvmclock: real time.
    // (Built with printf so the echo of the typed command does not match.)
    vmm.type("printf 'guest-%s=%s\\n' time $(date +%s)\n");
    auto line = vmm.wait_for_line("guest-time=", 60s);
    ASSERT_TRUE(line) << vmm.console();
    long guest_time = std::stol(value_after(*line, "guest-time="));
    long host_time = static_cast<long>(std::time(nullptr));
    EXPECT_NEAR(guest_time, host_time, 30);
    // A reboot ends the VM, as in Firecracker (reboot=k: through the i8042).
    vmm.type("reboot -f\n");
    EXPECT_EQ(vmm.wait_exit(60s), 0) << vmm.errors();
}

TEST_F(VmmBoot, ShutdownOverTheSocketIsGraceful) {
    auto arguments = boot_arguments("idle", 1, "256M");
    arguments.insert(arguments.end(), {"--api-socket", socket_path()});
    VmmProcess vmm(arguments);
    ASSERT_TRUE(vmm.wait_for_line("VIM-GUEST-IDLE", kBootTimeout)) << vmm.console() << vmm.errors();

    json status = command(vmm, "status");
    EXPECT_EQ(status["ok"], true);
    EXPECT_EQ(status["state"], "running");
    EXPECT_EQ(status["vcpus"], 1);
    EXPECT_EQ(status["memory_bytes"], 256ull << 20);
    EXPECT_GT(status["uptime_ms"].get<long>(), 0);
    EXPECT_GT(status["exits"]["port_io"].get<long>(), 0);

    json reply = command(vmm, "shutdown");
    EXPECT_EQ(reply["ok"], true) << reply.dump();
    // busybox init ran its shutdown actions: the power-off was the guest's own.
    EXPECT_TRUE(vmm.wait_for_line("VIM-GUEST-SHUTDOWN", 60s)) << vmm.console();
    EXPECT_EQ(vmm.wait_exit(60s), 0) << vmm.errors();
    EXPECT_FALSE(std::filesystem::exists(socket_path())) << "the control socket outlived the vmm";
}

// A host agent starting a VM polls for its control socket and talks to it
// at once: every request from the moment the socket appears gets a whole
// answer (the machine is assembled before the socket exists).
TEST_F(VmmBoot, ControlSocketAnswersFromTheMomentItAppears) {
    auto arguments = boot_arguments("idle", 1, "256M");
    arguments.insert(arguments.end(), {"--api-socket", socket_path()});
    VmmProcess vmm(arguments);
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (!std::filesystem::exists(socket_path())) {
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << vmm.errors();
    }
    for (int request = 0; request < 300; ++request) {
        for (const char* name : {"status", "stats"}) {
            json reply = command(vmm, name);
            ASSERT_EQ(reply["ok"], true) << name << " #" << request << ": " << reply.dump();
        }
    }
    EXPECT_EQ(command(vmm, "status")["state"], "running");
    EXPECT_EQ(command(vmm, "shutdown", {{"timeout_ms", 0}})["ok"], true);
    EXPECT_EQ(vmm.wait_exit(60s), 0) << vmm.errors();
}

TEST_F(VmmBoot, PauseStopsTheGuestAndResumeContinuesIt) {
    auto arguments = boot_arguments("counter", 2, "256M");
    arguments.insert(arguments.end(), {"--api-socket", socket_path()});
    VmmProcess vmm(arguments);
    ASSERT_TRUE(vmm.wait_for_line("count 3", kBootTimeout)) << vmm.console() << vmm.errors();

    json paused = command(vmm, "pause");
    ASSERT_EQ(paused["ok"], true) << paused.dump();
    EXPECT_EQ(command(vmm, "status")["state"], "paused");
    // Whatever was in flight when the pause landed, then silence.
    long before = last_count(vmm.lines_during(500ms));
    auto while_paused = vmm.lines_during(2s);
    EXPECT_TRUE(while_paused.empty()) << "the guest printed while paused: " << while_paused.front();

    ASSERT_EQ(command(vmm, "resume")["ok"], true);
    EXPECT_EQ(command(vmm, "status")["state"], "running");
    auto resumed = vmm.lines_during(3s);
    long after = last_count(resumed);
    EXPECT_GT(after, std::max(before, 3L)) << "the counter did not continue after resume";

    json stats = command(vmm, "stats");
    EXPECT_EQ(stats["vcpus"].size(), 2u);
    EXPECT_GT(stats["serial_output_bytes"].get<long>(), 0);

    // A guest that does not shut down in time is stopped.
    json reply = command(vmm, "shutdown", {{"timeout_ms", 0}});
    EXPECT_EQ(reply["ok"], true) << reply.dump();
    EXPECT_EQ(vmm.wait_exit(60s), 0) << vmm.errors();
}

// Every configuration problem is refused before a guest runs, with exit code 2
// and one line naming the problem.

TEST_F(VmmConfiguration, KernelProblems) {
    expect_refused({"--kernel", directory_ + "/none"},
                   "--kernel " + directory_ + "/none: No such file or directory");
    expect_refused({"--initrd", VIM_GUEST_INITRAMFS}, "--kernel is required");
}

TEST_F(VmmConfiguration, NotABzImageSaysSo) {
    expect_refused({"--kernel", VIM_GUEST_INITRAMFS}, std::string("kernel ") + VIM_GUEST_INITRAMFS +
                                                          ": not a bzImage (no 0x55AA boot flag at 0x1fe)");
}

TEST_F(VmmConfiguration, ElfKernelProblems) {
    // This test program is an ELF file, but a position-independent one.
    const std::string program = std::filesystem::read_symlink("/proc/self/exe");
    expect_refused({"--kernel", program},
                   "kernel " + program + ": ELF file of type 3, not an executable (ET_EXEC) like vmlinux");
    if (!std::string(VIM_GUEST_VMLINUX).empty()) {
        const std::string vmlinux = VIM_GUEST_VMLINUX;
        std::ifstream file(vmlinux, std::ios::binary);
        std::vector<std::uint8_t> head(vim::vmm::boot::ElfKernel::kHeadSize);
        file.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
        const auto kernel =
            vim::vmm::boot::ElfKernel::parse(head, std::filesystem::file_size(vmlinux), vmlinux);
        ASSERT_GT(kernel.end(), 64u << 20);
        expect_refused({"--kernel", vmlinux, "--memory", "64M"},
                       "kernel " + vmlinux + ": segments from " + vim::vmm::sys::hex(kernel.start()) +
                           " to " + vim::vmm::sys::hex(kernel.end()) +
                           " run past the end of RAM below 4 GiB at 0x4000000");
    }
}

TEST_F(VmmConfiguration, InitrdProblems) {
    expect_refused({"--kernel", kernel_, "--initrd", directory_},
                   "--initrd " + directory_ + ": not a regular file");
    expect_refused({"--kernel", kernel_, "--initrd", directory_ + "/none"},
                   "--initrd " + directory_ + "/none: No such file or directory");
}

TEST_F(VmmConfiguration, MemoryProblems) {
    expect_refused(with({"--memory", "0"}), "--memory: must be more than 0");
    expect_refused(with({"--memory", "1025K"}),
                   "--memory: 1049600 bytes is not a multiple of the 4 KiB page size");
    expect_refused(with({"--memory", "100000G"}), "--memory: 102400000 MiB is more than the host's");
    expect_refused(with({"--memory", "lots"}), "--memory: 'lots' is not a size like 512M, 2G or 1048576K");
}

TEST_F(VmmConfiguration, CpuProblems) {
    expect_refused(with({"--cpus", "0"}), "--cpus: must be at least 1");
    expect_refused(with({"--cpus", "100000"}), "--cpus: 100000 is more than KVM allows");
}

TEST_F(VmmConfiguration, CommandLineLongerThanTheKernelAccepts) {
    expect_refused(with({"--cmdline", std::string(10000, 'x')}), "command line");
}

TEST_F(VmmConfiguration, UnknownFlag) {
    expect_refused(with({"--frobnicate"}), "The following argument was not expected: --frobnicate");
}

TEST_F(VmmConfiguration, SocketPathInUse) {
    // A live listener at the path.
    int listener = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", socket_path().c_str());
    ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    ASSERT_EQ(::listen(listener, 1), 0);
    expect_refused(with({"--api-socket", socket_path()}),
                   "--api-socket: api socket " + socket_path() + " is in use");
    ::close(listener);
}

}  // namespace
