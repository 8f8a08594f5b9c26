#pragma once

#include <memory>
#include <string>

#include "controller/hostd/config.h"

namespace httplib {
class Server;
}

namespace vim::controller::hostd {

class VmManager;

// The agent API (/agent/v1/..., controller/api/openapi.json and the issue 14 contract) over HTTP. Bodies
// are read strictly through the API's types: a bad one gets 400 {"error": "<field>: <problem>"}; with a
// token, a request without `Authorization: Bearer <token>` gets 401.
class AgentServer {
public:
    AgentServer(const Config& config, VmManager& vms);
    ~AgentServer();
    AgentServer(const AgentServer&) = delete;
    AgentServer& operator=(const AgentServer&) = delete;

    // Returns the port bound.
    int bind();
    // Serves until stop().
    void serve();
    void stop();

private:
    const Config& config_;
    VmManager& vms_;
    std::unique_ptr<httplib::Server> server_;
};

}  // namespace vim::controller::hostd
