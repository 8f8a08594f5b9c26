// VMs through vimd: placement, operations carried out by a host agent (the test double, over HTTP),
// idempotent creation, racing creations, timeouts and restarts.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
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

class VimdVms : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_EQ(upload_image(http, "debian", "bootable image bytes").status, 201); }

    void add_host(const std::string& name, const AgentDouble& agent, int cpus = 8, int memory_mib = 16384) {
        const auto reply = http.post("/v1/hosts", host_registration(name, agent.url(), cpus, memory_mib));
        ASSERT_EQ(reply.status, 201) << reply.body;
    }

    // Creates a VM and waits for its operation; returns the final operation.
    nlohmann::json create(const nlohmann::json& request) {
        const auto reply = http.post("/v1/vms", request);
        EXPECT_EQ(reply.status, 202) << reply.body;
        return vimd.wait_for_operation(reply.json()["operation"]["id"]);
    }

    nlohmann::json act(const std::string& path, const nlohmann::json& body = nlohmann::json::object()) {
        const auto reply = http.post(path, body);
        EXPECT_EQ(reply.status, 202) << path << " " << reply.body;
        return vimd.wait_for_operation(reply.json()["operation"]["id"]);
    }

    AgentDouble agent;  // outlives vimd, which closes its connections to it first
    VimdProcess vimd{{.agent_timeout_ms = 1500}};
    HttpClient http = vimd.client();
};

TEST_F(VimdVms, ACreatedVmIsBuiltByItsHostsAgentAndFollowsItsActions) {
    add_host("h1", agent);
    ASSERT_EQ(http.post("/v1/networks", {{"name", "blue"}, {"vlan", 100}, {"cidr", "10.9.0.0/24"}}).status,
              201);
    auto request = vm_request("web-1", "debian", 2, 1024);
    request["nics"] = {{{"network", "blue"}}};
    request["disks"] = {{{"size_gib", 10}}, {{"size_gib", 5}}};
    const auto accepted = http.post("/v1/vms", request);
    ASSERT_EQ(accepted.status, 202) << accepted.body;
    const auto body = accepted.json();
    EXPECT_EQ(accepted.headers.at("Location"),
              "/v1/operations/" + body["operation"]["id"].get<std::string>());
    EXPECT_EQ(body["vm"]["host"], "h1");
    EXPECT_EQ(body["vm"]["disk_gib"], 15);
    const auto operation = vimd.wait_for_operation(body["operation"]["id"]);
    EXPECT_EQ(operation["state"], "succeeded") << operation;
    EXPECT_EQ(operation["progress"], 100);

    const auto vm = http.get("/v1/vms/web-1").json();
    EXPECT_EQ(vm["state"], "running");
    EXPECT_EQ(vm["nics"][0]["ip"], "10.9.0.2");
    const std::string mac = vm["nics"][0]["mac"];
    EXPECT_TRUE(mac.starts_with("52:54:00:")) << mac;
    // What the agent was asked: the spec with the image's address on this controller and the NIC.
    const auto calls = agent.calls();
    ASSERT_EQ(calls.size(), 1u);
    EXPECT_EQ(calls[0].path, "/agent/v1/vms");
    EXPECT_EQ(calls[0].body["id"], vm["id"]);
    EXPECT_EQ(calls[0].body["image"]["url"],
              vimd.url() + "/v1/images/" + vm["image_id"].get<std::string>() + "/content");
    EXPECT_EQ(calls[0].body["nics"][0]["mac"], mac);
    EXPECT_EQ(calls[0].body["nics"][0]["address"], "10.9.0.2/24");
    EXPECT_EQ(calls[0].body["nics"][0]["vlan"], 100);
    // The image can be fetched from where the agent was told to.
    EXPECT_EQ(HttpClient(vimd.url()).get("/v1/images/" + vm["image_id"].get<std::string>() + "/content").body,
              "bootable image bytes");

    EXPECT_EQ(act("/v1/vms/web-1/stop")["state"], "succeeded");
    EXPECT_EQ(http.get("/v1/vms/web-1").json()["state"], "stopped");
    EXPECT_EQ(http.post("/v1/vms/web-1/reboot", nlohmann::json::object()).status, 409);  // not running
    EXPECT_EQ(act("/v1/vms/web-1/start")["state"], "succeeded");
    EXPECT_EQ(act("/v1/vms/web-1/reboot")["state"], "succeeded");
    const auto snapshot = act("/v1/vms/web-1/snapshot", {{"name", "before-upgrade"}});
    EXPECT_EQ(snapshot["state"], "succeeded");
    EXPECT_EQ(snapshot["result"]["path"], "/var/lib/vim/snapshots/" + vm["id"].get<std::string>());
    EXPECT_EQ(agent.count("POST", "/start"), 1u);
    EXPECT_EQ(agent.count("POST", "/stop"), 1u);
    EXPECT_EQ(agent.count("POST", "/reboot"), 1u);

    // The image and the host are in use; the network too.
    EXPECT_EQ(http.remove("/v1/images/debian").status, 409);
    EXPECT_EQ(http.remove("/v1/hosts/h1").status, 409);
    EXPECT_EQ(http.remove("/v1/networks/blue").status, 409);
    // The name is taken.
    const auto collision = http.post("/v1/vms", vm_request("web-1", "debian"));
    EXPECT_EQ(collision.status, 409);
    EXPECT_TRUE(collision.error().starts_with("name: ")) << collision.body;

    const auto deleted = http.remove("/v1/vms/web-1");
    ASSERT_EQ(deleted.status, 202);
    EXPECT_EQ(vimd.wait_for_operation(deleted.json()["operation"]["id"])["state"], "succeeded");
    EXPECT_EQ(http.get("/v1/vms/web-1").status, 404);
    EXPECT_EQ(agent.count("DELETE", "/agent/v1/vms/" + vm["id"].get<std::string>()), 1u);
    EXPECT_EQ(http.remove("/v1/images/debian").status, 204);
    EXPECT_EQ(http.remove("/v1/networks/blue").status, 204);
    EXPECT_EQ(http.remove("/v1/hosts/h1").status, 204);
}

