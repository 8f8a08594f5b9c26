#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <thread>

#include "socket_test_support.h"
#include "vmm/control/client.h"
#include "vmm/control/control_server.h"
#include "vmm/sys/error.h"

namespace vim::vmm::control {
namespace {

using nlohmann::json;
using testing::LoopThread;
using testing::TempDir;
using ::testing::HasSubstr;

// Answers one connection with fixed bytes once the request line is in, then
// closes it: the misbehaving servers ControlServer never is.
class ScriptedServer {
public:
    ScriptedServer(const std::string& path, std::string answer)
        : listener_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        const sockaddr_un address = testing::socket_address(path);
        if (::bind(listener_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0 ||
            ::listen(listener_.get(), 1) != 0) {
            sys::throw_errno("bind and listen " + path);
        }
        thread_ = std::thread([this, answer = std::move(answer)] {
            sys::Fd client(::accept(listener_.get(), nullptr, nullptr));
            char byte = 0;
            while (::recv(client.get(), &byte, 1, 0) == 1 && byte != '\n') {
            }
            ::send(client.get(), answer.data(), answer.size(), MSG_NOSIGNAL);
        });
    }
    ~ScriptedServer() { thread_.join(); }

private:
    sys::Fd listener_;
    std::thread thread_;
};

class SendCommandTest : public ::testing::Test {
protected:
    TempDir dir;
    const std::string path = dir.path("api.sock");
    sys::EventLoop loop;
};

TEST_F(SendCommandTest, ReturnsErrorRepliesRatherThanThrowing) {
    ControlServer server(loop, path, {});
    LoopThread loop_thread(loop);
    EXPECT_EQ(send_command(path, {{"cmd", "status"}}, std::chrono::seconds(5)),
              json({{"ok", false}, {"error", "unknown command 'status'"}}));
}

TEST_F(SendCommandTest, MissingSocketIsNamed) {
    try {
        send_command(path, {{"cmd", "status"}}, std::chrono::seconds(5));
        FAIL() << "connected to a socket that does not exist";
    } catch (const std::system_error& error) {
        EXPECT_EQ(std::string(error.what()), "connect to api socket " + path + ": No such file or directory");
    }
}

TEST_F(SendCommandTest, GivesUpAfterTheTimeout) {
    ControlServer server(loop, path, {{"slow", [](const json&) {
                                           std::this_thread::sleep_for(std::chrono::milliseconds(500));
                                           return json{};
                                       }}});
    LoopThread loop_thread(loop);
    const auto start = std::chrono::steady_clock::now();
    try {
        send_command(path, {{"cmd", "slow"}}, std::chrono::milliseconds(50));
        FAIL() << "a reply arrived before the command finished";
    } catch (const std::runtime_error& error) {
        EXPECT_EQ(std::string(error.what()), "api socket " + path + ": no reply within 50 ms");
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(400));
}

TEST_F(SendCommandTest, ServerClosingBeforeReplyingIsReported) {
    ScriptedServer server(path, "");
    EXPECT_THROW(
        {
            try {
                send_command(path, {{"cmd", "status"}}, std::chrono::seconds(5));
            } catch (const std::runtime_error& error) {
                EXPECT_EQ(std::string(error.what()),
                          "api socket " + path + " closed the connection before replying");
                throw;
            }
        },
        std::runtime_error);
}

TEST_F(SendCommandTest, ReplyThatIsNotJsonIsReported) {
    ScriptedServer server(path, "hello\n");
    try {
        send_command(path, {{"cmd", "status"}}, std::chrono::seconds(5));
        FAIL() << "a reply that is not JSON was accepted";
    } catch (const std::runtime_error& error) {
        EXPECT_THAT(error.what(), HasSubstr("api socket " + path + " sent a reply that is not JSON"));
    }
}

}  // namespace
}  // namespace vim::vmm::control
