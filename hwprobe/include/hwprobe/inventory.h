#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

// What hwprobe reports about a host. A value that could not be read is an
// empty optional (null in JSON) and the reason is in Inventory::warnings, so a
// partial report still says everything that was readable. SCHEMA.md describes
// each field as the JSON report spells it.
namespace vim::hwprobe {

inline constexpr int kSchemaVersion = 1;

// A file that was missing, unreadable or malformed, and what was wrong with it.
struct Warning {
    std::string file;
    std::string problem;
};

struct TscFrequency {
    std::optional<std::uint64_t> hz;
    // Where `hz` came from: "cpuid 0x15", "cpuid 0x40000010" (the hypervisor's
    // timing leaf), "cpuid 0x16" (the base frequency, which the TSC runs at on
    // Intel), "sysfs tsc_freq_khz", "cpuinfo" (/proc/cpuinfo "cpu MHz", the
    // current clock: a last resort), or "none".
    std::string source;
    bool invariant = false;  // CPUID 0x80000007 EDX[8]: constant rate across P-, C- and T-states
};

struct Cpu {
    std::string vendor;  // "GenuineIntel", "AuthenticAMD"
    std::uint32_t family = 0;
    std::uint32_t model = 0;
    std::uint32_t stepping = 0;
    std::string model_name;
    // Of the online CPUs: distinct packages, distinct (package, core) pairs, logical CPUs.
    std::optional<std::uint32_t> sockets;
    std::optional<std::uint32_t> cores;
    std::optional<std::uint32_t> threads;
    std::vector<std::uint32_t> online;
    std::vector<std::string> features;  // Linux /proc/cpuinfo flag names, sorted
    // EPT or NPT. AMD's NPT is a CPUID bit; Intel's EPT is an MSR only the kernel reads,
    // so it comes from /proc/cpuinfo, and is unknown when the kernel does not say.
    std::optional<bool> nested_paging;
    std::string nested_paging_source;  // "cpuid 0x8000000a", "cpuinfo", "no vmx or svm", "unknown"
    std::string hypervisor;            // CPUID 0x40000000 signature when running in a VM, e.g. "KVMKVMKVM"
    TscFrequency tsc;
};

enum class KvmAbsence {
    no_device,          // the module is loaded but there is no /dev/kvm (e.g. a container without it)
    permission_denied,  // /dev/kvm exists and this user may not open it
    module_not_loaded,  // neither kvm_intel nor kvm_amd is loaded
    unusable,           // /dev/kvm opened but did not answer as KVM does
};

struct KvmCapability {
    std::string name;  // "KVM_CAP_IRQFD"
    int id = 0;
    bool required = false;  // the vmm refuses to start without it
    int value = 0;          // KVM_CHECK_EXTENSION's answer; 0 = unsupported
};

struct CpuidLeaf {
    std::uint32_t function = 0;
    std::uint32_t index = 0;
    std::uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

struct Kvm {
    bool present = false;
    std::optional<KvmAbsence> absence;
    std::string absence_detail;  // e.g. "open /dev/kvm: No such file or directory"
    int api_version = 0;
    int recommended_vcpus = 0;
    int max_vcpus = 0;
    // The vmm's own table (vmm/kvm capability_report), evaluated on this host.
    std::vector<KvmCapability> capabilities;
    bool required_capabilities_met = false;
    int dirty_ring_max_bytes = 0;
    int dirty_ring_acquire_release_max_bytes = 0;
    // KVM_GET_SUPPORTED_CPUID, as the vmm uses it, and its feature names: what a guest can be given.
    std::vector<CpuidLeaf> supported_cpuid;
    std::vector<std::string> guest_features;
};

struct HugepagePool {
    std::uint64_t page_size_bytes = 0;
    std::optional<std::uint64_t> total;  // pages
    std::optional<std::uint64_t> free;
};

struct Ksm {
    bool available = false;
    std::optional<std::uint64_t> run;  // 0 stopped, 1 merging, 2 unmerging
    std::optional<std::uint64_t> pages_shared;
    std::optional<std::uint64_t> pages_sharing;
};

struct Overcommit {
    std::optional<std::uint64_t> policy;  // vm.overcommit_memory: 0 heuristic, 1 always, 2 never
    std::optional<std::uint64_t> ratio_percent;
    std::optional<std::uint64_t> kbytes;
};

struct Memory {
    std::optional<std::uint64_t> total_bytes;
    std::optional<std::uint64_t> available_bytes;
    std::vector<HugepagePool> hugepages;  // by page size, smallest first
    Ksm ksm;
    Overcommit overcommit;
};

struct NumaNode {
    std::uint32_t id = 0;
    std::vector<std::uint32_t> cpus;
    std::optional<std::uint64_t> memory_total_bytes;
    std::optional<std::uint64_t> memory_free_bytes;
    std::vector<std::uint32_t> distances;  // to node 0, 1, ... as the kernel lists them
    std::vector<HugepagePool> hugepages;
};

struct Disk {
    std::string name;  // "nvme0n1"
    std::optional<std::uint64_t> size_bytes;
    std::optional<std::uint64_t> logical_block_size;
    std::optional<std::uint64_t> physical_block_size;
    std::optional<bool> rotational;
    std::string model;  // empty where the device has none (virtio, dm, md)
};

struct StateDirectory {
    std::string path;
    std::optional<std::uint64_t> total_bytes;
    std::optional<std::uint64_t> free_bytes;  // available to an unprivileged writer
};

struct Nic {
    std::string name;
    int index = 0;
    // "bridge", "veth", "tap", "tun", "vlan", "bond", ...; "" for a physical NIC or loopback.
    std::string kind;
    std::string master;
    std::uint32_t mtu = 0;
    std::string mac;
    bool up = false;
    std::string operational_state;  // "up", "down", "unknown", ...
    std::optional<std::uint16_t> vlan_id;
    std::string parent;  // a VLAN's lower device
    std::optional<std::uint64_t> speed_mbps;
};

struct PciDevice {
    std::string address;                      // "0000:00:1f.2"
    std::optional<std::uint32_t> class_code;  // 24 bits: class, subclass, programming interface
    std::optional<std::uint32_t> vendor;
    std::optional<std::uint32_t> device;
    std::optional<std::uint32_t> iommu_group;
    std::string driver;
};

// Whether a kernel facility the vmm uses works for this process, and if not, why.
struct Facility {
    bool usable = false;
    std::string detail;
};

struct Kernel {
    std::string release;
    Facility io_uring;
    Facility userfaultfd;
    Facility vhost_net;
};

struct Inventory {
    int schema_version = kSchemaVersion;
    std::string hostname;
    Kernel kernel;
    Cpu cpu;
    Kvm kvm;
    Memory memory;
    std::vector<NumaNode> numa_nodes;
    std::vector<Disk> disks;
    std::optional<StateDirectory> state_directory;
    std::vector<Nic> nics;
    std::vector<PciDevice> pci_devices;
    std::vector<Warning> warnings;
};

}  // namespace vim::hwprobe
