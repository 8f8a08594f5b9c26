#include "migration/source.h"

#include <poll.h>
#include <sys/socket.h>

#include <functional>

#include "migration/convergence.h"
#include "migration/dirty_tracker.h"
#include "migration/pages.h"
#include "migration/stream.h"
#include "migration/transport.h"

namespace vim::migration {
namespace {

using Clock = std::chrono::steady_clock;

double milliseconds_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Thrown by the migration thread when cancel() stopped it.
struct Cancelled {};

// The destination's answer to what was sent (`sent`): `expected`, or throws
// with the reason a destination that rejects the stream gives.
void expect_control(int socket, ControlKind expected, std::string_view sent, std::string_view expected_name,
                    std::chrono::milliseconds timeout) {
    const ControlMessage message = receive_control(socket, timeout);
    if (message.kind == ControlKind::Error) {
        throw std::runtime_error("destination rejected the stream: " + message.text);
    }
    if (message.kind != expected) {
        throw std::runtime_error("destination answered " + std::string(sent) + " with something other than " +
                                 std::string(expected_name));
    }
}

std::span<const std::uint8_t> as_bytes(const std::string& text) {
    return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

std::string_view state_name(MigrationState state) {
    switch (state) {
    case MigrationState::None:
        return "none";
    case MigrationState::Active:
        return "active";
    case MigrationState::Completed:
        return "completed";
    case MigrationState::Failed:
        return "failed";
    case MigrationState::Cancelled:
        return "cancelled";
    }
    return "none";
}

}  // namespace

nlohmann::json to_json(const MigrationStatus& status) {
    nlohmann::json reply = {{"state", state_name(status.state)},
                            {"iteration", status.iteration},
                            {"pages_sent", status.pages_sent},
                            {"zero_pages", status.zero_pages},
                            {"bytes", status.bytes},
                            {"dirty_rate_pages_per_s", status.dirty_rate_pages_per_s},
                            {"bandwidth_mbps", status.bandwidth_mbps},
                            {"expected_downtime_ms", status.expected_downtime_ms}};
    if (status.total_ms) {
        reply["total_ms"] = *status.total_ms;
    }
    if (status.downtime_ms) {
        reply["downtime_ms"] = *status.downtime_ms;
    }
    if (status.downtime_parts) {
        const DowntimeParts& parts = *status.downtime_parts;
        reply["downtime_parts_ms"] = {{"pause", parts.pause_ms},
                                      {"last_pages", parts.last_pages_ms},
                                      {"state", parts.state_ms},
                                      {"destination", parts.destination_ms},
                                      {"switch_over", parts.switch_over_ms}};
    }
    reply["rounds"] = nlohmann::json::array();
    for (const RoundFigures& round : status.rounds) {
        reply["rounds"].push_back({{"pages", round.pages},
                                   {"zero_pages", round.zero_pages},
                                   {"bytes", round.bytes},
                                   {"ms", round.ms},
                                   {"dirty_pages", round.dirty_pages},
                                   {"expected_downtime_ms", round.expected_downtime_ms}});
    }
    if (status.state == MigrationState::Failed) {
        reply["error"] = status.error;
    }
    return reply;
}

Source::Source(SourceMachine& machine, vmm::sys::Fd socket, MigrationOptions options)
    : machine_(machine), socket_(std::move(socket)), options_(options) {}

Source::Source(SourceMachine& machine, std::string uri, MigrationOptions options)
    : machine_(machine), uri_(std::move(uri)), options_(options) {}

Source::~Source() {
    cancel();
    wait();
}

void Source::start() {
    update([](MigrationStatus& status) { status.state = MigrationState::Active; });
    thread_ = std::thread([this] { run(); });
}

bool Source::cancel() {
    std::lock_guard lock(mutex_);
    if (go_sent_ || status_.state != MigrationState::Active) {
        return false;
    }
    cancelled_ = true;
    // Wakes the thread from any send or receive it is blocked in (a connect
    // under way ends on its own, and the thread then sees cancelled_).
    if (socket_) {
        ::shutdown(socket_.get(), SHUT_RDWR);
    }
    return true;
}

void Source::wait() {
    if (thread_.joinable()) {
        thread_.join();
    }
}

MigrationStatus Source::status() const {
    std::lock_guard lock(mutex_);
    return status_;
}

void Source::update(const std::function<void(MigrationStatus&)>& change) {
    std::lock_guard lock(mutex_);
    change(status_);
}

void Source::run() {
    const Clock::time_point started = Clock::now();
    bool paused = false;
    DirtyTracker tracker(machine_.vm(), machine_.memory());
    try {
        migrate_with(tracker, paused);
    } catch (...) {
        std::string error;
        MigrationState state = MigrationState::Failed;
        try {
            throw;
        } catch (const Cancelled&) {
            state = MigrationState::Cancelled;
        } catch (const std::exception& failure) {
            error = failure.what();
        }
        bool handed_over;
        {
            std::lock_guard lock(mutex_);
            handed_over = go_sent_;
            if (cancelled_) {
                state = MigrationState::Cancelled;
            }
        }
        if (handed_over) {
            // The destination may run the guest: this side never resumes.
            // Only the confirmation (and so downtime_ms) is missing.
            update([&](MigrationStatus& status) {
                status.state = MigrationState::Completed;
                status.total_ms = milliseconds_since(started);
            });
            return;
        }
        if (state == MigrationState::Failed && socket_) {
            error = destination_error(error);
        }
        // The destination sees the stream end, and discards what it has.
        if (socket_) {
            ::shutdown(socket_.get(), SHUT_RDWR);
        }
        try {
            tracker.stop();
            if (paused) {
                machine_.resume();
            }
        } catch (const std::exception& resume_error) {
            error += std::string("; then resuming the guest failed: ") + resume_error.what();
        }
        update([&](MigrationStatus& status) {
            status.state = state;
            status.error = state == MigrationState::Failed ? error : "";
            status.total_ms = milliseconds_since(started);
        });
        return;
    }
    update([&](MigrationStatus& status) {
        status.state = MigrationState::Completed;
        status.total_ms = milliseconds_since(started);
    });
}

void Source::migrate_with(DirtyTracker& tracker, bool& paused) {
    if (!socket_) {
        vmm::sys::Fd connected = connect_tcp(uri_);
        std::lock_guard lock(mutex_);
        if (cancelled_) {
            throw Cancelled{};
        }
        socket_ = std::move(connected);
    }
    vmm::memory::GuestMemory& memory = machine_.memory();
    StreamWriter writer(socket_.get());
    writer.write_header();
    writer.write_section(SectionType::Config, as_bytes(machine_.config().dump()));
    writer.write_section(SectionType::MemoryLayout, encode_memory_layout(memory));

    PageSender sender(writer, memory);
    PageCounts total;
    Clock::time_point round_start;
    // Stops at the next batch once cancelled, and keeps to the bandwidth limit.
    auto after_batch = [&](const PageCounts& round) {
        {
            std::lock_guard lock(mutex_);
            if (cancelled_) {
                throw Cancelled{};
            }
            status_.pages_sent = total.pages + round.pages;
            status_.zero_pages = total.zero_pages + round.zero_pages;
            status_.bytes = total.bytes + round.bytes;
        }
        if (options_.bandwidth_limit_mbps > 0) {
            const double bytes_per_s = options_.bandwidth_limit_mbps * 1e6 / 8;
            std::this_thread::sleep_until(
                round_start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                                  static_cast<double>(round.bytes) / bytes_per_s)));
        }
    };

