#include "vmm/machine/machine.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>

#include "console.h"
#include "control_commands.h"
#include "device_manager.h"
#include "lifecycle.h"
#include "vmm/acpi/tables.h"
#include "vmm/boot/layout.h"
#include "vmm/boot/linux_loader.h"
#include "vmm/boot/long_mode.h"
#include "vmm/boot/memory_map.h"
#include "vmm/control/control_server.h"
#include "vmm/cpu/cpuid.h"
#include "vmm/cpu/lapic.h"
#include "vmm/cpu/msrs.h"
#include "vmm/kvm/kvm.h"
#include "vmm/machine/memory_slots.h"
#include "vmm/machine/vcpu_pool.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/sys/error.h"
#include "vmm/sys/event_loop.h"
#include "vmm/virtio/block/block_device.h"
#include "vmm/virtio/net/net_device.h"
#include "vmm/virtio/net/tap.h"
#include "vmm/virtio/rng/rng_device.h"

namespace vim::vmm::machine {
namespace {

using config::UsageError;
namespace layout = boot::layout;

void write_all(int fd, std::span<const std::uint8_t> bytes) {
    while (!bytes.empty()) {
        ssize_t written = ::write(fd, bytes.data(), bytes.size());
        if (written < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;  // the console's reader is gone; the guest keeps running
        }
        bytes = bytes.subspan(static_cast<std::size_t>(written));
    }
}

// The signals that stop the VM in an orderly way.
sigset_t stop_signal_set() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    return signals;
}

sys::Fd open_serial_file(const std::string& path) {
    sys::Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) {
        throw UsageError("--serial file=" + path + ": " + std::strerror(errno));
    }
    return fd;
}

// Opens and locks every disk, so that a bad one stops the vmm before anything
// starts; says once if the disks cannot use io_uring here.
std::vector<virtio::block::DiskImage> open_disks(const std::vector<config::DiskConfig>& disks) {
    std::vector<virtio::block::DiskImage> images;
    for (const config::DiskConfig& disk : disks) {
        try {
            images.push_back(virtio::block::DiskImage::open(disk.path, {disk.readonly, disk.direct}));
        } catch (const std::runtime_error& error) {
            throw UsageError(error.what());
        }
    }
    if (!images.empty()) {
        auto probe = virtio::block::make_engine(images.front().fd(), 1);
        if (!probe.fallback_reason.empty()) {
            std::fprintf(stderr, "warning: disks use synchronous I/O: %s\n", probe.fallback_reason.c_str());
        }
    }
    return images;
}

// Opens (or creates) every tap and sets its link up, so that a bad one stops
// the vmm before anything starts. A tap created here goes away with its device.
std::vector<std::shared_ptr<virtio::net::NetDevice>> open_nics(const std::vector<config::NetConfig>& nets) {
    std::vector<std::shared_ptr<virtio::net::NetDevice>> nics;
    for (const config::NetConfig& net : nets) {
        std::unique_ptr<virtio::net::Tap> tap;
        try {
            tap = virtio::net::Tap::open(net.tap, {net.bridge, net.mtu});
        } catch (const std::exception& error) {
            throw UsageError(error.what());  // it names the tap (or its bridge) and the step
        }
        // No VM name to derive it from: the tap's name is unique on the host and
        // as stable as the VM's configuration.
        const virtio::net::MacAddress mac = net.mac.value_or(virtio::net::stable_mac(net.tap));
        nics.push_back(std::make_shared<virtio::net::NetDevice>(std::move(tap), mac, net.mtu));
    }
    return nics;
}

}  // namespace

// Declared in the order things are built; destroyed in reverse, so the
// control server goes first (its commands use everything else) and the event
// loop outlives every source registered on it.
struct Machine::Parts {
    config::VmConfig config;
    kvm::Kvm kvm;
    kvm::KvmVm vm;
    memory::GuestMemory memory;
    sys::Fd serial_output;  // -1: stdout or nowhere
    std::atomic<std::uint64_t> serial_output_bytes = 0;
    sys::EventLoop loop;
    Lifecycle lifecycle;
    DeviceManager devices{vm, memory, loop};
    std::unique_ptr<VcpuPool> vcpus;
    std::unique_ptr<ConsoleInput> console;
    std::unique_ptr<ControlCommands> commands;
    std::optional<control::ControlServer> control;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

    Parts(const config::VmConfig& config, kvm::Kvm kvm, kvm::KvmVm vm, memory::GuestMemory memory)
        : config(config), kvm(std::move(kvm)), vm(std::move(vm)), memory(std::move(memory)) {}
};

