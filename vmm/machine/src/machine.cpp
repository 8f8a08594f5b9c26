#include "vmm/machine/machine.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "console.h"
#include "vmm/acpi/mp_table.h"
#include "vmm/acpi/tables.h"
#include "vmm/boot/layout.h"
#include "vmm/boot/linux_loader.h"
#include "vmm/boot/long_mode.h"
#include "vmm/boot/memory_map.h"
#include "vmm/control/control_server.h"
#include "vmm/cpu/cpuid.h"
#include "vmm/cpu/lapic.h"
#include "vmm/cpu/msrs.h"
#include "vmm/devices/acpi_pm.h"
#include "vmm/devices/cmos.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/pio_bus.h"
#include "vmm/devices/serial.h"
#include "vmm/kvm/kvm.h"
#include "vmm/machine/memory_slots.h"
#include "vmm/machine/vcpu_pool.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/sys/error.h"

namespace vmm::machine {
namespace {

using json = nlohmann::json;
using config::UsageError;
namespace layout = boot::layout;

// A device's interrupt wire into the in-kernel PIC and IOAPIC.
class KvmInterruptLine final : public devices::InterruptLine {
public:
    KvmInterruptLine(kvm::Vm& vm, std::uint32_t irq) : vm_(vm), irq_(irq) {}
    void set_level(bool high) override { vm_.set_irq_line(irq_, high); }

private:
    kvm::Vm& vm_;
    std::uint32_t irq_;
};

// Routes port I/O to the bus. No device is memory-mapped yet (the APICs are
// in the kernel), so MMIO is only counted: reads float high, writes vanish.
class BusExitHandler final : public kvm::ExitHandler {
public:
    explicit BusExitHandler(devices::PioBus& bus) : bus_(bus) {}
    void pio_read(std::uint16_t port, std::span<std::uint8_t> data) override { bus_.read(port, data); }
    void pio_write(std::uint16_t port, std::span<const std::uint8_t> data) override { bus_.write(port, data); }
    void mmio_read(std::uint64_t, std::span<std::uint8_t> data) override {
        std::fill(data.begin(), data.end(), 0xff);
        ++unhandled_mmio;
    }
    void mmio_write(std::uint64_t, std::span<const std::uint8_t>) override { ++unhandled_mmio; }

    std::atomic<std::uint64_t> unhandled_mmio = 0;

private:
    devices::PioBus& bus_;
};

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

json exit_counts_json(const ExitCounts& counts) {
    auto count = [&](kvm::VcpuExit exit) { return counts.by_kind[static_cast<std::size_t>(exit)]; };
    return {{"total", counts.total()},
            {"port_io", count(kvm::VcpuExit::PortIo)},
            {"mmio", count(kvm::VcpuExit::Mmio)},
            {"halt", count(kvm::VcpuExit::Halt)},
            {"interrupted", count(kvm::VcpuExit::Interrupted)}};
}

std::uint64_t resident_bytes() {
    std::ifstream statm("/proc/self/statm");
    std::uint64_t size = 0, resident = 0;
    statm >> size >> resident;
    return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

// The signals that stop the VM in an orderly way.
sigset_t stop_signal_set() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    return signals;
}

// The way the VM ended; the first one reported wins.
struct Outcome {
    int exit_code;
    std::string message;  // printed as "error: ..." when exit_code != 0
};

}  // namespace

struct Machine::Parts {
    config::VmConfig config;
    kvm::Kvm kvm;
    kvm::KvmVm vm;
    memory::GuestMemory memory;
    sys::Fd serial_output;  // -1: stdout or nowhere

    std::unique_ptr<KvmInterruptLine> serial_irq, keyboard_irq, aux_irq, sci;
    std::shared_ptr<devices::Serial> serial;
    std::shared_ptr<devices::I8042> i8042;
    std::shared_ptr<devices::AcpiPm1EventBlock> pm_events;
    devices::PioBus bus;
    std::unique_ptr<BusExitHandler> exit_handler;
    std::unique_ptr<VcpuPool> vcpus;
    std::unique_ptr<ConsoleInput> console;
    std::atomic<std::uint64_t> serial_bytes = 0;

    std::mutex mutex;
    std::condition_variable ended;
    std::optional<Outcome> outcome;
    bool shutting_down = false;
    std::thread shutdown_timer;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    // Last, so it is destroyed first: its commands use everything above.
    std::optional<control::ControlServer> control;

    Parts(const config::VmConfig& config, kvm::Kvm kvm, kvm::KvmVm vm, memory::GuestMemory memory)
        : config(config), kvm(std::move(kvm)), vm(std::move(vm)), memory(std::move(memory)) {}

    void end(Outcome result) {
        {
            std::lock_guard lock(mutex);
            if (outcome) {
                return;
            }
            outcome = std::move(result);
        }
        ended.notify_all();
        if (vcpus) {
            vcpus->request_stop();
        }
    }

    bool has_ended() {
        std::lock_guard lock(mutex);
        return outcome.has_value();
    }

