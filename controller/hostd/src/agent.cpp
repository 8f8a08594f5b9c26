#include "controller/hostd/agent.h"

#include "agent_server.h"
#include "controller_link.h"
#include "vm_manager.h"

namespace vim::controller::hostd {

void Config::complete() {
    state_dir = std::filesystem::absolute(state_dir);
    disk_dir = std::filesystem::absolute(disk_dir.empty() ? state_dir / "disks" : disk_dir);
    run_dir = std::filesystem::absolute(run_dir.empty() ? state_dir / "run" : run_dir);
}

Agent::Agent(Config config) : config_(std::move(config)) {
    config_.complete();
    vms_ = std::make_unique<VmManager>(config_);
    vms_->load();
    server_ = std::make_unique<AgentServer>(config_, *vms_);
}

Agent::~Agent() {
    stop();
    link_.reset();
    server_.reset();
}

int Agent::bind() {
    const int port = server_->bind();
    const std::string url = config_.advertise_url.empty()
                                ? "http://" + config_.listen_host + ":" + std::to_string(port)
                                : config_.advertise_url;
    link_ = std::make_unique<ControllerLink>(config_, *vms_, url);
    return port;
}

void Agent::serve() {
    link_->start();
    server_->serve();
}

void Agent::stop() {
    if (server_) {
        server_->stop();
    }
    if (link_) {
        link_->stop();
    }
}

}  // namespace vim::controller::hostd
