// hostd --controller URL --listen HOST:PORT --name NAME --state-dir DIR [--token-file PATH] ...: the host
// agent. Exits 2 for a bad command line (before touching anything), 1 when it fails later, 0 after SIGINT or
// SIGTERM; the VMs it started keep running either way, and the next hostd adopts them.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <thread>

#include "controller/common/bearer_token.h"
#include "controller/hostd/agent.h"

namespace {

using vim::controller::hostd::Config;

constexpr int kBadConfiguration = 2;

void parse_listen(const std::string& text, Config& config) {
    const auto colon = text.rfind(':');
    const std::string port = colon == std::string::npos ? "" : text.substr(colon + 1);
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
        std::stoi(port) > 65535) {
        throw CLI::ValidationError("--listen", "expected HOST:PORT with a port from 0 to 65535, not " + text);
    }
    config.listen_host = colon == 0 ? "127.0.0.1" : text.substr(0, colon);
    config.listen_port = std::stoi(port);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"hostd: the host agent of the virtual infrastructure manager"};
    Config config;
    config.vmm_binary = VIM_HOSTD_DEFAULT_VMM;
    std::string listen = "127.0.0.1:8471";
    std::string token_file;
    std::string log_level = "info";
    std::int64_t heartbeat_ms = config.heartbeat_interval.count();
    std::int64_t stop_timeout_ms = config.stop_timeout.count();
    std::int64_t dirty_rate_ms = config.dirty_rate_interval.count();
    app.add_option("--controller", config.controller_url, "the controller, http://HOST:PORT")->required();
    app.add_option("--listen", listen, "HOST:PORT to serve the agent API on (port 0: any free port)")
        ->capture_default_str();
    app.add_option("--name", config.name, "this host's name at the controller")->required();
    app.add_option("--state-dir", config.state_dir, "VM records, images, snapshots")->required();
    app.add_option("--token-file", token_file,
                   "the bearer token: sent to the controller, required of callers");
    app.add_option("--vmm", config.vmm_binary, "the vmm program")->capture_default_str();
    app.add_option("--guest-kernel", config.guest_kernel, "the kernel every VM boots")->required();
    app.add_option("--guest-initrd", config.guest_initrd, "the initial ramdisk every VM boots");
    app.add_option("--guest-cmdline", config.guest_cmdline, "the guests' kernel command line")
        ->capture_default_str();
    app.add_option("--disk-dir", config.disk_dir,
                   "the VMs' disks, <dir>/<vm id>/ (default <state-dir>/disks)");
    app.add_option("--run-dir", config.run_dir, "the vmms' control sockets (default <state-dir>/run)");
    app.add_option("--uplink", config.uplink, "the interface whose VLANs carry the networks to other hosts");
    app.add_option("--migration-address", config.migration_address,
                   "where incoming migrations are received (default: the --listen host)");
    app.add_option("--advertise-url", config.advertise_url,
                   "the agent URL the controller calls (default: http://<--listen>)");
    app.add_option("--heartbeat-ms", heartbeat_ms, "time between heartbeats")
        ->check(CLI::Range(10, 3'600'000))
        ->capture_default_str();
    app.add_option("--stop-timeout-ms", stop_timeout_ms, "a guest's time to shut down before it is killed")
        ->check(CLI::Range(0, 3'600'000))
        ->capture_default_str();
    app.add_option("--dirty-rate-ms", dirty_rate_ms,
                   "how often each VM's dirty rate is measured for the heartbeat (0: never)")
        ->check(CLI::Range(0, 3'600'000))
        ->capture_default_str();
    app.add_option("--kvm-device", config.kvm_device, "the device whose users are VMs")
        ->capture_default_str();
    app.add_option("--log-level", log_level, "trace, debug, info, warn or error")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
        ->capture_default_str();
    try {
        app.parse(argc, argv);
        parse_listen(listen, config);
    } catch (const CLI::ParseError& error) {
        const int code = app.exit(error);
        return code == 0 ? 0 : kBadConfiguration;
    }
    spdlog::set_default_logger(spdlog::stderr_color_mt("hostd"));
    spdlog::set_level(spdlog::level::from_str(log_level));
    config.heartbeat_interval = std::chrono::milliseconds(heartbeat_ms);
    config.stop_timeout = std::chrono::milliseconds(stop_timeout_ms);
    config.dirty_rate_interval = std::chrono::milliseconds(dirty_rate_ms);
    try {
        if (!token_file.empty()) {
            config.token = vim::controller::read_token_file(token_file);
        }
    } catch (const std::exception& error) {
        std::cerr << "error: " << error.what() << "\n";
        return kBadConfiguration;
    }

    // SIGINT and SIGTERM are taken by one thread with sigwait, so every other thread runs undisturbed.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);
    try {
        vim::controller::hostd::Agent agent(config);
        const int port = agent.bind();
        // Tests and scripts wait for this line: requests are accepted from now on.
        std::printf("hostd: listening on http://%s:%d\n", config.listen_host.c_str(), port);
        std::fflush(stdout);
        std::thread signal_waiter([&agent, stop_signals] {
            int signal_number = 0;
            sigwait(&stop_signals, &signal_number);
            spdlog::info("signal {}: stopping (the VMs keep running)", signal_number);
            agent.stop();
        });
        agent.serve();
        pthread_kill(signal_waiter.native_handle(), SIGTERM);
        signal_waiter.join();
    } catch (const std::exception& error) {
        spdlog::error("{}", error.what());
        return 1;
    }
    return 0;
}
