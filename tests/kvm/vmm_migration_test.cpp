// Live migration and snapshots of a running guest, as a user sees them: a
// workload (tests/guest/programs/dirtier.c) that rewrites its memory and
// checks it keeps counting on the other side, with its memory intact, its
// clock moved on, and its disk's contents where they were.

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "vmm_fixture.h"
#include "vmm_process.h"

namespace {

using namespace vim::testing;
using namespace std::chrono_literals;
using nlohmann::json;

constexpr std::int64_t kMiB = 1 << 20;

// One "dirtier count N realtime_ms T mismatches M" line.
struct DirtierLine {
    long count = -1;
    long long realtime_ms = 0;
    long mismatches = 0;
};

std::optional<DirtierLine> parse_dirtier(const std::string& line) {
    const auto at = line.find("dirtier count");
    DirtierLine parsed;
    if (at == std::string::npos ||
        std::sscanf(line.c_str() + at, "dirtier count %ld realtime_ms %lld mismatches %ld", &parsed.count,
                    &parsed.realtime_ms, &parsed.mismatches) != 3) {
        return std::nullopt;
    }
    return parsed;
}

class VmmMigration : public VmmBoot {
protected:
    std::string source_socket() const { return directory_ + "/source.sock"; }
    std::string destination_socket() const { return directory_ + "/destination.sock"; }

    json send(const std::string& socket, VmmProcess& vmm, const std::string& name,
              json extra = json::object()) {
        extra["cmd"] = name;
        try {
            return vim::vmm::control::send_command(socket, extra, 60s);
        } catch (const std::exception& error) {
            ADD_FAILURE() << name << ": " << error.what() << "\nconsole:\n" << vmm.console() << vmm.errors();
            return json{{"ok", false}};
        }
    }

    // A guest at its shell with the dirtier rewriting `rate` pages a second
    // of 64 MiB, printing its counter.
    std::unique_ptr<VmmProcess> boot_with_dirtier(int cpus, int rate, std::vector<std::string> extra = {}) {
        auto arguments = boot_arguments("shell", cpus, "512M");
        arguments.insert(arguments.end(), {"--api-socket", source_socket()});
        arguments.insert(arguments.end(), extra.begin(), extra.end());
        auto vmm = std::make_unique<VmmProcess>(arguments, VmmProcess::Input::Pipe);
        EXPECT_TRUE(vmm->wait_for_line("VIM-GUEST-SHELL", kBootTimeout)) << vmm->console() << vmm->errors();
        vmm->type("dirtier 64 " + std::to_string(rate) + " &\n");
        EXPECT_TRUE(vmm->wait_for_line("dirtier count 3 ", 60s)) << vmm->console() << vmm->errors();
        return vmm;
    }

    // The last dirtier line `vmm` printed.
    static DirtierLine last_dirtier_line(const VmmProcess& vmm) {
        DirtierLine last;
        std::size_t at = vmm.console().rfind("dirtier count");
        if (at != std::string::npos) {
            last = parse_dirtier(vmm.console().substr(at)).value_or(DirtierLine{});
        }
        return last;
    }

    // Waits for the dirtier to print a line numbered above `after`; returns it.
    static std::optional<DirtierLine> next_dirtier_line(VmmProcess& vmm, long after) {
        const auto deadline = std::chrono::steady_clock::now() + 60s;
        while (std::chrono::steady_clock::now() < deadline) {
            auto line = vmm.wait_for_line("dirtier count", 5s);
            if (!line) {
                continue;
            }
            auto parsed = parse_dirtier(*line);
            if (parsed && parsed->count > after) {
                return parsed;
            }
        }
        return std::nullopt;
    }

