#include "vim/testing/agent_double.h"

#include "controller/api/types.h"
#include "controller/api/validation.h"

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
};

// What the real agent would check of each body, with the same strict types the controller uses.
void validate(const std::string& route, const std::string& body) {
    if (route == "/agent/v1/vms" || route == "/agent/v1/vms/{id}/incoming-migration") {
        controller::api::AgentVmSpec::from_json(controller::api::parse_body(body));
    } else if (route == "/agent/v1/vms/{id}/migrate") {
        controller::api::AgentMigrate::from_json(controller::api::parse_body(body));
    } else if (route == "/agent/v1/vms/{id}/snapshot") {
        controller::api::AgentSnapshot::from_json(controller::api::parse_body(body));
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
    response.set_content(reply.dump(), "application/json");
}

}  // namespace vim::testing
