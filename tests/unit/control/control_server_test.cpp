#include "vmm/control/control_server.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "socket_test_support.h"
#include "vmm/control/client.h"
#include "vmm/sys/error.h"

namespace vim::vmm::control {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::LoopThread;
using testing::RawClient;
using testing::TempDir;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::StartsWith;
using Clock = std::chrono::steady_clock;

constexpr std::chrono::seconds timeout(5);
// What a well-behaved client waits at most while others hold connections doing nothing.
constexpr std::chrono::seconds prompt(1);

CommandTable test_commands() {
    return {
        {"echo",
         [](const json& request) {
             return json{{"echo", request}};
         }},
        {"nothing", [](const json&) { return json{}; }},
        {"number", [](const json&) { return json(42); }},
        {"refuse", [](const json&) -> json { throw CommandError("disk d0 is busy"); }},
        {"crash", [](const json&) -> json { throw std::runtime_error("boom"); }},
        {"big",
         [](const json&) {
             return json{{"payload", std::string(64 * 1024, 'b')}};
         }},
    };
}

json reply_of(RawClient& client) {
    const auto line = client.read_line();
    if (!line) {
        throw std::runtime_error("the server closed the connection instead of replying");
    }
    return json::parse(*line);
}

// A raw request line of exactly `length` bytes, newline excluded.
std::string echo_line_of_length(std::size_t length) {
    const std::string frame = R"({"cmd":"echo","pad":""})";
    return R"({"cmd":"echo","pad":")" + std::string(length - frame.size(), 'p') + "\"}";
}

// A server and the thread running its loop, built in the order the machine
// builds them and stopped in reverse: the loop first, then the server.
struct RunningServer {
    RunningServer(sys::EventLoop& loop, const std::string& path, CommandTable commands,
                  std::chrono::milliseconds request_timeout = ControlServer::default_request_timeout)
        : server(loop, path, std::move(commands), request_timeout), loop_thread(loop) {}

    ControlServer server;
    LoopThread loop_thread;
};

class ControlServerTest : public ::testing::Test {
protected:
    TempDir dir;
    const std::string path = dir.path("api.sock");
    sys::EventLoop loop;
};

TEST_F(ControlServerTest, AnswersACommandWithItsFieldsAndOk) {
    RunningServer running(loop, path, test_commands());
    const json reply = send_command(path, {{"cmd", "echo"}, {"value", 7}}, timeout);
    EXPECT_EQ(reply["ok"], true);
    EXPECT_EQ(reply["echo"]["value"], 7);
    EXPECT_EQ(reply["echo"]["cmd"], "echo");
}

TEST_F(ControlServerTest, EmptyResultIsAPlainOk) {
    RunningServer running(loop, path, test_commands());
    EXPECT_EQ(send_command(path, {{"cmd", "nothing"}}, timeout), json({{"ok", true}}));
}

TEST_F(ControlServerTest, NonObjectResultIsReportedAsError) {
    RunningServer running(loop, path, test_commands());
    const json reply = send_command(path, {{"cmd", "number"}}, timeout);
    EXPECT_EQ(reply["ok"], false);
    EXPECT_EQ(reply["error"], "command 'number' produced a number instead of an object");
}

TEST_F(ControlServerTest, CommandErrorBecomesTheErrorMessage) {
    RunningServer running(loop, path, test_commands());
    EXPECT_EQ(send_command(path, {{"cmd", "refuse"}}, timeout),
              json({{"ok", false}, {"error", "disk d0 is busy"}}));
}

TEST_F(ControlServerTest, OtherExceptionIsReportedNamingTheCommand) {
    RunningServer running(loop, path, test_commands());
    EXPECT_EQ(send_command(path, {{"cmd", "crash"}}, timeout)["error"], "command 'crash' failed: boom");
}

TEST_F(ControlServerTest, UnknownCommandIsNamed) {
    RunningServer running(loop, path, test_commands());
    EXPECT_EQ(send_command(path, {{"cmd", "reboot-now"}}, timeout),
              json({{"ok", false}, {"error", "unknown command 'reboot-now'"}}));
}

TEST_F(ControlServerTest, MalformedJsonIsAnsweredAndTheConnectionStaysUsable) {
    RunningServer running(loop, path, test_commands());
    RawClient client(path);
    client.send("{\"cmd\": \n");
    const json reply = reply_of(client);
    EXPECT_EQ(reply["ok"], false);
    EXPECT_THAT(reply["error"].get<std::string>(), StartsWith("invalid JSON: parse error at line 1"));

    client.send(R"({"cmd":"nothing"})"
                "\n");
    EXPECT_EQ(reply_of(client), json({{"ok", true}}));
}

