#pragma once

#include <httplib.h>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "vim/testing/temp_dir.h"

namespace vim::testing {

// The controller as hostd sees it, over real HTTP on a loopback port: records registrations and heartbeats,
// answers heartbeats with the VMs the test places on the host (by default, those the heartbeat listed), and
// serves image files.
class ControllerDouble {
public:
    ControllerDouble();
    ~ControllerDouble();

    const std::string& url() const { return url_; }
    // Serves content at url()/images/<name>; returns that URL.
    std::string serve_image(const std::string& name, const std::string& content);
    // From now on every heartbeat is answered with these ids (as they were when the heartbeat arrived).
    void place(std::set<std::string> ids);
    // Holds each heartbeat's reply this long.
    void delay_replies(std::chrono::milliseconds delay);
    // Answers heartbeats with 404 until the host registers again.
    void forget_hosts();

    std::vector<nlohmann::json> registrations() const;
    std::vector<nlohmann::json> heartbeats() const;
    std::vector<std::string> authorizations() const;
    // Waits for a heartbeat for which predicate holds; returns it (throws at the timeout).
    nlohmann::json wait_for_heartbeat(const std::function<bool(const nlohmann::json&)>& predicate,
                                      std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

private:
    httplib::Server server_;
    std::thread thread_;
    std::string url_;
    mutable std::mutex mutex_;
    std::map<std::string, std::string> images_;
    std::optional<std::set<std::string>> placed_;
    std::chrono::milliseconds delay_{0};
    bool hosts_forgotten_ = false;
    std::vector<nlohmann::json> registrations_;
    std::vector<nlohmann::json> heartbeats_;
    std::vector<std::string> authorizations_;
};

struct Reply {
    int status = 0;
    nlohmann::json body;
    std::string error() const { return body.is_object() ? body.value("error", "") : ""; }
};

// A real hostd process with fake_vmm as its vmm, on a loopback port of its own.
class HostdProcess {
public:
    struct Options {
        std::string name = "host-a";
        std::optional<std::string> token{};
        std::filesystem::path disk_dir{};  // empty: hostd's default
        std::vector<std::string> extra_arguments{};
    };

    HostdProcess(const ControllerDouble& controller, const std::filesystem::path& kvm_device,
                 Options options);
    ~HostdProcess();

    void kill_hard();  // SIGKILL: its VMs keep running
    void terminate();  // SIGTERM, and it must exit 0; its VMs keep running
    void restart();    // the same command line on the same state directory
    const std::string& url() const { return url_; }
    const std::filesystem::path& state_dir() const { return state_dir_; }
    std::filesystem::path disk_dir() const {
        return options_.disk_dir.empty() ? state_dir_ / "disks" : options_.disk_dir;
    }

    Reply request(const std::string& method, const std::string& path, const std::string& body = "",
                  std::optional<std::string> token = std::nullopt) const;
    Reply post(const std::string& path, const nlohmann::json& body = nlohmann::json::object()) const {
        return request("POST", path, body.dump());
    }
    Reply get(const std::string& path) const { return request("GET", path); }

private:
    void start();

    const ControllerDouble& controller_;
    std::filesystem::path kvm_device_;
    Options options_;
    TempDir state_;
    std::filesystem::path state_dir_{state_.path()};
    pid_t pid_ = -1;
    std::string url_;
};

// The pids of the processes holding kvm_device open (the fake VMs of one test).
std::vector<pid_t> processes_holding(const std::filesystem::path& kvm_device);
bool process_alive(pid_t pid);
std::filesystem::path fake_vmm_binary();

}  // namespace vim::testing
