#include "vmm_process.h"

#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace vim::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::chrono::milliseconds remaining(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return left.count() > 0 ? left : std::chrono::milliseconds(0);
}

}  // namespace

std::string guest_kernel() {
    glob_t found{};
    std::string newest;
    if (::glob("/boot/vmlinuz-*", 0, nullptr, &found) == 0 && found.gl_pathc > 0) {
        newest = found.gl_pathv[found.gl_pathc - 1];  // glob sorts
    }
    ::globfree(&found);
    return newest;
}

VmmProcess::VmmProcess(const std::vector<std::string>& arguments, Input input) {
    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
        throw std::runtime_error("pipe2 failed");
    }
    stdin_.reset(in[1]);
    stdout_.reset(out[0]);
    stderr_.reset(err[0]);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (input == Input::Pipe) {
        posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
    } else {
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        stdin_.reset();
    }
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
    std::vector<char*> argv;
    std::string program = VIM_VMM_PATH;
    argv.push_back(program.data());
    std::vector<std::string> copies = arguments;
    for (auto& argument : copies) {
        argv.push_back(argument.data());
    }
    argv.push_back(nullptr);
    int error = ::posix_spawn(&pid_, program.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    if (error != 0) {
        throw std::runtime_error("cannot start " + program);
    }
}

VmmProcess::~VmmProcess() {
    if (!exit_code_ && pid_ > 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
}

void VmmProcess::type(const std::string& text) {
    if (!stdin_ || ::write(stdin_.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
        throw std::runtime_error("cannot type into the vmm's console");
    }
}

bool VmmProcess::pump(std::chrono::milliseconds timeout) {
    pollfd fds[2] = {{stdout_.get(), POLLIN, 0}, {stderr_.get(), POLLIN, 0}};
    if (!stdout_ && !stderr_) {
        return false;
    }
    if (::poll(fds, 2, static_cast<int>(timeout.count())) <= 0) {
        return true;
    }
    for (int i = 0; i < 2; ++i) {
        if (fds[i].revents == 0) {
            continue;
        }
        char buffer[4096];
        ssize_t count = ::read(fds[i].fd, buffer, sizeof buffer);
        if (count <= 0) {
            (i == 0 ? stdout_ : stderr_).reset();
        } else {
            (i == 0 ? console_ : errors_).append(buffer, static_cast<std::size_t>(count));
        }
    }
    return true;
}

std::optional<std::string> VmmProcess::next_line() {
    auto end = console_.find('\n', consumed_);
    if (end == std::string::npos) {
        return std::nullopt;
    }
    std::string line = console_.substr(consumed_, end - consumed_);
    consumed_ = end + 1;
    if (!line.empty() && line.back() == '\r') {
        line.pop_back();
    }
    return line;
}

std::optional<std::string> VmmProcess::wait_for_error(const std::string& text,
                                                      std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
        const auto at = errors_.find(text);
        if (at != std::string::npos) {
            const auto end = errors_.find('\n', at);
            if (end != std::string::npos) {
                return errors_.substr(at + text.size(), end - at - text.size());
            }
        }
        if (Clock::now() >= deadline ||
            !pump(std::min(remaining(deadline), std::chrono::milliseconds(100)))) {
            return std::nullopt;
        }
    }
}

std::optional<std::string> VmmProcess::wait_for_line(const std::string& text,
                                                     std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
        while (auto line = next_line()) {
            if (line->find(text) != std::string::npos) {
                return line;
            }
        }
        if (Clock::now() >= deadline ||
            !pump(std::min(remaining(deadline), std::chrono::milliseconds(100)))) {
            return std::nullopt;
        }
    }
}

std::vector<std::string> VmmProcess::lines_during(std::chrono::milliseconds duration) {
    auto deadline = Clock::now() + duration;
    std::vector<std::string> lines;
    while (Clock::now() < deadline && pump(std::min(remaining(deadline), std::chrono::milliseconds(50)))) {
    }
    while (auto line = next_line()) {
        lines.push_back(*line);
    }
    return lines;
}

std::optional<int> VmmProcess::wait_exit(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (!exit_code_) {
        int status;
        pid_t done = ::waitpid(pid_, &status, WNOHANG);
        if (done == pid_) {
            exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        if (Clock::now() >= deadline) {
            return std::nullopt;
        }
        // Keep draining the pipes so a chatty vmm never blocks on a full one.
        if (!pump(std::chrono::milliseconds(20))) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
    while (pump(std::chrono::milliseconds(0)) && (stdout_ || stderr_)) {
    }
    return exit_code_;
}

std::int64_t VmmProcess::resident_bytes() const {
    std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("VmRSS:", 0) == 0) {
            return std::stoll(line.substr(6)) * 1024;
        }
    }
    return -1;
}

}  // namespace vim::testing
