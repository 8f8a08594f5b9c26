#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "host_files.h"
#include "hwprobe/inventory.h"
#include "hwprobe/probe.h"

// One function per section of the inventory; probe() calls each in turn.
namespace vim::hwprobe::detail {

Cpu probe_cpu(HostFiles& files, const CpuidFunction& cpuid);
// The feature names that matter to virtual servers, as Linux names them, that `cpuid` reports;
// shared by the host's CPU and the CPUID table KVM offers a guest.
std::vector<std::string> cpuid_features(const CpuidFunction& cpuid);

Kvm probe_kvm(HostFiles& files, const std::filesystem::path& dev_root);
Memory probe_memory(HostFiles& files);
std::vector<NumaNode> probe_numa(HostFiles& files);
std::vector<Disk> probe_disks(HostFiles& files);
std::optional<StateDirectory> probe_state_directory(HostFiles& files,
                                                    const std::optional<std::filesystem::path>& directory);
std::vector<Nic> probe_nics(HostFiles& files);
std::vector<PciDevice> probe_pci(HostFiles& files);
Kernel probe_kernel(HostFiles& files, const std::filesystem::path& dev_root);

// Hugepage pools under `directory` (the host's or a NUMA node's hugepages/).
std::vector<HugepagePool> probe_hugepages(HostFiles& files, const std::filesystem::path& directory);
// Numbers n of the entries named `prefix`n (cpu0, node1), in numeric order.
std::vector<std::uint32_t> numbered_entries(HostFiles& files, const std::filesystem::path& directory,
                                            std::string_view prefix, Need need);

}  // namespace vim::hwprobe::detail