    // A vmm waiting for a migration on a port of its choosing; returns the port.
    std::unique_ptr<VmmProcess> start_destination(int& port, std::vector<std::string> extra = {}) {
        std::vector<std::string> arguments = {"--incoming", "tcp:127.0.0.1:0", "--api-socket",
                                              destination_socket()};
        arguments.insert(arguments.end(), extra.begin(), extra.end());
        auto vmm = std::make_unique<VmmProcess>(arguments, VmmProcess::Input::Pipe);
        auto line = vmm->wait_for_error("waiting for a migration on port ", 30s);
        EXPECT_TRUE(line) << vmm->errors();
        port = line ? std::stoi(*line) : 0;
        return vmm;
    }

    // A source that handed its guest over says so, answers migrate-status,
    // and exits when told.
    void expect_handed_over(VmmProcess& source) {
        EXPECT_EQ(send(source_socket(), source, "status").value("state", ""), "migrated");
        EXPECT_EQ(send(source_socket(), source, "migrate-status").value("state", ""), "completed");
        EXPECT_FALSE(
            send(source_socket(), source, "snapshot", {{"dir", directory_ + "/late"}}).value("ok", true));
        send(source_socket(), source, "shutdown");
        EXPECT_EQ(source.wait_exit(kExitTimeout), 0) << source.errors();
    }

    json wait_for_migration_end(VmmProcess& source) {
        json status;
        eventually(
            [&] {
                status = send(source_socket(), source, "migrate-status");
                const std::string state = status.value("state", "");
                return state != "active";
            },
            300s);
        return status;
    }

    // The guest on `vmm` counts on from `before` with its memory intact.
    void expect_counting_on(VmmProcess& vmm, const DirtierLine& before) {
        auto after = next_dirtier_line(vmm, before.count);
        ASSERT_TRUE(after) << "the guest stopped counting\n" << vmm.console() << vmm.errors();
        EXPECT_EQ(after->mismatches, 0) << vmm.console();
        auto later = next_dirtier_line(vmm, after->count + 10);
        ASSERT_TRUE(later) << vmm.console() << vmm.errors();
        EXPECT_EQ(later->mismatches, 0) << vmm.console();
        EXPECT_EQ(vmm.console().find("dirtier ERROR"), std::string::npos) << vmm.console();
    }
};

TEST_F(VmmMigration, BusyGuestWithTwoVcpusMovesToAnotherVmmAndCountsOn) {
    auto source = boot_with_dirtier(2, 2000);
    ASSERT_FALSE(HasFailure());
    int port = 0;
    auto destination = start_destination(port);
    ASSERT_NE(port, 0);

    const DirtierLine before = last_dirtier_line(*source);
    const auto wall_before = std::chrono::system_clock::now();
    json reply =
        send(source_socket(), *source, "migrate", {{"uri", "tcp:127.0.0.1:" + std::to_string(port)}});
    ASSERT_TRUE(reply.value("ok", false)) << reply.dump();
    // A second one while the first runs is refused.
    json second =
        send(source_socket(), *source, "migrate", {{"uri", "tcp:127.0.0.1:" + std::to_string(port)}});
    EXPECT_FALSE(second.value("ok", true)) << second.dump();

    const json status = wait_for_migration_end(*source);
    ASSERT_EQ(status.value("state", ""), "completed") << status.dump() << "\n" << destination->errors();
    EXPECT_GT(status.value("pages_sent", 0), 0) << status.dump();
    EXPECT_GT(status.value("zero_pages", 0), 0) << status.dump();
    EXPECT_TRUE(status.contains("downtime_ms")) << status.dump();
    EXPECT_TRUE(status.contains("total_ms")) << status.dump();
    expect_handed_over(*source);

    auto after = next_dirtier_line(*destination, before.count);
    ASSERT_TRUE(after) << destination->console() << destination->errors();
    const auto wall_elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now() - wall_before)
            .count();
    // The guest's wall clock moved on with the host's (not stopped at the
    // pause, nor jumped ahead): within a few seconds of it.
    EXPECT_NEAR(static_cast<double>(after->realtime_ms - before.realtime_ms),
                static_cast<double>(wall_elapsed), 5000.0);
    expect_counting_on(*destination, *after);
    // The destination is a VM like any other: its shell answers, it powers off.
    ASSERT_EQ(run_in_guest(*destination, "cat /proc/uptime").status, 0) << destination->console();
    destination->type("poweroff -f\n");
    EXPECT_EQ(destination->wait_exit(kExitTimeout), 0) << destination->errors();
}

