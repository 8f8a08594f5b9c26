// vimd --listen HOST:PORT --db PATH [--token-file PATH]: the controller. Exits 2 for a bad command line
// or configuration (before touching anything), 1 when it fails later, 0 after SIGINT or SIGTERM.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <thread>

#include "controller/common/bearer_token.h"
#include "controller/vimd/server.h"

namespace {

using vim::controller::vimd::Config;

constexpr int kBadConfiguration = 2;

// HOST:PORT, or :PORT for 127.0.0.1.
void parse_listen(const std::string& text, Config& config) {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos || colon + 1 == text.size()) {
        throw CLI::ValidationError("--listen", "expected HOST:PORT, not " + text);
    }
    const std::string port_text = text.substr(colon + 1);
    if (port_text.find_first_not_of("0123456789") != std::string::npos || port_text.size() > 5 ||
        std::stoi(port_text) > 65535) {
        throw CLI::ValidationError("--listen", "port must be a number from 0 to 65535, not " + port_text);
    }
    config.listen_host = colon == 0 ? "127.0.0.1" : text.substr(0, colon);
    config.listen_port = std::stoi(port_text);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"vimd: the virtual infrastructure manager's controller"};
    Config config;
    std::string listen = "127.0.0.1:8470";
    std::string token_file;
    std::string state_dir;
    std::string db;
    std::string strategy = "spread";
    std::string log_level = "info";
    std::string durability = "power-loss";
    std::int64_t agent_timeout_ms = config.agent_timeout.count();
    std::int64_t sweep_ms = config.operation_sweep_interval.count();
    std::int64_t host_dead_after_ms = config.host_dead_after.count();
    app.add_option("--listen", listen, "HOST:PORT to serve on (port 0: any free port)")
        ->capture_default_str();
    app.add_option("--db", db, "the SQLite file (default: <state-dir>/vimd.db)");
    app.add_option("--token-file", token_file,
                   "a file holding the bearer token clients and agents must send");
    app.add_option("--state-dir", state_dir,
                   "where images are kept (default: the --db file's folder, or "
                   "/var/lib/vim)");
    app.add_option("--advertise-url", config.advertise_url, "how agents reach this controller");
    app.add_option("--agent-timeout-ms", agent_timeout_ms,
                   "an operation whose agent has not answered by then fails")
        ->check(CLI::Range(1, 24 * 3600 * 1000))
        ->capture_default_str();
    app.add_option("--operation-sweep-ms", sweep_ms, "how often operations past their deadline are failed")
        ->check(CLI::Range(10, 60'000))
        ->capture_default_str();
    app.add_option("--heartbeat-staleness-ms", config.scheduler.heartbeat_staleness_ms,
                   "a host not heard from for longer is not chosen")
        ->check(CLI::Range(1, 24 * 3600 * 1000))
        ->capture_default_str();
    app.add_option("--host-dead-after-ms", host_dead_after_ms,
                   "a host with no heartbeat for this long is down and its VMs are restarted on other hosts "
                   "(0: never)")
        ->check(CLI::Range(0, 24 * 3600 * 1000))
        ->capture_default_str();
    app.add_option("--evacuation-parallel", config.evacuation_parallel,
                   "live migrations at once when a host goes into maintenance")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    app.add_option("--max-image-bytes", config.max_image_bytes, "the largest image upload")
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 50))
        ->capture_default_str();
    app.add_option("--max-body-bytes", config.max_body_bytes, "the largest JSON request body")
        ->check(CLI::Range(std::size_t{1024}, std::size_t{64} << 20))
        ->capture_default_str();
    app.add_option("--http-threads", config.http_threads, "connections served at once")
        ->check(CLI::Range(1, 4096))
        ->capture_default_str();
    app.add_option("--strategy", strategy, "placement: spread or pack")
        ->check(CLI::IsMember({"spread", "pack"}))
        ->capture_default_str();
    app.add_option("--durability", durability,
                   "what an acknowledged change survives: power-loss (the store fsyncs each commit) or "
                   "process-crash (kill -9 of vimd, not of the machine: commits do not wait for the disk)")
        ->check(CLI::IsMember({"power-loss", "process-crash"}))
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

    spdlog::set_default_logger(spdlog::stderr_color_mt("vimd"));
    spdlog::set_level(spdlog::level::from_str(log_level));
    config.agent_timeout = std::chrono::milliseconds(agent_timeout_ms);
    config.operation_sweep_interval = std::chrono::milliseconds(sweep_ms);
    config.host_dead_after = std::chrono::milliseconds(host_dead_after_ms);
    config.durability = durability == "process-crash"
                            ? vim::controller::store::SqliteStore::Durability::process_crash
                            : vim::controller::store::SqliteStore::Durability::power_loss;
    config.scheduler.strategy = strategy == "pack" ? vim::controller::scheduler::Strategy::pack
                                                   : vim::controller::scheduler::Strategy::spread;
    if (!state_dir.empty()) {
        config.state_dir = state_dir;
    } else if (!db.empty()) {
        config.state_dir = std::filesystem::absolute(db).parent_path();
    } else {
        config.state_dir = "/var/lib/vim";
    }
    config.db_path = db.empty() ? config.state_dir / "vimd.db" : std::filesystem::path(db);

    std::unique_ptr<vim::controller::vimd::Server> server;
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
        server = std::make_unique<vim::controller::vimd::Server>(config);
        const int port = server->bind();
        // Tests and scripts wait for this line: the port is bound and requests are accepted from now on.
        std::printf("vimd: listening on http://%s:%d\n", config.listen_host.c_str(), port);
        std::fflush(stdout);
        spdlog::info("listening on {}:{}, store {}, state {}", config.listen_host, port,
                     config.db_path.string(), config.state_dir.string());
        std::thread signal_waiter([&server, stop_signals] {
            int signal_number = 0;
            sigwait(&stop_signals, &signal_number);
            spdlog::info("signal {}: stopping", signal_number);
            server->stop();
        });
        server->serve();
        pthread_kill(signal_waiter.native_handle(), SIGTERM);  // wakes the waiter if serve() ended first
        signal_waiter.join();
    } catch (const std::exception& error) {
        spdlog::error("{}", error.what());
        return 1;
    }
    return 0;
}
