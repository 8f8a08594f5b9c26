#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace vim::controller::hostd {

// What hostd keeps of a VM in <state-dir>/vms/<id>/vm.json, so that a restarted hostd finds its vmm
// again (pid and start time) and knows what it may delete.
struct VmRecord {
    std::string id;
    // The AgentVmSpec it was created from; null for a process adopted from outside, whose spec is unknown.
    nlohmann::json spec;
    pid_t pid = 0;  // 0: no vmm runs
    std::uint64_t start_time = 0;
    std::string api_socket;
    bool owns_disks = false;   // DELETE removes its disks (not when only prepared for a migration)
    std::string incoming_uri;  // while a vmm waits for an incoming migration
    std::vector<std::string> taps;

    nlohmann::json to_json() const;
    // Throws std::runtime_error naming the field when the record is not one.
    static VmRecord from_json(const nlohmann::json& json);
};

// Writes a temporary file and renames it over path: a crash leaves the old record or the new one.
void save_record(const std::filesystem::path& path, const VmRecord& record);
// Throws std::runtime_error naming the file when it cannot be read or parsed.
VmRecord load_record(const std::filesystem::path& path);

}  // namespace vim::controller::hostd
