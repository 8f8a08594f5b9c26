#pragma once

// What the tests of the vmm binary share: a fixture that boots Debian's
// kernel with the test initramfs in a vmm process, talks to its control
// socket, and checks refused configurations.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "vmm/control/client.h"
#include "vmm_process.h"

namespace vim::testing {

using namespace std::chrono_literals;

// Generous: inside the nested sandbox a boot takes seconds of emulated CPU.
inline constexpr auto kBootTimeout = 180s;
inline constexpr auto kExitTimeout = 30s;

inline std::string value_after(const std::string& line, const std::string& key) {
    auto at = line.find(key);
    return at == std::string::npos ? "" : line.substr(at + key.size());
}

// Polls `condition` every 200 ms for up to `timeout`.
inline bool eventually(const std::function<bool()>& condition, std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!condition()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return true;
}

struct HostResult {
    int status;          // the shell's exit status; -1 when it could not run
    std::string output;  // what the command wrote to stdout
};

// Runs `command` through the host's shell.
inline HostResult run_on_host(const std::string& command) {
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) {
        return {-1, ""};
    }
    std::string output;
    char buffer[4096];
    while (std::size_t count = std::fread(buffer, 1, sizeof buffer, pipe)) {
        output.append(buffer, count);
    }
    const int status = ::pclose(pipe);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

class VmmBoot : public ::testing::Test {
protected:
    void SetUp() override {
        kernel_ = vim::testing::guest_kernel();
        if (kernel_.empty()) {
            GTEST_SKIP() << "no /boot/vmlinuz-* (apt-get install linux-image-amd64)";
        }
        char pattern[] = "/tmp/vmm-boot-test-XXXXXX";
        ASSERT_NE(::mkdtemp(pattern), nullptr);
        directory_ = pattern;
    }
    void TearDown() override {
        if (!directory_.empty()) {
            std::filesystem::remove_all(directory_);
        }
    }

    std::vector<std::string> boot_arguments(const std::string& mode, int cpus, const std::string& memory) {
        return {"--kernel",  kernel_,
                "--initrd",  VIM_GUEST_INITRAMFS,
                "--cpus",    std::to_string(cpus),
                "--memory",  memory,
                "--cmdline", "console=ttyS0 reboot=k panic=1 quiet guest.mode=" + mode};
    }

    std::string socket_path() const { return directory_ + "/api.sock"; }

    // One control command; a failure to reach the vmm says what its guest
    // printed, which tells a dead guest from a dead control socket.
    nlohmann::json command(VmmProcess& vmm, const std::string& name,
                           nlohmann::json extra = nlohmann::json::object()) {
        extra["cmd"] = name;
        try {
            return vmm::control::send_command(socket_path(), extra, 60s);
        } catch (const std::exception& error) {
            auto code = vmm.wait_exit(5s);
            throw std::runtime_error(std::string(error.what()) +
                                     "\nvmm exit code: " + (code ? std::to_string(*code) : "still running") +
                                     "\nconsole:\n" + vmm.console() + "\nerrors:\n" + vmm.errors());
        }
    }

    struct ShellResult {
        int status;
        std::string output;  // everything the console showed, the command's echo included
    };

    // Runs `command` in the guest's shell and waits for its exit status.
    ShellResult run_in_guest(VmmProcess& vmm, const std::string& command,
                             std::chrono::seconds timeout = 120s) {
        const std::string tag = "VIM-RC-" + std::to_string(++commands_run_) + "=";
        const std::size_t start = vmm.console().size();
        // printf builds the tag, so the echo of the typed line never matches it.
        vmm.type(command + "; printf 'VIM-RC-%s=%s\\n' " + std::to_string(commands_run_) + " $?\n");
        auto line = vmm.wait_for_line(tag, timeout);
        if (!line) {
            ADD_FAILURE() << "no answer to: " << command << "\nconsole:\n" << vmm.console() << vmm.errors();
            return {-1, ""};
        }
        return {std::stoi(value_after(*line, tag)), vmm.console().substr(start)};
    }

    // The number N of the last "count N" line, or -1.
    static long last_count(const std::vector<std::string>& lines) {
        long last = -1;
        for (const auto& line : lines) {
            auto at = line.find("count ");
            if (at != std::string::npos) {
                last = std::stol(line.substr(at + 6));
            }
        }
        return last;
    }

    std::string kernel_;
    std::string directory_;
    int commands_run_ = 0;
};

class VmmConfiguration : public VmmBoot {
protected:
    void expect_refused(std::vector<std::string> arguments, const std::string& message) {
        VmmProcess vmm(arguments);
        EXPECT_EQ(vmm.wait_exit(kExitTimeout), 2) << vmm.errors();
        EXPECT_NE(vmm.errors().find("error: " + message), std::string::npos)
            << "expected: " << message << "\nactual: " << vmm.errors();
        EXPECT_EQ(std::count(vmm.errors().begin(), vmm.errors().end(), '\n'), 1) << vmm.errors();
        EXPECT_EQ(vmm.console(), "") << "the guest ran";
    }

    std::vector<std::string> with(std::vector<std::string> extra) {
        std::vector<std::string> arguments = {"--kernel", kernel_, "--initrd", VIM_GUEST_INITRAMFS};
        arguments.insert(arguments.end(), extra.begin(), extra.end());
        return arguments;
    }
};

}  // namespace vim::testing