    json status() {
        std::lock_guard lock(mutex);
        const char* state = outcome ? "stopping" : shutting_down ? "shutting-down"
                                                 : vcpus->paused()    ? "paused"
                                                                      : "running";
        ExitCounts total;
        for (const ExitCounts& counts : vcpus->exit_counts()) {
            for (std::size_t kind = 0; kind < ExitCounts::kKinds; ++kind) {
                total.by_kind[kind] += counts.by_kind[kind];
            }
        }
        auto uptime = std::chrono::steady_clock::now() - started;
        return {{"state", state},
                {"vcpus", config.cpus},
                {"memory_bytes", config.memory_bytes},
                {"uptime_ms", std::chrono::duration_cast<std::chrono::milliseconds>(uptime).count()},
                {"exits", exit_counts_json(total)}};
    }

    json stats() {
        json per_vcpu = json::array();
        auto counts = vcpus->exit_counts();
        for (std::size_t i = 0; i < counts.size(); ++i) {
            per_vcpu.push_back({{"id", i}, {"exits", exit_counts_json(counts[i])}});
        }
        return {{"vcpus", per_vcpu},
                {"unhandled_port_reads", bus.unhandled_reads()},
                {"unhandled_port_writes", bus.unhandled_writes()},
                {"unhandled_mmio", exit_handler->unhandled_mmio.load()},
                {"serial_output_bytes", serial_bytes.load()},
                {"resident_bytes", resident_bytes()}};
    }

    // Asks the guest to power off (Ctrl-Alt-Del, which init turns into an
    // orderly shutdown), and stops the VM if it has not gone by `timeout`.
    json shutdown(std::chrono::milliseconds timeout) {
        {
            std::lock_guard lock(mutex);
            if (outcome || shutting_down) {
                return {{"state", "shutting-down"}};
            }
            shutting_down = true;
        }
        vcpus->resume();  // a paused guest cannot shut down
        bool typed = i8042->request_ctrl_alt_del();
        pm_events->press_power_button();
        shutdown_timer = std::thread([this, timeout] {
            std::unique_lock lock(mutex);
            if (!ended.wait_for(lock, timeout, [&] { return outcome.has_value(); })) {
                lock.unlock();
                end({0, "the guest did not shut down in time; stopped"});
            }
        });
        return {{"state", "shutting-down"}, {"ctrl_alt_del_delivered", typed}};
    }

