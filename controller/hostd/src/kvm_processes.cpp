#include "kvm_processes.h"

#include <charconv>
#include <fstream>
#include <iterator>

#include "controller/api/types.h"

namespace vim::controller::hostd {
namespace {

// Whether the process holds the KVM device or a VM made with it: a VMM may
// close /dev/kvm once its VM exists, and keep only the VM's file.
bool uses_kvm(const std::filesystem::path& process, const std::filesystem::path& device) {
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(process / "fd", error)) {
        std::error_code unreadable;
        const auto target = std::filesystem::read_symlink(entry.path(), unreadable);
        if (target == device || target.native().starts_with("anon_inode:kvm-vm")) {
            return true;
        }
    }
    return false;
}

std::vector<std::string> command_line(const std::filesystem::path& process) {
    std::ifstream file(process / "cmdline", std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    std::vector<std::string> arguments;
    for (std::size_t start = 0; start < text.size();) {
        const auto end = text.find('\0', start);
        arguments.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
        start = end == std::string::npos ? text.size() : end + 1;
    }
    return arguments;
}

}  // namespace

std::vector<KvmProcess> find_kvm_processes(const std::filesystem::path& kvm_device) {
    std::vector<KvmProcess> found;
    std::error_code error;
    const auto own_network = std::filesystem::read_symlink("/proc/self/ns/net", error);
    for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
        const std::string name = entry.path().filename();
        pid_t pid = 0;
        const auto [end, parse_error] = std::from_chars(name.data(), name.data() + name.size(), pid);
        if (parse_error != std::errc() || end != name.data() + name.size() ||
            !uses_kvm(entry.path(), kvm_device)) {
            continue;
        }
        std::error_code unreadable;
        if (std::filesystem::read_symlink(entry.path() / "ns" / "net", unreadable) != own_network) {
            continue;  // another host's, where hosts share a kernel as network namespaces (tests, demos)
        }
        KvmProcess process{.pid = pid, .command = "", .api_socket = ""};
        const auto arguments = command_line(entry.path());
        for (std::size_t i = 0; i < arguments.size(); ++i) {
            process.command += (i == 0 ? "" : " ") + arguments[i];
            if (arguments[i] == "--api-socket" && i + 1 < arguments.size()) {
                process.api_socket = arguments[i + 1];
            } else if (arguments[i].starts_with("--api-socket=")) {
                process.api_socket = arguments[i].substr(13);
            }
        }
        // What the controller takes: a longer command line is cut, a longer socket path is no use.
        if (process.command.size() > api::kMaxCommandLength) {
            process.command.resize(api::kMaxCommandLength);
        }
        if (process.api_socket.size() > api::kMaxSocketPathLength) {
            process.api_socket.clear();
        }
        found.push_back(std::move(process));
    }
    return found;
}

}  // namespace vim::controller::hostd
