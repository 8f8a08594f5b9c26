#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>

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

// Calls the controller -> agent API (/agent/v1/..., see openapi.json) of one host over HTTP.
class AgentClient {
public:
    explicit AgentClient(std::optional<std::string> token) : token_(std::move(token)) {}

    // Sends body (if any) as JSON and returns the agent's JSON reply (an empty object when it has none).
    nlohmann::json call(const std::string& agent_url, const std::string& method, const std::string& path,
                        const std::optional<nlohmann::json>& body, std::chrono::milliseconds timeout) const;

private:
    std::optional<std::string> token_;
};

}  // namespace vim::controller::vimd
