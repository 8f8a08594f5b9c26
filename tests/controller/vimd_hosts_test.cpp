// What hosts tell vimd and what vimd does about hosts (issue 14): heartbeats with the VMs' states and
// figures, unmanaged processes (adopted or stopped), maintenance that evacuates a host by live migration,
// and HA restarts of the VMs of a host that stopped heartbeating. Agents are played by the test double.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <thread>

#include "vim/testing/agent_double.h"
#include "vim/testing/vimd_process.h"

namespace {

using vim::testing::AgentDouble;
using vim::testing::host_registration;
using vim::testing::HttpClient;
using vim::testing::upload_image;
using vim::testing::VimdProcess;
using vim::testing::vm_request;

// Polls until `done` holds, for at most `timeout`; says whether it did.
bool eventually(const std::function<bool()>& done,
                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
}

class VimdHostEvents : public ::testing::Test {
protected:
    explicit VimdHostEvents(VimdProcess::Options options = {.agent_timeout_ms = 3000})
        : vimd(std::move(options)) {}

    void SetUp() override { ASSERT_EQ(upload_image(http, "debian", "bootable image bytes").status, 201); }

    void add_host(const std::string& name, const AgentDouble& agent) {
        const auto reply = http.post("/v1/hosts", host_registration(name, agent.url()));
        ASSERT_EQ(reply.status, 201) << reply.body;
    }

    // Creates a VM, waits for it to run; returns its record.
    nlohmann::json create(nlohmann::json request) {
        const auto reply = http.post("/v1/vms", request);
        EXPECT_EQ(reply.status, 202) << reply.body;
        const auto operation = vimd.wait_for_operation(reply.json()["operation"]["id"]);
        EXPECT_EQ(operation["state"], "succeeded") << operation;
        return http.get("/v1/vms/" + request["name"].get<std::string>()).json();
    }

    nlohmann::json act(const std::string& path) {
        const auto reply = http.post(path, nlohmann::json::object());
        EXPECT_EQ(reply.status, 202) << path << " " << reply.body;
        return vimd.wait_for_operation(reply.json()["operation"]["id"]);
    }

    std::string state_of(const std::string& vm) { return http.get("/v1/vms/" + vm).json()["state"]; }

    // The VM ids in the order the agent was asked to migrate them out.
    static std::vector<std::string> migrated_out(const AgentDouble& agent) {
        std::vector<std::string> ids;
        for (const auto& call : agent.calls()) {
            if (call.path.ends_with("/migrate")) {
                ids.push_back(
                    call.path.substr(std::string("/agent/v1/vms/").size(),
                                     call.path.size() - std::string("/agent/v1/vms//migrate").size()));
            }
        }
        return ids;
    }

