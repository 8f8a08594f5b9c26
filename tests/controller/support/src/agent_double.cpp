#include "vim/testing/agent_double.h"

#include <algorithm>

#include "controller/api/types.h"
#include "controller/api/validation.h"
#include "vim/testing/vimd_process.h"

namespace vim::testing {

namespace {

struct AgentRoute {
    const char* method;
    const char* path;  // OpenAPI form
    const char* regex;
};

constexpr AgentRoute kRoutes[] = {
    {"POST", "/agent/v1/vms", "/agent/v1/vms"},
    {"GET", "/agent/v1/vms/{id}", "/agent/v1/vms/([^/]+)"},
    {"DELETE", "/agent/v1/vms/{id}", "/agent/v1/vms/([^/]+)"},
    {"POST", "/agent/v1/vms/{id}/start", "/agent/v1/vms/([^/]+)/start"},
    {"POST", "/agent/v1/vms/{id}/stop", "/agent/v1/vms/([^/]+)/stop"},
    {"POST", "/agent/v1/vms/{id}/reboot", "/agent/v1/vms/([^/]+)/reboot"},
    {"POST", "/agent/v1/vms/{id}/incoming-migration", "/agent/v1/vms/([^/]+)/incoming-migration"},
    {"POST", "/agent/v1/vms/{id}/migrate", "/agent/v1/vms/([^/]+)/migrate"},
    {"POST", "/agent/v1/vms/{id}/snapshot", "/agent/v1/vms/([^/]+)/snapshot"},
    {"POST", "/agent/v1/unmanaged/{pid}/stop", "/agent/v1/unmanaged/([0-9]+)/stop"},
    {"POST", "/agent/v1/unmanaged/{pid}/adopt", "/agent/v1/unmanaged/([0-9]+)/adopt"},
};

// What the real agent would check of each body, with the same strict types the controller uses.
void validate(const std::string& route, const std::string& body) {
    if (route == "/agent/v1/vms" || route == "/agent/v1/vms/{id}/incoming-migration") {
        controller::api::AgentVmSpec::from_json(controller::api::parse_body(body));
    } else if (route == "/agent/v1/vms/{id}/migrate") {
        controller::api::AgentMigrate::from_json(controller::api::parse_body(body));
    } else if (route == "/agent/v1/vms/{id}/snapshot") {
        controller::api::AgentSnapshot::from_json(controller::api::parse_body(body));
    } else if (route == "/agent/v1/unmanaged/{pid}/adopt") {
        controller::api::AgentAdopt::from_json(controller::api::parse_body(body));
    }
}

}  // namespace

std::vector<std::pair<std::string, std::string>> AgentDouble::routes() {
    std::vector<std::pair<std::string, std::string>> all;
    for (const auto& route : kRoutes) {
        all.emplace_back(route.method, route.path);
    }
    return all;
}

AgentDouble::AgentDouble() {
    for (const auto& route : kRoutes) {
        const std::string path = route.path;
        auto handler = [this, path](const httplib::Request& request, httplib::Response& response) {
            handle(request, response, path);
        };
        const std::string method = route.method;
        if (method == "GET") {
            server_.Get(route.regex, handler);
        } else if (method == "POST") {
            server_.Post(route.regex, handler);
        } else {
            server_.Delete(route.regex, handler);
        }
    }
    const int port = server_.bind_to_any_port("127.0.0.1");
    url_ = "http://127.0.0.1:" + std::to_string(port);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
}

AgentDouble::~AgentDouble() {
    stop_heartbeats();
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    released_.notify_all();
    server_.stop();
    thread_.join();
}

void AgentDouble::set_behaviour(const std::string& path_suffix, Behaviour behaviour) {
    std::lock_guard lock(mutex_);
    behaviours_[path_suffix] = behaviour;
}

void AgentDouble::close_idle_connections_after(std::chrono::seconds idle) {
    server_.set_keep_alive_timeout(idle.count());
}

std::vector<AgentDouble::Call> AgentDouble::calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
}

std::size_t AgentDouble::count(const std::string& method, const std::string& path_suffix) const {
    std::lock_guard lock(mutex_);
    std::size_t found = 0;
    for (const auto& call : calls_) {
        found += call.method == method && call.path.ends_with(path_suffix) ? 1 : 0;
    }
    return found;
}

void AgentDouble::handle(const httplib::Request& request, httplib::Response& response,
                         const std::string& route) {
    Behaviour behaviour;
    {
        std::unique_lock lock(mutex_);
        calls_.push_back({request.method, request.path, nlohmann::json::parse(request.body, nullptr, false),
                          request.remote_port});
        for (const auto& [suffix, configured] : behaviours_) {
            if (request.path.ends_with(suffix)) {
                behaviour = configured;
            }
        }
        if (behaviour.mode == Mode::never_answer) {
            released_.wait(lock, [this] { return stopping_; });
            return;
        }
        if (behaviour.delay.count() > 0) {
            released_.wait_for(lock, behaviour.delay, [this] { return stopping_; });
        }
    }
    if (behaviour.mode == Mode::fail) {
        response.status = behaviour.status;
        response.set_content(nlohmann::json{{"error", "agent double told to fail"}}.dump(),
                             "application/json");
        return;
    }
    try {
        validate(route, request.body);
    } catch (const controller::api::ValidationError& error) {
        response.status = 400;
        response.set_content(nlohmann::json{{"error", error.what()}}.dump(), "application/json");
        return;
    }
    nlohmann::json reply = {{"state", "running"}};
    if (route.ends_with("incoming-migration")) {
        reply = {{"uri", "tcp:127.0.0.1:4444"}};
    } else if (route.ends_with("snapshot")) {
        reply = {{"path", "/var/lib/vim/snapshots/" + request.matches[1].str()}};
    } else if (route.ends_with("stop")) {
        reply = {{"state", "stopped"}};
    } else if (request.method == "DELETE") {
        reply = {{"state", "gone"}};
    }
    int status = 200;
    {
        std::lock_guard lock(mutex_);
        apply(request, route, reply, status);
    }
    response.status = status;
    response.set_content(reply.dump(), "application/json");
}