    tracker.start();
    // With KVM_DIRTY_LOG_INITIALLY_SET the first log has every page set:
    // collecting it clears it, and the first round sends every page anyway.
    tracker.collect();
    std::vector<RegionPages> pages = all_pages(memory);
    Convergence convergence(options_.downtime_limit_ms, std::max<std::uint32_t>(options_.max_iterations, 1));
    for (;;) {
        update([&](MigrationStatus& status) { status.iteration = convergence.iterations() + 1; });
        round_start = Clock::now();
        const PageCounts round = sender.send(pages, after_batch);
        total += round;
        pages = tracker.collect();
        const double seconds = std::chrono::duration<double>(Clock::now() - round_start).count();
        const std::uint64_t dirty_pages = count_pages(pages);
        const Decision decision = convergence.after_round({.pages_sent = round.pages,
                                                           .bytes_sent = round.bytes,
                                                           .seconds = seconds,
                                                           .dirty_pages = dirty_pages});
        update([&](MigrationStatus& status) {
            status.dirty_rate_pages_per_s = convergence.dirty_rate_pages_per_s();
            status.bandwidth_mbps = convergence.bandwidth_bytes_per_s() * 8 / 1e6;
            status.expected_downtime_ms = convergence.expected_downtime_ms();
            status.rounds.push_back({.pages = round.pages,
                                     .zero_pages = round.zero_pages,
                                     .bytes = round.bytes,
                                     .ms = seconds * 1000,
                                     .dirty_pages = dirty_pages,
                                     .expected_downtime_ms = convergence.expected_downtime_ms()});
        });
        if (decision == Decision::GiveUp) {
            throw std::runtime_error(convergence.give_up_reason());
        }
        if (decision == Decision::FinalCopy) {
            break;
        }
    }