    // The agents outlive vimd, which closes its connections to them first: an agent that stopped first
    // would wait for those connections to idle out.
    AgentDouble agent1;
    AgentDouble agent2;
    AgentDouble agent3;
    VimdProcess vimd;
    HttpClient http = vimd.client();
};

TEST_F(VimdHostEvents, AHeartbeatIsAnsweredWithTheHostsVmsAndSetsTheirStateAndFigures) {
    add_host("h1", agent1);
    add_host("h2", agent2);
    auto request = vm_request("web", "debian");
    request["host_affinity"] = {"h1"};
    const std::string web = create(request)["id"];
    request = vm_request("db", "debian");
    request["host_affinity"] = {"h2", "h1"};  // spread: the empty h2
    const std::string db = create(request)["id"];

    EXPECT_EQ(agent1.send_heartbeat(http, "h1"), nlohmann::json({{"vms", {web}}}));
    EXPECT_EQ(agent2.send_heartbeat(http, "h2"), nlohmann::json({{"vms", {db}}}));

    agent1.set_figures(web, {{"dirty_rate_pages_per_s", 1500}, {"resident_mib", 61.5}});
    agent1.send_heartbeat(http, "h1");
    const auto shown = http.get("/v1/vms/web").json();
    EXPECT_EQ(shown["figures"]["dirty_rate_pages_per_s"], 1500);
    EXPECT_EQ(shown["figures"]["resident_mib"], 61.5);
    EXPECT_FALSE(shown.contains("unmanaged"));

    // Its vmm gone behind the agent's back: missing; back: running; the guest powered off: stopped.
    agent1.drop_vm(web);
    agent1.send_heartbeat(http, "h1");
    EXPECT_EQ(state_of("web"), "missing");
    agent1.add_vm(web);
    agent1.send_heartbeat(http, "h1");
    EXPECT_EQ(state_of("web"), "running");
    agent1.set_vm_state(web, "stopped");
    agent1.send_heartbeat(http, "h1");
    EXPECT_EQ(state_of("web"), "stopped");
    // A stopped VM the host no longer has stays stopped: nothing runs, nothing is missing.
    agent1.drop_vm(web);
    agent1.send_heartbeat(http, "h1");
    EXPECT_EQ(state_of("web"), "stopped");
    // What another host reports of a VM that is not its own changes nothing.
    agent2.set_vm_state(web, "running");
    agent2.send_heartbeat(http, "h2");
    EXPECT_EQ(state_of("web"), "stopped");
    agent2.drop_vm(web);

    // While db migrates to h1, h1's reply lists it too; once moved, only h1's does.
    agent2.set_behaviour("/migrate", {.delay = std::chrono::milliseconds(1500)});
    const auto migration = http.post("/v1/vms/db/migrate", {{"host", "h1"}});
    ASSERT_EQ(migration.status, 202) << migration.body;
    ASSERT_TRUE(eventually([&] { return agent2.count("POST", "/migrate") == 1; }));
    const auto during = agent1.send_heartbeat(http, "h1")["vms"];
    EXPECT_NE(std::find(during.begin(), during.end(), db), during.end()) << during;
    // A migrating VM is the operation's: a heartbeat that lacks it does not make it missing.
    EXPECT_EQ(state_of("db"), "migrating");
    EXPECT_EQ(vimd.wait_for_operation(migration.json()["operation"]["id"])["state"], "succeeded");
    EXPECT_EQ(agent2.send_heartbeat(http, "h2"), nlohmann::json({{"vms", nlohmann::json::array()}}));
    const auto after = agent1.send_heartbeat(http, "h1")["vms"];
    EXPECT_NE(std::find(after.begin(), after.end(), db), after.end()) << after;

    // Hostile heartbeats are refused naming the field; an unknown host is 404 (its agent registers again).
    const auto bad = http.post("/v1/hosts/h1/heartbeat", {{"vms", {{{"id", web}, {"state", "dancing"}}}}});
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(bad.error(), "vms[0].state: must be running or stopped");
    EXPECT_EQ(http.post("/v1/hosts/h9/heartbeat", nlohmann::json::object()).status, 404);
}

TEST_F(VimdHostEvents, UnmanagedProcessesAreListedAndCanBeAdoptedOrStopped) {
    add_host("h1", agent1);
    agent1.set_unmanaged(
        {{{"pid", 4242},
          {"command", "vmm --kernel /boot/vmlinuz --cpus 2 --memory 512M --api-socket /tmp/x.sock"},
          {"api_socket", "/tmp/x.sock"}},
         {{"pid", 5000}, {"command", "qemu-system-x86_64 -enable-kvm"}, {"api_socket", ""}}});
    agent1.send_heartbeat(http, "h1");
    const auto listed = http.get("/v1/vms?state=unmanaged").json()["items"];
    ASSERT_EQ(listed.size(), 2u) << listed;
    EXPECT_EQ(listed[0]["name"], "unmanaged-h1-4242");
    EXPECT_EQ(listed[0]["host"], "h1");
    EXPECT_EQ(listed[0]["vcpus"], 2);
    EXPECT_EQ(listed[0]["memory_mib"], 512);
    EXPECT_EQ(listed[0]["unmanaged"]["pid"], 4242);
    EXPECT_EQ(listed[0]["unmanaged"]["api_socket"], "/tmp/x.sock");
    EXPECT_EQ(listed[1]["name"], "unmanaged-h1-5000");
    EXPECT_EQ(listed[1]["vcpus"], 0);  // its command line does not say
    // It holds what it takes on the host, so the scheduler counts it.
    EXPECT_EQ(http.get("/v1/hosts/h1").json()["used"]["vcpus"], 2);
    // A second heartbeat refreshes rather than duplicates.
    agent1.send_heartbeat(http, "h1");
    EXPECT_EQ(http.get("/v1/vms?state=unmanaged").json()["items"].size(), 2u);

    // Without a control socket the agent cannot manage it.
    const auto refused = http.post("/v1/vms/unmanaged-h1-5000/adopt", nlohmann::json::object());
    EXPECT_EQ(refused.status, 409);
    EXPECT_TRUE(refused.error().find("control socket is unknown") != std::string::npos) << refused.body;

    const std::string adopted_id = listed[0]["id"];
    const auto adoption = act("/v1/vms/unmanaged-h1-4242/adopt");
    EXPECT_EQ(adoption["state"], "succeeded") << adoption;
    EXPECT_EQ(adoption["kind"], "adopt");
    ASSERT_EQ(agent1.count("POST", "/agent/v1/unmanaged/4242/adopt"), 1u);
    for (const auto& call : agent1.calls()) {
        if (call.path.ends_with("/adopt")) {
            EXPECT_EQ(call.body, nlohmann::json({{"id", adopted_id}}));
        }
    }
    // The agent reports it by id from now on; it stays, running and managed.
    agent1.send_heartbeat(http, "h1");
    const auto adopted = http.get("/v1/vms/" + adopted_id).json();
    EXPECT_EQ(adopted["state"], "running");
    EXPECT_FALSE(adopted.contains("unmanaged"));
    EXPECT_EQ(http.post("/v1/vms/unmanaged-h1-4242/adopt", nlohmann::json::object()).status, 409);

    // Deleting an unmanaged VM stops its process through the agent (which deletes nothing).
    const auto deletion = http.remove("/v1/vms/unmanaged-h1-5000");
    ASSERT_EQ(deletion.status, 202) << deletion.body;
    EXPECT_EQ(vimd.wait_for_operation(deletion.json()["operation"]["id"])["state"], "succeeded");
    EXPECT_EQ(agent1.count("POST", "/agent/v1/unmanaged/5000/stop"), 1u);
    EXPECT_EQ(agent1.count("DELETE", "/agent/v1/vms/"), 0u);
    EXPECT_EQ(http.get("/v1/vms/unmanaged-h1-5000").status, 404);

    // A process that goes away on its own takes its record with it.
    agent1.set_unmanaged({{{"pid", 6000}, {"command", "vmm"}}});
    agent1.send_heartbeat(http, "h1");
    EXPECT_EQ(http.get("/v1/vms/unmanaged-h1-6000").status, 200);
    agent1.set_unmanaged(nlohmann::json::array());
    agent1.send_heartbeat(http, "h1");
    EXPECT_EQ(http.get("/v1/vms/unmanaged-h1-6000").status, 404);
    EXPECT_EQ(http.get("/v1/vms?state=unmanaged").json()["items"].size(), 0u);

    // A host is removed with the unmanaged VMs found on it, not with a VM of ours.
    agent1.set_unmanaged({{{"pid", 7000}, {"command", "vmm"}}});
    agent1.send_heartbeat(http, "h1");
    EXPECT_EQ(http.remove("/v1/hosts/h1").status, 409);
    const auto adopted_deletion = http.remove("/v1/vms/" + adopted_id);
    ASSERT_EQ(adopted_deletion.status, 202);
    EXPECT_EQ(vimd.wait_for_operation(adopted_deletion.json()["operation"]["id"])["state"], "succeeded");
    EXPECT_EQ(http.remove("/v1/hosts/h1").status, 204);
    EXPECT_EQ(http.get("/v1/vms/unmanaged-h1-7000").status, 404);
}

class VimdEvacuation : public VimdHostEvents {
protected:
    VimdEvacuation()
        : VimdHostEvents({.agent_timeout_ms = 3000, .extra_arguments = {"--evacuation-parallel", "1"}}) {}
};

TEST_F(VimdEvacuation, MaintenanceMovesEveryVmOffTheHostLeastDirtyFirst) {
    add_host("h1", agent1);
    // On h1 alone (the other hosts come later): dirty rates 0 (unknown), 0 and 5000 pages/s.
    const std::string big_quiet = create(vm_request("big-quiet", "debian", 1, 1024))["id"];
    const std::string small_quiet = create(vm_request("small-quiet", "debian", 1, 256))["id"];
    const std::string busy = create(vm_request("busy", "debian", 1, 128))["id"];
    agent1.set_figures(small_quiet, {{"dirty_rate_pages_per_s", 0}});
    agent1.set_figures(busy, {{"dirty_rate_pages_per_s", 5000}});
    agent1.send_heartbeat(http, "h1");
    add_host("h2", agent2);
    add_host("h3", agent3);

    const auto reply = http.patch("/v1/hosts/h1", {{"maintenance", true}});
    ASSERT_EQ(reply.status, 202) << reply.body;
    const auto body = reply.json();
    EXPECT_EQ(body["host"]["state"], "maintenance");
    EXPECT_EQ(body["operation"]["kind"], "evacuate");
    EXPECT_EQ(body["operation"]["target_id"], body["host"]["id"]);
    const auto operation = vimd.wait_for_operation(body["operation"]["id"]);
    ASSERT_EQ(operation["state"], "succeeded") << operation;
    EXPECT_EQ(operation["progress"], 100);

    // Least dirty first; equal rates: the smaller first.
    EXPECT_EQ(migrated_out(agent1), (std::vector<std::string>{small_quiet, big_quiet, busy}));
    const auto& moves = operation["result"]["vms"];
    ASSERT_EQ(moves.size(), 3u) << operation;
    for (const auto& move : moves) {
        EXPECT_EQ(move["from"], "h1");
        EXPECT_TRUE(move["to"] == "h2" || move["to"] == "h3") << move;
        EXPECT_EQ(move["ok"], true);
    }
    EXPECT_EQ(http.get("/v1/vms?host=h1").json()["items"].size(), 0u);
    EXPECT_EQ(http.get("/v1/hosts/h1").json()["used"]["vcpus"], 0);
    for (const auto* name : {"big-quiet", "small-quiet", "busy"}) {
        EXPECT_EQ(state_of(name), "running") << name;
    }
    // Nothing left to move: the plain answer.
    const auto again = http.patch("/v1/hosts/h1", {{"maintenance", true}});
    EXPECT_EQ(again.status, 200);
    EXPECT_EQ(again.json()["state"], "maintenance");
}

TEST_F(VimdHostEvents, AVmThatCannotMoveFailsTheEvacuationAndStaysWhereItRuns) {
    add_host("h1", agent1);
    const std::string stuck = create(vm_request("stuck", "debian"))["id"];
    create(vm_request("free", "debian"));
    create(vm_request("idle", "debian"));
    ASSERT_EQ(act("/v1/vms/idle/stop")["state"], "succeeded");
    add_host("h2", agent2);
    agent1.set_behaviour("/agent/v1/vms/" + stuck + "/migrate",
                         {.mode = AgentDouble::Mode::fail, .status = 502});

    const auto reply = http.patch("/v1/hosts/h1", {{"maintenance", true}});
    ASSERT_EQ(reply.status, 202) << reply.body;
    const auto operation = vimd.wait_for_operation(reply.json()["operation"]["id"]);
    EXPECT_EQ(operation["state"], "failed");
    const std::string error = operation["error"];
    EXPECT_TRUE(error.starts_with("evacuation of host h1: 1 of 2 vms did not move: stuck: ")) << error;
    for (const auto& move : operation["result"]["vms"]) {
        EXPECT_EQ(move["ok"], move["name"] == "free") << move;
    }
    ASSERT_EQ(operation["result"]["left"].size(), 1u) << operation;
    EXPECT_EQ(operation["result"]["left"][0]["name"], "idle");
    EXPECT_EQ(operation["result"]["left"][0]["state"], "stopped");

    const auto vm = http.get("/v1/vms/stuck").json();
    EXPECT_EQ(vm["host"], "h1");
    EXPECT_EQ(vm["state"], "running");
    EXPECT_EQ(vm["migration_host_id"], "");
    EXPECT_EQ(http.get("/v1/vms/free").json()["host"], "h2");
    // The target prepared for the failed one was told to let it go.
    EXPECT_EQ(agent2.count("DELETE", "/agent/v1/vms/" + stuck), 1u);
}

TEST_F(VimdHostEvents, AnEvacuationCutByARestartEndsFailedWithItsVmOnOneHost) {
    add_host("h1", agent1);
    const std::string vm = create(vm_request("mover", "debian"))["id"];
    add_host("h2", agent2);
    agent1.set_behaviour("/migrate", {.mode = AgentDouble::Mode::never_answer});
    const auto reply = http.patch("/v1/hosts/h1", {{"maintenance", true}});
    ASSERT_EQ(reply.status, 202) << reply.body;
    ASSERT_TRUE(eventually([&] { return agent1.count("POST", "/migrate") == 1; }));
    vimd.kill_and_restart();

    const auto operation = vimd.wait_for_operation(reply.json()["operation"]["id"]);
    EXPECT_EQ(operation["state"], "failed");
    EXPECT_EQ(operation["error"], "the controller restarted before the operation finished");
    // The source agent still has it: it stays there, and the target's claim is gone.
    const auto record = http.get("/v1/vms/mover").json();
    EXPECT_EQ(record["host"], "h1");
    EXPECT_EQ(record["state"], "running");
    EXPECT_EQ(record["migration_host_id"], "");
    EXPECT_EQ(http.get("/v1/hosts/h2").json()["used"]["vcpus"], 0);
    EXPECT_EQ(agent2.send_heartbeat(http, "h2"), nlohmann::json({{"vms", nlohmann::json::array()}}));
}

class VimdHighAvailability : public VimdHostEvents {
protected:
    VimdHighAvailability()
        : VimdHostEvents({.agent_timeout_ms = 3000, .extra_arguments = {"--host-dead-after-ms", "1000"}}) {}