    control::CommandTable commands() {
        return {
            {"status", [this](const json&) { return status(); }},
            {"stats", [this](const json&) { return stats(); }},
            {"pause",
             [this](const json&) {
                 if (has_ended()) {
                     throw control::CommandError("the VM is stopping");
                 }
                 vcpus->pause();
                 return json{{"state", "paused"}};
             }},
            {"resume",
             [this](const json&) {
                 vcpus->resume();
                 return json{{"state", "running"}};
             }},
            {"shutdown",
             [this](const json& request) {
                 std::int64_t timeout_ms = 30000;
                 if (auto field = request.find("timeout_ms"); field != request.end()) {
                     if (!field->is_number_integer() || field->get<std::int64_t>() < 0) {
                         throw control::CommandError("timeout_ms must be a non-negative integer");
                     }
                     timeout_ms = field->get<std::int64_t>();
                 }
                 return shutdown(std::chrono::milliseconds(timeout_ms));
             }},
        };
    }
};

namespace {

sys::Fd open_serial_file(const std::string& path) {
    sys::Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) {
        throw UsageError("--serial file=" + path + ": " + std::strerror(errno));
    }
    return fd;
}

void add_devices(Machine::Parts& parts) {
    auto& vm = parts.vm;
    parts.serial_irq = std::make_unique<KvmInterruptLine>(vm, layout::kSerialIrq);
    parts.keyboard_irq = std::make_unique<KvmInterruptLine>(vm, layout::kI8042KeyboardIrq);
    parts.aux_irq = std::make_unique<KvmInterruptLine>(vm, layout::kI8042AuxIrq);
    parts.sci = std::make_unique<KvmInterruptLine>(vm, layout::kAcpiSciIrq);

    int output_fd = -1;
    if (parts.config.serial.kind == config::SerialConfig::Kind::Stdio) {
        output_fd = STDOUT_FILENO;
    } else if (parts.config.serial.kind == config::SerialConfig::Kind::File) {
        output_fd = parts.serial_output.get();
    }
    auto* serial_bytes = &parts.serial_bytes;
    parts.serial = std::make_shared<devices::Serial>(
        *parts.serial_irq,
        [output_fd, serial_bytes](std::span<const std::uint8_t> bytes) {
            serial_bytes->fetch_add(bytes.size(), std::memory_order_relaxed);
            if (output_fd >= 0) {
                write_all(output_fd, bytes);
            }
        },
        [&parts] {
            if (parts.console) {
                parts.console->notify_drained();
            }
        });
    parts.i8042 = std::make_shared<devices::I8042>(*parts.keyboard_irq, *parts.aux_irq,
                                                   [&parts] { parts.end({0, "the guest reset the machine"}); });
    parts.pm_events = std::make_shared<devices::AcpiPm1EventBlock>(*parts.sci);
    auto pm_control = std::make_shared<devices::AcpiPm1ControlBlock>(
        layout::kAcpiS5SleepType, [&parts] { parts.end({0, "the guest powered off"}); });

    std::uint64_t below_4g = 0, above_4g = 0;
    for (const memory::Region& region : parts.memory.regions()) {
        (region.start < layout::kMmioHoleEnd ? below_4g : above_4g) += region.size;
    }
    auto cmos = std::make_shared<devices::Cmos>(devices::Cmos::MemorySize{below_4g, above_4g});

    parts.bus.add_device("serial", layout::kSerialPort, devices::Serial::kPortSpan, parts.serial);
    parts.bus.add_device("i8042", layout::kI8042DataPort, devices::I8042::kPortSpan, parts.i8042);
    parts.bus.add_device("cmos", layout::kCmosPort, devices::Cmos::kPortSpan, cmos);
    parts.bus.add_device("acpi-pm1-event", layout::kAcpiPm1EventPort, devices::AcpiPm1EventBlock::kPortSpan,
                         parts.pm_events);
    parts.bus.add_device("acpi-pm1-control", layout::kAcpiPm1ControlPort,
                         devices::AcpiPm1ControlBlock::kPortSpan, pm_control);
    parts.exit_handler = std::make_unique<BusExitHandler>(parts.bus);
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

    if (!config.api_socket.empty()) {
        try {
            parts->control.emplace(config.api_socket, parts->commands());
        } catch (const std::exception& error) {
            throw UsageError(std::string("--api-socket: ") + error.what());
        }
    }

    parts->vm.set_tss_address(layout::kKvmTssAddress);
    parts->vm.set_identity_map_address(layout::kKvmIdentityMapAddress);
    parts->vm.create_irqchip();
    parts->vm.create_pit();
    register_guest_memory(parts->vm, parts->memory, /*log_dirty=*/false);
    acpi::write_acpi_tables(parts->memory, config.cpus);
    acpi::write_mp_table(parts->memory, config.cpus);
    add_devices(*parts);

    auto vcpus = create_vcpus(*parts, boot_info);
    Parts* raw = parts.get();
    parts->vcpus = std::make_unique<VcpuPool>(
        std::move(vcpus), *parts->exit_handler,
        [raw](std::uint32_t, kvm::VcpuExit exit) {
            switch (exit) {
                case kvm::VcpuExit::TripleFault:
                case kvm::VcpuExit::SystemReset:
                    raw->end({0, "the guest reset the machine"});
                    return false;
                case kvm::VcpuExit::SystemShutdown:
                    raw->end({0, "the guest powered off"});
                    return false;
                default:
                    return true;
            }
        },
        [raw](std::uint32_t vcpu, const std::exception& error) {
            raw->end({1, "vCPU " + std::to_string(vcpu) + ": " + error.what()});
        });
    return std::unique_ptr<Machine>(new Machine(std::move(parts)));
}

Machine::Machine(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

Machine::~Machine() {
    if (parts_->shutdown_timer.joinable()) {
        parts_->end({0, "stopped"});
        parts_->shutdown_timer.join();
    }
}

int Machine::run() {
    Parts& parts = *parts_;
    // SIGTERM and SIGINT (blocked since create()) stop the VM in an orderly way.
    const sigset_t stop_signals = stop_signal_set();
    sys::Fd signals(::signalfd(-1, &stop_signals, SFD_CLOEXEC));
    if (!signals) {
        sys::throw_errno("signalfd");
    }
    std::thread signal_watch([&] {
        signalfd_siginfo info;
        if (::read(signals.get(), &info, sizeof info) == sizeof info) {
            parts.end({0, std::string("stopped by ") + sigabbrev_np(static_cast<int>(info.ssi_signo))});
        }
    });

    if (parts.config.serial.kind == config::SerialConfig::Kind::Stdio) {
        parts.console = std::make_unique<ConsoleInput>(STDIN_FILENO, *parts.serial,
                                                       [&] { parts.end({0, "stopped from the console"}); });
    }
    parts.vcpus->start();
    {
        std::unique_lock lock(parts.mutex);
        parts.ended.wait(lock, [&] { return parts.outcome.has_value(); });
    }
    parts.vcpus->join();
    if (parts.console) {
        parts.console->stop();
    }
    if (parts.control) {
        parts.control->stop();
    }
    // Wake the signal watcher if no signal came.
    pthread_kill(signal_watch.native_handle(), SIGTERM);
    signal_watch.join();
    if (parts.shutdown_timer.joinable()) {
        parts.shutdown_timer.join();
    }
    const Outcome& outcome = *parts.outcome;
    if (outcome.exit_code != 0) {
        std::fprintf(stderr, "error: %s\n", outcome.message.c_str());
    }
    return outcome.exit_code;
}

}  // namespace vmm::machine
