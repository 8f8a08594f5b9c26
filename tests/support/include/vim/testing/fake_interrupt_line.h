#pragma once

#include <vector>

#include "vmm/devices/interrupts.h"

namespace vim::testing {

// Records every level the device drives, so tests can check both the current
// level and that a device only reports changes.
class FakeInterruptLine final : public vmm::devices::InterruptLine {
public:
    void set_level(bool high) override { levels.push_back(high); }

    bool high() const { return !levels.empty() && levels.back(); }

    // Rising edges seen so far: what an edge-triggered ISA interrupt delivers.
    int rising_edges() const {
        int edges = 0;
        bool previous = false;
        for (bool level : levels) {
            edges += level && !previous;
            previous = level;
        }
        return edges;
    }

    // True when no two consecutive calls set the same level.
    bool only_changes() const {
        bool previous = false;
        for (bool level : levels) {
            if (level == previous) {
                return false;
            }
            previous = level;
        }
        return true;
    }

    std::vector<bool> levels;
};

}  // namespace vim::testing
