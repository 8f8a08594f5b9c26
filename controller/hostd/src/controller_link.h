#pragma once

#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "controller/hostd/config.h"

namespace vim::controller::hostd {

class VmManager;

// hostd's side of the controller: registers the host with its hwprobe inventory (again whenever the
// controller no longer knows it), then heartbeats every interval with host metrics, every VM's state and
// figures and the KVM processes nobody manages; a reply listing the VMs placed here fences the others.
class ControllerLink {
public:
    ControllerLink(const Config& config, VmManager& vms, std::string agent_url);
    ~ControllerLink();
    ControllerLink(const ControllerLink&) = delete;
    ControllerLink& operator=(const ControllerLink&) = delete;

    void start();
    void stop();

    // The registration body: this host's capacity and inventory.
    nlohmann::json registration() const;

private:
    void run();
    bool register_host();
    // false when the controller no longer knows the host.
    bool heartbeat();
    // Waits one interval; false when stopping.
    bool pause();

    const Config& config_;
    VmManager& vms_;
    std::string agent_url_;
    std::string host_id_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace vim::controller::hostd
