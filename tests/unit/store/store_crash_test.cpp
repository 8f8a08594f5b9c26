#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <set>

#include "controller/store/sqlite_store.h"
#include "vim/testing/temp_dir.h"

namespace vim::controller::store {
namespace {

struct CrashRound {
    std::vector<std::string> acknowledged;
    bool killed = false;
};

// Runs store_crash_child until `lifetime` has passed, then kill -9; collects the ids it acknowledged,
// including those still in the pipe when it died.
CrashRound run_child_and_kill(const std::filesystem::path& db, const std::string& run,
                              const std::string& durability, std::chrono::milliseconds lifetime) {
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        throw std::runtime_error("pipe failed");
    }
    pid_t child = ::fork();
    if (child == 0) {
        ::dup2(pipe_fds[1], STDOUT_FILENO);
        ::execl(STORE_CRASH_CHILD, STORE_CRASH_CHILD, db.c_str(), run.c_str(), durability.c_str(), nullptr);
        _exit(127);
    }
    ::close(pipe_fds[1]);
    CrashRound round;
    std::string pending;
    auto consume = [&](bool block) {
        char buffer[4096];
        pollfd readable{pipe_fds[0], POLLIN, 0};
        if (!block && ::poll(&readable, 1, 1) <= 0) {
            return true;
        }
        ssize_t got = ::read(pipe_fds[0], buffer, sizeof buffer);
        if (got <= 0) {
            return false;
        }
        pending.append(buffer, static_cast<std::size_t>(got));
        for (auto newline = pending.find('\n'); newline != std::string::npos; newline = pending.find('\n')) {
            round.acknowledged.push_back(pending.substr(0, newline));
            pending.erase(0, newline + 1);
        }
        return true;
    };
    auto deadline = std::chrono::steady_clock::now() + lifetime;
    while (std::chrono::steady_clock::now() < deadline && consume(false)) {
    }
    round.killed = ::kill(child, SIGKILL) == 0;
    int status = 0;
    ::waitpid(child, &status, 0);
    while (consume(true)) {
    }
    ::close(pipe_fds[0]);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child ended on its own: " << status;
    return round;
}

template <typename Record, typename List>
std::vector<Record> everything(List list) {
    std::vector<Record> all;
    PageRequest page{kMaxPageLimit, ""};
    do {
        auto found = list(page);
        all.insert(all.end(), found.items.begin(), found.items.end());
        page.page_token = found.next_page_token;
    } while (!page.page_token.empty());
    return all;
}

// Both durabilities promise this: process-crash only waits for the disk less.
class StoreCrashTest : public ::testing::TestWithParam<std::string> {};

TEST_P(StoreCrashTest, KillNineNeverLosesAnAcknowledgedCreateNorLeavesHalfOfOne) {
    vim::testing::TempDir directory;
    std::filesystem::path db = std::filesystem::path(directory.path("vimd.db"));
    std::mt19937 random(std::random_device{}());
    std::set<std::string> acknowledged;
    constexpr int kRounds = 6;
    constexpr std::size_t kMostInFlight =
        8;  // the child's writer threads: each has at most one unacknowledged
    for (int round = 0; round < kRounds; ++round) {
        auto lifetime = std::chrono::milliseconds(std::uniform_int_distribution<int>(150, 900)(random));
        CrashRound result = run_child_and_kill(db, "run" + std::to_string(round), GetParam(), lifetime);
        ASSERT_TRUE(result.killed);
        acknowledged.insert(result.acknowledged.begin(), result.acknowledged.end());

        SqliteStore store(db);
        auto vms = everything<Vm>([&](const PageRequest& page) { return store.list_vms({}, page); });
        auto operations =
            everything<Operation>([&](const PageRequest& page) { return store.list_operations({}, page); });
        std::set<std::string> stored;
        for (const auto& vm : vms) {
            stored.insert(vm.id);
        }
        for (const auto& id : acknowledged) {
            ASSERT_TRUE(stored.contains(id))
                << "round " << round << ": acknowledged vm " << id << " was lost";
        }
        // Whatever is there is whole: its address, its operation and its idempotency key came with it.
        std::set<std::string> operation_targets;
        for (const auto& operation : operations) {
            operation_targets.insert(operation.target_id);
        }
        EXPECT_EQ(operations.size(), vms.size());
        for (const auto& vm : vms) {
            ASSERT_EQ(vm.nics.size(), 1u) << vm.name;
            EXPECT_FALSE(vm.nics[0].ip.empty()) << vm.name;
            EXPECT_TRUE(operation_targets.contains(vm.id)) << vm.name;
            EXPECT_TRUE(store.find_idempotency("key-" + vm.name)) << vm.name;
        }
        // Committed but killed before saying so: at most one per writer of the last round.
        EXPECT_LE(vms.size() - acknowledged.size(), kMostInFlight) << "round " << round;
        acknowledged = stored;  // the next round's survivors include these
    }
    EXPECT_GT(acknowledged.size(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Durabilities, StoreCrashTest, ::testing::Values("power-loss", "process-crash"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                             return info.param == "power-loss" ? "PowerLoss" : "ProcessCrash";
                         });

}  // namespace
}  // namespace vim::controller::store
