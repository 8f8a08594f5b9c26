// Whole migrations, Source to Destination over loopback TCP or a socket
// pair, with a fake machine whose "guest" keeps writing: the destination ends
// with the source's memory, and every failure leaves the source running.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "fakes/fake_vm.h"
#include "migration/destination.h"
#include "migration/source.h"
#include "migration/stream.h"
#include "migration/transport.h"

namespace {

using namespace vim::migration;
using testing::ElementsAre;
using testing::HasSubstr;
using vim::vmm::memory::GuestMemory;
using vim::vmm::memory::kPageSize;
using vim::vmm::memory::RegionLayout;
using vim::vmm::sys::Fd;

constexpr std::uint64_t kMiB = 1 << 20;
const RegionLayout kLayout[] = {{0, 8 * kMiB}, {0x100000000, kMiB}};
const std::vector<std::uint8_t> kState = {0xa1, 0x61, 0x78, 0x01};  // CBOR {"x": 1}

// A machine whose guest writes pages (as a device would, through
// GuestMemory) until paused, and which records what the source asks of it.
class FakeMachine final : public SourceMachine {
public:
    FakeMachine() : memory_(GuestMemory::allocate(kLayout)) {
        std::uint32_t slot = 0;
        for (const auto& region : memory_.regions()) {
            vm_.set_memory_slot({slot++, region.start, region.size, region.host});
        }
        std::mt19937 random(1);
        for (std::uint64_t page = 0; page < 8 * kMiB / kPageSize; page += 2) {
            memory_.write_object<std::uint64_t>(page * kPageSize + (random() % 512) * 8, random() | 1);
        }
        memory_.discard(kMiB, kMiB);
    }
    ~FakeMachine() override { stop_guest(); }

    // Dirties a page every `interval` from now on, while not paused.
    void run_guest(std::chrono::microseconds interval) {
        guest_ = std::thread([this, interval] {
            std::mt19937 random(2);
            while (!stopping_) {
                {
                    std::lock_guard lock(guest_mutex_);
                    if (!paused_) {
                        const std::uint64_t page = random() % (8 * kMiB / kPageSize);
                        memory_.write_object<std::uint64_t>(page * kPageSize, random());
                    }
                }
                std::this_thread::sleep_for(interval);
            }
        });
    }
    void stop_guest() {
        stopping_ = true;
        if (guest_.joinable()) {
            guest_.join();
        }
    }

    GuestMemory& memory() override { return memory_; }
    vim::vmm::kvm::Vm& vm() override { return vm_; }
    nlohmann::json config() override { return {{"memory_mib", 9}, {"vcpus", 1}}; }
    void pause() override {
        std::lock_guard lock(guest_mutex_);
        paused_ = true;
        record("pause");
    }
    void resume() override {
        std::lock_guard lock(guest_mutex_);
        paused_ = false;
        record("resume");
    }
    std::vector<std::uint8_t> save_state() override {
        record("save_state");
        return kState;
    }
    void hand_over() override { record("hand_over"); }

    std::vector<std::string> events() {
        std::lock_guard lock(events_mutex_);
        return events_;
    }

private:
    void record(const char* event) {
        std::lock_guard lock(events_mutex_);
        events_.push_back(event);
    }

