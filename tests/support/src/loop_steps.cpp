#include "vim/testing/loop_steps.h"

#include <gtest/gtest.h>

#include <chrono>

namespace vim::testing {

std::function<bool()> after_turns(int count) {
    return [count]() mutable { return count-- == 0; };
}

void run_loop_steps(vmm::sys::EventLoop& loop, std::vector<LoopStep> steps) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::size_t current = 0;
    bool action_done = false;
    std::function<void()> turn = [&] {
        while (current < steps.size()) {
            if (!action_done) {
                steps[current].action();
                action_done = true;
            }
            if (!steps[current].until()) {
                break;
            }
            ++current;
            action_done = false;
        }
        if (current == steps.size()) {
            loop.stop();
        } else if (std::chrono::steady_clock::now() > deadline) {
            ADD_FAILURE() << "step " << current << " of the loop never finished";
            loop.stop();
        } else {
            loop.post(turn);
        }
    };
    loop.post(turn);
    loop.run();
}

}  // namespace vim::testing
