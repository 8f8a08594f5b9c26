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

// A host agent played over real HTTP: serves the controller -> agent API (/agent/v1/..., see
// controller/api/openapi.json) on a loopback port, validates each body with the API's strict types,
// records every call, and answers as told: ok (after a delay), an error status, or never.
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

private:
    void handle(const httplib::Request& request, httplib::Response& response, const std::string& route);

    httplib::Server server_;
    std::thread thread_;
    std::string url_;
    mutable std::mutex mutex_;
    std::condition_variable released_;
    bool stopping_ = false;
    std::map<std::string, Behaviour> behaviours_;
    std::vector<Call> calls_;
};

}  // namespace vim::testing
