#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace vim::vmm::machine {

// The way the VM ended: the process exit code and, when it is not 0, the
// message printed as "error: ...".
struct Outcome {
    int exit_code;
    std::string message;
};

// How the VM is doing: running, asked to shut down, or ended. Thread-safe:
// vCPUs, devices, the control commands and signals all report here, and the
// first outcome reported wins.
class Lifecycle {
public:
    // Runs once, on the thread that ends the VM, to get every part moving
    // towards the exit (kick the vCPUs, stop the event loop). Set before
    // anything can end the VM.
    void on_end(std::function<void()> stop_everything) { stop_everything_ = std::move(stop_everything); }

    void end(Outcome outcome);
    bool has_ended() const;
    // Marks a graceful shutdown as under way; false if one already is, or
    // the VM has ended.
    bool begin_shutdown();
    // The guest now runs in another vmm: this one only answers for it
    // (migrate-status) until it ends.
    void mark_migrated();
    bool migrated() const;
    // "running", "shutting-down", "migrated" or "stopping"; the vCPUs add "paused".
    const char* state() const;
    // The outcome; call once the VM has ended.
    Outcome outcome() const;

private:
    std::function<void()> stop_everything_;
    mutable std::mutex mutex_;
    std::optional<Outcome> outcome_;
    bool shutting_down_ = false;
    bool migrated_ = false;
};

}  // namespace vim::vmm::machine