TEST_F(ControlServerTest, RequestsWithoutAStringCmdAreRefusedNamingTheProblem) {
    RunningServer running(loop, path, test_commands());
    RawClient client(path);
    client.send("[1,2]\n");
    EXPECT_EQ(reply_of(client)["error"], "request must be a JSON object, not array");
    client.send(R"({"command":"status"})"
                "\n");
    EXPECT_EQ(reply_of(client)["error"], "request has no \"cmd\" field");
    client.send(R"({"cmd":5})"
                "\n");
    EXPECT_EQ(reply_of(client)["error"], "\"cmd\" must be a string, not number");
}

TEST_F(ControlServerTest, PipelinedLinesAreAnsweredInOrderSkippingBlankOnes) {
    RunningServer running(loop, path, test_commands());
    RawClient client(path);
    client.send(R"({"cmd":"echo","n":1})"
                "\n"
                R"({"cmd":"echo","n":2})"
                "\n\n"
                R"({"cmd":"echo","n":3})"
                "\r\n");
    EXPECT_EQ(reply_of(client)["echo"]["n"], 1);
    EXPECT_EQ(reply_of(client)["echo"]["n"], 2);
    EXPECT_EQ(reply_of(client)["echo"]["n"], 3);
}

TEST_F(ControlServerTest, ClientsAreServedIndependently) {
    RunningServer running(loop, path, test_commands());
    RawClient first(path);
    RawClient second(path);
    RawClient leaver(path);
    first.send(R"({"cmd":"echo",)");
    leaver.send(R"({"cmd":"ec)");
    second.send(R"({"cmd":"echo","who":"second"})"
                "\n");
    EXPECT_EQ(reply_of(second)["echo"]["who"], "second");

    leaver.close();
    first.send(R"("who":"first"})"
               "\n");
    EXPECT_EQ(reply_of(first)["echo"]["who"], "first");
    EXPECT_EQ(send_command(path, {{"cmd", "nothing"}}, timeout)["ok"], true);
}

TEST_F(ControlServerTest, MoreClientsThanTheLimitEachGetTheirReply) {
    RunningServer running(loop, path, test_commands());
    std::vector<std::unique_ptr<RawClient>> clients;
    for (int index = 0; index < 40; ++index) {
        clients.push_back(std::make_unique<RawClient>(path));
        clients.back()->send(json{{"cmd", "echo"}, {"index", index}}.dump() + "\n");
    }
    for (int index = 0; index < 40; ++index) {
        EXPECT_EQ(reply_of(*clients[index])["echo"]["index"], index);
        clients[index]->close();
    }
}

TEST_F(ControlServerTest, LineOfTheMaximumLengthIsAccepted) {
    RunningServer running(loop, path, test_commands());
    RawClient client(path);
    client.send(echo_line_of_length(ControlServer::max_line_bytes) + "\n");
    EXPECT_EQ(reply_of(client)["ok"], true);
}

TEST_F(ControlServerTest, OverLongLineGetsAnErrorAndTheConnectionIsClosed) {
    RunningServer running(loop, path, test_commands());
    RawClient client(path);
    client.send(echo_line_of_length(ControlServer::max_line_bytes + 1) + "\n");
    const json reply = reply_of(client);
    EXPECT_EQ(reply["ok"], false);
    EXPECT_EQ(reply["error"], "request line longer than 65536 bytes; closing the connection");
    EXPECT_EQ(client.read_line(), std::nullopt);
    EXPECT_EQ(send_command(path, {{"cmd", "nothing"}}, timeout)["ok"], true);
}

TEST_F(ControlServerTest, RequestsSentBeforeTheLoopRunsAreAnsweredOnceItDoes) {
    ControlServer server(loop, path, test_commands());
    RawClient early(path);
    early.send(R"({"cmd":"echo","n":1})"
               "\n");
    EXPECT_FALSE(early.input_ready(50ms));
    LoopThread loop_thread(loop);
    EXPECT_EQ(reply_of(early)["echo"]["n"], 1);
}

