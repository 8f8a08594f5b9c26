#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace httplib {
class Client;
}

namespace vim::controller::vimd {

// An agent's failure to do what was asked: no connection, no answer in time, or an error reply.
// what() names the agent and the call: `agent http://10.0.0.5:8471: POST /agent/v1/vms: no answer
// within 30000 ms`.
class AgentError : public std::runtime_error {
public:
    AgentError(const std::string& message, int status) : std::runtime_error(message), status_(status) {}
    // The agent's HTTP status, 0 when none came.
    int status() const { return status_; }

private:
    int status_;
};

// Calls the controller -> agent API (/agent/v1/..., see openapi.json) of the hosts over HTTP, safely from
// many threads. A connection that answered is kept for the next call to the same agent (a connection
// and, on the agent, often a thread less per call); one left idle too long is closed instead, before the
// agent's own keep-alive timeout can close it under a request.
class AgentClient {
public:
    explicit AgentClient(std::optional<std::string> token);
    ~AgentClient();
    AgentClient(const AgentClient&) = delete;
    AgentClient& operator=(const AgentClient&) = delete;

    // Sends body (if any) as JSON and returns the agent's JSON reply (an empty object when it has none).
    nlohmann::json call(const std::string& agent_url, const std::string& method, const std::string& path,
                        const std::optional<nlohmann::json>& body, std::chrono::milliseconds timeout);

private:
    struct Idle {
        std::unique_ptr<httplib::Client> client;
        std::chrono::steady_clock::time_point since;
    };
    // An idle connection to the agent, or a new client (connecting on its first request); null when the
    // URL is not valid.
    std::unique_ptr<httplib::Client> take(const std::string& agent_url);
    void keep(const std::string& agent_url, std::unique_ptr<httplib::Client> client);

    std::optional<std::string> token_;
    std::mutex mutex_;                                         // guards idle_
    std::unordered_map<std::string, std::vector<Idle>> idle_;  // by agent URL, the most recent last
};

}  // namespace vim::controller::vimd
