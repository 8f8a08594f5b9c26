#pragma once

#include <memory>

#include "controller/hostd/config.h"

namespace vim::controller::hostd {

class VmManager;
class AgentServer;
class ControllerLink;

// The whole host agent: adopts the VMs its state directory records, serves the agent API and keeps the
// controller informed. Throws from the constructor when the state directory cannot be used.
class Agent {
public:
    explicit Agent(Config config);
    ~Agent();
    Agent(const Agent&) = delete;
    Agent& operator=(const Agent&) = delete;

    // Binds the listening socket; returns the port (the one asked for, or the one port 0 got).
    int bind();
    // Registers, starts heartbeating and serves requests until stop().
    void serve();
    // Safe from any thread (a signal waiter). The VMs keep running: they outlive hostd.
    void stop();

private:
    Config config_;
    std::unique_ptr<VmManager> vms_;
    std::unique_ptr<AgentServer> server_;
    std::unique_ptr<ControllerLink> link_;
};

}  // namespace vim::controller::hostd
