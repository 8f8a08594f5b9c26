#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "controller/scheduler/scheduler.h"
#include "controller/store/sqlite_store.h"

namespace vim::controller::vimd {

struct Config {
    std::string listen_host = "127.0.0.1";
    int listen_port = 8470;  // 0: any free port (Server::bind() says which)
    std::filesystem::path db_path;
    // What an acknowledged change survives: a power loss (fsync per commit) or only a crash of vimd.
    store::SqliteStore::Durability durability = store::SqliteStore::Durability::power_loss;
    std::filesystem::path state_dir;       // images go to <state_dir>/images
    std::optional<std::string> token;      // the bearer token clients and agents must present; none: no check
    std::string advertise_url;             // how agents reach this controller; "": http://listen_host:port
    std::size_t max_body_bytes = 1 << 20;  // a JSON request body
    std::uint64_t max_image_bytes = 64ull << 30;      // an uploaded image
    std::chrono::milliseconds agent_timeout{60'000};  // an operation whose agent has not answered fails
    std::chrono::milliseconds operation_sweep_interval{500};
    std::size_t http_threads = 64;       // connections served at once (each keep-alive client holds one)
    std::size_t operation_threads = 16;  // agent calls in flight at once
    // A host with no heartbeat for this long is down: its VMs are restarted on other hosts (HA). 0: never.
    std::chrono::milliseconds host_dead_after{30'000};
    std::size_t evacuation_parallel = 2;  // live migrations at once when a host goes into maintenance
    scheduler::Config scheduler;
};

// A route as the OpenAPI document names it: method in upper case, path with {id} for a parameter.
struct Route {
    std::string method;
    std::string path;
    bool operator==(const Route&) const = default;
    auto operator<=>(const Route&) const = default;
};

// Every route the controller serves (the OpenAPI test compares them with the document).
std::vector<Route> routes();

// vimd: the controller's HTTP API over the store, the scheduler, the image repository and the agents.
class Server {
public:
    // Opens the store and the image repository; fails operations a previous run left unfinished.
    explicit Server(Config config);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds the listening socket and returns its port. Throws std::runtime_error naming the address.
    int bind();
    // Serves until stop(); returns then.
    void serve();
    // Safe from any thread (a signal-handling one included, but not from a signal handler).
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace vim::controller::vimd