void AgentDouble::apply(const httplib::Request& request, const std::string& route, nlohmann::json& reply,
                        int& status) {
    const std::string id = request.matches.size() > 1 ? request.matches[1].str() : "";
    if (route == "/agent/v1/vms" || route.ends_with("incoming-migration")) {
        vm_states_[nlohmann::json::parse(request.body).at("id").get<std::string>()] = "running";
    } else if (route == "/agent/v1/vms/{id}" && request.method == "GET") {
        const auto found = vm_states_.find(id);
        if (found == vm_states_.end()) {
            status = 404;
            reply = {{"error", "no vm " + id}};
        } else {
            reply = {{"id", id}, {"state", found->second}};
        }
    } else if (route == "/agent/v1/vms/{id}" || route.ends_with("/migrate")) {
        vm_states_.erase(id);  // deleted, or handed over to the migration's target
    } else if (route == "/agent/v1/vms/{id}/stop" || route == "/agent/v1/vms/{id}/start") {
        if (vm_states_.contains(id)) {
            vm_states_[id] = route.ends_with("stop") ? "stopped" : "running";
        }
    } else if (route.starts_with("/agent/v1/unmanaged/")) {
        const auto pid = std::stoll(id);
        const auto found = std::find_if(unmanaged_.begin(), unmanaged_.end(),
                                        [&](const nlohmann::json& process) { return process["pid"] == pid; });
        if (found == unmanaged_.end()) {
            status = 404;
            reply = {{"error", "no unmanaged KVM process " + id}};
            return;
        }
        unmanaged_.erase(found);
        if (route.ends_with("adopt")) {
            reply = {{"id", nlohmann::json::parse(request.body).at("id")}};
            vm_states_[reply["id"].get<std::string>()] = "running";
        } else {
            reply = nlohmann::json::object();
        }
    }
}

std::vector<std::string> AgentDouble::vms() const {
    std::lock_guard lock(mutex_);
    std::vector<std::string> ids;
    for (const auto& [id, state] : vm_states_) {
        ids.push_back(id);
    }
    return ids;
}

void AgentDouble::set_figures(const std::string& vm_id, nlohmann::json figures) {
    std::lock_guard lock(mutex_);
    figures_[vm_id] = std::move(figures);
}

void AgentDouble::set_vm_state(const std::string& vm_id, const std::string& state) {
    std::lock_guard lock(mutex_);
    vm_states_[vm_id] = state;
}

void AgentDouble::add_vm(const std::string& vm_id) { set_vm_state(vm_id, "running"); }

void AgentDouble::drop_vm(const std::string& vm_id) {
    std::lock_guard lock(mutex_);
    vm_states_.erase(vm_id);
}

void AgentDouble::set_unmanaged(nlohmann::json processes) {
    std::lock_guard lock(mutex_);
    unmanaged_ = std::move(processes);
}

nlohmann::json AgentDouble::heartbeat() const {
    std::lock_guard lock(mutex_);
    nlohmann::json vms = nlohmann::json::array();
    for (const auto& [id, state] : vm_states_) {
        const auto figures = figures_.find(id);
        vms.push_back({{"id", id},
                       {"state", state},
                       {"figures", figures != figures_.end() ? figures->second : nlohmann::json::object()}});
    }
    return {{"metrics", {{"running_vms", vms.size()}}}, {"vms", vms}, {"unmanaged", unmanaged_}};
}

nlohmann::json AgentDouble::send_heartbeat(const HttpClient& vimd, const std::string& host) const {
    const auto reply = vimd.post("/v1/hosts/" + host + "/heartbeat", heartbeat());
    if (reply.status != 200) {
        throw std::runtime_error("heartbeat of host " + host + ": " + std::to_string(reply.status) + " " +
                                 reply.body);
    }
    return reply.json();
}

void AgentDouble::start_heartbeats(const HttpClient& vimd, const std::string& host,
                                   std::chrono::milliseconds interval) {
    stop_heartbeats();
    heartbeats_stopping_ = false;
    heartbeats_ = std::thread([this, vimd, host, interval] {
        std::unique_lock lock(mutex_);
        while (!heartbeats_stopping_) {
            lock.unlock();
            try {
                send_heartbeat(vimd, host);
            } catch (const std::exception&) {
                // vimd restarting, or the host not registered yet: the next beat tries again
            }
            lock.lock();
            heartbeats_stop_.wait_for(lock, interval, [this] { return heartbeats_stopping_; });
        }
    });
}

void AgentDouble::stop_heartbeats() {
    {
        std::lock_guard lock(mutex_);
        heartbeats_stopping_ = true;
    }
    heartbeats_stop_.notify_all();
    if (heartbeats_.joinable()) {
        heartbeats_.join();
    }
}

}  // namespace vim::testing
