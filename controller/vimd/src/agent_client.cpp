#include "agent_client.h"

#include <httplib.h>

namespace vim::controller::vimd {

nlohmann::json AgentClient::call(const std::string& agent_url, const std::string& method,
                                 const std::string& path, const std::optional<nlohmann::json>& body,
                                 std::chrono::milliseconds timeout) const {
    const std::string context = "agent " + agent_url + ": " + method + " " + path;
    httplib::Client client(agent_url);
    if (!client.is_valid()) {
        throw AgentError(context + ": the agent URL is not valid", 0);
    }
    const auto connect_timeout = std::min(timeout, std::chrono::milliseconds(5000));
    client.set_connection_timeout(connect_timeout);
    client.set_read_timeout(timeout);
    client.set_write_timeout(timeout);
    if (token_) {
        client.set_bearer_token_auth(*token_);
    }
    httplib::Request request;
    request.method = method;
    request.path = path;
    if (body) {
        request.body = body->dump();
        request.set_header("Content-Type", "application/json");
    }
    const auto result = client.send(request);
    if (!result) {
        if (result.error() == httplib::Error::Read) {
            throw AgentError(context + ": no answer within " + std::to_string(timeout.count()) + " ms", 0);
        }
        if (result.error() == httplib::Error::Connection) {
            throw AgentError(context + ": cannot connect", 0);
        }
        throw AgentError(context + ": " + httplib::to_string(result.error()), 0);
    }
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
