#include "controller/hostd/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "vmm/sys/error.h"

namespace vim::controller::hostd {
namespace {

using vmm::sys::Fd;
using vmm::sys::throw_errno;

Fd open_pidfd(pid_t pid) { return Fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))); }

// The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses): the
// first one returned is field 3, the state.
std::vector<std::string> stat_fields(pid_t pid) {
    std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    std::getline(file, text);
    const auto name_end = text.rfind(')');
    if (name_end == std::string::npos) {
        return {};
    }
    std::istringstream rest(text.substr(name_end + 1));
    std::vector<std::string> fields;
    for (std::string field; rest >> field;) {
        fields.push_back(field);
    }
    return fields;
}

constexpr std::size_t kStatFirstField = 3;
std::uint64_t stat_number(const std::vector<std::string>& fields, std::size_t field) {
    const std::size_t index = field - kStatFirstField;
    return index < fields.size() ? std::stoull(fields[index]) : 0;
}

class SpawnActions {
public:
    SpawnActions() { ::posix_spawn_file_actions_init(&actions_); }
    ~SpawnActions() { ::posix_spawn_file_actions_destroy(&actions_); }
    SpawnActions(const SpawnActions&) = delete;
    SpawnActions& operator=(const SpawnActions&) = delete;
    posix_spawn_file_actions_t* get() { return &actions_; }

private:
    posix_spawn_file_actions_t actions_;
};

class SpawnAttributes {
public:
    SpawnAttributes() { ::posix_spawnattr_init(&attributes_); }
    ~SpawnAttributes() { ::posix_spawnattr_destroy(&attributes_); }
    SpawnAttributes(const SpawnAttributes&) = delete;
    SpawnAttributes& operator=(const SpawnAttributes&) = delete;
    posix_spawnattr_t* get() { return &attributes_; }

private:
    posix_spawnattr_t attributes_;
};

}  // namespace

std::optional<std::uint64_t> process_start_time(pid_t pid) {
    const auto fields = stat_fields(pid);
    if (fields.size() < 22 - kStatFirstField + 1) {
        return std::nullopt;
    }
    return stat_number(fields, 22);
}

Process Process::spawn(const std::vector<std::string>& argv, const std::filesystem::path& stdout_path,
                       const std::filesystem::path& stderr_path) {
    const std::string& program = argv.at(0);
    SpawnActions actions;
    ::posix_spawn_file_actions_addopen(actions.get(), 0, "/dev/null", O_RDONLY, 0);
    ::posix_spawn_file_actions_addopen(actions.get(), 1, stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                       0644);
    ::posix_spawn_file_actions_addopen(actions.get(), 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                       0644);
    // hostd's sockets and files are not the VM's business, and a vmm holding hostd's listening socket
    // would keep its port after hostd dies.
    ::posix_spawn_file_actions_addclosefrom_np(actions.get(), 3);
    SpawnAttributes attributes;
    // Its own session: a signal to hostd's process group (Ctrl-C, a service manager's stop) spares it.
    sigset_t no_signals, all_signals;
    sigemptyset(&no_signals);
    sigfillset(&all_signals);
    ::posix_spawnattr_setflags(attributes.get(),
                               POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    ::posix_spawnattr_setsigmask(attributes.get(), &no_signals);
    ::posix_spawnattr_setsigdefault(attributes.get(), &all_signals);

    std::vector<char*> arguments;
    for (const std::string& argument : argv) {
        arguments.push_back(const_cast<char*>(argument.c_str()));
    }
    arguments.push_back(nullptr);
    pid_t pid = 0;
    if (const int error =
            ::posix_spawn(&pid, program.c_str(), actions.get(), attributes.get(), arguments.data(), environ);
        error != 0) {
        throw_errno("start " + program, error);
    }
    Fd pidfd = open_pidfd(pid);
    if (!pidfd) {
        throw_errno("pidfd_open for " + program + " (pid " + std::to_string(pid) + ")");
    }
    // A process that exited at once still has its start time while it is an unreaped child.
    return Process(pid, process_start_time(pid).value_or(0), std::move(pidfd));
}

std::optional<Process> Process::attach(pid_t pid, std::uint64_t start_time) {
    if (pid <= 0) {
        return std::nullopt;
    }
    Fd pidfd = open_pidfd(pid);
    // Checked after the pidfd is open: the pidfd then surely holds the process that was started then.
    if (!pidfd || process_start_time(pid) != start_time) {
        return std::nullopt;
    }
    Process process(pid, start_time, std::move(pidfd));
    if (!process.running()) {
        return std::nullopt;
    }
    return process;
}

bool Process::running() const { return !wait_exit(std::chrono::milliseconds(0)); }

void Process::signal(int number) const {
    if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), number, nullptr, 0) != 0 && errno != ESRCH) {
        throw_errno("signal " + std::to_string(number) + " to pid " + std::to_string(pid_));
    }
}

void Process::kill() const { signal(SIGKILL); }

bool Process::wait_exit(std::chrono::milliseconds timeout) const {
    pollfd exited{.fd = pidfd_.get(), .events = POLLIN, .revents = 0};
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        const int ready = ::poll(&exited, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
        if (ready > 0) {
            break;
        }
        if (ready == 0) {
            return false;
        }
        if (errno != EINTR) {
            throw_errno("poll the pidfd of pid " + std::to_string(pid_));
        }
    }
    // Reaps it when it is hostd's child; an adopted process is its init's to reap (ECHILD here).
    siginfo_t info{};
    ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &info, WEXITED | WNOHANG);
    return true;
}

double Process::resident_mib() const {
    std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
    for (std::string line; std::getline(status, line);) {
        if (line.starts_with("VmRSS:")) {
            return static_cast<double>(std::stoull(line.substr(6))) / 1024.0;
        }
    }
    return 0;
}

std::uint64_t Process::cpu_time_ms() const {
    const auto fields = stat_fields(pid_);
    if (fields.size() < 15 - kStatFirstField + 1) {
        return 0;
    }
    const std::uint64_t ticks = stat_number(fields, 14) + stat_number(fields, 15);
    return ticks * 1000 / static_cast<std::uint64_t>(::sysconf(_SC_CLK_TCK));
}

}  // namespace vim::controller::hostd