TEST_F(VmmMigration, IdleGuestWithADiskMovesAndTheDiskKeepsWhatWasWritten) {
    const std::string image = directory_ + "/disk.raw";
    std::ofstream(image).close();
    std::filesystem::resize_file(image, 64 << 20);
    auto source = boot_with_dirtier(1, 0, {"--disk", "path=" + image});
    ASSERT_FALSE(HasFailure());
    ASSERT_EQ(
        run_in_guest(*source, "printf VIM-DISK-BEFORE-MOVE | dd of=/dev/vda conv=fsync 2>/dev/null").status,
        0);

    // A destination that cannot open the disk, or is given two for the VM's
    // one, refuses the stream and says why; the source runs on.
    const std::string missing = directory_ + "/missing.raw";
    const std::vector<std::pair<std::vector<std::string>, std::string>> refusals = {
        {{"--disk", "path=" + missing}, missing},
        {{"--disk", "path=" + image, "--disk", "path=" + image}, "--disk: 2 given, the VM has 1"}};
    for (const auto& [disks, reason] : refusals) {
        int refusing_port = 0;
        auto refusing = start_destination(refusing_port, disks);
        json refused = send(source_socket(), *source, "migrate",
                            {{"uri", "tcp:127.0.0.1:" + std::to_string(refusing_port)}});
        ASSERT_TRUE(refused.value("ok", false)) << refused.dump();
        const json status = wait_for_migration_end(*source);
        EXPECT_EQ(status.value("state", ""), "failed") << status.dump();
        EXPECT_NE(status.value("error", "").find(reason), std::string::npos) << status.dump();
        EXPECT_NE(refusing->wait_exit(kExitTimeout).value_or(0), 0) << refusing->errors();
        EXPECT_NE(refusing->errors().find(reason), std::string::npos) << refusing->errors();
    }
    expect_counting_on(*source, last_dirtier_line(*source));

    int port = 0;
    auto destination = start_destination(port);
    const DirtierLine before = last_dirtier_line(*source);
    json reply =
        send(source_socket(), *source, "migrate", {{"uri", "tcp:127.0.0.1:" + std::to_string(port)}});
    ASSERT_TRUE(reply.value("ok", false)) << reply.dump();
    const json status = wait_for_migration_end(*source);
    ASSERT_EQ(status.value("state", ""), "completed") << status.dump() << "\n" << destination->errors();
    expect_handed_over(*source);

    expect_counting_on(*destination, before);
    auto read = run_in_guest(*destination, "dd if=/dev/vda bs=21 count=1 2>/dev/null; echo");
    EXPECT_EQ(read.status, 0);
    EXPECT_NE(read.output.find("VIM-DISK-BEFORE-MOVE"), std::string::npos) << read.output;
    // And the destination writes to it: it holds the disk's lock now.
    EXPECT_EQ(run_in_guest(*destination, "printf AFTER | dd of=/dev/vda bs=1 seek=100 conv=fsync 2>/dev/null")
                  .status,
              0);
}