    void TearDown() override {
        for (auto* agent : {&agent1, &agent2, &agent3}) {
            agent->stop_heartbeats();
        }
    }

    // The ha-restart operations, newest first.
    nlohmann::json restarts() { return http.get("/v1/operations?kind=ha-restart").json()["items"]; }
};

TEST_F(VimdHighAvailability, TheVmsOfAHostThatStopsHeartbeatingRestartElsewhereWithinTheirGroupsRules) {
    add_host("h1", agent1);
    add_host("h2", agent2);
    add_host("h3", agent3);
    agent1.start_heartbeats(http, "h1", std::chrono::milliseconds(100));
    agent2.start_heartbeats(http, "h2", std::chrono::milliseconds(100));
    agent3.start_heartbeats(http, "h3", std::chrono::milliseconds(100));
    ASSERT_EQ(http.post("/v1/server-groups", {{"name", "spread"}, {"policy", "anti-affinity"}}).status, 201);
    std::string grouped_on_h1;
    for (const auto* name : {"g-1", "g-2", "g-3"}) {
        auto request = vm_request(name, "debian");
        request["server_group"] = "spread";
        const auto vm = create(request);
        if (vm["host"] == "h1") {
            grouped_on_h1 = vm["name"];
        }
    }
    ASSERT_FALSE(grouped_on_h1.empty());
    auto solo = vm_request("solo", "debian");
    solo["host_affinity"] = {"h1", "h2"};
    const std::string solo_id = create(solo)["id"];
    ASSERT_EQ(http.get("/v1/vms/solo").json()["host"], "h1");

    agent1.stop_heartbeats();
    ASSERT_TRUE(eventually([&] { return restarts().size() == 2; })) << restarts();
    ASSERT_TRUE(eventually([&] {
        for (const auto& operation : restarts()) {
            if (operation["state"] == "pending" || operation["state"] == "running") {
                return false;
            }
        }
        return true;
    }));
    EXPECT_EQ(http.get("/v1/hosts/h1").json()["state"], "down");
    EXPECT_NE(http.get("/metrics").body.find("vim_hosts{state=\"down\"} 1"), std::string::npos);

    // solo restarts on h2, the one other host its affinity allows, from its shared disks.
    const auto moved = http.get("/v1/vms/solo").json();
    EXPECT_EQ(moved["host"], "h2");
    EXPECT_EQ(moved["state"], "running");
    EXPECT_EQ(moved["migration_host_id"], "");
    EXPECT_EQ(agent2.count("POST", "/agent/v1/vms"), 2u);  // g-2 or g-3 and solo
    // The group's member has nowhere to go (h2 and h3 hold one each): error, and the operation says why.
    const auto stranded = http.get("/v1/vms/" + grouped_on_h1).json();
    EXPECT_EQ(stranded["state"], "error");
    EXPECT_EQ(stranded["host"], "h1");
    for (const auto& operation : restarts()) {
        if (operation["target_id"] == solo_id) {
            EXPECT_EQ(operation["state"], "succeeded") << operation;
            EXPECT_EQ(operation["result"]["from"], "h1");
            EXPECT_EQ(operation["result"]["to"], "h2");
        } else {
            EXPECT_EQ(operation["state"], "failed") << operation;
            const std::string error = operation["error"];
            EXPECT_TRUE(error.starts_with("vm " + grouped_on_h1 + " of down host h1: no host can take it: "))
                << error;
            EXPECT_NE(error.find("anti-affinity"), std::string::npos) << error;
        }
    }

    // h1 comes back: no longer down, and its reply lacks solo, which its agent then fences. The group's
    // member never left it and runs there again.
    const auto reply = agent1.send_heartbeat(http, "h1");
    EXPECT_EQ(reply["vms"], nlohmann::json({stranded["id"]}));
    EXPECT_EQ(http.get("/v1/hosts/h1").json()["state"], "ready");
    EXPECT_EQ(state_of(grouped_on_h1), "running");
    EXPECT_EQ(restarts().size(), 2u);
}

TEST_F(VimdHighAvailability, AnHaRestartCutByARestartIsRetriedByTheNextController) {
    add_host("h1", agent1);
    add_host("h2", agent2);
    agent1.start_heartbeats(http, "h1", std::chrono::milliseconds(100));
    agent2.start_heartbeats(http, "h2", std::chrono::milliseconds(100));
    // Empty hosts tie, and the tie goes to h1; survivor may run on h1 only.
    auto other = vm_request("wanderer", "debian");
    other["host_affinity"] = {"h1", "h2"};
    const std::string wanderer = create(other)["id"];
    ASSERT_EQ(http.get("/v1/vms/wanderer").json()["host"], "h1");
    auto request = vm_request("survivor", "debian");
    request["host_affinity"] = {"h1"};
    const std::string id = create(request)["id"];
    agent2.set_behaviour("/agent/v1/vms", {.mode = AgentDouble::Mode::never_answer});

    agent1.stop_heartbeats();
    ASSERT_TRUE(eventually([&] { return agent2.count("POST", "/agent/v1/vms") == 1; }));
    EXPECT_EQ(state_of("wanderer"), "creating");
    agent2.set_behaviour("/agent/v1/vms", {});
    vimd.kill_and_restart();

    // The cut operation failed; the target never built it, so it stayed on h1, missing there, and the
    // new controller restarted it once h1 had been quiet for long enough after its own start.
    nlohmann::json cut;
    for (const auto& operation : restarts()) {
        if (operation["target_id"] == wanderer) {
            cut = operation;  // newest first: the last one is the first restart
        }
    }
    EXPECT_EQ(cut["state"], "failed");
    EXPECT_EQ(cut["error"], "the controller restarted before the operation finished");
    ASSERT_TRUE(eventually([&] { return state_of("wanderer") == "running"; })) << state_of("wanderer");
    const auto moved = http.get("/v1/vms/wanderer").json();
    EXPECT_EQ(moved["host"], "h2");
    EXPECT_EQ(moved["migration_host_id"], "");
    // The VM h1 alone may hold has nowhere to go.
    ASSERT_TRUE(eventually([&] { return state_of("survivor") == "error"; }));
    EXPECT_EQ(http.get("/v1/vms/" + id).json()["host"], "h1");
    EXPECT_EQ(agent2.send_heartbeat(http, "h2")["vms"], nlohmann::json({wanderer}));
}

TEST_F(VimdHostEvents, AnAdoptionCutByARestartLeavesTheVmUnmanaged) {
    add_host("h1", agent1);
    agent1.set_unmanaged({{{"pid", 31}, {"command", "vmm"}, {"api_socket", "/run/31.sock"}}});
    agent1.send_heartbeat(http, "h1");
    agent1.set_behaviour("/adopt", {.mode = AgentDouble::Mode::never_answer});
    const auto reply = http.post("/v1/vms/unmanaged-h1-31/adopt", nlohmann::json::object());
    ASSERT_EQ(reply.status, 202) << reply.body;
    ASSERT_TRUE(eventually([&] { return agent1.count("POST", "/adopt") == 1; }));
    EXPECT_EQ(state_of("unmanaged-h1-31"), "creating");
    vimd.kill_and_restart();
    const auto operation = vimd.wait_for_operation(reply.json()["operation"]["id"]);
    EXPECT_EQ(operation["state"], "failed");
    EXPECT_EQ(state_of("unmanaged-h1-31"), "unmanaged");
    EXPECT_EQ(http.get("/v1/vms/unmanaged-h1-31").json()["unmanaged"]["pid"], 31);
}

}  // namespace
