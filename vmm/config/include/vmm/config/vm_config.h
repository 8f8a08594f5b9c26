#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace vim::vmm::config {

// A configuration the user got wrong: the message names the flag and the
// problem; the process exits with code 2 before anything starts.
class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct SerialConfig {
    enum class Kind { Stdio, File, None };
    Kind kind = Kind::Stdio;
    std::string path;  // Kind::File
};

// One --disk: a raw image file or block device, exposed as virtio-blk.
struct DiskConfig {
    std::string path;
    bool readonly = false;
    bool direct = false;  // O_DIRECT: no host page cache
    bool operator==(const DiskConfig&) const = default;
};

// One --net: a virtio-net device on a tap interface.
struct NetConfig {
    std::string tap;                                 // created when it does not exist
    std::optional<std::array<std::uint8_t, 6>> mac;  // nullopt: one derived from the tap's name
    std::string bridge;                              // empty: none
    std::optional<std::uint16_t> mtu;                // nullopt: the tap's
    bool operator==(const NetConfig&) const = default;
};

// Every VM has a memory balloon; these say what it offers the guest.
struct BalloonConfig {
    bool free_page_reporting = true;  // the guest hands back memory it frees, unasked
    bool deflate_on_oom = true;       // the guest may take pages back rather than run out
};

// How the VM starts: booting a kernel, or from the state of a VM that ran
// elsewhere (a migration stream, a snapshot), which brings its own shape.
struct StartFrom {
    enum class Kind { Boot, Incoming, Restore };
    Kind kind = Kind::Boot;
    std::string where;  // Incoming: tcp:HOST:PORT; Restore: the snapshot directory
};

struct VmConfig {
    StartFrom start;
    std::string kernel;
    std::string initrd;  // empty: none
    std::string cmdline = "console=ttyS0 reboot=k panic=1";
    std::uint32_t cpus = 1;
    std::uint64_t memory_bytes = 512ull << 20;
    SerialConfig serial;
    std::string api_socket;  // empty: none
    std::vector<DiskConfig> disks;
    std::vector<NetConfig> nets;
    BalloonConfig balloon;
};

// The part of a configuration that travels with a VM that migrates or is
// snapshotted: its shape (vCPUs, RAM, disks, NICs, balloon), which the other
// end builds again. Disks and NICs travel as their flags' text.
nlohmann::json shape_to_json(const VmConfig& config);
// Takes the shape `shape` (from a stream or snapshot: checked like the flags)
// into `config`, which holds this end's own flags. Disks and NICs given here
// remap the travelling ones (a disk at another path on this host), one for
// one: their counts must match. Throws UsageError naming the field.
void apply_shape(const nlohmann::json& shape, VmConfig& config);

// What the host allows, looked up once so validation itself is pure.
struct HostLimits {
    std::uint64_t memory_bytes;  // RAM the host can back
    std::uint32_t max_vcpus;     // KVM's limit per VM
};

// Parses `vmm` flags. Returns nullopt after printing help for --help. Throws
// UsageError for unknown flags, bad values and flags not supported yet.
std::optional<VmConfig> parse_command_line(int argc, const char* const* argv);

// "path=P[,readonly=on|off][,direct=on|off]". Throws UsageError naming the
// flag and the part that is wrong.
DiskConfig parse_disk(const std::string& text);

// "free_page_reporting=on|off[,deflate_on_oom=on|off]" (either or both).
// Throws UsageError naming the flag and the part that is wrong.
BalloonConfig parse_balloon(const std::string& text);

// "tap=NAME[,mac=MAC][,bridge=BR][,mtu=N]". Throws UsageError naming the
// flag and the part that is wrong: a bad interface name, a MAC that is not
// six hex bytes or is multicast or zero, an MTU outside 68-65535.
NetConfig parse_net(const std::string& text);

// "512M", "2G", "1048576K", "256" (MiB, as QEMU reads -m). Throws UsageError.
std::uint64_t parse_memory_size(const std::string& text);

// Checks what can be checked without starting anything: files, sizes, limits.
// The kernel itself is checked by the boot loader. Throws UsageError.
void validate(const VmConfig& config, const HostLimits& limits);

// The host's limits: RAM from /proc/meminfo, vCPUs from KVM.
HostLimits host_limits(std::uint32_t kvm_max_vcpus);

}  // namespace vim::vmm::config