// Every way a migration can fail before the hand-over leaves the source guest
// running, untouched, with the reason in migrate-status; then the same guest's
// dirty rate, measured without migrating.
TEST_F(VmmMigration, FailedMigrationsLeaveTheSourceGuestRunning) {
    auto source = boot_with_dirtier(1, 2000);
    ASSERT_FALSE(HasFailure());

    // Not a URI: refused at once. Nobody listening: it fails, saying where it tried.
    json bad = send(source_socket(), *source, "migrate", {{"uri", "udp:somewhere"}});
    EXPECT_FALSE(bad.value("ok", true)) << bad.dump();
    EXPECT_NE(bad.value("error", "").find("udp:somewhere"), std::string::npos) << bad.dump();
    json nobody = send(source_socket(), *source, "migrate", {{"uri", "tcp:127.0.0.1:1"}});
    EXPECT_TRUE(nobody.value("ok", false)) << nobody.dump();
    json refused = wait_for_migration_end(*source);
    EXPECT_EQ(refused.value("state", ""), "failed") << refused.dump();
    EXPECT_NE(refused.value("error", "").find("connect to tcp:127.0.0.1:1"), std::string::npos)
        << refused.dump();

    // The destination dies mid-stream.
    {
        int port = 0;
        auto destination = start_destination(port);
        json reply = send(source_socket(), *source, "migrate",
                          {{"uri", "tcp:127.0.0.1:" + std::to_string(port)}, {"bandwidth_limit_mbps", 200}});
        ASSERT_TRUE(reply.value("ok", false)) << reply.dump();
        eventually(
            [&] { return send(source_socket(), *source, "migrate-status").value("pages_sent", 0) > 0; }, 60s);
        ::kill(destination->pid(), SIGKILL);
        const json status = wait_for_migration_end(*source);
        EXPECT_EQ(status.value("state", ""), "failed") << status.dump();
        EXPECT_FALSE(status.value("error", "").empty()) << status.dump();
    }
    expect_counting_on(*source, last_dirtier_line(*source));

    // Cancelled by the user.
    {
        int port = 0;
        auto destination = start_destination(port);
        json reply = send(source_socket(), *source, "migrate",
                          {{"uri", "tcp:127.0.0.1:" + std::to_string(port)}, {"bandwidth_limit_mbps", 100}});
        ASSERT_TRUE(reply.value("ok", false)) << reply.dump();
        json cancel = send(source_socket(), *source, "migrate-cancel");
        EXPECT_TRUE(cancel.value("ok", false)) << cancel.dump();
        const json status = wait_for_migration_end(*source);
        EXPECT_EQ(status.value("state", ""), "cancelled") << status.dump();
        EXPECT_NE(destination->wait_exit(kExitTimeout).value_or(0), 0) << "the destination ran a guest";
        EXPECT_EQ(destination->console().find("dirtier count"), std::string::npos);
    }
    expect_counting_on(*source, last_dirtier_line(*source));

    // It never converges: 1 iteration allowed, the guest dirties faster than that.
    {
        int port = 0;
        auto destination = start_destination(port);
        json reply = send(source_socket(), *source, "migrate",
                          {{"uri", "tcp:127.0.0.1:" + std::to_string(port)},
                           {"max_iterations", 1},
                           {"downtime_limit_ms", 0.001}});
        ASSERT_TRUE(reply.value("ok", false)) << reply.dump();
        const json status = wait_for_migration_end(*source);
        EXPECT_EQ(status.value("state", ""), "failed") << status.dump();
        EXPECT_NE(destination->wait_exit(kExitTimeout).value_or(0), 0);
    }
    expect_counting_on(*source, last_dirtier_line(*source));

    // Its dirty rate, measured without migrating: the dirtier's 2000 pages a
    // second (as far as this CPU lets it keep up) within its 64 MiB, and no
    // migration while the measurement runs.
    json started = send(source_socket(), *source, "dirty-rate", {{"window_ms", 1000}});
    ASSERT_TRUE(started.value("ok", false)) << started.dump();
    EXPECT_EQ(started.value("state", ""), "measuring") << started.dump();
    json refused_migrate = send(source_socket(), *source, "migrate", {{"uri", "tcp:127.0.0.1:1"}});
    EXPECT_NE(refused_migrate.value("error", "").find("dirty-rate measurement is running"), std::string::npos)
        << refused_migrate.dump();
    json rate;
    eventually(
        [&] {
            rate = send(source_socket(), *source, "dirty-rate");
            return rate.value("state", "") != "measuring";
        },
        30s);
    EXPECT_EQ(rate.value("state", ""), "done") << rate.dump();
    EXPECT_GT(rate.value("dirty_rate_pages_per_s", 0.0), 200.0) << rate.dump();
    EXPECT_LT(rate.value("dirty_rate_pages_per_s", 0.0), 20000.0) << rate.dump();
    EXPECT_GT(rate.value("working_set_pages", 0), 100) << rate.dump();
    EXPECT_LE(rate.value("working_set_pages", 0), rate.value("dirty_pages", 0)) << rate.dump();
    expect_counting_on(*source, last_dirtier_line(*source));
}