// What a host agent does while it starts a VM: try until the socket appears,
// then keep asking. Every connection it makes must get a real reply; the
// first try that finds the file must not be refused by a socket that exists
// but does not listen yet.
TEST_F(ControlServerTest, ClientPollingFromTheMomentTheFileAppearsAlwaysGetsValidReplies) {
    std::atomic<bool> done = false;
    std::atomic<int> answered = 0;
    std::vector<std::string> failures;  // the poller's until it is joined
    // Set by the poller when it fails, by the test when enough was answered.
    std::thread poller([&] {
        try {
            sys::Fd first(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
            const sockaddr_un address = testing::socket_address(path);
            const auto* address_pointer = reinterpret_cast<const sockaddr*>(&address);
            // As fast as connect() goes, so as to hit the moment the file appears.
            while (::connect(first.get(), address_pointer, sizeof(address)) != 0) {
                if (errno != ENOENT) {
                    sys::throw_errno("first connection to " + path);
                }
            }
            RawClient client(std::move(first));
            client.send(R"({"cmd":"echo","n":0})"
                        "\n");
            if (reply_of(client)["echo"]["n"] == 0) {
                ++answered;
            }
            while (!done) {
                const json reply = send_command(path, {{"cmd", "echo"}, {"n", answered.load()}}, timeout);
                if (reply["ok"] != true || reply["echo"]["n"] != answered.load()) {
                    throw std::runtime_error("unexpected reply " + reply.dump());
                }
                ++answered;
            }
        } catch (const std::exception& error) {
            failures.push_back(error.what());
            done = true;
        }
    });
    std::this_thread::sleep_for(20ms);
    {
        ControlServer server(loop, path, test_commands());
        // The machine runs the loop a little after the server exists.
        std::this_thread::sleep_for(20ms);
        LoopThread loop_thread(loop);
        const auto start = Clock::now();
        while (answered < 200 && !done && Clock::now() - start < timeout) {
            std::this_thread::sleep_for(1ms);
        }
        done = true;
        poller.join();
    }
    EXPECT_THAT(failures, IsEmpty());
    EXPECT_GE(answered, 200);
}

TEST_F(ControlServerTest, ClientsHoldingHalfLinesDoNotLockANewClientOut) {
    RunningServer running(loop, path, {{"status", [](const json&) { return json{{"state", "running"}}; }}});
    constexpr std::size_t holder_count = 50;
    std::vector<std::unique_ptr<RawClient>> holders;
    for (std::size_t index = 0; index < holder_count; ++index) {
        holders.push_back(std::make_unique<RawClient>(path));
        holders.back()->send(R"({"cmd":"sta)");
    }
    EXPECT_EQ(send_command(path, {{"cmd", "status"}}, prompt), json({{"ok", true}, {"state", "running"}}));

    // Each client past the limit displaced the one idle longest, telling it why.
    std::size_t displaced = 0;
    for (const auto& holder : holders) {
        if (!holder->input_ready(0ms)) {
            continue;
        }
        ++displaced;
        const auto line = holder->read_line();
        ASSERT_TRUE(line);
        EXPECT_THAT(json::parse(*line)["error"].get<std::string>(),
                    MatchesRegex("connection limit of 32 reached; closing this connection, "
                                 "the longest idle \\([0-9]+ ms\\), to serve a new one"));
        EXPECT_EQ(holder->read_line(), std::nullopt);
    }
    EXPECT_EQ(displaced, holder_count + 1 - ControlServer::max_connections);
}

TEST_F(ControlServerTest, ClientsThatSendNothingDoNotLockANewClientOut) {
    RunningServer running(loop, path, test_commands());
    std::vector<std::unique_ptr<RawClient>> silent;
    for (std::size_t index = 0; index < ControlServer::max_connections + 8; ++index) {
        silent.push_back(std::make_unique<RawClient>(path));
    }
    EXPECT_EQ(send_command(path, {{"cmd", "nothing"}}, prompt), json({{"ok", true}}));
}

TEST_F(ControlServerTest, ClientsThatNeverReadTheirRepliesDoNotLockANewClientOut) {
    RunningServer running(loop, path, test_commands());
    std::string requests;
    for (int index = 0; index < 2000; ++index) {
        requests += R"({"cmd":"big"})"
                    "\n";
    }
    std::vector<std::unique_ptr<RawClient>> hogs;
    for (std::size_t index = 0; index < ControlServer::max_connections + 8; ++index) {
        hogs.push_back(std::make_unique<RawClient>(path));
        // 2000 replies of 64 KiB are far more than a socket buffer holds.
        hogs.back()->send(requests);
    }
    // Not `prompt`: the server first makes the replies that fill every hog's
    // socket buffer, which takes a while with sanitizers on a busy machine.
    // Without eviction no reply would ever come.
    EXPECT_EQ(send_command(path, {{"cmd", "nothing"}}, timeout), json({{"ok", true}}));
}

TEST_F(ControlServerTest, UnfinishedRequestLineGetsATimeoutErrorThenEof) {
    RunningServer running(loop, path, test_commands(), 300ms);
    RawClient loris(path);
    const auto start = Clock::now();
    loris.send(R"({"cmd":"sta)");
    // A byte now and then does not keep the connection: the line as a whole has a deadline.
    while (!loris.input_ready(50ms)) {
        ASSERT_LT(Clock::now() - start, timeout) << "the unfinished line was never timed out";
        loris.try_send("t");
    }
    EXPECT_GE(Clock::now() - start, 300ms);
    const auto line = loris.read_line();
    ASSERT_TRUE(line);
    EXPECT_EQ(json::parse(*line)["error"], "request not completed within 300 ms; closing the connection");
    EXPECT_EQ(loris.read_line(), std::nullopt);
    EXPECT_EQ(send_command(path, {{"cmd", "nothing"}}, prompt), json({{"ok", true}}));
}

TEST_F(ControlServerTest, EachRequestLineHasTheWholeTimeoutToArriveInPieces) {
    RunningServer running(loop, path, test_commands(), 1000ms);
    RawClient client(path);
    client.send(R"({"cmd":"echo",)");
    std::this_thread::sleep_for(300ms);
    client.send(R"("n":1})"
                "\n"
                R"({"cmd":"echo",)");
    EXPECT_EQ(reply_of(client)["echo"]["n"], 1);
    // Past a second since the first byte, but not since the second line began.
    std::this_thread::sleep_for(800ms);
    client.send(R"("n":2})"
                "\n");
    EXPECT_EQ(reply_of(client)["echo"]["n"], 2);
}

TEST_F(ControlServerTest, ConnectionWaitingBetweenRequestsIsNotTimedOut) {
    RunningServer running(loop, path, test_commands(), 100ms);
    RawClient client(path);
    client.send(R"({"cmd":"echo","n":1})"
                "\n");
    EXPECT_EQ(reply_of(client)["echo"]["n"], 1);
    EXPECT_FALSE(client.input_ready(300ms));
    client.send(R"({"cmd":"echo","n":2})"
                "\n");
    EXPECT_EQ(reply_of(client)["echo"]["n"], 2);
}

// Sets the soft limit on descriptors for as long as it lives.
class DescriptorLimit {
public:
    explicit DescriptorLimit(rlim_t limit) {
        if (::getrlimit(RLIMIT_NOFILE, &saved_) != 0) {
            sys::throw_errno("getrlimit");
        }
        rlimit lowered = saved_;
        lowered.rlim_cur = limit;
        if (::setrlimit(RLIMIT_NOFILE, &lowered) != 0) {
            sys::throw_errno("setrlimit");
        }
    }
    ~DescriptorLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }

private:
    rlimit saved_{};
};

