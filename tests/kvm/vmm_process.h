#pragma once

// Runs the vmm binary as a user would, and reads its console as a user would.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vmm/sys/fd.h"

namespace vim::testing {

// The guest kernel: the newest /boot/vmlinuz-*; empty when there is none.
std::string guest_kernel();

class VmmProcess {
public:
    enum class Input { None, Pipe };
    // Starts `vmm` with `arguments`; stdin is /dev/null, or a pipe that
    // type() writes to.
    explicit VmmProcess(const std::vector<std::string>& arguments, Input input = Input::None);
    ~VmmProcess();  // kills a vmm still running
    VmmProcess(const VmmProcess&) = delete;
    VmmProcess& operator=(const VmmProcess&) = delete;

    // Reads the console until a line containing `text` appears; returns that
    // line, or nullopt if the vmm exits or `timeout` passes first.
    std::optional<std::string> wait_for_line(const std::string& text, std::chrono::milliseconds timeout);
    // Reads stderr until `text` appears in it; returns the rest of its line,
    // or nullopt if the vmm exits or `timeout` passes first.
    std::optional<std::string> wait_for_error(const std::string& text, std::chrono::milliseconds timeout);
    // Reads the console for `duration` and returns the lines that arrived.
    std::vector<std::string> lines_during(std::chrono::milliseconds duration);
    // Waits for the process to end; returns its exit code, or nullopt on a
    // timeout (or a death by signal).
    std::optional<int> wait_exit(std::chrono::milliseconds timeout);

    // Sends `text` to the vmm's stdin, the guest's serial console.
    void type(const std::string& text);

    pid_t pid() const { return pid_; }
    // The process's resident memory in bytes (guest RAM included: it is
    // memory the process maps), from /proc; -1 once it is gone.
    std::int64_t resident_bytes() const;
    const std::string& console() const { return console_; }
    const std::string& errors() const { return errors_; }

private:
    // Reads whatever is available within `timeout`; false once both pipes are closed.
    bool pump(std::chrono::milliseconds timeout);
    std::optional<std::string> next_line();

    pid_t pid_ = -1;
    vmm::sys::Fd stdin_;
    vmm::sys::Fd stdout_;
    vmm::sys::Fd stderr_;
    std::string console_;
    std::string errors_;
    std::size_t consumed_ = 0;  // console_ bytes already returned as lines
    std::optional<int> exit_code_;
};

}  // namespace vim::testing