TEST_F(VmmMigration, SnapshotRestoresInANewVmmThatCountsOn) {
    auto source = boot_with_dirtier(2, 2000);
    ASSERT_FALSE(HasFailure());
    const std::string snapshot = directory_ + "/snapshot";
    json reply = send(source_socket(), *source, "snapshot", {{"dir", snapshot}, {"paused", true}});
    ASSERT_TRUE(reply.value("ok", false)) << reply.dump();
    EXPECT_EQ(reply.value("state", ""), "paused");
    const DirtierLine before = last_dirtier_line(*source);
    send(source_socket(), *source, "shutdown", {{"timeout_ms", 0}});
    EXPECT_EQ(source->wait_exit(kExitTimeout), 0) << source->errors();

    VmmProcess restored({"--restore", snapshot, "--api-socket", destination_socket()},
                        VmmProcess::Input::Pipe);
    expect_counting_on(restored, before);
    // The snapshot's memory is mapped, not read: only what the guest touches
    // comes in (its kernel, its shell, the dirtier's 64 MiB), not 512 MiB.
    EXPECT_LT(restored.resident_bytes(), 320 * kMiB) << restored.resident_bytes() / kMiB << " MiB resident";

    // A snapshot of the restored VM restores too.
    const std::string second = directory_ + "/snapshot-2";
    json again = send(destination_socket(), restored, "snapshot", {{"dir", second}});
    ASSERT_TRUE(again.value("ok", false)) << again.dump();
    EXPECT_EQ(again.value("state", ""), "running");
    const DirtierLine at_second = last_dirtier_line(restored);
    send(destination_socket(), restored, "shutdown", {{"timeout_ms", 0}});
    EXPECT_EQ(restored.wait_exit(kExitTimeout), 0) << restored.errors();
    VmmProcess restored_again({"--restore", second}, VmmProcess::Input::Pipe);
    expect_counting_on(restored_again, at_second);
}

TEST_F(VmmMigration, CorruptOrMissingSnapshotsAreRefused) {
    VmmProcess missing({"--restore", directory_ + "/nothing-here"});
    EXPECT_EQ(missing.wait_exit(kExitTimeout), 2) << missing.errors();
    EXPECT_NE(missing.errors().find("error: --restore"), std::string::npos) << missing.errors();

    auto source = boot_with_dirtier(1, 0);
    ASSERT_FALSE(HasFailure());
    const std::string snapshot = directory_ + "/snapshot";
    ASSERT_TRUE(send(source_socket(), *source, "snapshot", {{"dir", snapshot}}).value("ok", false));
    {
        std::fstream state(snapshot + "/state", std::ios::in | std::ios::out | std::ios::binary);
        state.seekp(200);
        state.put('\x5a');
    }
    VmmProcess corrupt({"--restore", snapshot});
    EXPECT_EQ(corrupt.wait_exit(kExitTimeout), 2) << corrupt.errors();
    EXPECT_NE(corrupt.errors().find("error: --restore"), std::string::npos) << corrupt.errors();
    EXPECT_EQ(corrupt.console(), "");
}

}  // namespace