TEST_F(VimdVms, ARetriedCreateWithItsIdempotencyKeyReturnsTheFirstResult) {
    add_host("h1", agent);
    const auto first = http.post("/v1/vms", vm_request("once", "debian"), {{"Idempotency-Key", "k-1"}});
    ASSERT_EQ(first.status, 202) << first.body;
    const auto retry = http.post("/v1/vms", vm_request("once", "debian"), {{"Idempotency-Key", "k-1"}});
    ASSERT_EQ(retry.status, 202) << retry.body;
    EXPECT_EQ(retry.json()["vm"]["id"], first.json()["vm"]["id"]);
    EXPECT_EQ(retry.json()["operation"]["id"], first.json()["operation"]["id"]);
    const auto other = http.post("/v1/vms", vm_request("twice", "debian"), {{"Idempotency-Key", "k-1"}});
    EXPECT_EQ(other.status, 409);
    EXPECT_EQ(other.error(), "Idempotency-Key: \"k-1\" was used for a different request");
    vimd.wait_for_operation(first.json()["operation"]["id"]);
    EXPECT_EQ(http.get("/v1/vms").json()["items"].size(), 1u);
    EXPECT_EQ(agent.count("POST", "/agent/v1/vms"), 1u);
}

TEST_F(VimdVms, ConcurrentRetriesUnderOneKeyMakeOneVm) {
    add_host("h1", agent);
    std::vector<std::thread> threads;
    std::vector<std::string> ids(16);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        threads.emplace_back([&, i] {
            const auto reply =
                http.post("/v1/vms", vm_request("same", "debian"), {{"Idempotency-Key", "race"}});
            ids[i] = reply.status == 202 ? reply.json()["vm"]["id"].get<std::string>() : reply.body;
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 1u) << ids[0];
    EXPECT_EQ(http.get("/v1/vms").json()["items"].size(), 1u);
}

TEST_F(VimdVms, SixtyFourRacingCreatesNeverOverbookTheLastSlots) {
    // Two hosts of 2 CPUs: 8 vCPUs each at the default over-commit of 4, 16 one-vCPU VMs in all.
    AgentDouble second;
    add_host("h1", agent, 2, 65536);
    add_host("h2", second, 2, 65536);
    for (int i = 0; i < 10; ++i) {
        ASSERT_EQ(create(vm_request("early-" + std::to_string(i), "debian"))["state"], "succeeded");
    }
    std::atomic<int> accepted = 0;
    std::atomic<int> refused = 0;
    std::atomic<int> other = 0;
    std::vector<std::thread> clients;
    for (int i = 0; i < 64; ++i) {
        clients.emplace_back([&, i] {
            const auto reply = http.post("/v1/vms", vm_request("race-" + std::to_string(i), "debian"));
            if (reply.status == 202) {
                ++accepted;
            } else if (reply.status == 409 && reply.error().starts_with("no host can take the vm")) {
                ++refused;
            } else {
                ++other;
                ADD_FAILURE() << reply.status << " " << reply.body;
            }
        });
    }
    for (auto& client : clients) {
        client.join();
    }
    EXPECT_EQ(accepted, 6);
    EXPECT_EQ(refused, 58);
    EXPECT_EQ(other, 0);
    for (const char* host : {"h1", "h2"}) {
        const auto state = http.get(std::string("/v1/hosts/") + host).json();
        EXPECT_LE(state["used"]["vcpus"], state["usable"]["vcpus"]) << host;
        EXPECT_EQ(state["used"]["vcpus"], 8) << host;
    }
    EXPECT_EQ(http.get("/v1/vms?limit=1000").json()["items"].size(), 16u);
}

// The controller keeps its connection to an agent: calls one after another come on one connection.
TEST_F(VimdVms, CallsToAnAgentShareAKeptConnection) {
    add_host("h1", agent);
    EXPECT_EQ(create(vm_request("web-1", "debian"))["state"], "succeeded");
    EXPECT_EQ(act("/v1/vms/web-1/stop")["state"], "succeeded");
    EXPECT_EQ(act("/v1/vms/web-1/start")["state"], "succeeded");
    std::set<int> ports;
    for (const auto& call : agent.calls()) {
        ports.insert(call.remote_port);
    }
    EXPECT_EQ(ports.size(), 1u);
}

// An agent that closed the kept connection (its idle timeout, a restart) costs the next call nothing.
TEST_F(VimdVms, AKeptConnectionTheAgentClosedIsReplaced) {
    agent.close_idle_connections_after(std::chrono::seconds(1));
    add_host("h1", agent);
    EXPECT_EQ(create(vm_request("web-1", "debian"))["state"], "succeeded");
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    EXPECT_EQ(act("/v1/vms/web-1/stop")["state"], "succeeded");
    const auto calls = agent.calls();
    ASSERT_EQ(calls.size(), 2u);
    EXPECT_NE(calls[0].remote_port, calls[1].remote_port);
}

TEST_F(VimdVms, AnOperationWhoseAgentNeverAnswersFailsOnTime) {
    add_host("h1", agent);
    agent.set_behaviour("/agent/v1/vms", {.mode = AgentDouble::Mode::never_answer});
    const auto started = std::chrono::steady_clock::now();
    const auto operation = create(vm_request("stuck", "debian"));
    const auto waited = std::chrono::steady_clock::now() - started;
    EXPECT_EQ(operation["state"], "failed");
    EXPECT_TRUE(operation["error"].get<std::string>().starts_with("timed out: no result by its deadline") ||
                operation["error"].get<std::string>().find("no answer within 1500 ms") != std::string::npos)
        << operation;
    EXPECT_LT(waited, std::chrono::seconds(5));
    // Listed among the recent operations, newest first.
    const auto recent = http.get("/v1/operations?state=failed").json();
    ASSERT_EQ(recent["items"].size(), 1u);
    EXPECT_EQ(recent["items"][0]["id"], operation["id"]);
}

TEST_F(VimdVms, AnAgentErrorFailsTheOperationWithTheAgentsMessage) {
    add_host("h1", agent);
    agent.set_behaviour("/agent/v1/vms", {.mode = AgentDouble::Mode::fail, .status = 500});
    const auto operation = create(vm_request("broken", "debian"));
    EXPECT_EQ(operation["state"], "failed");
    EXPECT_NE(operation["error"].get<std::string>().find("500 agent double told to fail"), std::string::npos)
        << operation;
    EXPECT_EQ(http.get("/v1/vms/broken").json()["state"], "error");
    // An errored VM can still be deleted.
    agent.set_behaviour("/agent/v1/vms", {});
    const auto deleted = http.remove("/v1/vms/broken");
    ASSERT_EQ(deleted.status, 202);
    EXPECT_EQ(vimd.wait_for_operation(deleted.json()["operation"]["id"])["state"], "succeeded");
}

TEST_F(VimdVms, MigrationMovesTheVmThroughBothAgents) {
    AgentDouble target;
    add_host("h1", agent);
    add_host("h2", target);
    // Two empty hosts tie and the tie goes to the first name: h1.
    ASSERT_EQ(create(vm_request("mover", "debian"))["state"], "succeeded");
    ASSERT_EQ(http.get("/v1/vms/mover").json()["host"], "h1");
    const auto unknown = http.post("/v1/vms/mover/migrate", {{"host", "nowhere"}});
    EXPECT_EQ(unknown.status, 404);
    EXPECT_EQ(unknown.error(), "host: no host named \"nowhere\"");
    const auto operation = act("/v1/vms/mover/migrate", {{"host", "h2"}});
    EXPECT_EQ(operation["state"], "succeeded") << operation;
    const auto vm = http.get("/v1/vms/mover").json();
    EXPECT_EQ(vm["host"], "h2");
    EXPECT_EQ(vm["state"], "running");
    EXPECT_EQ(target.count("POST", "/incoming-migration"), 1u);
    ASSERT_EQ(agent.count("POST", "/migrate"), 1u);
    for (const auto& call : agent.calls()) {
        if (call.path.ends_with("/migrate")) {
            EXPECT_EQ(call.body["uri"], "tcp:127.0.0.1:4444");
        }
    }
    EXPECT_EQ(http.get("/v1/hosts/h1").json()["used"]["vcpus"], 0);
    EXPECT_EQ(http.get("/v1/hosts/h2").json()["used"]["vcpus"], 1);
}

TEST_F(VimdVms, AFailedMigrationLeavesTheVmWhereItWas) {
    AgentDouble target;
    add_host("h1", agent);
    add_host("h2", target);
    ASSERT_EQ(create(vm_request("stayer", "debian"))["state"], "succeeded");
    ASSERT_EQ(http.get("/v1/vms/stayer").json()["host"], "h1");
    agent.set_behaviour("/migrate", {.mode = AgentDouble::Mode::fail, .status = 500});
    EXPECT_EQ(act("/v1/vms/stayer/migrate", {{"host", "h2"}})["state"], "failed");
    const auto vm = http.get("/v1/vms/stayer").json();
    EXPECT_EQ(vm["host"], "h1");
    EXPECT_EQ(vm["state"], "running");
    EXPECT_EQ(http.get("/v1/hosts/h2").json()["used"]["vcpus"], 0);
}

TEST_F(VimdVms, ListsFilterAndPage) {
    AgentDouble second;
    add_host("h1", agent);
    add_host("h2", second);
    for (int i = 0; i < 5; ++i) {
        auto request = vm_request("vm-" + std::to_string(i), "debian");
        request["host_affinity"] = {i < 2 ? "h1" : "h2"};
        ASSERT_EQ(create(request)["state"], "succeeded");
    }
    std::vector<std::string> names;
    std::string token;
    int pages = 0;
    do {
        const auto page =
            http.get("/v1/vms?limit=2" + (token.empty() ? std::string() : "&page_token=" + token)).json();
        for (const auto& vm : page["items"]) {
            names.push_back(vm["name"]);
        }
        token = page["next_page_token"];
        ++pages;
    } while (!token.empty() && pages < 10);
    EXPECT_EQ(pages, 3);
    EXPECT_EQ(names, (std::vector<std::string>{"vm-0", "vm-1", "vm-2", "vm-3", "vm-4"}));
    EXPECT_EQ(http.get("/v1/vms?host=h1").json()["items"].size(), 2u);
    EXPECT_EQ(http.get("/v1/vms?state=running&host=h2").json()["items"].size(), 3u);
    EXPECT_EQ(http.get("/v1/vms?state=stopped").json()["items"].size(), 0u);
    EXPECT_EQ(http.get("/v1/vms?name_prefix=vm-4").json()["items"].size(), 1u);
    EXPECT_EQ(http.get("/v1/operations?limit=3").json()["items"].size(), 3u);
}

TEST_F(VimdVms, ExplainSaysWhyEachHostWasRejected) {
    AgentDouble second;
    add_host("h1", agent, 1, 1024);
    add_host("h2", second, 8, 16384);
    ASSERT_EQ(http.patch("/v1/hosts/h2", {{"maintenance", true}}).status, 200);
    const auto reply =
        http.post("/v1/placement/explain", {{"vcpus", 2}, {"memory_mib", 2048}, {"image", "debian"}});
    ASSERT_EQ(reply.status, 200) << reply.body;
    const auto explanation = reply.json();
    EXPECT_EQ(explanation["chosen"], "");
    ASSERT_EQ(explanation["hosts"].size(), 2u);
    EXPECT_EQ(explanation["hosts"][0]["rejected_by"], "capacity");
    EXPECT_EQ(explanation["hosts"][1]["rejected_by"], "maintenance");
    const auto refused = http.post("/v1/vms", vm_request("big", "debian", 2, 2048));
    EXPECT_EQ(refused.status, 409);
    EXPECT_TRUE(refused.error().starts_with("no host can take the vm: ")) << refused.body;
}

TEST_F(VimdVms, AcknowledgedVmsSurviveKillMinusNine) {
    add_host("h1", agent);
    std::vector<std::string> acknowledged;
    for (int i = 0; i < 8; ++i) {
        const auto reply = http.post("/v1/vms", vm_request("durable-" + std::to_string(i), "debian"));
        ASSERT_EQ(reply.status, 202);
        acknowledged.push_back(reply.json()["vm"]["id"]);
    }
    vimd.kill_and_restart();
    http = vimd.client();
    for (const auto& id : acknowledged) {
        EXPECT_EQ(http.get("/v1/vms/" + id).status, 200) << id;
    }
    // No operation is left pending or running by the killed process.
    const auto operations = http.get("/v1/operations?limit=100").json();
    for (const auto& operation : operations["items"]) {
        const std::string state = operation["state"];
        EXPECT_TRUE(state == "succeeded" || state == "failed") << operation;
    }
    EXPECT_EQ(http.get("/healthz").status, 200);
}

// Creates in flight from many clients when vimd is killed: each one answered 202 was committed (with its
// operation) before the answer, whatever commit it shared; none half there.
TEST_F(VimdVms, KillMinusNineDuringConcurrentCreatesLosesNoAcknowledgedVm) {
    add_host("h1", agent, 1024, 1 << 20);
    std::mutex mutex;
    std::vector<std::string> acknowledged;
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int c = 0; c < 8; ++c) {
        clients.emplace_back([&, c, client = vimd.client()] {
            for (int i = 0; !stop; ++i) {
                std::string name = "c";  // then +=: GCC 12 at -O3 sees a false overlap in "c" + std::string
                name += std::to_string(c);
                name += '-';
                name += std::to_string(i);
                const auto reply = client.post("/v1/vms", vm_request(name, "debian"));
                if (reply.status == 202) {
                    std::lock_guard lock(mutex);
                    acknowledged.push_back(reply.json()["vm"]["id"]);
                }
            }
        });
    }
    for (;;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        std::lock_guard lock(mutex);
        if (acknowledged.size() >= 40) {
            break;
        }
    }
    stop = true;
    vimd.kill_and_restart();
    for (auto& client : clients) {
        client.join();
    }
    http = vimd.client();
    auto everything = [&](std::string path) {
        nlohmann::json::array_t items;
        const auto first_page = path.size();
        for (;;) {
            const auto page = http.get(path).json();
            items.insert(items.end(), page["items"].begin(), page["items"].end());
            if (page["next_page_token"] == "") {
                return items;
            }
            path.resize(first_page);
            path += "&page_token=";
            path += page["next_page_token"].get<std::string>();
        }
    };
    std::set<std::string> stored;
    for (const auto& vm : everything("/v1/vms?limit=1000")) {
        stored.insert(vm["id"].get<std::string>());
    }
    for (const auto& id : acknowledged) {
        EXPECT_TRUE(stored.contains(id)) << id;
    }
    // Every VM there has its create operation: a creation is stored whole or not at all.
    std::set<std::string> created;
    for (const auto& operation : everything("/v1/operations?kind=create&limit=1000")) {
        created.insert(operation["target_id"].get<std::string>());
    }
    EXPECT_EQ(created, stored);
}

}  // namespace
