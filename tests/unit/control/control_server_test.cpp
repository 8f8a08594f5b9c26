#include "vmm/control/control_server.h"

#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "socket_test_support.h"
#include "vmm/control/client.h"

namespace vmm::control {
namespace {

using nlohmann::json;
using testing::RawClient;
using testing::TempDir;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr std::chrono::seconds timeout(5);

CommandTable test_commands() {
    return {
        {"echo", [](const json& request) { return json{{"echo", request}}; }},
        {"nothing", [](const json&) { return json{}; }},
        {"number", [](const json&) { return json(42); }},
        {"refuse", [](const json&) -> json { throw CommandError("disk d0 is busy"); }},
        {"crash", [](const json&) -> json { throw std::runtime_error("boom"); }},
        {"big", [](const json&) { return json{{"payload", std::string(64 * 1024, 'b')}}; }},
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

class ControlServerTest : public ::testing::Test {
protected:
    TempDir dir;
    const std::string path = dir.path("api.sock");
};

TEST_F(ControlServerTest, AnswersACommandWithItsFieldsAndOk) {
    ControlServer server(path, test_commands());
    const json reply = send_command(path, {{"cmd", "echo"}, {"value", 7}}, timeout);
    EXPECT_EQ(reply["ok"], true);
    EXPECT_EQ(reply["echo"]["value"], 7);
    EXPECT_EQ(reply["echo"]["cmd"], "echo");
}

TEST_F(ControlServerTest, EmptyResultIsAPlainOk) {
    ControlServer server(path, test_commands());
    EXPECT_EQ(send_command(path, {{"cmd", "nothing"}}, timeout), json({{"ok", true}}));
}

TEST_F(ControlServerTest, NonObjectResultIsReportedAsError) {
    ControlServer server(path, test_commands());
    const json reply = send_command(path, {{"cmd", "number"}}, timeout);
    EXPECT_EQ(reply["ok"], false);
    EXPECT_EQ(reply["error"], "command 'number' produced a number instead of an object");
}

TEST_F(ControlServerTest, CommandErrorBecomesTheErrorMessage) {
    ControlServer server(path, test_commands());
    EXPECT_EQ(send_command(path, {{"cmd", "refuse"}}, timeout),
              json({{"ok", false}, {"error", "disk d0 is busy"}}));
}

TEST_F(ControlServerTest, OtherExceptionIsReportedNamingTheCommand) {
    ControlServer server(path, test_commands());
    EXPECT_EQ(send_command(path, {{"cmd", "crash"}}, timeout)["error"], "command 'crash' failed: boom");
}

TEST_F(ControlServerTest, UnknownCommandIsNamed) {
    ControlServer server(path, test_commands());
    EXPECT_EQ(send_command(path, {{"cmd", "reboot-now"}}, timeout),
              json({{"ok", false}, {"error", "unknown command 'reboot-now'"}}));
}

TEST_F(ControlServerTest, MalformedJsonIsAnsweredAndTheConnectionStaysUsable) {
    ControlServer server(path, test_commands());
    RawClient client(path);
    client.send("{\"cmd\": \n");
    const json reply = reply_of(client);
    EXPECT_EQ(reply["ok"], false);
    EXPECT_THAT(reply["error"].get<std::string>(), StartsWith("invalid JSON: parse error at line 1"));

    client.send(R"({"cmd":"nothing"})" "\n");
    EXPECT_EQ(reply_of(client), json({{"ok", true}}));
}

TEST_F(ControlServerTest, RequestsWithoutAStringCmdAreRefusedNamingTheProblem) {
    ControlServer server(path, test_commands());
    RawClient client(path);
    client.send("[1,2]\n");
    EXPECT_EQ(reply_of(client)["error"], "request must be a JSON object, not array");
    client.send(R"({"command":"status"})" "\n");
    EXPECT_EQ(reply_of(client)["error"], "request has no \"cmd\" field");
    client.send(R"({"cmd":5})" "\n");
    EXPECT_EQ(reply_of(client)["error"], "\"cmd\" must be a string, not number");
}

TEST_F(ControlServerTest, PipelinedLinesAreAnsweredInOrderSkippingBlankOnes) {
    ControlServer server(path, test_commands());
    RawClient client(path);
    client.send(R"({"cmd":"echo","n":1})" "\n" R"({"cmd":"echo","n":2})" "\n\n"
                R"({"cmd":"echo","n":3})" "\r\n");
    EXPECT_EQ(reply_of(client)["echo"]["n"], 1);
    EXPECT_EQ(reply_of(client)["echo"]["n"], 2);
    EXPECT_EQ(reply_of(client)["echo"]["n"], 3);
}

TEST_F(ControlServerTest, ClientsAreServedIndependently) {
    ControlServer server(path, test_commands());
    RawClient first(path);
    RawClient second(path);
    RawClient leaver(path);
    first.send(R"({"cmd":"echo",)");
    leaver.send(R"({"cmd":"ec)");
    second.send(R"({"cmd":"echo","who":"second"})" "\n");
    EXPECT_EQ(reply_of(second)["echo"]["who"], "second");

    leaver.close();
    first.send(R"("who":"first"})" "\n");
    EXPECT_EQ(reply_of(first)["echo"]["who"], "first");
    EXPECT_EQ(send_command(path, {{"cmd", "nothing"}}, timeout)["ok"], true);
}

TEST_F(ControlServerTest, ClientsBeyondTheConcurrentLimitAreServedWhenOthersLeave) {
    ControlServer server(path, test_commands());
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
    ControlServer server(path, test_commands());
    RawClient client(path);
    client.send(echo_line_of_length(ControlServer::max_line_bytes) + "\n");
    EXPECT_EQ(reply_of(client)["ok"], true);
}

TEST_F(ControlServerTest, OverLongLineGetsAnErrorAndTheConnectionIsClosed) {
    ControlServer server(path, test_commands());
    RawClient client(path);
    client.send(echo_line_of_length(ControlServer::max_line_bytes + 1) + "\n");
    const json reply = reply_of(client);
    EXPECT_EQ(reply["ok"], false);
    EXPECT_EQ(reply["error"], "request line longer than 65536 bytes; closing the connection");
    EXPECT_EQ(client.read_line(), std::nullopt);
    EXPECT_EQ(send_command(path, {{"cmd", "nothing"}}, timeout)["ok"], true);
}

TEST_F(ControlServerTest, ClientThatNeverReadsDoesNotStallOthers) {
    ControlServer server(path, test_commands());
    RawClient hog(path);
    std::string requests;
    for (int index = 0; index < 2000; ++index) {
        requests += R"({"cmd":"big"})" "\n";
    }
    // 2000 replies of 64 KiB are far more than a socket buffer holds.
    hog.send(requests);
    EXPECT_EQ(send_command(path, {{"cmd", "nothing"}}, timeout)["ok"], true);
}

TEST_F(ControlServerTest, LiveServerAtThePathIsReportedInUse) {
    ControlServer server(path, test_commands());
    try {
        ControlServer second(path, test_commands());
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
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        path.copy(address.sun_path, sizeof(address.sun_path) - 1);
        ASSERT_EQ(::bind(dead.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0);
    }
    ASSERT_TRUE(std::filesystem::is_socket(path));
    ControlServer server(path, test_commands());
    EXPECT_EQ(send_command(path, {{"cmd", "nothing"}}, timeout)["ok"], true);
}

TEST_F(ControlServerTest, PathThatIsNotASocketIsRefusedAndLeftAlone) {
    std::ofstream(path) << "precious";
    EXPECT_THROW(
        {
            try {
                ControlServer server(path, test_commands());
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
        ControlServer server(long_path, test_commands());
        FAIL() << "a path longer than sun_path was accepted";
    } catch (const std::invalid_argument& error) {
        EXPECT_THAT(error.what(), HasSubstr("is " + std::to_string(long_path.size()) + " bytes long"));
        EXPECT_THAT(error.what(), HasSubstr("limited to 107 bytes"));
    }
}

TEST_F(ControlServerTest, StopRemovesTheSocketFileAndWaitingClientsSeeEof) {
    ControlServer server(path, test_commands());
    RawClient client(path);
    client.send(R"({"cmd":"nothing"})" "\n");
    ASSERT_EQ(reply_of(client)["ok"], true);
    auto waiting = std::async(std::launch::async, [&client] { return client.read_line(); });
    // Give the reader time to block, so that stop() and not its timing ends the wait.
    EXPECT_EQ(waiting.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);

    server.stop();
    EXPECT_EQ(waiting.get(), std::nullopt);
    EXPECT_FALSE(std::filesystem::exists(path));
    server.stop();
}

TEST_F(ControlServerTest, StopLeavesAFileThatReplacedTheSocketAlone) {
    ControlServer server(path, test_commands());
    std::filesystem::remove(path);
    std::ofstream(path) << "someone else's";
    server.stop();
    EXPECT_TRUE(std::filesystem::is_regular_file(path));
}

}  // namespace
}  // namespace vmm::control
