#include "control_commands.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <fstream>

#include "vmm/sys/error.h"

namespace vim::vmm::machine {
namespace {

using json = nlohmann::json;

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

}  // namespace

ControlCommands::~ControlCommands() {
    if (shutdown_timer_) {
        machine_.loop.remove(shutdown_timer_.get());
    }
}

json ControlCommands::status() {
    const char* state = machine_.lifecycle.state();
    if (std::string_view(state) == "running" && machine_.vcpus.paused()) {
        state = "paused";
    }
    ExitCounts total;
    for (const ExitCounts& counts : machine_.vcpus.exit_counts()) {
        for (std::size_t kind = 0; kind < ExitCounts::kKinds; ++kind) {
            total.by_kind[kind] += counts.by_kind[kind];
        }
    }
    auto uptime = std::chrono::steady_clock::now() - machine_.started;
    return {{"state", state},
            {"vcpus", machine_.config.cpus},
            {"memory_bytes", machine_.config.memory_bytes},
            {"memory_huge_pages_possible", machine_.huge_pages_possible},
            {"uptime_ms", std::chrono::duration_cast<std::chrono::milliseconds>(uptime).count()},
            {"exits", exit_counts_json(total)},
            {"devices", machine_.devices.stats()["devices"]}};
}

json ControlCommands::stats() {
    json per_vcpu = json::array();
    auto counts = machine_.vcpus.exit_counts();
    for (std::size_t i = 0; i < counts.size(); ++i) {
        per_vcpu.push_back({{"id", i}, {"exits", exit_counts_json(counts[i])}});
    }
    json result = machine_.devices.stats();
    result["vcpus"] = per_vcpu;
    result["serial_output_bytes"] = machine_.serial_output_bytes.load();
    result["resident_bytes"] = resident_bytes();
    // The guest answers in its own time: the next request shows its fresh
    // figures, and guest_stats_age_ms says how old the ones shown are.
    machine_.devices.balloon().request_guest_stats();
    return result;
}

json ControlCommands::balloon(const json& request) {
    const auto field = request.find("size_mib");
    if (field == request.end() || !field->is_number_integer() || field->get<std::int64_t>() < 0) {
        throw control::CommandError("size_mib must be a non-negative integer");
    }
    const auto size_mib = field->get<std::uint64_t>();
    const std::uint64_t memory_mib = machine_.config.memory_bytes >> 20;
    if (size_mib > memory_mib) {
        throw control::CommandError("size_mib " + std::to_string(size_mib) + " is more than the guest's " +
                                    std::to_string(memory_mib) + " MiB");
    }
    using virtio::balloon::BalloonDevice;
    BalloonDevice& device = machine_.devices.balloon();
    device.set_target(static_cast<std::uint32_t>(size_mib * BalloonDevice::kPagesPerMiB));
    return {{"target_mib", size_mib}, {"actual_mib", device.actual() / BalloonDevice::kPagesPerMiB}};
}

json ControlCommands::shutdown(std::chrono::milliseconds timeout) {
    if (machine_.lifecycle.migrated()) {
        machine_.lifecycle.end({0, "migrated"});  // no guest here to ask
        return {{"state", "stopping"}};
    }
    if (!machine_.lifecycle.begin_shutdown()) {
        return {{"state", "shutting-down"}};
    }
    machine_.vcpus.resume();  // a paused guest cannot shut down
    bool typed = machine_.devices.i8042().request_ctrl_alt_del();
    machine_.devices.power_button().press_power_button();

    shutdown_timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!shutdown_timer_) {
        sys::throw_errno("timerfd_create for the shutdown timeout");
    }
    itimerspec expiry{};
    // A zero it_value would disarm the timer: the shortest timeout is 1 ns.
    const auto nanoseconds = std::max<std::int64_t>(std::chrono::nanoseconds(timeout).count(), 1);
    expiry.it_value.tv_sec = nanoseconds / 1'000'000'000;
    expiry.it_value.tv_nsec = nanoseconds % 1'000'000'000;
    ::timerfd_settime(shutdown_timer_.get(), 0, &expiry, nullptr);
    machine_.loop.add(shutdown_timer_.get(), EPOLLIN, [this](std::uint32_t) {
        machine_.loop.remove(shutdown_timer_.get());
        shutdown_timer_.reset();
        machine_.lifecycle.end({0, "the guest did not shut down in time; stopped"});
    });
    return {{"state", "shutting-down"}, {"ctrl_alt_del_delivered", typed}};
}

control::CommandTable ControlCommands::table() {
    return {
        {"status", [this](const json&) { return status(); }},
        {"stats", [this](const json&) { return stats(); }},
        {"pause",
         [this](const json&) {
             if (machine_.lifecycle.has_ended()) {
                 throw control::CommandError("the VM is stopping");
             }
             machine_.vcpus.pause();
             return json{{"state", "paused"}};
         }},
        {"resume",
         [this](const json&) {
             machine_.vcpus.resume();
             return json{{"state", "running"}};
         }},
        {"balloon", [this](const json& request) { return balloon(request); }},
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

}  // namespace vim::vmm::machine
