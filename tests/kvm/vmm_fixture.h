#pragma once

// What the tests of the vmm binary share: a fixture that boots Debian's
// kernel with the test initramfs in a vmm process, talks to its control
// socket, and checks refused configurations.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vmm/control/client.h"
#include "vmm_process.h"

namespace vim::testing {

using namespace std::chrono_literals;

// Generous: inside the nested sandbox a boot takes seconds of emulated CPU.
inline constexpr auto kBootTimeout = 180s;
inline constexpr auto kExitTimeout = 30s;

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
};

inline std::string value_after(const std::string& line, const std::string& key) {
    auto at = line.find(key);
    return at == std::string::npos ? "" : line.substr(at + key.size());
}

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
