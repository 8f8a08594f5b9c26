// vimctl run as a process against a real vimd: exit codes, tables, --json, --wait, the token.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "vim/testing/agent_double.h"
#include "vim/testing/vimd_process.h"

namespace {

using vim::testing::AgentDouble;
using vim::testing::TempDir;
using vim::testing::VimdProcess;

struct Outcome {
    int exit_code = -1;
    std::string out;
    std::string err;
};

std::string slurp(const std::filesystem::path& path) {
    std::ifstream file(path);
    return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

// Runs vimctl with arguments (and environment additions), capturing its output through files.
Outcome vimctl(const std::vector<std::string>& arguments, const std::vector<std::string>& environment = {}) {
    TempDir scratch;
    const std::string out_path = scratch.path("out");
    const std::string err_path = scratch.path("err");
    const pid_t pid = ::fork();
    if (pid == 0) {
        const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(out, STDOUT_FILENO);
        ::dup2(err, STDERR_FILENO);
        ::unsetenv("VIM_CONTROLLER");
        ::unsetenv("VIM_TOKEN_FILE");
        for (const auto& assignment : environment) {
            ::putenv(const_cast<char*>(assignment.c_str()));
        }
        std::vector<std::string> all = {vim::testing::vimctl_binary().string()};
        all.insert(all.end(), arguments.begin(), arguments.end());
        std::vector<char*> argv;
        for (auto& argument : all) {
            argv.push_back(argument.data());
        }
        argv.push_back(nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out_path), slurp(err_path)};
}

class Vimctl : public ::testing::Test {
protected:
    Outcome run(std::vector<std::string> arguments) {
        arguments.insert(arguments.begin(), {"--controller", vimd.url()});
        return vimctl(arguments);
    }

    AgentDouble agent;  // outlives vimd, which closes its connections to it first
    VimdProcess vimd;
};

TEST_F(Vimctl, TablesByDefaultAndJsonOnRequest) {
    ASSERT_EQ(
        vimd.client().post("/v1/hosts", vim::testing::host_registration("h1", agent.url(), 4, 8192)).status,
        201);
    const auto table = run({"host", "list"});
    ASSERT_EQ(table.exit_code, 0) << table.err;
    EXPECT_TRUE(table.out.starts_with("NAME  STATE  VCPUS  MEMORY_MIB  AGENT\n")) << table.out;
    EXPECT_NE(table.out.find("h1    ready  0/16   0/8192"), std::string::npos) << table.out;
    const auto json = run({"--json", "host", "show", "h1"});
    ASSERT_EQ(json.exit_code, 0) << json.err;
    EXPECT_EQ(nlohmann::json::parse(json.out)["name"], "h1");
    const auto maintenance = run({"host", "maintenance", "h1", "on"});
    ASSERT_EQ(maintenance.exit_code, 0) << maintenance.err;
    EXPECT_NE(maintenance.out.find("state:"), std::string::npos);
    EXPECT_NE(maintenance.out.find("maintenance"), std::string::npos);
}

TEST_F(Vimctl, AVmLifeWithWait) {
    ASSERT_EQ(vimd.client().post("/v1/hosts", vim::testing::host_registration("h1", agent.url())).status,
              201);
    TempDir files;
    const std::filesystem::path image = files.path("debian.img");
    std::ofstream(image) << std::string(100000, 'x');
    const auto upload = run({"--json", "image", "upload", image.string(), "--name", "debian"});
    ASSERT_EQ(upload.exit_code, 0) << upload.err;
    EXPECT_EQ(nlohmann::json::parse(upload.out)["size_bytes"], 100000);
    ASSERT_EQ(run({"network", "create", "blue", "--vlan", "7", "--cidr", "10.7.0.0/24"}).exit_code, 0);
    ASSERT_EQ(run({"group", "create", "web", "--policy", "anti-affinity"}).exit_code, 0);
    const auto created = run({"vm", "create", "web-1", "--vcpus", "2", "--memory-mib", "512", "--image",
                              "debian", "--nic", "blue", "--group", "web", "--disk", "10", "--wait"});
    ASSERT_EQ(created.exit_code, 0) << created.err;
    EXPECT_NE(created.out.find("create succeeded"), std::string::npos) << created.out;
    const auto list = run({"vm", "list"});
    ASSERT_EQ(list.exit_code, 0);
    EXPECT_NE(list.out.find("web-1  running  h1"), std::string::npos) << list.out;
    EXPECT_NE(list.out.find("10.7.0.2"), std::string::npos) << list.out;
    const auto json_list = run({"--json", "vm", "list", "--state", "running"});
    EXPECT_EQ(nlohmann::json::parse(json_list.out)["items"].size(), 1u);
    EXPECT_EQ(run({"vm", "stop", "web-1", "--wait"}).exit_code, 0);
    EXPECT_EQ(run({"vm", "start", "web-1", "--wait"}).exit_code, 0);
    const std::filesystem::path downloaded = files.path("copy.img");
    EXPECT_EQ(run({"image", "download", "debian", downloaded.string()}).exit_code, 0);
    EXPECT_EQ(slurp(downloaded), std::string(100000, 'x'));
    EXPECT_EQ(run({"vm", "delete", "web-1", "--wait"}).exit_code, 0);
    EXPECT_EQ(run({"--json", "operation", "list"}).exit_code, 0);
}

TEST_F(Vimctl, ErrorsExitNonZeroWithTheServersMessage) {
    const auto missing = run({"vm", "show", "nope"});
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_NE(missing.err.find("error: "), std::string::npos);
    EXPECT_NE(missing.err.find("nope"), std::string::npos) << missing.err;
    const auto invalid = run({"network", "create", "red", "--vlan", "5000", "--cidr", "10.0.0.0/24"});
    EXPECT_EQ(invalid.exit_code, 1);
    EXPECT_EQ(invalid.err, "error: vlan: must be an integer from 1 to 4094, not 5000\n");
    ASSERT_EQ(vimd.client().post("/v1/hosts", vim::testing::host_registration("h1", agent.url())).status,
              201);
    agent.set_behaviour("/agent/v1/vms", {.mode = AgentDouble::Mode::fail, .status = 500});
    TempDir files;
    std::ofstream(files.path("img")) << "x";
    ASSERT_EQ(run({"image", "upload", files.path("img"), "--name", "img"}).exit_code, 0);
    const auto failed =
        run({"vm", "create", "bad", "--vcpus", "1", "--memory-mib", "64", "--image", "img", "--wait"});
    EXPECT_EQ(failed.exit_code, 1);
    EXPECT_NE(failed.err.find("failed: agent"), std::string::npos) << failed.err;
    EXPECT_EQ(run({"vm", "frobnicate"}).exit_code, 2);
    EXPECT_EQ(vimctl({"--controller", "http://127.0.0.1:1", "host", "list"}).exit_code, 1);
}

TEST_F(Vimctl, MaintenanceEvacuatesAndUnmanagedVmsCanBeAdopted) {
    const auto http = vimd.client();
    ASSERT_EQ(http.post("/v1/hosts", vim::testing::host_registration("h1", agent.url())).status, 201);
    ASSERT_EQ(vim::testing::upload_image(http, "debian", "image bytes").status, 201);
    ASSERT_EQ(
        run({"vm", "create", "web-1", "--vcpus", "1", "--memory-mib", "256", "--image", "debian", "--wait"})
            .exit_code,
        0);
    AgentDouble other;
    ASSERT_EQ(http.post("/v1/hosts", vim::testing::host_registration("h2", other.url())).status, 201);

    const auto maintenance = run({"host", "maintenance", "h1", "on"});
    ASSERT_EQ(maintenance.exit_code, 0) << maintenance.err;
    const std::string said = "host h1 in maintenance: evacuating its running VMs\noperation ";
    ASSERT_TRUE(maintenance.out.starts_with(said)) << maintenance.out;
    const std::string operation =
        maintenance.out.substr(said.size(), maintenance.out.find(' ', said.size()) - said.size());
    const auto waited = run({"operation", "wait", operation});
    ASSERT_EQ(waited.exit_code, 0) << waited.err;
    EXPECT_EQ(waited.out, "operation " + operation + " evacuate succeeded\n");
    EXPECT_NE(run({"vm", "show", "web-1"}).out.find("\nhost:               h2\n"), std::string::npos)
        << run({"vm", "show", "web-1"}).out;
    // Nothing left to move: the host as it is now.
    const auto again = run({"host", "maintenance", "h1", "on", "--wait"});
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_NE(again.out.find("maintenance"), std::string::npos) << again.out;

    agent.set_unmanaged({{{"pid", 77}, {"command", "vmm --cpus 1"}, {"api_socket", "/run/x.sock"}}});
    agent.send_heartbeat(http, "h1");
    const auto list = run({"vm", "list"});
    EXPECT_NE(list.out.find("unmanaged-h1-77  unmanaged  h1"), std::string::npos) << list.out;
    const auto adopted = run({"vm", "adopt", "unmanaged-h1-77", "--wait"});
    ASSERT_EQ(adopted.exit_code, 0) << adopted.err;
    EXPECT_NE(adopted.out.find("adopt succeeded"), std::string::npos) << adopted.out;
    EXPECT_EQ(agent.count("POST", "/agent/v1/unmanaged/77/adopt"), 1u);
}

TEST(VimctlAuth, TheTokenFileComesFromTheFlagOrTheEnvironment) {
    VimdProcess vimd({.token = "tok-123"});
    const auto refused = vimctl({"--controller", vimd.url(), "host", "list"});
    EXPECT_EQ(refused.exit_code, 1);
    EXPECT_EQ(refused.err, "error: authentication required: send Authorization: Bearer <token>\n");
    EXPECT_EQ(vimctl({"--controller", vimd.url(), "--token-file", vimd.token_file().string(), "host", "list"})
                  .exit_code,
              0);
    const auto from_environment = vimctl(
        {"host", "list"}, {"VIM_CONTROLLER=" + vimd.url(), "VIM_TOKEN_FILE=" + vimd.token_file().string()});
    EXPECT_EQ(from_environment.exit_code, 0) << from_environment.err;
}

}  // namespace
