#include "agent_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <charconv>

#include "agent_error.h"
#include "controller/api/types.h"
#include "controller/api/validation.h"
#include "controller/common/bearer_token.h"
#include "vm_manager.h"

namespace vim::controller::hostd {
namespace {

using json = nlohmann::json;

constexpr std::size_t kMaxBodyBytes = 1 << 20;
// Creates download images and migrations run for as long as they take: each holds a thread.
constexpr std::size_t kThreads = 64;

void reply(httplib::Response& response, int status, const json& body) {
    response.status = status;
    response.set_content(body.dump(), "application/json");
}

pid_t parse_pid(const std::string& text) {
    pid_t pid = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), pid);
    if (error != std::errc() || end != text.data() + text.size() || pid <= 0) {
        throw api::ValidationError("pid", "must be a process id, not " + text.substr(0, 32));
    }
    return pid;
}

// The id in the path, checked like the ids of bodies.
std::string path_id(const httplib::Request& request) {
    const std::string id = request.matches[1];
    check_vm_id("id", id);
    return id;
}

}  // namespace

AgentServer::AgentServer(const Config& config, VmManager& vms)
    : config_(config), vms_(vms), server_(std::make_unique<httplib::Server>()) {
    server_->new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
    server_->set_payload_max_length(kMaxBodyBytes);

    using Action = std::function<json(const httplib::Request&)>;
    const auto route = [this](const char* method, const std::string& pattern, Action action) {
        auto handler = [this, action, method](const httplib::Request& request, httplib::Response& response) {
            if (config_.token && !bearer_matches(request.get_header_value("Authorization"), *config_.token)) {
                reply(response, 401, {{"error", "missing or wrong bearer token"}});
                return;
            }
            try {
                reply(response, 200, action(request));
            } catch (const api::ValidationError& error) {
                reply(response, 400, {{"error", error.what()}});
            } catch (const AgentError& error) {
                reply(response, error.status(), {{"error", error.what()}});
            } catch (const std::exception& error) {
                spdlog::error("{} {}: {}", method, request.path, error.what());
                reply(response, 500, {{"error", error.what()}});
            }
        };
        if (std::string_view(method) == "GET") {
            server_->Get(pattern, handler);
        } else if (std::string_view(method) == "POST") {
            server_->Post(pattern, handler);
        } else {
            server_->Delete(pattern, handler);
        }
    };
    const std::string vm = R"(/agent/v1/vms/([^/]+))";
    route("POST", "/agent/v1/vms", [this](const httplib::Request& request) {
        return vms_.create(api::AgentVmSpec::from_json(api::parse_body(request.body)));
    });
    route("GET", vm, [this](const httplib::Request& request) { return vms_.status(path_id(request)); });
    route("DELETE", vm, [this](const httplib::Request& request) { return vms_.remove(path_id(request)); });
    route("POST", vm + "/start",
          [this](const httplib::Request& request) { return vms_.start(path_id(request)); });
    route("POST", vm + "/stop",
          [this](const httplib::Request& request) { return vms_.stop(path_id(request)); });
    route("POST", vm + "/reboot",
          [this](const httplib::Request& request) { return vms_.reboot(path_id(request)); });
    route("POST", vm + "/incoming-migration", [this](const httplib::Request& request) {
        const std::string id = path_id(request);
        const auto spec = api::AgentVmSpec::from_json(api::parse_body(request.body));
        if (spec.id != id) {
            throw api::ValidationError("id", "must be the id in the path, " + id);
        }
        return json{{"uri", vms_.prepare_incoming(spec)}};
    });
    route("POST", vm + "/migrate", [this](const httplib::Request& request) {
        const std::string id = path_id(request);
        return vms_.migrate(id, api::AgentMigrate::from_json(api::parse_body(request.body)));
    });
    route("POST", vm + "/snapshot", [this](const httplib::Request& request) {
        const std::string id = path_id(request);
        const auto snapshot = api::AgentSnapshot::from_json(api::parse_body(request.body));
        return json{{"path", vms_.snapshot(id, snapshot.name)}};
    });
    route("POST", R"(/agent/v1/unmanaged/([^/]+)/stop)", [this](const httplib::Request& request) {
        vms_.stop_unmanaged(parse_pid(request.matches[1]));
        return json::object();
    });
    route("POST", R"(/agent/v1/unmanaged/([^/]+)/adopt)", [this](const httplib::Request& request) {
        const pid_t pid = parse_pid(request.matches[1]);
        const json body = api::parse_body(request.body);
        api::ObjectReader reader(body, "");
        const std::string id = reader.string("id", 64);
        reader.finish();
        vms_.adopt_unmanaged(pid, id);
        return json{{"id", id}};
    });
    server_->set_error_handler([](const httplib::Request& request, httplib::Response& response) {
        if (response.body.empty()) {
            const std::string problem = response.status == 404 ? "no such route: " : "cannot serve: ";
            reply(response, response.status, {{"error", problem + request.method + " " + request.path}});
        }
    });
}

AgentServer::~AgentServer() { stop(); }

int AgentServer::bind() {
    const int port =
        config_.listen_port == 0
            ? server_->bind_to_any_port(config_.listen_host)
            : (server_->bind_to_port(config_.listen_host, config_.listen_port) ? config_.listen_port : -1);
    if (port < 0) {
        throw std::runtime_error("listen on " + config_.listen_host + ":" +
                                 std::to_string(config_.listen_port) + ": cannot bind");
    }
    return port;
}

void AgentServer::serve() { server_->listen_after_bind(); }

void AgentServer::stop() { server_->stop(); }

}  // namespace vim::controller::hostd
