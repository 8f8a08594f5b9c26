#pragma once

#include <cstddef>
#include <vector>

#include "vmm/virtio/device.h"

namespace vim::testing {

// A device's interrupt that records what the device asked for, for tests
// that drive a virtio device without a transport.
class RecordingInterrupt : public vmm::virtio::DeviceInterrupt {
public:
    void used_buffers(std::size_t queue) override { used_buffers_queues.push_back(queue); }
    void config_changed() override { ++config_changes; }
    void needs_reset() override { ++needs_reset_calls; }

    std::vector<std::size_t> used_buffers_queues;
    int config_changes = 0;
    int needs_reset_calls = 0;
};

}  // namespace vim::testing
