// A stand-in for vmm where there is no /dev/kvm: the same flags and control commands, no guest. It opens
// $FAKE_VMM_KVM_DEVICE (else /dev/null) where vmm opens /dev/kvm, so that hostd's scan for KVM processes
// finds it; writes a line to its serial file; and "migrates" by one line over TCP to a fake started with
// --incoming, which then serves its control socket as a running VM, as vmm does.
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "vmm/control/control_server.h"
#include "vmm/sys/event_loop.h"
#include "vmm/sys/fd.h"

namespace {

using json = nlohmann::json;
using vim::vmm::sys::Fd;

struct Endpoint {
    std::string host;
    std::string port;
};

Endpoint parse_uri(const std::string& uri) {
    const auto colon = uri.rfind(':');
    if (!uri.starts_with("tcp:") || colon <= 4) {
        throw std::runtime_error("uri " + uri + ": not tcp:HOST:PORT");
    }
    return {uri.substr(4, colon - 4), uri.substr(colon + 1)};
}

Fd tcp_socket(const Endpoint& endpoint, bool listen) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = listen ? AI_PASSIVE : 0;
    addrinfo* list = nullptr;
    if (::getaddrinfo(endpoint.host.c_str(), endpoint.port.c_str(), &hints, &list) != 0 || list == nullptr) {
        throw std::runtime_error("resolve " + endpoint.host);
    }
    Fd socket(::socket(list->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const int on = 1;
    ::setsockopt(socket.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    const bool done =
        listen ? ::bind(socket.get(), list->ai_addr, list->ai_addrlen) == 0 && ::listen(socket.get(), 1) == 0
               : ::connect(socket.get(), list->ai_addr, list->ai_addrlen) == 0;
    const int error = errno;
    ::freeaddrinfo(list);
    if (!done) {
        throw std::runtime_error(std::string(listen ? "listen on " : "connect to ") + endpoint.host + ":" +
                                 endpoint.port + ": " + std::strerror(error));
    }
    return socket;
}

std::string read_line(int fd) {
    std::string line;
    char byte = 0;
    while (::read(fd, &byte, 1) == 1 && byte != '\n') {
        line += byte;
    }
    return line;
}

}  // namespace

int main(int argc, char** argv) {
    std::string kernel, initrd, cmdline, memory = "512M", serial = "stdio", api_socket, incoming, restore,
                                         balloon;
    unsigned cpus = 1;
    std::vector<std::string> disks, nets;
    CLI::App app{"fake vmm"};
    app.add_option("--kernel", kernel);
    app.add_option("--initrd", initrd);
    app.add_option("--cmdline", cmdline);
    app.add_option("--cpus", cpus);
    app.add_option("--memory", memory);
    app.add_option("--serial", serial);
    app.add_option("--api-socket", api_socket);
    app.add_option("--disk", disks);
    app.add_option("--net", nets);
    app.add_option("--balloon", balloon);
    app.add_option("--incoming", incoming);
    app.add_option("--restore", restore);
    CLI11_PARSE(app, argc, argv);
    if (incoming.empty() && kernel.empty()) {
        std::fprintf(stderr, "error: --kernel is required (or --incoming or --restore)\n");
        return 2;
    }
    for (const std::string& disk : disks) {
        const std::string path =
            disk.substr(5, disk.find(',') == std::string::npos ? std::string::npos : disk.find(',') - 5);
        if (!disk.starts_with("path=") || !std::filesystem::exists(path)) {
            std::fprintf(stderr, "error: --disk %s: no such file\n", disk.c_str());
            return 2;
        }
    }
    const char* device = std::getenv("FAKE_VMM_KVM_DEVICE");
    Fd kvm(::open(device != nullptr ? device : "/dev/null", O_RDWR | O_CLOEXEC));

    std::atomic<bool> migrated_here = false;
    if (!incoming.empty()) {
        Fd listener = tcp_socket(parse_uri(incoming), true);
        sockaddr_storage address{};
        socklen_t length = sizeof address;
        ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length);
        const int port =
            ntohs(address.ss_family == AF_INET ? reinterpret_cast<sockaddr_in&>(address).sin_port
                                               : reinterpret_cast<sockaddr_in6&>(address).sin6_port);
        std::fprintf(stderr, "vmm: waiting for a migration on port %d\n", port);
        std::fflush(stderr);
        Fd connection(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        const std::string arrived = read_line(connection.get());
        if (::write(connection.get(), "ok\n", 3) != 3 || arrived.empty()) {
            std::fprintf(stderr, "error: the migration stream broke\n");
            return 1;
        }
        migrated_here = true;
    }
    if (serial.starts_with("file=")) {
        std::ofstream(serial.substr(5), std::ios::app)
            << "fake vmm: " << (migrated_here ? "migrated in" : "booted") << "\n";
    }

    vim::vmm::sys::EventLoop loop;
    std::mutex mutex;
    std::string migration_state = "none", migration_error;
    std::thread migration;
    bool handed_over = false;
    bool dirty_rate_measured = false;
    vim::vmm::control::CommandTable commands = {
        {"status",
         [&](const json&) {
             std::lock_guard lock(mutex);
             return json{{"state", handed_over ? "migrated" : "running"}, {"vcpus", cpus}};
         }},
        {"stats",
         [&](const json&) {
             return json{{"vcpus", {{{"id", 0}, {"exits", {{"total", 52000}}}}}},
                         {"devices",
                          {{"virtio-blk-0", {{"bytes_read", 4096}, {"bytes_written", 512}}},
                           {"virtio-net-0", {{"rx", {{"bytes", 100}}}, {"tx", {{"bytes", 200}}}}},
                           {"virtio-balloon", {{"actual_mib", 0}}}}},
                         {"resident_bytes", 1 << 20}};
         }},
        {"shutdown",
         [&](const json&) {
             loop.post([&] { loop.stop(); });
             return json{{"state", "shutting-down"}};
         }},
        {"snapshot",
         [&](const json& request) {
             const std::string dir = request.at("dir").get<std::string>();
             std::filesystem::create_directories(dir);
             std::ofstream(dir + "/state") << "fake state\n";
             return json{{"dir", dir}, {"state", "running"}};
         }},
        {"migrate",
         [&](const json& request) {
             const std::string uri = request.at("uri").get<std::string>();
             std::lock_guard lock(mutex);
             migration_state = "active";
             migration = std::thread([&, uri] {
                 std::string state = "completed", error;
                 try {
                     Fd socket = tcp_socket(parse_uri(uri), false);
                     const std::string line = "vm\n";
                     if (::write(socket.get(), line.data(), line.size()) !=
                             static_cast<ssize_t>(line.size()) ||
                         read_line(socket.get()) != "ok") {
                         throw std::runtime_error("the destination did not take the VM");
                     }
                 } catch (const std::exception& failure) {
                     state = "failed";
                     error = failure.what();
                 }
                 std::lock_guard lock(mutex);
                 migration_state = state;
                 migration_error = error;
                 handed_over = state == "completed";
             });
             return json{{"state", "active"}};
         }},
        {"dirty-rate",
         [&](const json& request) {
             std::lock_guard lock(mutex);
             if (request.contains("window_ms")) {
                 dirty_rate_measured = true;
                 return json{{"state", "measuring"}, {"window_ms", request["window_ms"]}};
             }
             return dirty_rate_measured ? json{{"state", "done"}, {"dirty_rate_pages_per_s", 1500}}
                                        : json{{"state", "none"}};
         }},
        {"migrate-status",
         [&](const json&) {
             std::lock_guard lock(mutex);
             json status = {{"state", migration_state}, {"iteration", 1}, {"pages_sent", 10}};
             if (!migration_error.empty()) {
                 status["error"] = migration_error;
             }
             if (migration_state == "completed") {
                 status["total_ms"] = 5;
                 status["downtime_ms"] = 1;
             }
             return status;
         }},
    };
    std::optional<vim::vmm::control::ControlServer> server;
    if (!api_socket.empty()) {
        server.emplace(loop, api_socket, std::move(commands));
    }
    loop.run();
    if (server) {
        server->stop();
    }
    if (migration.joinable()) {
        migration.join();
    }
    return 0;
}
