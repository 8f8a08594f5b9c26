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
#include "kvm_state.h"
#include "lifecycle.h"
#include "machine_state.h"
#include "migration/destination.h"
#include "migration/snapshot.h"
#include "migration/stream.h"
#include "migration/transport.h"
#include "migration_commands.h"
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
// starts; says once if the disks cannot use io_uring here. A VM arriving by
// migration takes the locks once the source has let them go.
std::vector<virtio::block::DiskImage> open_disks(const config::VmConfig& config) {
    const bool defer_lock = config.start.kind == config::StartFrom::Kind::Incoming;
    std::vector<virtio::block::DiskImage> images;
    for (const config::DiskConfig& disk : config.disks) {
        try {
            images.push_back(virtio::block::DiskImage::open(
                disk.path, {.read_only = disk.readonly, .direct = disk.direct, .defer_lock = defer_lock}));
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
// Each NIC's MAC is written into `nets`, so that it travels with a migrating
// VM: the guest keeps its address on a tap of another name.
std::vector<std::shared_ptr<virtio::net::NetDevice>> open_nics(std::vector<config::NetConfig>& nets) {
    std::vector<std::shared_ptr<virtio::net::NetDevice>> nics;
    for (config::NetConfig& net : nets) {
        std::unique_ptr<virtio::net::Tap> tap;
        try {
            tap = virtio::net::Tap::open(net.tap, {net.bridge, net.mtu});
        } catch (const std::exception& error) {
            throw UsageError(error.what());  // it names the tap (or its bridge) and the step
        }
        // No VM name to derive it from: the tap's name is unique on the host and
        // as stable as the VM's configuration.
        const virtio::net::MacAddress mac = net.mac.value_or(virtio::net::stable_mac(net.tap));
        net.mac = mac;
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
    std::vector<std::uint32_t> msr_indexes;  // the MSRs a snapshot or migration saves
    sys::Fd serial_output;                   // -1: stdout or nowhere
    std::atomic<std::uint64_t> serial_output_bytes = 0;
    sys::EventLoop loop;
    Lifecycle lifecycle;
    DeviceManager devices{vm, memory, loop};
    std::vector<std::shared_ptr<virtio::block::BlockDevice>> disks;
    std::unique_ptr<VcpuPool> vcpus;
    std::unique_ptr<ConsoleInput> console;
    // A migration arriving: the source is told once the guest runs.
    std::unique_ptr<migration::Destination> incoming;
    std::unique_ptr<ControlCommands> commands;
    std::unique_ptr<MigrationCommands> migration_commands;
    std::optional<control::ControlServer> control;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

    Parts(const config::VmConfig& config, kvm::Kvm kvm, kvm::KvmVm vm, memory::GuestMemory memory)
        : config(config), kvm(std::move(kvm)), vm(std::move(vm)), memory(std::move(memory)) {}

    MachineParts state_parts() { return {*vcpus, vm, devices}; }
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

// The vCPUs, in the state a boot starts from: `boot_info` says where the
// kernel is entered. A restored machine overwrites that state.
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

// What the vmm opens on the host for a VM of `config`'s shape: each checked
// before anything starts, so a bad one stops the vmm with a usage error.
struct HostResources {
    sys::Fd serial_output;
    std::vector<virtio::block::DiskImage> disks;
    std::vector<std::shared_ptr<virtio::net::NetDevice>> nics;
};

HostResources open_host_resources(config::VmConfig& config, const kvm::Kvm& kvm) {
    config::validate(config, config::host_limits(static_cast<std::uint32_t>(kvm.max_vcpus())));
    if (config.cpus > cpu::kMaxVcpus || config.cpus > acpi::kMaxVcpus) {
        throw UsageError("--cpus: " + std::to_string(config.cpus) + " is more than this vmm supports (" +
                         std::to_string(std::min(cpu::kMaxVcpus, acpi::kMaxVcpus)) + ")");
    }
    HostResources resources;
    if (config.serial.kind == config::SerialConfig::Kind::File) {
        resources.serial_output = open_serial_file(config.serial.path);
    }
    resources.disks = open_disks(config);
    resources.nics = open_nics(config.nets);
    return resources;
}

// Everything but guest RAM's contents: the VM, its devices and vCPUs. A boot
// (`boot_info`) also writes the firmware tables; a restored machine has them
// in the RAM it brings.
void assemble(Machine::Parts& parts, HostResources resources, const boot::BootInfo* boot_info) {
    parts.serial_output = std::move(resources.serial_output);
    parts.msr_indexes = parts.kvm.msr_index_list();
    parts.vm.set_tss_address(layout::kKvmTssAddress);
    parts.vm.set_identity_map_address(layout::kKvmIdentityMapAddress);
    parts.vm.create_irqchip();
    parts.vm.create_pit();
    register_guest_memory(parts.vm, parts.memory, /*log_dirty=*/false);
    add_devices(parts);
    // Disks first, so the guest names them vda, vdb, ... in --disk order.
    // A request queue per vCPU (see BlockDevice).
    const unsigned queue_count = std::min(parts.config.cpus, virtio::block::BlockDevice::kMaxQueues);
    for (std::size_t index = 0; index < resources.disks.size(); ++index) {
        std::string serial = virtio::block::BlockDevice::serial_from_path(resources.disks[index].path());
        auto disk = std::make_shared<virtio::block::BlockDevice>(std::move(resources.disks[index]),
                                                                 std::move(serial), queue_count);
        parts.disks.push_back(disk);
        parts.devices.add_virtio_device("virtio-blk" + std::to_string(index), std::move(disk));
    }
    // Then NICs, which the guest numbers in --net order.
    for (std::size_t index = 0; index < resources.nics.size(); ++index) {
        parts.devices.add_virtio_device("virtio-net" + std::to_string(index),
                                        std::move(resources.nics[index]));
    }
    parts.devices.add_virtio_device("virtio-rng0", std::make_shared<virtio::RngDevice>());
    parts.devices.add_balloon(parts.config.balloon);
    if (boot_info != nullptr) {
        parts.devices.write_firmware_tables(parts.config.cpus);
    }
    parts.vcpus = create_vcpu_pool(parts, boot_info != nullptr ? *boot_info : boot::BootInfo{});
    Machine::Parts* raw = &parts;
    parts.lifecycle.on_end([raw] {
        raw->vcpus->request_stop();
        raw->loop.stop();
    });
}

// Last: a client polling for the socket (a host agent starting a VM does)
// may send a command the moment it appears, and every command needs the
// whole machine.
void serve(Machine::Parts& parts) {
    parts.commands = std::make_unique<ControlCommands>(
        RunningMachine{parts.config, parts.lifecycle, *parts.vcpus, parts.devices, parts.loop,
                       parts.serial_output_bytes, memory::GuestMemory::huge_pages_possible(), parts.started});
    parts.migration_commands = std::make_unique<MigrationCommands>(
        MovableMachine{parts.config, parts.lifecycle, *parts.vcpus, parts.vm, parts.memory, parts.devices,
                       parts.loop, parts.msr_indexes, [disks = parts.disks] {
                           for (const auto& disk : disks) {
                               disk->disk().unlock();
                           }
                       }});
    if (parts.config.api_socket.empty()) {
        return;
    }
    control::CommandTable table = parts.commands->table();
    table.merge(parts.migration_commands->table());
    try {
        parts.control.emplace(parts.loop, parts.config.api_socket, std::move(table));
    } catch (const std::exception& error) {
        throw UsageError(std::string("--api-socket: ") + error.what());
    }
}

// The layout the VM's shape gives must be the one its RAM came with.
void require_layout(const std::vector<memory::RegionLayout>& arrived, const config::VmConfig& config,
                    const std::string& from) {
    const auto expected = boot::ram_layout(config.memory_bytes);
    const bool same = std::equal(arrived.begin(), arrived.end(), expected.begin(), expected.end(),
                                 [](const memory::RegionLayout& a, const memory::RegionLayout& b) {
                                     return a.start == b.start && a.size == b.size;
                                 });
    if (!same) {
        throw std::runtime_error(from + ": the guest RAM's layout does not match its " +
                                 std::to_string(config.memory_bytes >> 20) + " MiB");
    }
}

std::unique_ptr<Machine::Parts> boot_machine(config::VmConfig config, kvm::Kvm kvm) {
    auto resources = open_host_resources(config, kvm);
    auto vm = kvm.create_vm();
    auto memory = memory::GuestMemory::allocate(boot::ram_layout(config.memory_bytes));
    auto parts = std::make_unique<Machine::Parts>(config, std::move(kvm), std::move(vm), std::move(memory));
    // Everything the user can get wrong is checked before a vCPU exists: the
    // flags by open_host_resources(), the kernel, initrd and command line by
    // the loader (it checks all of them before it writes to guest memory).
    boot::BootInfo boot_info;
    try {
        boot_info = boot::load_linux(parts->memory, config.kernel, config.initrd, config.cmdline);
    } catch (const std::invalid_argument& error) {
        throw UsageError(error.what());
    }
    assemble(*parts, std::move(resources), &boot_info);
    return parts;
}

// The snapshot's RAM is mapped copy-on-write, not read: the guest runs at
// once and faults in the pages it touches.
std::unique_ptr<Machine::Parts> restore_machine(config::VmConfig config, kvm::Kvm kvm) {
    const std::string& directory = config.start.where;
    migration::Snapshot snapshot;
    try {
        snapshot = migration::read_snapshot(directory);
    } catch (const std::exception& error) {
        throw UsageError(std::string("--restore ") + directory + ": " + error.what());
    }
    config::apply_shape(snapshot.config, config);
    auto resources = open_host_resources(config, kvm);
    require_layout(snapshot.memory_layout, config, "--restore " + directory);
    auto vm = kvm.create_vm();
    auto memory = memory::GuestMemory::map_file(snapshot.memory_layout, snapshot.memory.get());
    auto parts = std::make_unique<Machine::Parts>(config, std::move(kvm), std::move(vm), std::move(memory));
    assemble(*parts, std::move(resources), nullptr);
    try {
        restore_machine_state(parts->state_parts(), snapshot.state);
    } catch (const state::StateError& error) {
        throw UsageError("--restore " + directory + ": " + error.what());
    }
    return parts;
}

// Receives the VM on the connection from its source and holds it, restored,
// until the source hands over. Any failure is told to the source, whose guest
// then runs on, and ends this vmm (exit 1).
std::unique_ptr<Machine::Parts> receive_machine(config::VmConfig config, kvm::Kvm kvm) {
    sys::Fd listener;
    try {
        listener = migration::listen_tcp(config.start.where);
    } catch (const std::exception& error) {
        throw UsageError(std::string("--incoming: ") + error.what());
    }
    // Port 0 takes any free port: this line says which.
    std::fprintf(stderr, "vmm: waiting for a migration on port %d\n", migration::local_port(listener));
    auto incoming = std::make_unique<migration::Destination>(migration::accept_one(listener));
    listener.reset();
    try {
        auto arrived = incoming->receive_config();
        config::apply_shape(arrived.config, config);
        auto resources = open_host_resources(config, kvm);
        require_layout(arrived.memory_layout, config, "the migration stream");
        auto vm = kvm.create_vm();
        auto memory = memory::GuestMemory::allocate(arrived.memory_layout);
        auto parts =
            std::make_unique<Machine::Parts>(config, std::move(kvm), std::move(vm), std::move(memory));
        assemble(*parts, std::move(resources), nullptr);
        const auto state = incoming->receive_memory_and_state(parts->memory);
        restore_machine_state(parts->state_parts(), state);
        incoming->ready();
        // The source has let the disks go, or is about to.
        for (const auto& disk : parts->disks) {
            disk->disk().lock(/*wait=*/true);
        }
        parts->incoming = std::move(incoming);
        return parts;
    } catch (const std::exception& error) {
        incoming->report_error(error.what());
        throw;
    }
}

}  // namespace

std::unique_ptr<Machine> Machine::create(const config::VmConfig& config) {
    // SIGTERM and SIGINT are taken by run()'s signalfd. They are blocked
    // before any thread exists, so every thread inherits the mask and none
    // can be killed by them before run() is ready.
    const sigset_t stop_signals = stop_signal_set();
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    auto kvm = kvm::Kvm::open();
    std::unique_ptr<Parts> parts;
    switch (config.start.kind) {
    case config::StartFrom::Kind::Boot:
        parts = boot_machine(config, std::move(kvm));
        break;
    case config::StartFrom::Kind::Restore:
        parts = restore_machine(config, std::move(kvm));
        break;
    case config::StartFrom::Kind::Incoming:
        parts = receive_machine(config, std::move(kvm));
        break;
    }
    serve(*parts);
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
    if (parts.incoming) {
        try {
            parts.incoming->running();
        } catch (const std::exception&) {
            // Only the source's downtime figure needed it: the guest is ours now.
        }
        parts.incoming.reset();
    }
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
