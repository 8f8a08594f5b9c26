#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "vmm/sys/fd.h"

namespace vim::controller::hostd {

// The start time of a process (field 22 of /proc/PID/stat, in clock ticks since boot): with the pid it
// names one process for good, so a recorded pid reused by another process is told apart. nullopt when
// no process has that pid.
std::optional<std::uint64_t> process_start_time(pid_t pid);

// A process held through a pidfd: signals and liveness checks reach that process even after its pid is
// reused. Own children are reaped when seen to have exited; adopted processes are watched only.
class Process {
public:
    // Starts argv[0] (a path) detached from hostd: a session and process group of its own, stdin from
    // /dev/null, stdout and stderr appended to the files given, no descriptor of hostd's inherited, so it
    // outlives hostd. Throws std::system_error naming the program when it cannot be started.
    static Process spawn(const std::vector<std::string>& argv, const std::filesystem::path& stdout_path,
                         const std::filesystem::path& stderr_path);
    // The running process pid started at start_time; nullopt when it has gone (or the pid is another's).
    static std::optional<Process> attach(pid_t pid, std::uint64_t start_time);

    pid_t pid() const { return pid_; }
    std::uint64_t start_time() const { return start_time_; }
    bool running() const;
    // SIGKILL; nothing when it has exited already.
    void kill() const;
    void signal(int number) const;
    // Waits until it has exited; false when it still runs at the timeout.
    bool wait_exit(std::chrono::milliseconds timeout) const;
    // Resident memory (VmRSS) in MiB and CPU time (user + system) in ms, from /proc; 0 when unreadable.
    double resident_mib() const;
    std::uint64_t cpu_time_ms() const;

private:
    Process(pid_t pid, std::uint64_t start_time, vmm::sys::Fd pidfd)
        : pid_(pid), start_time_(start_time), pidfd_(std::move(pidfd)) {}

    pid_t pid_ = 0;
    std::uint64_t start_time_ = 0;
    vmm::sys::Fd pidfd_;
};

}  // namespace vim::controller::hostd
