#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "controller/api/types.h"
#include "controller/hostd/config.h"

namespace vim::controller::hostd {

// Where one VM's files are.
struct VmPaths {
    std::filesystem::path folder;  // <state-dir>/vms/<id>
    std::filesystem::path api_socket;
    std::vector<std::filesystem::path> disks;  // root first, then the data disks in the spec's order
    std::vector<std::string> taps;             // one per NIC, in the spec's order

    std::filesystem::path record() const { return folder / "vm.json"; }
    std::filesystem::path console() const { return folder / "console.log"; }
    std::filesystem::path vmm_stdout() const { return folder / "vmm.out"; }
    std::filesystem::path vmm_stderr() const { return folder / "vmm.err"; }
};

// The paths of spec's VM on this host: disks under <disk-dir>/<id>/, the socket under the run folder, tap
// names derived from the id (interface names have 15 bytes: the id itself does not fit).
VmPaths vm_paths(const Config& config, const api::AgentVmSpec& spec);

// The vmm command line that boots spec's VM.
std::vector<std::string> boot_command(const Config& config, const api::AgentVmSpec& spec,
                                      const VmPaths& paths);
// The vmm command line that waits on migration_uri (tcp:ADDR:0: a port of the vmm's choosing) for spec's
// VM, whose shape arrives with the stream.
std::vector<std::string> incoming_command(const Config& config, const api::AgentVmSpec& spec,
                                          const VmPaths& paths, const std::string& migration_uri);

}  // namespace vim::controller::hostd
