#include "migration_commands.h"

#include <sys/timerfd.h>

#include <chrono>
#include <future>

#include "migration/snapshot.h"
#include "migration/transport.h"

namespace vim::vmm::machine {
namespace {

using json = nlohmann::json;

double positive_number(const json& request, const char* name, double fallback) {
    const auto field = request.find(name);
    if (field == request.end()) {
        return fallback;
    }
    if (!field->is_number() || field->get<double>() <= 0) {
        throw control::CommandError(std::string(name) + " must be a positive number");
    }
    return field->get<double>();
}

}  // namespace

MigrationCommands::~MigrationCommands() {
    if (migration_) {
        migration_->wait();
    }
    if (linger_timer_) {
        machine_.loop.remove(linger_timer_.get());
    }
}

json MigrationCommands::config() { return config::shape_to_json(machine_.config); }

void MigrationCommands::pause() {
    was_paused_ = machine_.vcpus.paused();
    machine_.vcpus.pause();
    // Requests in flight finish on the loop's thread, which then parks: from
    // here on no device writes guest memory until resume().
    auto quiesced = std::make_shared<std::promise<void>>();
    auto done = quiesced->get_future();
    machine_.loop.post([this, quiesced] {
        try {
            machine_.devices.quiesce();
            quiesced->set_value();
        } catch (...) {
            quiesced->set_exception(std::current_exception());
        }
    });
    if (done.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
        throw std::runtime_error("the devices did not finish their requests in 30 s");
    }
    done.get();
    machine_.loop.pause();
}

void MigrationCommands::resume() {
    machine_.loop.resume();
    if (!was_paused_) {
        machine_.vcpus.resume();
    }
}

std::vector<std::uint8_t> MigrationCommands::save_state() {
    return save_machine_state(parts(), machine_.msr_indexes);
}

void MigrationCommands::hand_over() {
    // The destination takes the disks' locks as soon as these are gone.
    machine_.release_disks();
    machine_.vcpus.request_stop();  // the guest runs elsewhere now: never again here
    machine_.lifecycle.mark_migrated();
    machine_.loop.post([this] {
        linger_timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
        itimerspec expiry{};
        expiry.it_value.tv_sec = kLingerAfterHandOver.count();
        if (!linger_timer_ || ::timerfd_settime(linger_timer_.get(), 0, &expiry, nullptr) != 0) {
            machine_.lifecycle.end({0, "migrated"});
            return;
        }
        machine_.loop.add(linger_timer_.get(), EPOLLIN, [this](std::uint32_t) {
            machine_.loop.remove(linger_timer_.get());
            machine_.lifecycle.end({0, "migrated"});
        });
    });
    machine_.loop.resume();  // parked since pause()
}

bool MigrationCommands::migrating() const {
    return migration_ && migration_->status().state == migration::MigrationState::Active;
}

json MigrationCommands::migrate(const json& request) {
    if (migrating()) {
        throw control::CommandError("a migration is already running; migrate-cancel stops it");
    }
    if (dirty_rate_ && dirty_rate_->measuring()) {
        throw control::CommandError("a dirty-rate measurement is running; migrate when it ends");
    }
    if (machine_.lifecycle.has_ended() || machine_.lifecycle.migrated()) {
        throw control::CommandError(std::string("the VM is ") + machine_.lifecycle.state());
    }
    const auto uri = request.find("uri");
    if (uri == request.end() || !uri->is_string()) {
        throw control::CommandError("uri must be a string tcp:HOST:PORT");
    }
    migration::MigrationOptions options;
    options.downtime_limit_ms = positive_number(request, "downtime_limit_ms", options.downtime_limit_ms);
    options.bandwidth_limit_mbps = positive_number(request, "bandwidth_limit_mbps", 0);
    const double iterations = positive_number(request, "max_iterations", options.max_iterations);
    if (iterations != static_cast<std::uint32_t>(iterations)) {
        throw control::CommandError("max_iterations must be a positive integer");
    }
    options.max_iterations = static_cast<std::uint32_t>(iterations);
    try {
        migration::check_tcp_uri(uri->get<std::string>());
    } catch (const std::exception& error) {
        throw control::CommandError(error.what());
    }
    if (migration_) {
        migration_->wait();
    }
    // It connects on its own thread: this one runs the devices.
    migration::SourceMachine& machine = *this;
    migration_ = std::make_unique<migration::Source>(machine, uri->get<std::string>(), options);
    migration_->start();
    return migration::to_json(migration_->status());
}

json MigrationCommands::snapshot(const json& request) {
    const auto dir = request.find("dir");
    if (dir == request.end() || !dir->is_string() || dir->get<std::string>().empty()) {
        throw control::CommandError("dir must be a directory path");
    }
    bool stay_paused = false;
    if (const auto paused = request.find("paused"); paused != request.end()) {
        if (!paused->is_boolean()) {
            throw control::CommandError("paused must be true or false");
        }
        stay_paused = paused->get<bool>();
    }
    if (migrating()) {
        throw control::CommandError("a migration is running; a snapshot waits until it ends");
    }
    if (machine_.lifecycle.has_ended() || machine_.lifecycle.migrated()) {
        throw control::CommandError(std::string("the VM is ") + machine_.lifecycle.state());
    }
    // On the loop's thread: no device runs while this handler does.
    const bool was_paused = machine_.vcpus.paused();
    machine_.vcpus.pause();
    const auto started = std::chrono::steady_clock::now();
    try {
        machine_.devices.quiesce();
        migration::write_snapshot(dir->get<std::string>(), machine_.memory, config(), save_state());
    } catch (const std::exception& error) {
        if (!was_paused) {
            machine_.vcpus.resume();
        }
        throw control::CommandError(std::string("snapshot: ") + error.what());
    }
    const auto took = std::chrono::steady_clock::now() - started;
    if (!was_paused && !stay_paused) {
        machine_.vcpus.resume();
    }
    return {{"dir", *dir},
            {"state", machine_.vcpus.paused() ? "paused" : "running"},
            {"paused_ms", std::chrono::duration<double, std::milli>(took).count()}};
}

json MigrationCommands::dirty_rate(const json& request) {
    const auto window = request.find("window_ms");
    if (window == request.end()) {  // the last measurement's report
        return dirty_rate_ ? migration::to_json(dirty_rate_->report()) : json{{"state", "none"}};
    }
    if (!window->is_number_integer() || window->get<std::int64_t>() < 1 ||
        window->get<std::int64_t>() > kMaxDirtyRateWindow.count()) {
        throw control::CommandError("window_ms must be an integer from 1 to " +
                                    std::to_string(kMaxDirtyRateWindow.count()));
    }
    if (migrating()) {
        throw control::CommandError("a migration is running; its migrate-status has the dirty rate");
    }
    if (dirty_rate_ && dirty_rate_->measuring()) {
        throw control::CommandError("a dirty-rate measurement is running already");
    }
    if (machine_.lifecycle.has_ended() || machine_.lifecycle.migrated()) {
        throw control::CommandError(std::string("the VM is ") + machine_.lifecycle.state());
    }
    dirty_rate_.reset();  // joins the last one's thread, which has ended
    dirty_rate_ = std::make_unique<migration::DirtyRateMeter>(
        machine_.vm, machine_.memory, std::chrono::milliseconds(window->get<std::int64_t>()));
    dirty_rate_->start();
    return migration::to_json(dirty_rate_->report());
}

control::CommandTable MigrationCommands::table() {
    return {
        {"snapshot", [this](const json& request) { return snapshot(request); }},
        {"migrate", [this](const json& request) { return migrate(request); }},
        {"dirty-rate", [this](const json& request) { return dirty_rate(request); }},
        {"migrate-status",
         [this](const json&) {
             return migration_ ? migration::to_json(migration_->status()) : json{{"state", "none"}};
         }},
        {"migrate-cancel",
         [this](const json&) {
             if (!migration_ || !migration_->cancel()) {
                 throw control::CommandError("no migration to cancel (none running, or it has handed over)");
             }
             return json{{"state", "cancelling"}};
         }},
    };
}

}  // namespace vim::vmm::machine
