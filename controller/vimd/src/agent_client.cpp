#include "agent_client.h"

#include <httplib.h>

#include <algorithm>
#include <iterator>

namespace vim::controller::vimd {

namespace {

// Well under the keep-alive timeouts of common HTTP servers (httplib's: 5 s), so that the agent does not
// close a kept connection just as a request is sent on it.
constexpr std::chrono::seconds kIdleConnectionLifetime{2};

}  // namespace

AgentClient::AgentClient(std::optional<std::string> token) : token_(std::move(token)) {}

AgentClient::~AgentClient() = default;

std::unique_ptr<httplib::Client> AgentClient::take(const std::string& agent_url) {
    {
        std::lock_guard lock(mutex_);
        auto found = idle_.find(agent_url);
        if (found != idle_.end() && !found->second.empty()) {
            auto client = std::move(found->second.back().client);
            found->second.pop_back();
            return client;
        }
    }
    auto client = std::make_unique<httplib::Client>(agent_url);
    if (!client->is_valid()) {
        return nullptr;
    }
    client->set_keep_alive(true);
    if (token_) {
        client->set_bearer_token_auth(*token_);
    }
    return client;
}

void AgentClient::keep(const std::string& agent_url, std::unique_ptr<httplib::Client> client) {
    const auto now = std::chrono::steady_clock::now();
    std::vector<Idle> expired;  // closed after the lock is released
    std::lock_guard lock(mutex_);
    for (auto it = idle_.begin(); it != idle_.end();) {
        auto& connections = it->second;
        // The least recently used come first: those past their lifetime form a prefix.
        const auto fresh = std::find_if(connections.begin(), connections.end(), [&](const Idle& idle) {
            return now - idle.since < kIdleConnectionLifetime;
        });
        std::move(connections.begin(), fresh, std::back_inserter(expired));
        connections.erase(connections.begin(), fresh);
        it = connections.empty() && it->first != agent_url ? idle_.erase(it) : std::next(it);
    }
    idle_[agent_url].push_back({std::move(client), now});
}

nlohmann::json AgentClient::call(const std::string& agent_url, const std::string& method,
                                 const std::string& path, const std::optional<nlohmann::json>& body,
                                 std::chrono::milliseconds timeout) {
    const std::string context = "agent " + agent_url + ": " + method + " " + path;
    auto client = take(agent_url);
    if (client == nullptr) {
        throw AgentError(context + ": the agent URL is not valid", 0);
    }
    const auto connect_timeout = std::min(timeout, std::chrono::milliseconds(5000));
    client->set_connection_timeout(connect_timeout);
    client->set_read_timeout(timeout);
    client->set_write_timeout(timeout);
    httplib::Request request;
    request.method = method;
    request.path = path;
    if (body) {
        request.body = body->dump();
        request.set_header("Content-Type", "application/json");
    }
    const auto result = client->send(request);
    if (!result) {
        if (result.error() == httplib::Error::Read) {
            throw AgentError(context + ": no answer within " + std::to_string(timeout.count()) + " ms", 0);
        }
        if (result.error() == httplib::Error::Connection) {
            throw AgentError(context + ": cannot connect", 0);
        }
        throw AgentError(context + ": " + httplib::to_string(result.error()), 0);
    }
    // A connection that failed is dropped with its client; one that answered serves the next call.
    keep(agent_url, std::move(client));
    nlohmann::json reply = nlohmann::json::object();
    if (!result->body.empty()) {
        reply = nlohmann::json::parse(result->body, nullptr, false);
    }
    if (result->status < 200 || result->status >= 300) {
        std::string reason = result->body;
        if (reply.is_object() && reply.contains("error") && reply["error"].is_string()) {
            reason = reply["error"].get<std::string>();
        }
        throw AgentError(context + ": " + std::to_string(result->status) + " " + reason, result->status);
    }
    if (!reply.is_object()) {
        throw AgentError(context + ": the reply is not a JSON object", result->status);
    }
    return reply;
}

}  // namespace vim::controller::vimd
