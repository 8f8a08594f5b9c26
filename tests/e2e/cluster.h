#pragma once

// A small cloud on one machine for the system tests: network namespaces as
// hosts, joined by veth pairs to a bridge in a namespace of the controller's
// own; vimd there, one hostd per host namespace, a directory every host sees
// as shared storage. Everything is driven through vimctl, as a user would.
// Nothing leaves the namespaces the test creates: no route out, no address
// but the test's own.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace vim::testing {

// Whether condition() holds within timeout, asked every 100 ms.
template <typename Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (condition()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return condition();
}

// A file's whole content, "" when it cannot be read.
std::string read_file(const std::filesystem::path& path);

// A child process whose output goes to a file.
class Process {
public:
    Process(const std::vector<std::string>& arguments, const std::filesystem::path& output);
    ~Process();  // SIGKILL if still running
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    pid_t pid() const { return pid_; }
    void signal(int number) const;
    // The exit status (128 + signal for a signal), or nothing within timeout.
    std::optional<int> wait_exit(std::chrono::milliseconds timeout);

private:
    pid_t pid_ = -1;
    std::optional<int> status_;
};

struct CommandResult {
    int exit_code = -1;
    std::string out;
    std::string err;
};

class Cluster {
public:
    static constexpr const char* kControllerAddress = "10.77.0.1";
    static constexpr int kControllerPort = 8470;
    static constexpr int kAgentPort = 8471;

    // Namespaces, the bridge, vimd and `hosts` hostd processes; returns once
    // every host has registered.
    explicit Cluster(int hosts);
    // Stops every process of the cluster's namespaces (the VMs' vmm too) and
    // removes the namespaces.
    ~Cluster();
    Cluster(const Cluster&) = delete;
    Cluster& operator=(const Cluster&) = delete;

    int hosts() const { return static_cast<int>(hostd_.size()); }
    static std::string host_name(int index) { return std::string("h").append(std::to_string(index + 1)); }
    std::string host_namespace(int index) const;
    std::string host_address(int index) const { return "10.77.0." + std::to_string(11 + index); }
    const std::filesystem::path& root() const { return root_; }
    std::filesystem::path shared_dir() const { return root_ / "shared"; }
    std::filesystem::path host_state_dir(int index) const { return root_ / host_name(index); }

    // vimctl with these arguments (after --controller), in the controller's namespace.
    CommandResult vimctl(const std::vector<std::string>& arguments) const;
    // vimctl --json ...; a failing command fails the calling test with its stderr.
    nlohmann::json vimctl_json(const std::vector<std::string>& arguments) const;
    // A command in a host's namespace.
    CommandResult run_on_host(int index, const std::vector<std::string>& arguments) const;

    pid_t hostd_pid(int index) const { return hostd_[index]->pid(); }
    void signal_hostd(int index, int number) const { hostd_[index]->signal(number); }
    // SIGKILL and a new hostd on the same state directory.
    void kill_and_restart_hostd(int index);
    // The host dies: SIGKILL to its hostd and every VM it runs.
    void crash_host(int index);
    // A new hostd on a crashed host's state directory, as after a reboot.
    void start_host(int index) { start_hostd(index); }
    void kill_and_restart_vimd();

    // The serial console log of a VM on whichever host ran it last (hostd keeps
    // it in its state directory), "" when none has it yet.
    std::string console(const std::string& vm_id) const;

private:
    void start_vimd();
    void start_hostd(int index);
    std::string controller_namespace() const;
    std::string controller_url() const;

    std::string prefix_;  // of the namespaces' and links' names: unique per test process
    std::filesystem::path root_;
    std::unique_ptr<Process> vimd_;
    std::vector<std::unique_ptr<Process>> hostd_;
};

}  // namespace vim::testing