TEST_F(ControlServerTest, RunningOutOfDescriptorsPausesAcceptingWithoutSpinning) {
    RunningServer running(loop, path, test_commands());
    // Served before, so that the sanitizers have checked the types the loop's
    // thread meets (with no descriptor left they cannot), and kept open, so
    // that the server frees no descriptor while the limit is low.
    RawClient earlier(path);
    earlier.send(R"({"cmd":"nothing"})"
                 "\n");
    ASSERT_EQ(reply_of(earlier), json({{"ok", true}}));

    std::optional<RawClient> client;
    std::chrono::nanoseconds loop_cpu_time{};
    {
        sys::Fd probe(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        ASSERT_TRUE(probe);
        const int lowest_free = probe.get();
        probe.reset();
        // Room for the client's descriptor and none for the server's accept().
        DescriptorLimit limit(static_cast<rlim_t>(lowest_free) + 1);
        client.emplace(path);
        client->send(R"({"cmd":"nothing"})"
                     "\n");
        const auto before = running.loop_thread.cpu_time();
        EXPECT_FALSE(client->input_ready(300ms)) << "the server accepted a client with no descriptor left";
        loop_cpu_time = running.loop_thread.cpu_time() - before;
    }
    EXPECT_LT(loop_cpu_time, 100ms);
    // With descriptors to spare again the waiting client is taken in and answered.
    EXPECT_EQ(reply_of(*client), json({{"ok", true}}));
}

TEST_F(ControlServerTest, LiveServerAtThePathIsReportedInUse) {
    RunningServer running(loop, path, test_commands());
    sys::EventLoop other_loop;
    try {
        ControlServer second(other_loop, path, test_commands());
        FAIL() << "a second server bound a path in use";
    } catch (const std::runtime_error& error) {
        EXPECT_EQ(std::string(error.what()), "api socket " + path + " is in use");
    }
    EXPECT_EQ(send_command(path, {{"cmd", "nothing"}}, timeout)["ok"], true);
}

TEST_F(ControlServerTest, StaleSocketFileIsReplaced) {
    {
        // A server that died without removing its socket file.
        sys::Fd dead(::socket(AF_UNIX, SOCK_STREAM, 0));
        const sockaddr_un address = testing::socket_address(path);
        ASSERT_EQ(::bind(dead.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0);
    }
    ASSERT_TRUE(std::filesystem::is_socket(path));
    RunningServer running(loop, path, test_commands());
    EXPECT_EQ(send_command(path, {{"cmd", "nothing"}}, timeout)["ok"], true);
    // Nothing else is left beside the socket.
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(std::filesystem::path(path).parent_path()),
                            std::filesystem::directory_iterator()),
              1);
}