    // The destination takes in what is still queued on the way (megabytes
    // of socket buffers) while the guest runs, not while it is paused.
    writer.write_section(SectionType::Sync, {});
    expect_control(socket_.get(), ControlKind::Synced, "SYNC", "SYNCED", options_.handshake_timeout);

    DowntimeParts parts;
    Clock::time_point part_start = Clock::now();
    // The time since part_start, and the next part starts now.
    auto lap = [&part_start] {
        const Clock::time_point now = Clock::now();
        const double ms = std::chrono::duration<double, std::milli>(now - part_start).count();
        part_start = now;
        return ms;
    };
    paused = true;
    const Clock::time_point paused_at = part_start;
    machine_.pause();
    parts.pause_ms = lap();
    update([&](MigrationStatus& status) { status.iteration = convergence.iterations() + 1; });
    round_start = Clock::now();
    // The pages found dirty after the last round and those dirtied since.
    std::vector<RegionPages> last = tracker.collect_final();
    for (std::size_t index = 0; index < last.size(); ++index) {
        for (std::size_t word = 0; word < last[index].dirty.size(); ++word) {
            last[index].dirty[word] |= pages[index].dirty[word];
        }
    }
    const PageCounts final_round = sender.send(last, after_batch);
    total += final_round;
    tracker.stop();
    parts.last_pages_ms = lap();
    update([&](MigrationStatus& status) {
        status.rounds.push_back({.pages = final_round.pages,
                                 .zero_pages = final_round.zero_pages,
                                 .bytes = final_round.bytes,
                                 .ms = parts.last_pages_ms});
    });
    writer.write_section(SectionType::State, machine_.save_state());
    writer.write_section(SectionType::End, {});
    parts.state_ms = lap();

    expect_control(socket_.get(), ControlKind::Ready, "the stream", "READY", options_.handshake_timeout);
    {
        std::lock_guard lock(mutex_);
        if (cancelled_) {
            throw Cancelled{};
        }
        parts.destination_ms = lap();
        send_control(socket_.get(), ControlKind::Go);
        go_sent_ = true;
    }
    machine_.hand_over();
    expect_control(socket_.get(), ControlKind::Running, "GO", "RUNNING", options_.handshake_timeout);
    parts.switch_over_ms = lap();
    update([&](MigrationStatus& status) {
        status.downtime_ms = std::chrono::duration<double, std::milli>(part_start - paused_at).count();
        status.downtime_parts = parts;
    });
}

std::string Source::destination_error(const std::string& fallback) {
    // A destination that rejects the stream says why before it closes; a
    // failed send on this side is only the echo of that.
    try {
        const ControlMessage message = receive_control(socket_.get(), std::chrono::milliseconds(200));
        if (message.kind == ControlKind::Error) {
            return "destination rejected the stream: " + message.text;
        }
    } catch (const std::exception&) {
        // No reason given: the local error is all there is.
    }
    return fallback;
}

}  // namespace vim::migration
