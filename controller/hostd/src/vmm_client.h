#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "controller/hostd/process.h"

namespace vim::controller::hostd {

// How long a control command other than a snapshot may take.
inline constexpr std::chrono::milliseconds kControlTimeout{5000};
// How long a SIGKILLed vmm may take to be gone (its memory freed) before that counts as a failure.
inline constexpr std::chrono::milliseconds kKillTimeout{10000};

// Whether a vmm serves its control socket and answers `status`.
bool answers_status(const std::string& socket);

// The figures of the contract (resident_mib, vcpu_time_ms, vm_exits, balloon_mib, disk and network byte
// counts) from /proc and the vmm's `stats`; only those from /proc when the vmm does not answer in time.
nlohmann::json vm_figures(const Process& process, const std::string& socket);

std::uintmax_t file_size_or_zero(const std::filesystem::path& path);
// What the vmm wrote to a file (its stderr) past offset: its reason for exiting, or the port it listens on.
std::string text_since(const std::filesystem::path& path, std::uintmax_t offset);
std::string last_line(std::string text);

}  // namespace vim::controller::hostd
