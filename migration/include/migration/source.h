#pragma once

// The sending side of a live migration, on a thread of its own.
//
// Source (this side):
//
//   none --start()--> active: header, Config, MemoryLayout
//     active: round 1 sends every page; each later round sends the pages
//             dirtied meanwhile; Convergence decides after each round
//       Continue  -> next round
//       GiveUp    -> failed (the guest never stopped)
//       FinalCopy -> Sync, wait for SYNCED (the destination has caught up)
//                    -> pause(); last dirty pages; State; End
//                    wait for READY --(ERROR, EOF, timeout)--> resume(); failed
//                    send GO (from here on the destination may run the guest:
//                    no way back) -> hand_over() -> wait for RUNNING
//                    -> completed (downtime_ms: pause to RUNNING)
//   any error or cancel() before GO is sent: dirty logging off, resume() if
//   paused, failed (with the reason) or cancelled.
//
// Destination (destination.h):
//
//   accept -> header, Config, MemoryLayout (the caller builds the VM)
//          -> Pages... (each Sync answered with SYNCED) State, End (the
//             caller restores the state)
//          -> send READY -> wait for GO --(EOF, anything else)--> exit non-zero
//          -> run the guest -> send RUNNING
//   any stream error: send ERROR with the reason, exit non-zero.
//
// Nothing is lost, nothing runs twice: the source resumes only while GO is
// unsent, so the destination has not run; the destination runs only after GO,
// when the source has stopped for good. A GO the kernel accepted but the
// network lost leaves neither side running: that is the one case the two
// sides cannot settle alone.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "migration/dirty_tracker.h"
#include "vmm/kvm/vm.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/sys/fd.h"

namespace vim::migration {

// What the source needs of the machine it migrates.
class SourceMachine {
public:
    virtual ~SourceMachine() = default;

    virtual vmm::memory::GuestMemory& memory() = 0;
    virtual vmm::kvm::Vm& vm() = 0;
    // The configuration the destination builds its VM from.
    virtual nlohmann::json config() = 0;
    // vCPUs parked, disk I/O drained, the event loop parked. resume() may
    // follow a pause() that threw.
    virtual void pause() = 0;
    virtual void resume() = 0;
    // The whole machine state (devices, vCPUs, irqchip), CBOR; called paused.
    virtual std::vector<std::uint8_t> save_state() = 0;
    // The destination runs the guest: stop for good (the vmm exits).
    virtual void hand_over() = 0;
};

struct MigrationOptions {
    double downtime_limit_ms = 300;
    // Megabits per second; 0: as fast as the link goes.
    double bandwidth_limit_mbps = 0;
    std::uint32_t max_iterations = 30;
    // How long the destination may take to restore the state and answer READY.
    std::chrono::milliseconds handshake_timeout{60000};
};

enum class MigrationState { None, Active, Completed, Failed, Cancelled };

// One pre-copy round, as a benchmark plots it.
struct RoundFigures {
    std::uint64_t pages = 0;
    std::uint64_t zero_pages = 0;
    std::uint64_t bytes = 0;
    double ms = 0;
    // Written during the round: the next round's work.
    std::uint64_t dirty_pages = 0;
    double expected_downtime_ms = 0;
};

// Where the downtime went, in the order it is spent.
struct DowntimeParts {
    double pause_ms = 0;        // parking the vCPUs and draining disk I/O
    double last_pages_ms = 0;   // collecting and sending the last dirty pages
    double state_ms = 0;        // saving and sending the machine state
    double destination_ms = 0;  // the destination restoring it, until READY
    double switch_over_ms = 0;  // GO to RUNNING
};

struct MigrationStatus {
    MigrationState state = MigrationState::None;
    std::uint32_t iteration = 0;
    std::uint64_t pages_sent = 0;
    std::uint64_t zero_pages = 0;
    std::uint64_t bytes = 0;
    double dirty_rate_pages_per_s = 0;
    double bandwidth_mbps = 0;
    double expected_downtime_ms = 0;
    std::optional<double> total_ms;
    std::optional<double> downtime_ms;
    std::optional<DowntimeParts> downtime_parts;
    std::vector<RoundFigures> rounds;  // the pre-copy rounds, then the final one
    std::string error;                 // when failed
};

// The reply to migrate-status: state, iteration, pages_sent, zero_pages, bytes,
// dirty_rate_pages_per_s, bandwidth_mbps, expected_downtime_ms, rounds; total_ms,
// downtime_ms and downtime_parts_ms once known; error when failed.
nlohmann::json to_json(const MigrationStatus& status);

class Source {
public:
    // Migrates over `socket`, already connected.
    Source(SourceMachine& machine, vmm::sys::Fd socket, MigrationOptions options);
    // Connects to `uri` (tcp:HOST:PORT) first, on the migration's thread: a
    // destination slow to answer delays the migration, not the caller; one
    // that refuses fails it, with the reason in status().
    Source(SourceMachine& machine, std::string uri, MigrationOptions options);
    Source(const Source&) = delete;
    Source& operator=(const Source&) = delete;
    // Cancels a migration still running and waits for its thread.
    ~Source();

    // Starts the migration thread and returns at once.
    void start();
    // Stops at the next batch and resumes the guest: cancelled. False when it
    // is too late (GO sent) or the migration has ended.
    bool cancel();
    // Waits for the migration to end.
    void wait();
    MigrationStatus status() const;

private:
    void run();
    // The whole migration up to RUNNING; throws on failure or cancel.
    // `paused` is set once the guest may be paused, for run() to resume it.
    void migrate_with(DirtyTracker& tracker, bool& paused);
    void update(const std::function<void(MigrationStatus&)>& change);
    std::string destination_error(const std::string& fallback);

    SourceMachine& machine_;
    std::string uri_;      // to connect to, when there is no socket yet
    vmm::sys::Fd socket_;  // set before the thread starts, or by it under mutex_
    MigrationOptions options_;
    std::thread thread_;

    mutable std::mutex mutex_;
    MigrationStatus status_;
    bool cancelled_ = false;  // under mutex_, as is go_sent_
    bool go_sent_ = false;
};

}  // namespace vim::migration
