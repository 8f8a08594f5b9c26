#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace vim::controller::hostd {

// A process that holds the KVM device open: a VM, whoever started it.
struct KvmProcess {
    pid_t pid = 0;
    std::string command;     // its command line, arguments joined by spaces
    std::string api_socket;  // the value of its --api-socket, "" when it has none
};

// Every process of this network namespace with a descriptor open on kvm_device (/dev/kvm), found through
// /proc/*/fd: where several hosts are network namespaces of one kernel, each sees only its own. Processes
// that vanish during the scan, or whose descriptors this process may not read, are left out.
std::vector<KvmProcess> find_kvm_processes(const std::filesystem::path& kvm_device);

}  // namespace vim::controller::hostd
