#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

namespace vim::controller::hostd {

// What hostd's command line sets (see main.cpp for the flags and their defaults).
struct Config {
    std::string controller_url;  // http://HOST:PORT of vimd
    std::string listen_host = "127.0.0.1";
    int listen_port = 8471;
    std::string advertise_url;  // the agent_url registered; empty: http://<listen host>:<bound port>
    std::string name;           // the host's name at the controller
    std::filesystem::path state_dir;
    std::filesystem::path disk_dir;  // empty: <state-dir>/disks
    std::filesystem::path run_dir;   // the vmms' control sockets; empty: <state-dir>/run
    std::optional<std::string> token;
    std::filesystem::path vmm_binary;
    std::filesystem::path guest_kernel;
    std::filesystem::path guest_initrd;  // empty: none
    std::string guest_cmdline = "console=ttyS0";
    std::string uplink;             // empty: networks stay on this host
    std::string migration_address;  // empty: the listen host
    std::chrono::milliseconds heartbeat_interval{2000};
    std::chrono::milliseconds stop_timeout{10000};  // a guest's time to shut down before SIGKILL
    std::filesystem::path kvm_device = "/dev/kvm";  // what marks a process as a KVM user
    // How often each VM's dirty rate is measured (for the heartbeat's figures); 0: never.
    std::chrono::milliseconds dirty_rate_interval{30000};

    // Fills the defaults that depend on other fields.
    void complete();
};

}  // namespace vim::controller::hostd
