#pragma once

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace vim::testing {

class HttpClient;

// A host agent played over real HTTP: serves the controller -> agent API (/agent/v1/..., see
// controller/api/openapi.json) on a loopback port, validates each body with the API's strict types,
// records every call, and answers as told: ok (after a delay), an error status, or never. Like hostd it
// keeps the VMs it was told to create (or prepare for an incoming migration) until they are deleted or
// migrated out, and the unmanaged processes a test sets until they are stopped or adopted; heartbeat()
// reports them as hostd would.
class AgentDouble {
public:
    struct Call {
        std::string method;
        std::string path;
        nlohmann::json body;
        int remote_port = 0;  // the controller's end of the connection the call came on
    };
    enum class Mode { answer, fail, never_answer };
    struct Behaviour {
        Mode mode = Mode::answer;
        int status = 500;  // for fail
        std::chrono::milliseconds delay{0};
    };

    AgentDouble();
    ~AgentDouble();
    AgentDouble(const AgentDouble&) = delete;
    AgentDouble& operator=(const AgentDouble&) = delete;

    // http://127.0.0.1:PORT, what the host registers as its agent_url.
    const std::string& url() const { return url_; }
    // How calls whose path ends with suffix ("/agent/v1/vms", "/start", "/migrate", ...) are answered.
    void set_behaviour(const std::string& path_suffix, Behaviour behaviour);
    // Closes a connection left idle this long (httplib's default: 5 s). Before the first call only.
    void close_idle_connections_after(std::chrono::seconds idle);
    std::vector<Call> calls() const;
    std::size_t count(const std::string& method, const std::string& path_suffix) const;
    // The routes this double serves, as the OpenAPI document names them.
    static std::vector<std::pair<std::string, std::string>> routes();

    // The VMs it runs, by id.
    std::vector<std::string> vms() const;
    // Figures reported for a VM in heartbeats (e.g. {"dirty_rate_pages_per_s": 100}).
    void set_figures(const std::string& vm_id, nlohmann::json figures);
    // Reports the VM as the guest left it: running, or stopped (powered off).
    void set_vm_state(const std::string& vm_id, const std::string& state);
    // Starts or ends reporting a VM, as if its vmm started or died behind the agent's back.
    void add_vm(const std::string& vm_id);
    void drop_vm(const std::string& vm_id);
    // The KVM processes it reports as unmanaged: {"pid", "command", "api_socket"} each.
    void set_unmanaged(nlohmann::json processes);
    // A heartbeat body: its VMs with their state and figures, and the unmanaged processes.
    nlohmann::json heartbeat() const;
    // Sends heartbeat() for the host to vimd; returns the reply.
    nlohmann::json send_heartbeat(const HttpClient& vimd, const std::string& host) const;
    // Sends heartbeats every `interval` from a thread of its own until stop_heartbeats (or the end).
    void start_heartbeats(const HttpClient& vimd, const std::string& host,
                          std::chrono::milliseconds interval);
    void stop_heartbeats();

private:
    void handle(const httplib::Request& request, httplib::Response& response, const std::string& route);
    // What a call that succeeded changes of the VMs and processes the double holds (mutex_ held).
    void apply(const httplib::Request& request, const std::string& route, nlohmann::json& reply, int& status);

    httplib::Server server_;
    std::thread thread_;
    std::string url_;
    mutable std::mutex mutex_;
    std::condition_variable released_;
    bool stopping_ = false;
    std::map<std::string, Behaviour> behaviours_;
    std::vector<Call> calls_;
    std::map<std::string, std::string> vm_states_;  // id -> running or stopped
    std::map<std::string, nlohmann::json> figures_;
    nlohmann::json unmanaged_ = nlohmann::json::array();
    std::condition_variable heartbeats_stop_;
    bool heartbeats_stopping_ = false;
    std::thread heartbeats_;
};

}  // namespace vim::testing
