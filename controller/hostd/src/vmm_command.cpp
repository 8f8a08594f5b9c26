#include "vmm_command.h"

#include <cstdint>
#include <cstdio>

namespace vim::controller::hostd {
namespace {

// FNV-1a: stable across builds and hosts, so a tap keeps its name when hostd is upgraded.
std::uint32_t stable_hash(const std::string& text) {
    std::uint32_t hash = 2166136261u;
    for (const char byte : text) {
        hash = (hash ^ static_cast<std::uint8_t>(byte)) * 16777619u;
    }
    return hash;
}

// The flags both ways of starting share: the VM's devices on this host.
void add_devices(std::vector<std::string>& argv, const api::AgentVmSpec& spec, const VmPaths& paths) {
    for (const auto& disk : paths.disks) {
        argv.insert(argv.end(), {"--disk", "path=" + disk.string()});
    }
    for (std::size_t i = 0; i < spec.nics.size(); ++i) {
        argv.insert(argv.end(), {"--net", "tap=" + paths.taps[i] + ",mac=" + spec.nics[i].mac});
    }
    argv.insert(argv.end(),
                {"--serial", "file=" + paths.console().string(), "--api-socket", paths.api_socket.string()});
}

}  // namespace

VmPaths vm_paths(const Config& config, const api::AgentVmSpec& spec) {
    VmPaths paths;
    paths.folder = config.state_dir / "vms" / spec.id;
    paths.api_socket = config.run_dir / (spec.id + ".sock");
    const auto disk_folder = config.disk_dir / spec.id;
    paths.disks.push_back(disk_folder / "root.raw");
    for (std::size_t i = 0; i < spec.disks.size(); ++i) {
        paths.disks.push_back(disk_folder / ("data" + std::to_string(i) + ".raw"));
    }
    char hash[9];
    std::snprintf(hash, sizeof hash, "%08x", stable_hash(spec.id));
    for (std::size_t i = 0; i < spec.nics.size(); ++i) {
        paths.taps.push_back("vt" + std::string(hash) + "n" + std::to_string(i));
    }
    return paths;
}

std::vector<std::string> boot_command(const Config& config, const api::AgentVmSpec& spec,
                                      const VmPaths& paths) {
    std::vector<std::string> argv = {config.vmm_binary.string(), "--kernel", config.guest_kernel.string()};
    if (!config.guest_initrd.empty()) {
        argv.insert(argv.end(), {"--initrd", config.guest_initrd.string()});
    }
    std::string cmdline = config.guest_cmdline;
    if (!spec.nics.empty()) {
        cmdline += " guest.ip=" + spec.nics.front().address;
    }
    argv.insert(argv.end(), {"--cmdline", cmdline, "--cpus", std::to_string(spec.vcpus), "--memory",
                             std::to_string(spec.memory_mib) + "M"});
    add_devices(argv, spec, paths);
    return argv;
}

std::vector<std::string> incoming_command(const Config& config, const api::AgentVmSpec& spec,
                                          const VmPaths& paths, const std::string& migration_uri) {
    std::vector<std::string> argv = {config.vmm_binary.string(), "--incoming", migration_uri};
    add_devices(argv, spec, paths);
    return argv;
}

}  // namespace vim::controller::hostd