TEST_F(ControlServerTest, PathThatIsNotASocketIsRefusedAndLeftAlone) {
    std::ofstream(path) << "precious";
    EXPECT_THROW(
        {
            try {
                ControlServer server(loop, path, test_commands());
            } catch (const std::runtime_error& error) {
                EXPECT_EQ(std::string(error.what()), "api socket " + path + " exists and is not a socket");
                throw;
            }
        },
        std::runtime_error);
    std::string content;
    std::ifstream(path) >> content;
    EXPECT_EQ(content, "precious");
}

TEST_F(ControlServerTest, PathLongerThanSunPathIsRefusedNamingTheLimit) {
    const std::string long_path = dir.path(std::string(120, 'l'));
    try {
        ControlServer server(loop, long_path, test_commands());
        FAIL() << "a path longer than sun_path was accepted";
    } catch (const std::invalid_argument& error) {
        EXPECT_THAT(error.what(), HasSubstr("is " + std::to_string(long_path.size()) + " bytes long"));
        EXPECT_THAT(error.what(), HasSubstr("limited to 107 bytes"));
    }
}

TEST_F(ControlServerTest, PathInAMissingDirectoryIsRefusedNamingIt) {
    const std::string lost_path = dir.path("missing/api.sock");
    try {
        ControlServer server(loop, lost_path, test_commands());
        FAIL() << "a socket was made in a directory that does not exist";
    } catch (const std::system_error& error) {
        EXPECT_EQ(std::string(error.what()),
                  "open the directory of api socket " + lost_path + ": No such file or directory");
    }
}

TEST_F(ControlServerTest, StopOnTheLoopThreadRemovesTheSocketFileAndWaitingClientsSeeEof) {
    RunningServer running(loop, path, test_commands());
    RawClient client(path);
    client.send(R"({"cmd":"nothing"})"
                "\n");
    ASSERT_EQ(reply_of(client)["ok"], true);
    RawClient half(path);
    half.send(R"({"cmd":"noth)");
    EXPECT_FALSE(client.input_ready(100ms));

    running.loop_thread.run_on_loop([&] { running.server.stop(); });
    EXPECT_EQ(client.read_line(), std::nullopt);
    EXPECT_EQ(half.read_line(), std::nullopt);
    EXPECT_FALSE(std::filesystem::exists(path));
    running.loop_thread.run_on_loop([&] { running.server.stop(); });
}

TEST_F(ControlServerTest, ServerDestroyedOnTheLoopThreadLeavesTheLoopServingOthers) {
    auto server = std::make_unique<ControlServer>(loop, path, test_commands(), 100ms);
    LoopThread loop_thread(loop);
    RawClient half(path);
    half.send(R"({"cmd":"noth)");
    ASSERT_FALSE(half.input_ready(20ms));
    loop_thread.run_on_loop([&] { server.reset(); });
    EXPECT_EQ(half.read_line(), std::nullopt);
    EXPECT_FALSE(std::filesystem::exists(path));
    // Its timer is gone with it: the loop goes on with nothing of the server's firing.
    std::this_thread::sleep_for(200ms);
    bool ran = false;
    loop_thread.run_on_loop([&] { ran = true; });
    EXPECT_TRUE(ran);
}

TEST_F(ControlServerTest, StopLeavesAFileThatReplacedTheSocketAlone) {
    ControlServer server(loop, path, test_commands());
    std::filesystem::remove(path);
    std::ofstream(path) << "someone else's";
    server.stop();
    EXPECT_TRUE(std::filesystem::is_regular_file(path));
}

}  // namespace
}  // namespace vim::vmm::control
