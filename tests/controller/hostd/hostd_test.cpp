// hostd as the controller sees it: a real hostd process, fake_vmm as its VMs, the controller played by a
// double over real HTTP.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <fstream>
#include <thread>

#include "controller/common/sha256.h"
#include "hostd_harness.h"
#include "vim/testing/temp_dir.h"

namespace vim::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

std::string read_file(const std::filesystem::path& path) {
    std::ifstream file(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

template <typename Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (predicate()) {
            return true;
        }
        std::this_thread::sleep_for(20ms);
    }
    return predicate();
}

bool lists_vm(const json& heartbeat, const std::string& id, const std::string& state) {
    for (const json& vm : heartbeat.value("vms", json::array())) {
        if (vm["id"] == id && vm["state"] == state) {
            return true;
        }
    }
    return false;
}

class HostdTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::ofstream(kvm) << "";
        image_url = controller.serve_image("base", image);
    }

    // The VMs outlive hostd by design: the test ends them.
    void TearDown() override {
        for (const pid_t pid : processes_holding(kvm)) {
            ::kill(pid, SIGKILL);
        }
    }

    json spec(const std::string& id, const std::string& sha256 = "") const {
        return {{"id", id},
                {"name", "web-1"},
                {"vcpus", 2},
                {"memory_mib", 256},
                {"image",
                 {{"sha256", sha256.empty() ? vim::controller::sha256_hex(image) : sha256},
                  {"size", image.size()},
                  {"url", image_url}}},
                {"disks", {{{"size_gib", 2}}}},
                {"nics", json::array()}};
    }

    HostdProcess start_hostd(HostdProcess::Options options = {}) {
        return HostdProcess(controller, kvm, options);
    }

    TempDir scratch;
    std::filesystem::path kvm = scratch.path("kvm");
    ControllerDouble controller;
    std::string image = "boot sector" + std::string(1 << 20, '\0') + "end of image";
    std::string image_url;
};

TEST_F(HostdTest, CreateRunsTheVmWithItsDisksConsoleAndFigures) {
    auto hostd = start_hostd();
    const Reply created = hostd.post("/agent/v1/vms", spec("vm-1"));
    ASSERT_EQ(created.status, 200) << created.body;
    EXPECT_EQ(created.body["state"], "running");
    const pid_t pid = created.body["pid"];
    EXPECT_TRUE(process_alive(pid));
    EXPECT_EQ(processes_holding(kvm), std::vector<pid_t>{pid});

    const auto disks = hostd.disk_dir() / "vm-1";
    EXPECT_EQ(read_file(disks / "root.raw"), image);
    EXPECT_EQ(std::filesystem::file_size(disks / "data0.raw"), 2ull << 30);
    struct stat data {};
    ASSERT_EQ(::stat((disks / "data0.raw").c_str(), &data), 0);
    EXPECT_EQ(data.st_blocks, 0) << "a data disk takes no space until written";
    EXPECT_TRUE(std::filesystem::exists(hostd.state_dir() / "images" / vim::controller::sha256_hex(image)));

    const Reply status = hostd.get("/agent/v1/vms/vm-1");
    ASSERT_EQ(status.status, 200);
    EXPECT_EQ(status.body["pid"], pid);
    EXPECT_EQ(status.body["api_socket"], (hostd.state_dir() / "run" / "vm-1.sock").string());
    const std::string console = status.body["console"];
    EXPECT_EQ(console, (hostd.state_dir() / "vms" / "vm-1" / "console.log").string());
    EXPECT_EQ(read_file(console), "fake vmm: booted\n");
    const json figures = status.body["figures"];
    EXPECT_EQ(figures["vm_exits"], 52000);
    EXPECT_EQ(figures["disk_read_bytes"], 4096);
    EXPECT_EQ(figures["net_tx_bytes"], 200);
    EXPECT_GT(figures["resident_mib"].get<double>(), 0);
    EXPECT_TRUE(figures.contains("vcpu_time_ms"));

    const json record = json::parse(read_file(hostd.state_dir() / "vms" / "vm-1" / "vm.json"));
    EXPECT_EQ(record["pid"], pid);
    EXPECT_EQ(record["spec"]["vcpus"], 2);
    EXPECT_TRUE(record["owns_disks"]);
}