namespace {

void add_devices(Machine::Parts& parts) {
    int output_fd = -1;
    if (parts.config.serial.kind == config::SerialConfig::Kind::Stdio) {
        output_fd = STDOUT_FILENO;
    } else if (parts.config.serial.kind == config::SerialConfig::Kind::File) {
        output_fd = parts.serial_output.get();
    }
    parts.devices.add_legacy_devices({
        .serial_output =
            [output_fd, &bytes = parts.serial_output_bytes](std::span<const std::uint8_t> output) {
                bytes.fetch_add(output.size(), std::memory_order_relaxed);
                if (output_fd >= 0) {
                    write_all(output_fd, output);
                }
            },
        .serial_input_drained =
            [&parts] {
                // Called by vCPUs, which run only while the console exists.
                if (parts.console) {
                    parts.console->notify_drained();
                }
            },
        .guest_reset =
            [&parts] {
                parts.lifecycle.end({0, "the guest reset the machine"});
            },
        .guest_power_off =
            [&parts] {
                parts.lifecycle.end({0, "the guest powered off"});
            },
    });
}

std::vector<kvm::Vcpu> create_vcpus(Machine::Parts& parts, const boot::BootInfo& boot_info) {
    auto supported = parts.kvm.supported_cpuid();
    auto msrs = cpu::boot_msrs();
    std::vector<kvm::Vcpu> vcpus;
    for (std::uint32_t index = 0; index < parts.config.cpus; ++index) {
        kvm::Vcpu vcpu = parts.vm.create_vcpu(index);
        vcpu.set_cpuid(cpu::cpuid_for_vcpu(supported, index, parts.config.cpus));
        vcpu.set_msrs(msrs);
        auto lapic = vcpu.lapic();
        cpu::configure_lint(lapic);
        vcpu.set_lapic(lapic);
        vcpu.set_fpu(boot::boot_fpu_state());
        // Application processors wait in the in-kernel LAPIC for INIT/SIPI.
        if (index == 0) {
            vcpu.set_special_registers(boot::boot_special_registers(vcpu.special_registers()));
            vcpu.set_registers(boot::boot_registers(boot_info.entry_point, boot_info.boot_params_address));
        }
        vcpus.push_back(std::move(vcpu));
    }
    return vcpus;
}

std::unique_ptr<VcpuPool> create_vcpu_pool(Machine::Parts& parts, const boot::BootInfo& boot_info) {
    Lifecycle& lifecycle = parts.lifecycle;
    return std::make_unique<VcpuPool>(
        create_vcpus(parts, boot_info), parts.devices.exit_handler(),
        [&lifecycle](std::uint32_t, kvm::VcpuExit exit) {
            switch (exit) {
            case kvm::VcpuExit::TripleFault:
            case kvm::VcpuExit::SystemReset:
                lifecycle.end({0, "the guest reset the machine"});
                return false;
            case kvm::VcpuExit::SystemShutdown:
                lifecycle.end({0, "the guest powered off"});
                return false;
            default:
                return true;
            }
        },
        [&lifecycle](std::uint32_t vcpu, const std::exception& error) {
            lifecycle.end({1, "vCPU " + std::to_string(vcpu) + ": " + error.what()});
        });
}

}  // namespace

