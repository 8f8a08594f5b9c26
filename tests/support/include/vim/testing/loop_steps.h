#pragma once

// Drives an event loop through a test's steps on the test's own thread, so a
// device under test runs exactly where it runs in the vmm: on the loop.

#include <functional>
#include <vector>

#include "vmm/sys/event_loop.h"

namespace vim::testing {

// Runs `action` once, then lets the loop turn until `until` holds.
struct LoopStep {
    std::function<void()> action;
    std::function<bool()> until;
};

// A condition that holds once the loop has turned `count` times: long enough
// for anything signalled before to have been served, were anyone watching.
std::function<bool()> after_turns(int count);

// Runs `loop` on this thread through `steps`, checking each condition between
// the loop's turns, and stops it after the last (or after 10 s, failing the
// test). A stopped EventLoop stays stopped: call this once per loop.
void run_loop_steps(vmm::sys::EventLoop& loop, std::vector<LoopStep> steps);

}  // namespace vim::testing
