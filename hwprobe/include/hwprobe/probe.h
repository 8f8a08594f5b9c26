#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>

#include "hwprobe/inventory.h"

namespace vim::hwprobe {

struct CpuidRegisters {
    std::uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

// One CPUID query: (leaf, subleaf) -> registers.
using CpuidFunction = std::function<CpuidRegisters(std::uint32_t leaf, std::uint32_t subleaf)>;

// The `cpuid` instruction on the CPU this thread runs on.
CpuidRegisters host_cpuid(std::uint32_t leaf, std::uint32_t subleaf);

struct ProbeOptions {
    // Roots of the trees read as files, so that tests run against fixtures.
    std::filesystem::path sysfs_root = "/sys";
    std::filesystem::path procfs_root = "/proc";
    std::filesystem::path dev_root = "/dev";  // kvm, vhost-net, userfaultfd
    // The filesystem whose free space is reported; none when empty.
    std::optional<std::filesystem::path> state_directory;
    CpuidFunction cpuid = host_cpuid;
};

// Reads the whole inventory. Never throws for what it finds on the host:
// a missing or malformed file leaves its values empty and adds a warning.
// The network interfaces, io_uring and userfaultfd are always this process's
// own (netlink and system calls have no root to redirect).
Inventory probe(const ProbeOptions& options = {});

}  // namespace vim::hwprobe