    GuestMemory memory_;
    vim::testing::FakeVm vm_;
    std::thread guest_;
    std::atomic<bool> stopping_{false};
    std::mutex guest_mutex_;
    bool paused_ = false;
    std::mutex events_mutex_;
    std::vector<std::string> events_;
};

std::pair<Fd, Fd> socket_pair() {
    int pair[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    return {Fd(pair[0]), Fd(pair[1])};
}

bool same_memory(const GuestMemory& a, const GuestMemory& b) {
    for (std::size_t i = 0; i < a.regions().size(); ++i) {
        if (std::memcmp(a.regions()[i].host, b.regions()[i].host, a.regions()[i].size) != 0) {
            return false;
        }
    }
    return true;
}

// What a destination saw: the config, the state, and the error that stopped it.
struct Incoming {
    nlohmann::json config;
    std::vector<std::uint8_t> state;
    std::optional<GuestMemory> memory;
    std::string error;
};

// The vmm --incoming flow, as the lead's code runs it.
Incoming receive(Fd socket) {
    Incoming incoming;
    Destination destination(std::move(socket));
    try {
        IncomingConfig config = destination.receive_config();
        incoming.config = config.config;
        incoming.memory = GuestMemory::allocate(config.memory_layout);
        incoming.state = destination.receive_memory_and_state(*incoming.memory);
        destination.ready(std::chrono::seconds(10));
        destination.running();
    } catch (const std::exception& error) {
        incoming.error = error.what();
        destination.report_error(error.what());
    }
    return incoming;
}

TEST(Migration, OverTcpWhileTheGuestWrites) {
    FakeMachine machine;
    machine.run_guest(std::chrono::microseconds(200));
    Fd listener = listen_tcp("tcp:127.0.0.1:0");
    const std::string uri = "tcp:127.0.0.1:" + std::to_string(local_port(listener));
    Incoming incoming;
    std::thread destination([&] { incoming = receive(accept_one(listener)); });

    Source source(machine, uri, {.downtime_limit_ms = 50});
    source.start();
    source.wait();
    destination.join();
    machine.stop_guest();

    ASSERT_EQ(incoming.error, "");
    const MigrationStatus status = source.status();
    ASSERT_EQ(status.state, MigrationState::Completed) << status.error;
    EXPECT_THAT(machine.events(), ElementsAre("pause", "save_state", "hand_over"));
    EXPECT_TRUE(same_memory(*incoming.memory, machine.memory()));
    EXPECT_EQ(incoming.state, kState);
    EXPECT_EQ(incoming.config["memory_mib"], 9);
    // Every written page went (every other one of the low 8 MiB, the discarded MiB aside), not the
    // discarded MiB nor the empty high one: holes in the memfd.
    EXPECT_GE(status.pages_sent, 7 * kMiB / 2 / kPageSize);
    EXPECT_LE(status.rounds.front().pages, 7 * kMiB / kPageSize);
    EXPECT_GE(status.iteration, 2u);
    ASSERT_TRUE(status.downtime_ms && status.total_ms);
    EXPECT_LE(*status.downtime_ms, *status.total_ms);

    const nlohmann::json reply = to_json(status);
    EXPECT_EQ(reply["state"], "completed");
    for (const char* field : {"iteration", "pages_sent", "zero_pages", "bytes", "dirty_rate_pages_per_s",
                              "bandwidth_mbps", "expected_downtime_ms", "total_ms", "downtime_ms"}) {
        EXPECT_TRUE(reply.contains(field)) << field;
    }
    EXPECT_FALSE(reply.contains("error"));

    // Every round is on record, the final one last; together they sent every page.
    ASSERT_EQ(status.rounds.size(), status.iteration);
    std::uint64_t pages = 0;
    for (const RoundFigures& round : status.rounds) {
        pages += round.pages;
    }
    EXPECT_EQ(pages, status.pages_sent);
    ASSERT_EQ(reply["rounds"].size(), status.rounds.size());
    EXPECT_EQ(reply["rounds"][0]["pages"], status.rounds.front().pages);
    // The downtime is the sum of its parts.
    ASSERT_TRUE(status.downtime_parts);
    const DowntimeParts& parts = *status.downtime_parts;
    EXPECT_NEAR(
        parts.pause_ms + parts.last_pages_ms + parts.state_ms + parts.destination_ms + parts.switch_over_ms,
        *status.downtime_ms, 0.01);
    for (const char* part : {"pause", "last_pages", "state", "destination", "switch_over"}) {
        EXPECT_TRUE(reply["downtime_parts_ms"].contains(part)) << part;
    }
}

// Runs a migration against `destination` (given the far end of a socket
// pair); returns the source's final status.
template <typename Destination>
MigrationStatus migrate_to(FakeMachine& machine, Destination destination, MigrationOptions options = {}) {
    auto [near, far] = socket_pair();
    std::thread peer([&, far = std::move(far)]() mutable { destination(std::move(far)); });
    Source source(machine, std::move(near), options);
    source.start();
    source.wait();
    peer.join();
    return source.status();
}

TEST(Migration, NobodyListeningFailsSayingWhere) {
    FakeMachine machine;
    const std::string uri = [] {
        Fd listener = listen_tcp("tcp:127.0.0.1:0");
        return "tcp:127.0.0.1:" + std::to_string(local_port(listener));
    }();  // closed again: nobody listens there
    Source source(machine, uri, {});
    source.start();
    source.wait();
    EXPECT_EQ(source.status().state, MigrationState::Failed);
    EXPECT_THAT(source.status().error, HasSubstr("connect to " + uri));
    EXPECT_THAT(machine.events(), ElementsAre());
}

TEST(Migration, DestinationClosingMidStreamFailsAndTheGuestRuns) {
    FakeMachine machine;
    const MigrationStatus status = migrate_to(machine, [](Fd socket) {
        Destination destination(std::move(socket));
        destination.receive_config();
    });
    EXPECT_EQ(status.state, MigrationState::Failed);
    EXPECT_THAT(status.error, HasSubstr("migration stream: write"));
    EXPECT_THAT(machine.events(), ElementsAre());
    EXPECT_EQ(to_json(status)["error"], status.error);
}

TEST(Migration, DestinationRejectingTheShapeSaysWhy) {
    FakeMachine machine;
    std::string destination_error;
    const MigrationStatus status = migrate_to(machine, [&](Fd socket) {
        Destination destination(std::move(socket));
        destination.receive_config();
        const RegionLayout other[] = {{0, 4 * kMiB}};
        GuestMemory memory = GuestMemory::allocate(other);
        try {
            destination.receive_memory_and_state(memory);
        } catch (const StreamError& error) {
            destination_error = error.what();
            destination.report_error(error.what());
        }
    });
    EXPECT_EQ(destination_error,
              "migration stream: the source's guest RAM is laid out differently from this VM's");
    EXPECT_EQ(status.state, MigrationState::Failed);
    EXPECT_EQ(status.error, "destination rejected the stream: " + destination_error);
    EXPECT_THAT(machine.events(), ElementsAre());
}

TEST(Migration, DestinationNeverReadyResumesTheGuest) {
    FakeMachine machine;
    const MigrationStatus status =
        migrate_to(machine,
                   [&](Fd socket) {
                       Destination destination(std::move(socket));
                       GuestMemory memory = GuestMemory::allocate(destination.receive_config().memory_layout);
                       destination.receive_memory_and_state(memory);
                       // No READY; stays connected until after the source gave up.
                       std::this_thread::sleep_for(std::chrono::milliseconds(500));
                   },
                   {.handshake_timeout = std::chrono::milliseconds(200)});
    EXPECT_EQ(status.state, MigrationState::Failed);
    EXPECT_EQ(status.error, "migration control: no message within the time limit");
    EXPECT_THAT(machine.events(), ElementsAre("pause", "save_state", "resume"));
}

TEST(Migration, DestinationDyingBeforeReadyResumesTheGuest) {
    FakeMachine machine;
    const MigrationStatus status = migrate_to(machine, [&](Fd socket) {
        Destination destination(std::move(socket));
        GuestMemory memory = GuestMemory::allocate(destination.receive_config().memory_layout);
        destination.receive_memory_and_state(memory);
    });
    EXPECT_EQ(status.state, MigrationState::Failed);
    EXPECT_EQ(status.error, "migration control: the connection closed");
    EXPECT_THAT(machine.events(), ElementsAre("pause", "save_state", "resume"));
}

TEST(Migration, DestinationErrorAfterTheStateResumesTheGuest) {
    FakeMachine machine;
    const MigrationStatus status = migrate_to(machine, [&](Fd socket) {
        Destination destination(std::move(socket));
        GuestMemory memory = GuestMemory::allocate(destination.receive_config().memory_layout);
        destination.receive_memory_and_state(memory);
        destination.report_error("restore virtio-blk: unknown field");
    });
    EXPECT_EQ(status.state, MigrationState::Failed);
    EXPECT_EQ(status.error, "destination rejected the stream: restore virtio-blk: unknown field");
    EXPECT_THAT(machine.events(), ElementsAre("pause", "save_state", "resume"));
}

TEST(Migration, DestinationDoesNotRunWithoutGo) {
    auto [near, far] = socket_pair();
    FakeMachine machine;
    std::thread source([&, near = std::move(near)] {
        StreamWriter writer(near.get());
        writer.write_header();
        const std::string config = "{}";
        writer.write_section(SectionType::Config, {reinterpret_cast<const std::uint8_t*>(config.data()), 2});
        writer.write_section(SectionType::MemoryLayout, encode_memory_layout(machine.memory()));
        writer.write_section(SectionType::State, kState);
        writer.write_section(SectionType::End, {});
        receive_control(near.get(), std::chrono::seconds(10));  // READY, then close without GO
    });
    const Incoming incoming = receive(std::move(far));
    source.join();
    EXPECT_EQ(incoming.error, "migration control: the connection closed");
}

TEST(Migration, IterationLimitFailsCleanly) {
    FakeMachine machine;
    machine.run_guest(std::chrono::microseconds(20));
    const MigrationStatus status = migrate_to(
        machine, receive, {.downtime_limit_ms = 0.001, .bandwidth_limit_mbps = 200, .max_iterations = 2});
    EXPECT_EQ(status.state, MigrationState::Failed);
    EXPECT_THAT(status.error, HasSubstr("did not converge in 2 iterations"));
    EXPECT_EQ(status.iteration, 2u);
    EXPECT_THAT(machine.events(), ElementsAre());
}

TEST(Migration, CancelStopsAndTheGuestRuns) {
    FakeMachine machine;
    auto [near, far] = socket_pair();
    Incoming incoming;
    std::thread destination([&, far = std::move(far)]() mutable { incoming = receive(std::move(far)); });
    // 8 Mbit/s: the first round alone would take ten seconds.
    Source source(machine, std::move(near), {.bandwidth_limit_mbps = 8});
    source.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(source.status().state, MigrationState::Active);
    EXPECT_GT(source.status().pages_sent, 0u);
    EXPECT_TRUE(source.cancel());
    source.wait();
    destination.join();
    EXPECT_EQ(source.status().state, MigrationState::Cancelled);
    EXPECT_FALSE(source.cancel());
    EXPECT_THAT(machine.events(), ElementsAre());
    EXPECT_THAT(incoming.error, HasSubstr("truncated"));
    EXPECT_FALSE(to_json(source.status()).contains("error"));
}

TEST(Migration, BandwidthLimitIsHonoured) {
    FakeMachine machine;
    const auto started = std::chrono::steady_clock::now();
    // About 1.1 MB of data pages at 80 Mbit/s (10 MB/s): 110 ms at least.
    const MigrationStatus status = migrate_to(machine, receive, {.bandwidth_limit_mbps = 80});
    ASSERT_EQ(status.state, MigrationState::Completed) << status.error;
    EXPECT_GE(std::chrono::steady_clock::now() - started,
              std::chrono::milliseconds(static_cast<long>(status.bytes / 10000 * 9 / 10)));
}

TEST(MigrationTransport, BadUrisRejectedClearly) {
    EXPECT_THROW(connect_tcp("unix:/tmp/x"), std::invalid_argument);
    try {
        connect_tcp("tcp:localhost");
        FAIL();
    } catch (const std::invalid_argument& error) {
        EXPECT_STREQ(error.what(), "migration URI 'tcp:localhost': no host or port (expected tcp:HOST:PORT)");
    }
    EXPECT_THROW(connect_tcp("tcp:[::1:80"), std::invalid_argument);
    EXPECT_THROW(connect_tcp("tcp:host:70000"), std::invalid_argument);
    EXPECT_THROW(connect_tcp("tcp::80"), std::invalid_argument);
    // The same checks, without connecting.
    EXPECT_THROW(check_tcp_uri("tcp:host:70000"), std::invalid_argument);
    EXPECT_NO_THROW(check_tcp_uri("tcp:127.0.0.1:1"));
    Fd listener = listen_tcp("tcp:[::1]:0");
    EXPECT_TRUE(connect_tcp("tcp:[::1]:" + std::to_string(local_port(listener))).valid());
}

}  // namespace