std::unique_ptr<Machine> Machine::create(const config::VmConfig& config) {
    // SIGTERM and SIGINT are taken by run()'s signalfd. They are blocked
    // before any thread exists, so every thread inherits the mask and none
    // can be killed by them before run() is ready.
    const sigset_t stop_signals = stop_signal_set();
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    // Everything the user can get wrong is checked before a vCPU exists: the
    // flags here, the kernel, initrd and command line by the loader (it checks
    // all of them before it writes to guest memory).
    auto kvm = kvm::Kvm::open();
    config::validate(config, config::host_limits(static_cast<std::uint32_t>(kvm.max_vcpus())));
    if (config.cpus > cpu::kMaxVcpus || config.cpus > acpi::kMaxVcpus) {
        throw UsageError("--cpus: " + std::to_string(config.cpus) + " is more than this vmm supports (" +
                         std::to_string(std::min(cpu::kMaxVcpus, acpi::kMaxVcpus)) + ")");
    }
    sys::Fd serial_output;
    if (config.serial.kind == config::SerialConfig::Kind::File) {
        serial_output = open_serial_file(config.serial.path);
    }
    auto disks = open_disks(config.disks);
    auto nics = open_nics(config.nets);

    auto vm = kvm.create_vm();
    auto ram = boot::ram_layout(config.memory_bytes);
    auto memory = memory::GuestMemory::allocate(ram);
    auto parts = std::make_unique<Parts>(config, std::move(kvm), std::move(vm), std::move(memory));
    parts->serial_output = std::move(serial_output);

    boot::BootInfo boot_info;
    try {
        boot_info = boot::load_linux(parts->memory, config.kernel, config.initrd, config.cmdline);
    } catch (const std::invalid_argument& error) {
        throw UsageError(error.what());
    }

    parts->vm.set_tss_address(layout::kKvmTssAddress);
    parts->vm.set_identity_map_address(layout::kKvmIdentityMapAddress);
    parts->vm.create_irqchip();
    parts->vm.create_pit();
    register_guest_memory(parts->vm, parts->memory, /*log_dirty=*/false);
    add_devices(*parts);
    // Disks first, so the guest names them vda, vdb, ... in --disk order.
    // A request queue per vCPU (see BlockDevice).
    const unsigned queue_count = std::min(config.cpus, virtio::block::BlockDevice::kMaxQueues);
    for (std::size_t index = 0; index < disks.size(); ++index) {
        std::string serial = virtio::block::BlockDevice::serial_from_path(disks[index].path());
        parts->devices.add_virtio_device("virtio-blk" + std::to_string(index),
                                         std::make_shared<virtio::block::BlockDevice>(
                                             std::move(disks[index]), std::move(serial), queue_count));
    }
    // Then NICs, which the guest numbers in --net order.
    for (std::size_t index = 0; index < nics.size(); ++index) {
        parts->devices.add_virtio_device("virtio-net" + std::to_string(index), std::move(nics[index]));
    }
    parts->devices.add_virtio_device("virtio-rng0", std::make_shared<virtio::RngDevice>());
    parts->devices.add_balloon(config.balloon);
    parts->devices.write_firmware_tables(config.cpus);
    parts->vcpus = create_vcpu_pool(*parts, boot_info);
    Parts* raw = parts.get();
    parts->lifecycle.on_end([raw] {
        raw->vcpus->request_stop();
        raw->loop.stop();
    });

    // Last: a client polling for the socket (a host agent starting a VM does)
    // may send a command the moment it appears, and every command needs the
    // whole machine.
    parts->commands = std::make_unique<ControlCommands>(RunningMachine{
        parts->config, parts->lifecycle, *parts->vcpus, parts->devices, parts->loop,
        parts->serial_output_bytes, memory::GuestMemory::huge_pages_possible(), parts->started});
    if (!config.api_socket.empty()) {
        try {
            parts->control.emplace(parts->loop, config.api_socket, parts->commands->table());
        } catch (const std::exception& error) {
            throw UsageError(std::string("--api-socket: ") + error.what());
        }
    }
    return std::unique_ptr<Machine>(new Machine(std::move(parts)));
}

Machine::Machine(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

Machine::~Machine() = default;

int Machine::run() {
    Parts& parts = *parts_;
    // SIGTERM and SIGINT (blocked since create()) stop the VM in an orderly way.
    const sigset_t stop_signals = stop_signal_set();
    sys::Fd signals(::signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signals) {
        sys::throw_errno("signalfd");
    }
    parts.loop.add(signals.get(), EPOLLIN, [&](std::uint32_t) {
        signalfd_siginfo info;
        if (::read(signals.get(), &info, sizeof info) == sizeof info) {
            parts.lifecycle.end(
                {0, std::string("stopped by ") + sigabbrev_np(static_cast<int>(info.ssi_signo))});
        }
    });
    if (parts.config.serial.kind == config::SerialConfig::Kind::Stdio) {
        parts.console = std::make_unique<ConsoleInput>(parts.loop, STDIN_FILENO, parts.devices.serial(), [&] {
            parts.lifecycle.end({0, "stopped from the console"});
        });
    }

    parts.vcpus->start();
    // The loop runs on this thread until something ends the VM.
    parts.loop.run();
    parts.vcpus->join();
    if (parts.control) {
        parts.control->stop();
    }
    parts.console.reset();
    parts.loop.remove(signals.get());

    const Outcome outcome = parts.lifecycle.outcome();
    if (outcome.exit_code != 0) {
        std::fprintf(stderr, "error: %s\n", outcome.message.c_str());
    }
    return outcome.exit_code;
}

}  // namespace vim::vmm::machine