TEST_F(HostdTest, HeartbeatsCarryEachVmsFiguresAndDirtyRate) {
    auto hostd = start_hostd({.extra_arguments = {"--dirty-rate-ms", "100"}});
    ASSERT_EQ(hostd.post("/agent/v1/vms", spec("vm-1")).status, 200);
    const json heartbeat = controller.wait_for_heartbeat([](const json& beat) {
        return !beat["vms"].empty() && beat["vms"][0]["figures"].contains("dirty_rate_pages_per_s");
    });
    const json vm = heartbeat["vms"][0];
    EXPECT_EQ(vm["id"], "vm-1");
    EXPECT_EQ(vm["state"], "running");
    EXPECT_EQ(vm["figures"]["dirty_rate_pages_per_s"], 1500);
    EXPECT_EQ(vm["figures"]["vm_exits"], 52000);
    EXPECT_EQ(vm["figures"]["disk_write_bytes"], 512);
    EXPECT_EQ(heartbeat["metrics"]["running_vms"], 1);
}

TEST_F(HostdTest, RetriedAndConcurrentCreatesStartOneVmm) {
    auto hostd = start_hostd();
    std::vector<Reply> replies(4);
    std::vector<std::thread> threads;
    for (auto& reply : replies) {
        threads.emplace_back([&] { reply = hostd.post("/agent/v1/vms", spec("vm-1")); });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    for (const Reply& reply : replies) {
        ASSERT_EQ(reply.status, 200) << reply.body;
        EXPECT_EQ(reply.body["pid"], replies.front().body["pid"]);
    }
    EXPECT_EQ(hostd.post("/agent/v1/vms", spec("vm-1")).body["pid"], replies.front().body["pid"]);
    EXPECT_EQ(processes_holding(kvm).size(), 1u);
}

TEST_F(HostdTest, StopStartRebootAndDelete) {
    auto hostd = start_hostd();
    const pid_t first = hostd.post("/agent/v1/vms", spec("vm-1")).body["pid"];

    const Reply stopped = hostd.post("/agent/v1/vms/vm-1/stop");
    ASSERT_EQ(stopped.status, 200) << stopped.body;
    EXPECT_EQ(stopped.body["state"], "stopped");
    EXPECT_FALSE(process_alive(first));
    EXPECT_EQ(hostd.post("/agent/v1/vms/vm-1/stop").body["state"], "stopped") << "stop is idempotent";

    const Reply started = hostd.post("/agent/v1/vms/vm-1/start");
    ASSERT_EQ(started.status, 200) << started.body;
    EXPECT_EQ(started.body["state"], "running");
    const pid_t second = started.body["pid"];
    EXPECT_NE(second, first);
    EXPECT_EQ(hostd.post("/agent/v1/vms/vm-1/start").body["pid"], second) << "start is idempotent";

    const Reply rebooted = hostd.post("/agent/v1/vms/vm-1/reboot");
    ASSERT_EQ(rebooted.status, 200) << rebooted.body;
    EXPECT_NE(rebooted.body["pid"], second);
    EXPECT_FALSE(process_alive(second));

    const Reply deleted = hostd.request("DELETE", "/agent/v1/vms/vm-1");
    ASSERT_EQ(deleted.status, 200) << deleted.body;
    EXPECT_EQ(deleted.body["state"], "gone");
    EXPECT_TRUE(processes_holding(kvm).empty());
    EXPECT_FALSE(std::filesystem::exists(hostd.disk_dir() / "vm-1"));
    EXPECT_FALSE(std::filesystem::exists(hostd.state_dir() / "vms" / "vm-1"));
    const Reply after = hostd.get("/agent/v1/vms/vm-1");
    EXPECT_EQ(after.status, 404);
    EXPECT_THAT(after.error(), HasSubstr("vm vm-1: not known"));
}

TEST_F(HostdTest, AnImageWhoseContentIsNotItsSha256IsRefusedAndNotKept) {
    auto hostd = start_hostd();
    const std::string wrong(64, 'a');
    const Reply created = hostd.post("/agent/v1/vms", spec("vm-1", wrong));
    EXPECT_EQ(created.status, 500);
    EXPECT_THAT(created.error(), HasSubstr("image " + wrong));
    EXPECT_THAT(created.error(), HasSubstr("sha256 mismatch"));
    EXPECT_TRUE(std::filesystem::is_empty(hostd.state_dir() / "images"));
    EXPECT_FALSE(std::filesystem::exists(hostd.disk_dir() / "vm-1"));
    EXPECT_EQ(hostd.get("/agent/v1/vms/vm-1").status, 404);
    EXPECT_TRUE(processes_holding(kvm).empty());
}

TEST_F(HostdTest, ARestartedHostdAdoptsTheRunningVms) {
    auto hostd = start_hostd();
    const pid_t pid = hostd.post("/agent/v1/vms", spec("vm-1")).body["pid"];
    hostd.post("/agent/v1/vms", spec("vm-2"));
    hostd.post("/agent/v1/vms/vm-2/stop");
    hostd.kill_hard();
    ASSERT_TRUE(process_alive(pid)) << "a VM outlives its hostd";

    const auto heartbeats_before = controller.heartbeats().size();
    hostd.restart();
    const Reply status = hostd.get("/agent/v1/vms/vm-1");
    ASSERT_EQ(status.status, 200) << status.body;
    EXPECT_EQ(status.body["state"], "running");
    EXPECT_EQ(status.body["pid"], pid);
    EXPECT_EQ(status.body["figures"]["vm_exits"], 52000) << "its control socket still answers";
    EXPECT_EQ(hostd.get("/agent/v1/vms/vm-2").body["state"], "stopped");
    EXPECT_EQ(processes_holding(kvm), std::vector<pid_t>{pid});
    ASSERT_TRUE(eventually([&] { return controller.registrations().size() >= 2; }));
    const auto since_restart = std::max(controller.heartbeats().size(), heartbeats_before);
    ASSERT_TRUE(eventually([&] { return controller.heartbeats().size() > since_restart; }));
    const json heartbeat = controller.heartbeats().back();
    EXPECT_TRUE(lists_vm(heartbeat, "vm-1", "running")) << heartbeat;
    EXPECT_TRUE(lists_vm(heartbeat, "vm-2", "stopped")) << heartbeat;
    EXPECT_TRUE(heartbeat["unmanaged"].empty()) << heartbeat;
}

TEST_F(HostdTest, AStoppedHostdLeavesItsVmsRunning) {
    auto hostd = start_hostd();
    const pid_t pid = hostd.post("/agent/v1/vms", spec("vm-1")).body["pid"];
    hostd.terminate();
    EXPECT_TRUE(process_alive(pid));
    hostd.restart();
    EXPECT_EQ(hostd.get("/agent/v1/vms/vm-1").body["pid"], pid);
}

TEST_F(HostdTest, AVmThatDiedWhileHostdWasDownIsReportedStopped) {
    auto hostd = start_hostd();
    const pid_t pid = hostd.post("/agent/v1/vms", spec("vm-1")).body["pid"];
    hostd.kill_hard();
    ::kill(pid, SIGKILL);
    ASSERT_TRUE(eventually([&] { return !process_alive(pid); }));
    hostd.restart();
    const Reply status = hostd.get("/agent/v1/vms/vm-1");
    EXPECT_EQ(status.body["state"], "stopped");
    EXPECT_EQ(hostd.post("/agent/v1/vms/vm-1/start").body["state"], "running");
}

TEST_F(HostdTest, AHeartbeatReplyWithoutTheVmFencesItButKeepsItsDisks) {
    auto hostd = start_hostd();
    const pid_t pid = hostd.post("/agent/v1/vms", spec("vm-1")).body["pid"];
    controller.place({});
    ASSERT_TRUE(eventually([&] { return !process_alive(pid); }));
    EXPECT_TRUE(eventually([&] { return hostd.get("/agent/v1/vms/vm-1").status == 404; }))
        << "and forgets it";
    EXPECT_EQ(read_file(hostd.disk_dir() / "vm-1" / "root.raw"), image) << "fencing never deletes disks";
    EXPECT_TRUE(std::filesystem::exists(hostd.disk_dir() / "vm-1" / "data0.raw"));
}

TEST_F(HostdTest, AVmCreatedAfterAHeartbeatWasSentIsNotFencedByItsReply) {
    auto hostd = start_hostd();
    const pid_t old_vm = hostd.post("/agent/v1/vms", spec("vm-old")).body["pid"];
    controller.wait_for_heartbeat([](const json& beat) { return lists_vm(beat, "vm-old", "running"); });
    // The replies now lag: the one in flight while vm-new is created does not list it.
    controller.delay_replies(1500ms);
    controller.place({});
    const auto sent = controller.heartbeats().size();
    ASSERT_TRUE(eventually([&] { return controller.heartbeats().size() > sent; }));
    controller.place({"vm-new"});
    const Reply created = hostd.post("/agent/v1/vms", spec("vm-new"));
    ASSERT_EQ(created.status, 200) << created.body;
    ASSERT_TRUE(eventually([&] { return !process_alive(old_vm); })) << "the old reply still fences vm-old";
    std::this_thread::sleep_for(2s);
    const Reply status = hostd.get("/agent/v1/vms/vm-new");
    EXPECT_EQ(status.body["state"], "running");
    EXPECT_EQ(status.body["pid"], created.body["pid"]);
}

TEST_F(HostdTest, MigrationMovesTheVmBetweenHostsOnSharedDisks) {
    const std::filesystem::path shared = scratch.path("shared");
    auto source = start_hostd({.name = "host-a", .disk_dir = shared});
    auto target = start_hostd({.name = "host-b", .disk_dir = shared});
    const pid_t source_pid = source.post("/agent/v1/vms", spec("vm-1")).body["pid"];

    const Reply incoming = target.post("/agent/v1/vms/vm-1/incoming-migration", spec("vm-1"));
    ASSERT_EQ(incoming.status, 200) << incoming.body;
    const std::string uri = incoming.body["uri"];
    EXPECT_THAT(uri, ::testing::StartsWith("tcp:127.0.0.1:"));
    EXPECT_EQ(target.post("/agent/v1/vms/vm-1/incoming-migration", spec("vm-1")).body["uri"], uri)
        << "a retried prepare finds the vmm that waits";
    EXPECT_EQ(processes_holding(kvm).size(), 2u);

    const Reply migrated = source.post("/agent/v1/vms/vm-1/migrate", {{"uri", uri}});
    ASSERT_EQ(migrated.status, 200) << migrated.body;
    EXPECT_EQ(migrated.body["state"], "completed");
    EXPECT_TRUE(eventually([&] { return !process_alive(source_pid); }));
    EXPECT_EQ(source.get("/agent/v1/vms/vm-1").status, 404) << "the source forgets the VM";
    EXPECT_FALSE(std::filesystem::exists(source.state_dir() / "vms" / "vm-1"));
    EXPECT_EQ(read_file(shared / "vm-1" / "root.raw"), image) << "and keeps its disks";

    const Reply there = target.get("/agent/v1/vms/vm-1");
    ASSERT_EQ(there.status, 200);
    EXPECT_EQ(there.body["state"], "running");
    EXPECT_EQ(read_file(there.body["console"].get<std::string>()), "fake vmm: migrated in\n");
    // The target owns the disks now that the guest runs there.
    ASSERT_TRUE(eventually([&] {
        return json::parse(read_file(target.state_dir() / "vms" / "vm-1" / "vm.json"))["owns_disks"] == true;
    }));
    EXPECT_EQ(target.request("DELETE", "/agent/v1/vms/vm-1").status, 200);
    EXPECT_FALSE(std::filesystem::exists(shared / "vm-1"));
}

TEST_F(HostdTest, AFailedMigrationLeavesTheSourceRunning) {
    auto source = start_hostd();
    const pid_t pid = source.post("/agent/v1/vms", spec("vm-1")).body["pid"];
    const Reply failed = source.post("/agent/v1/vms/vm-1/migrate", {{"uri", "tcp:127.0.0.1:1"}});
    EXPECT_EQ(failed.status, 502);
    EXPECT_THAT(failed.error(), HasSubstr("migration of vm vm-1: "));
    EXPECT_THAT(failed.error(), HasSubstr("Connection refused"));
    EXPECT_EQ(source.get("/agent/v1/vms/vm-1").body["pid"], pid);
    EXPECT_TRUE(process_alive(pid));
}

TEST_F(HostdTest, DeletingAVmOnlyPreparedForAMigrationKeepsTheDisks) {
    const std::filesystem::path shared = scratch.path("shared");
    auto source = start_hostd({.name = "host-a", .disk_dir = shared});
    auto target = start_hostd({.name = "host-b", .disk_dir = shared});
    source.post("/agent/v1/vms", spec("vm-1"));
    ASSERT_EQ(target.post("/agent/v1/vms/vm-1/incoming-migration", spec("vm-1")).status, 200);
    EXPECT_EQ(target.request("DELETE", "/agent/v1/vms/vm-1").status, 200);
    EXPECT_EQ(processes_holding(kvm).size(), 1u);
    EXPECT_TRUE(std::filesystem::exists(shared / "vm-1" / "root.raw"));
    EXPECT_EQ(source.get("/agent/v1/vms/vm-1").body["state"], "running");
}

TEST_F(HostdTest, SnapshotWritesUnderTheStateDirectory) {
    auto hostd = start_hostd();
    hostd.post("/agent/v1/vms", spec("vm-1"));
    const Reply snapshot = hostd.post("/agent/v1/vms/vm-1/snapshot", {{"name", "before-upgrade"}});
    ASSERT_EQ(snapshot.status, 200) << snapshot.body;
    const std::filesystem::path path = snapshot.body["path"].get<std::string>();
    EXPECT_EQ(path, hostd.state_dir() / "snapshots" / "vm-1" / "before-upgrade");
    EXPECT_TRUE(std::filesystem::exists(path / "state"));
}

TEST_F(HostdTest, HostileRequestsGet4xxNamingTheField) {
    auto hostd = start_hostd();
    const auto expect = [&](const Reply& reply, int status, const std::string& text) {
        EXPECT_EQ(reply.status, status) << reply.body;
        EXPECT_THAT(reply.error(), HasSubstr(text)) << reply.body;
    };
    expect(hostd.request("POST", "/agent/v1/vms", "{"), 400, "body");
    expect(hostd.request("POST", "/agent/v1/vms", "[]"), 400, "");
    json bad = spec("vm-1");
    bad["vcpus"] = 0;
    expect(hostd.post("/agent/v1/vms", bad), 400, "vcpus");
    bad = spec("vm-1");
    bad["surprise"] = true;
    expect(hostd.post("/agent/v1/vms", bad), 400, "surprise");
    expect(hostd.post("/agent/v1/vms", spec("../../etc")), 400, "id");
    expect(hostd.post("/agent/v1/vms", spec(".hidden")), 400, "id");
    bad = spec("vm-1");
    bad["image"]["sha256"] = "not hex";
    expect(hostd.post("/agent/v1/vms", bad), 400, "image.sha256");
    bad = spec("vm-1");
    bad["nics"] = {
        {{"network", "net"}, {"vlan", 5000}, {"mac", "52:54:00:00:00:01"}, {"address", "10.0.0.2/24"}}};
    expect(hostd.post("/agent/v1/vms", bad), 400, "nics[0].vlan");
    expect(hostd.post("/agent/v1/vms/vm-2/incoming-migration", spec("vm-1")), 400, "id");
    expect(hostd.post("/agent/v1/vms/vm-1/migrate", {{"uri", "http://x"}}), 400, "uri");
    expect(hostd.post("/agent/v1/vms/vm-1/snapshot", {{"name", "Bad/Name"}}), 400, "name");
    expect(hostd.post("/agent/v1/vms/vm-1/snapshot", json::object()), 400, "name");
    expect(hostd.post("/agent/v1/unmanaged/abc/stop"), 400, "pid");
    expect(hostd.post("/agent/v1/unmanaged/-1/stop"), 400, "pid");
    expect(hostd.post("/agent/v1/unmanaged/1/adopt", {{"id", 5}}), 400, "id");
    expect(hostd.post("/agent/v1/unmanaged/999999/stop"), 404, "no unmanaged KVM process with pid 999999");
    expect(hostd.get("/agent/v1/vms/nobody"), 404, "vm nobody: not known on this host");
    expect(hostd.post("/agent/v1/vms/nobody/start"), 404, "vm nobody");
    expect(hostd.post("/agent/v1/vms/nobody/migrate", {{"uri", "tcp:127.0.0.1:1"}}), 404, "vm nobody");
    expect(hostd.get("/agent/v1/nothing"), 404, "no such route");
    EXPECT_TRUE(processes_holding(kvm).empty());
    EXPECT_EQ(hostd.get("/agent/v1/vms/vm-1").status, 404);
}

TEST_F(HostdTest, ATokenIsRequiredOfCallersAndSentToTheController) {
    auto hostd = start_hostd({.token = "s3cret"});
    EXPECT_EQ(hostd.request("GET", "/agent/v1/vms/x", "", "wrong").status, 401);
    EXPECT_EQ(hostd.request("GET", "/agent/v1/vms/x", "", "").status, 401);
    EXPECT_EQ(hostd.request("POST", "/agent/v1/vms", spec("vm-1").dump(), "wrong").status, 401);
    EXPECT_TRUE(processes_holding(kvm).empty());
    EXPECT_EQ(hostd.get("/agent/v1/vms/x").status, 404);
    EXPECT_EQ(hostd.post("/agent/v1/vms", spec("vm-1")).status, 200) << "the image is fetched with the token";
    controller.wait_for_heartbeat([](const json&) { return true; });
    for (const std::string& authorization : controller.authorizations()) {
        EXPECT_EQ(authorization, "Bearer s3cret");
    }
}

TEST_F(HostdTest, RegistersWithItsInventoryAndAgainWhenForgotten) {
    auto hostd = start_hostd({.name = "host-x"});
    controller.wait_for_heartbeat([](const json&) { return true; });
    const json registration = controller.registrations().front();
    EXPECT_EQ(registration["name"], "host-x");
    EXPECT_EQ(registration["agent_url"], hostd.url());
    EXPECT_GE(registration["cpus"].get<int>(), 1);
    EXPECT_GE(registration["memory_mib"].get<int>(), 64);
    EXPECT_TRUE(registration["inventory"].contains("cpu"));
    const json heartbeat = controller.heartbeats().back();
    EXPECT_TRUE(heartbeat["metrics"].contains("cpu_load"));
    EXPECT_TRUE(heartbeat["metrics"].contains("memory_used_mib"));
    EXPECT_EQ(heartbeat["metrics"]["running_vms"], 0);

    controller.forget_hosts();
    ASSERT_TRUE(eventually([&] { return controller.registrations().size() >= 2; }));
    const auto count = controller.heartbeats().size();
    EXPECT_TRUE(eventually([&] { return controller.heartbeats().size() > count; }));
}

TEST_F(HostdTest, UnmanagedKvmProcessesAreReportedStoppedAndAdopted) {
    auto hostd = start_hostd();
    hostd.post("/agent/v1/vms", spec("vm-1"));
    // Two VMs started by hand, one with a control socket.
    const auto start_by_hand = [&](const std::vector<std::string>& extra) {
        std::vector<std::string> arguments = {fake_vmm_binary().string(), "--kernel", "/vmlinuz"};
        arguments.insert(arguments.end(), extra.begin(), extra.end());
        const pid_t pid = ::fork();
        if (pid == 0) {
            ::setenv("FAKE_VMM_KVM_DEVICE", kvm.c_str(), 1);
            std::vector<char*> argv;
            for (auto& argument : arguments) {
                argv.push_back(argument.data());
            }
            argv.push_back(nullptr);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        return pid;
    };
    const std::string socket = scratch.path("by-hand.sock");
    const pid_t with_socket = start_by_hand({"--api-socket", socket});
    const pid_t without_socket = start_by_hand({"--serial", "none"});
    const json heartbeat =
        controller.wait_for_heartbeat([](const json& beat) { return beat["unmanaged"].size() == 2; });
    for (const json& process : heartbeat["unmanaged"]) {
        if (process["pid"] == with_socket) {
            EXPECT_EQ(process["api_socket"], socket);
            EXPECT_THAT(process["command"].get<std::string>(),
                        HasSubstr("--kernel /vmlinuz --api-socket " + socket));
        } else {
            EXPECT_EQ(process["pid"], without_socket);
            EXPECT_EQ(process["api_socket"], "");
        }
    }

    const Reply refused =
        hostd.post("/agent/v1/unmanaged/" + std::to_string(without_socket) + "/adopt", {{"id", "vm-2"}});
    EXPECT_EQ(refused.status, 409);
    EXPECT_THAT(refused.error(), HasSubstr("no --api-socket"));
    const Reply adopted =
        hostd.post("/agent/v1/unmanaged/" + std::to_string(with_socket) + "/adopt", {{"id", "vm-2"}});
    ASSERT_EQ(adopted.status, 200) << adopted.body;
    EXPECT_EQ(adopted.body["id"], "vm-2");
    const Reply status = hostd.get("/agent/v1/vms/vm-2");
    EXPECT_EQ(status.body["state"], "running");
    EXPECT_EQ(status.body["pid"], with_socket);
    controller.wait_for_heartbeat(
        [&](const json& beat) { return beat["unmanaged"].size() == 1 && lists_vm(beat, "vm-2", "running"); });

    const Reply stopped = hostd.post("/agent/v1/unmanaged/" + std::to_string(without_socket) + "/stop");
    EXPECT_EQ(stopped.status, 200) << stopped.body;
    int status_code = 0;
    EXPECT_EQ(::waitpid(without_socket, &status_code, 0), without_socket);
    EXPECT_TRUE(WIFSIGNALED(status_code)) << "SIGTERM ends a VM without a control socket";
    controller.wait_for_heartbeat([](const json& beat) { return beat["unmanaged"].empty(); });

    // An adopted VM is stopped through its socket; its disks are not hostd's to delete.
    EXPECT_EQ(hostd.request("DELETE", "/agent/v1/vms/vm-2").status, 200);
    EXPECT_EQ(::waitpid(with_socket, &status_code, 0), with_socket);
}

}  // namespace
}  // namespace vim::testing
