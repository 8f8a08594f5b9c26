#include "controller_link.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <set>
#include <thread>

#include "controller/api/types.h"
#include "hwprobe/probe.h"
#include "hwprobe/report.h"
#include "vm_manager.h"

namespace vim::controller::hostd {
namespace {

using json = nlohmann::json;

// cpu_load (the 1-minute load average) and memory_used_mib (all but what is available).
json host_metrics() {
    double load = 0;
    std::ifstream("/proc/loadavg") >> load;
    std::uint64_t total_kib = 0, available_kib = 0;
    std::ifstream meminfo("/proc/meminfo");
    for (std::string key; meminfo >> key;) {
        std::uint64_t value = 0;
        meminfo >> value;
        if (key == "MemTotal:") {
            total_kib = value;
        } else if (key == "MemAvailable:") {
            available_kib = value;
        }
        meminfo.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
    }
    return {{"cpu_load", load}, {"memory_used_mib", (total_kib - std::min(total_kib, available_kib)) / 1024}};
}

httplib::Client client_for(const Config& config) {
    httplib::Client client(config.controller_url);
    client.set_connection_timeout(5);
    client.set_read_timeout(10);
    client.set_write_timeout(10);
    if (config.token) {
        client.set_bearer_token_auth(*config.token);
    }
    return client;
}

}  // namespace

ControllerLink::ControllerLink(const Config& config, VmManager& vms, std::string agent_url)
    : config_(config), vms_(vms), agent_url_(std::move(agent_url)) {}

ControllerLink::~ControllerLink() { stop(); }

void ControllerLink::start() {
    thread_ = std::thread([this] { run(); });
}

void ControllerLink::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) {
        thread_.join();
    }
}

bool ControllerLink::pause() {
    std::unique_lock lock(mutex_);
    return !wake_.wait_for(lock, config_.heartbeat_interval, [this] { return stopping_; });
}

json ControllerLink::registration() const {
    hwprobe::ProbeOptions options;
    options.state_directory = config_.state_dir;
    const hwprobe::Inventory inventory = hwprobe::probe(options);
    api::HostRegistration host;
    host.name = config_.name;
    host.agent_url = agent_url_;
    host.cpus = inventory.cpu.online.empty() ? std::max(1u, std::thread::hardware_concurrency())
                                             : inventory.cpu.online.size();
    host.memory_mib = inventory.memory.total_bytes.value_or(0) >> 20;
    if (inventory.state_directory) {
        host.disk_gib = inventory.state_directory->total_bytes.value_or(0) >> 30;
    }
    host.cpu_features = inventory.cpu.features;
    for (const auto& node : inventory.numa_nodes) {
        if (!node.cpus.empty()) {  // a memory-only node hosts no vCPU
            host.numa_nodes.push_back({node.cpus.size(), node.memory_total_bytes.value_or(0) >> 20});
        }
    }
    host.inventory = hwprobe::to_json(inventory);
    return host.to_json();
}

bool ControllerLink::register_host() {
    auto client = client_for(config_);
    const auto result = client.Post("/v1/hosts", registration().dump(), "application/json");
    if (!result || (result->status != 200 && result->status != 201)) {
        spdlog::warn("register with {}: {}", config_.controller_url,
                     result ? std::to_string(result->status) + " " + result->body
                            : httplib::to_string(result.error()));
        return false;
    }
    const json reply = json::parse(result->body, nullptr, false);
    host_id_ = reply.is_object() && reply.contains("id") && reply["id"].is_string()
                   ? reply["id"].get<std::string>()
                   : config_.name;
    spdlog::info("registered with {} as host {}", config_.controller_url, host_id_);
    return true;
}

bool ControllerLink::heartbeat() {
    // Read before the body is made: a VM created or prepared after this is newer than the reply.
    const std::uint64_t sent_at = vms_.generation();
    json vms = vms_.heartbeat_vms();
    json metrics = host_metrics();
    std::size_t running = 0;
    for (const json& vm : vms) {
        running += vm["state"] == "running" ? 1 : 0;
    }
    metrics["running_vms"] = running;
    const json body = {{"metrics", metrics}, {"vms", vms}, {"unmanaged", vms_.unmanaged()}};
    auto client = client_for(config_);
    const auto result = client.Post("/v1/hosts/" + host_id_ + "/heartbeat", body.dump(), "application/json");
    if (!result) {
        spdlog::warn("heartbeat to {}: {}", config_.controller_url, httplib::to_string(result.error()));
        return true;
    }
    if (result->status == 404) {
        spdlog::warn("the controller no longer knows host {}: registering again", host_id_);
        return false;
    }
    if (result->status != 200) {
        if (result->status != 204) {
            spdlog::warn("heartbeat to {}: {} {}", config_.controller_url, result->status, result->body);
        }
        return true;
    }
    const json reply = json::parse(result->body, nullptr, false);
    if (!reply.is_object() || !reply.contains("vms") || !reply["vms"].is_array()) {
        spdlog::warn("heartbeat reply without a vms list: nothing fenced");
        return true;
    }
    std::set<std::string> placed_here;
    for (const json& id : reply["vms"]) {
        if (id.is_string()) {
            placed_here.insert(id.get<std::string>());
        }
    }
    vms_.fence(placed_here, sent_at);
    return true;
}

void ControllerLink::run() {
    for (;;) {
        for (;;) {
            try {
                if (register_host()) {
                    break;
                }
            } catch (const std::exception& error) {
                spdlog::error("register: {}", error.what());
            }
            if (!pause()) {
                return;
            }
        }
        bool known = true;
        while (known) {
            try {
                known = heartbeat();
            } catch (const std::exception& error) {
                spdlog::error("heartbeat: {}", error.what());
            }
            if (!pause()) {
                return;
            }
        }
    }
}

}  // namespace vim::controller::hostd
