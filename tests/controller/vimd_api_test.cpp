// vimd as a client sees it: a real process on a loopback port with a real SQLite file.
#include <gtest/gtest.h>

#include "vim/testing/agent_double.h"
#include "vim/testing/vimd_process.h"

namespace {

using vim::testing::AgentDouble;
using vim::testing::HttpClient;
using vim::testing::VimdProcess;

TEST(VimdAuth, EveryRouteButHealthzWantsTheBearerToken) {
    VimdProcess vimd({.token = "s3cret-token"});
    const HttpClient anonymous(vimd.url());
    EXPECT_EQ(anonymous.get("/healthz").status, 200);
    const auto refused = anonymous.get("/v1/hosts");
    EXPECT_EQ(refused.status, 401);
    EXPECT_EQ(refused.error(), "authentication required: send Authorization: Bearer <token>");
    EXPECT_EQ(anonymous.get("/metrics").status, 401);
    EXPECT_EQ(anonymous.post("/v1/server-groups", {{"name", "g"}, {"policy", "affinity"}}).status, 401);
    const HttpClient wrong(vimd.url(), "s3cret-tokeN");
    EXPECT_EQ(wrong.get("/v1/hosts").status, 401);
    EXPECT_EQ(anonymous.request("GET", "/v1/hosts", "", {{"Authorization", "Basic czNjcmV0LXRva2Vu"}}).status,
              401);
    EXPECT_EQ(vimd.client().get("/v1/hosts").status, 200);
    // Nothing was created by the refused request.
    EXPECT_EQ(vimd.client().get("/v1/server-groups").json()["items"].size(), 0u);
}

TEST(VimdHosts, RegisterListShowMaintenanceAndEnable) {
    VimdProcess vimd;
    AgentDouble agent;
    const auto http = vimd.client();
    auto registered = http.post("/v1/hosts", vim::testing::host_registration("h1", agent.url(), 4, 8192));
    ASSERT_EQ(registered.status, 201) << registered.body;
    EXPECT_EQ(registered.json()["state"], "ready");
    EXPECT_EQ(registered.json()["usable"]["vcpus"], 16);  // 4 CPUs at the default over-commit of 4
    // Registering again (an agent restart) updates the same host.
    auto again = http.post("/v1/hosts", vim::testing::host_registration("h1", agent.url(), 8, 8192));
    ASSERT_EQ(again.status, 200);
    EXPECT_EQ(again.json()["id"], registered.json()["id"]);
    EXPECT_EQ(again.json()["capacity"]["vcpus"], 8);

    const auto heartbeat = http.post("/v1/hosts/h1/heartbeat", {{"metrics", {{"cpu_load", 0.5}}}});
    EXPECT_EQ(heartbeat.status, 200);
    EXPECT_EQ(heartbeat.json(), nlohmann::json({{"vms", nlohmann::json::array()}}));
    EXPECT_EQ(http.get("/v1/hosts/h1").json()["metrics"]["cpu_load"], 0.5);
    EXPECT_EQ(http.patch("/v1/hosts/h1", {{"maintenance", true}}).json()["state"], "maintenance");
    EXPECT_EQ(http.patch("/v1/hosts/h1", {{"maintenance", false}, {"enabled", false}}).json()["state"],
              "disabled");
    EXPECT_EQ(http.patch("/v1/hosts/h1", {{"enabled", true}}).json()["state"], "ready");
    const auto list = http.get("/v1/hosts").json();
    ASSERT_EQ(list["items"].size(), 1u);
    EXPECT_EQ(list["next_page_token"], "");
    EXPECT_EQ(http.get("/v1/hosts/nope").status, 404);
    EXPECT_EQ(http.remove("/v1/hosts/h1").status, 204);
    EXPECT_EQ(http.get("/v1/hosts/h1").status, 404);
}

struct BadRequest {
    std::string method;
    std::string path;
    std::string body;
    int status;
    std::string error;  // the start of the expected message
};

TEST(VimdBadInput, EveryClassOfMistakeIsA4xxNamingTheField) {
    VimdProcess vimd;
    const auto http = vimd.client();
    ASSERT_EQ(http.post("/v1/server-groups", {{"name", "db"}, {"policy", "anti-affinity"}}).status, 201);
    ASSERT_EQ(http.post("/v1/networks", {{"name", "blue"}, {"vlan", 10}, {"cidr", "10.1.0.0/24"}}).status,
              201);
    const std::string vm = R"({"name":"a","vcpus":1,"memory_mib":256,"image":"img")";
    const std::vector<BadRequest> cases = {
        {"POST", "/v1/vms", "{\"name\": ", 400, "body: malformed JSON"},
        {"POST", "/v1/vms", "", 400, "body: a JSON object is required"},
        {"POST", "/v1/vms", "[1,2]", 400, "body: must be a JSON object, not array"},
        {"POST", "/v1/vms", vm + R"(,"colour":"red"})", 400, "colour: unknown field"},
        {"POST", "/v1/vms", R"({"name":"a","vcpus":"1","memory_mib":256,"image":"img"})", 400,
         "vcpus: must be an integer, not string"},
        {"POST", "/v1/vms", R"({"name":"a","vcpus":1,"memory_mib":-5,"image":"img"})", 400,
         "memory_mib: must be an integer from 16 to 4194304, not -5"},
        {"POST", "/v1/vms", R"({"name":"a","vcpus":1,"memory_mib":1e40,"image":"img"})", 400,
         "memory_mib: must be an integer from 16"},
        {"POST", "/v1/vms", R"({"name":"a","vcpus":1,"memory_mib":99999999999999999999999,"image":"img"})",
         400, "memory_mib: must be an integer from 16"},
        {"POST", "/v1/vms", vm + "}", 404, "image: no image named \"img\""},
        {"POST", "/v1/vms", vm + R"(,"disks":[{"size_gib":-1}]})", 400,
         "disks[0].size_gib: must be an integer"},
        {"POST", "/v1/server-groups", R"({"name":"db","policy":"anti-affinity"})", 409, "name: "},
        {"POST", "/v1/server-groups", R"({"name":"x","policy":"friends"})", 400, "policy: must be affinity"},
        {"POST", "/v1/networks", R"({"name":"red","vlan":10,"cidr":"10.2.0.0/24"})", 409, "vlan: "},
        {"POST", "/v1/networks", R"({"name":"red","vlan":0,"cidr":"10.2.0.0/24"})", 400,
         "vlan: must be an integer"},
        {"POST", "/v1/hosts", R"({"name":"h","agent_url":"http://x:1","cpus":0,"memory_mib":1024})", 400,
         "cpus: must be an integer from 1"},
        {"POST", "/v1/hosts/nope/heartbeat", "{}", 404, "host \"nope\" not found"},
        {"PATCH", "/v1/hosts/nope", "{}", 400, "body: must set maintenance or enabled"},
        {"PATCH", "/v1/hosts/nope", R"({"enabled":true})", 404, "host \"nope\" not found"},
        {"GET", "/v1/vms?colour=red", "", 400, "colour: unknown query parameter"},
        {"GET", "/v1/vms?limit=0", "", 400, "limit: must be an integer from 1 to 1000"},
        {"GET", "/v1/vms?limit=abc", "", 400, "limit: must be an integer from 1 to 1000"},
        {"GET", "/v1/vms?state=runing", "", 400, "state: "},
        {"GET", "/v1/vms?host=nope", "", 404, "host: no host named \"nope\""},
        {"GET", "/v1/vms?page_token=garbage", "", 400, ""},
        {"GET", "/v1/operations/nope", "", 404, ""},
        {"GET", "/v1/nothing", "", 404, "no route for GET /v1/nothing"},
        {"POST", "/v1/nothing", "{}", 404, "no route for POST /v1/nothing"},
        {"PUT", "/v1/vms", "{}", 405, "no route for PUT /v1/vms"},
        {"DELETE", "/v1/hosts", "", 405, "no route for DELETE /v1/hosts"},
        {"POST", "/v1/vms/nope/migrate", R"({"host": 5})", 400, "host: must be a string, not number"},
        {"POST", "/v1/vms/nope/start", "", 404, ""},
    };
    for (const auto& bad : cases) {
        const auto reply = http.request(bad.method, bad.path, bad.body);
        EXPECT_EQ(reply.status, bad.status)
            << bad.method << " " << bad.path << " " << bad.body << " -> " << reply.body;
        EXPECT_TRUE(reply.error().starts_with(bad.error))
            << bad.method << " " << bad.path << " " << bad.body << " -> " << reply.body;
        EXPECT_FALSE(reply.error().empty()) << bad.method << " " << bad.path << " -> " << reply.body;
    }
}

TEST(VimdBadInput, AnOversizedBodyIs413AndTheServerCarriesOn) {
    VimdProcess vimd;
    const auto http = vimd.client();
    const std::string huge = "{\"name\":\"" + std::string(2 << 20, 'a') + "\"}";
    const auto reply = http.request("POST", "/v1/server-groups", huge);
    EXPECT_EQ(reply.status, 413);
    EXPECT_EQ(reply.error(), "body: more than the limit of 1048576 bytes");
    EXPECT_EQ(http.get("/healthz").status, 200);
}

TEST(VimdBadInput, GarbageNeverGetsA5xx) {
    VimdProcess vimd;
    const auto http = vimd.client();
    const std::vector<std::string> bodies = {"",
                                             "null",
                                             "0",
                                             "\"x\"",
                                             "{}",
                                             "[]",
                                             "{\"name\":null}",
                                             "{\"a\":{\"b\":[",
                                             "\xff\xfe",
                                             "{\"name\":\"x\",\"vcpus\":1e999}",
                                             std::string(5000, '[')};
    for (const auto& route :
         std::vector<std::pair<std::string, std::string>>{{"POST", "/v1/hosts"},
                                                          {"POST", "/v1/hosts/h/heartbeat"},
                                                          {"PATCH", "/v1/hosts/h"},
                                                          {"POST", "/v1/vms"},
                                                          {"POST", "/v1/vms/x/migrate"},
                                                          {"POST", "/v1/vms/x/snapshot"},
                                                          {"POST", "/v1/server-groups"},
                                                          {"POST", "/v1/networks"},
                                                          {"POST", "/v1/placement/explain"},
                                                          {"POST", "/v1/images"},
                                                          {"DELETE", "/v1/vms/x"}}) {
        for (const auto& body : bodies) {
            const auto reply = http.request(route.first, route.second, body);
            EXPECT_GE(reply.status, 400) << route.second << " " << body.substr(0, 40);
            EXPECT_LT(reply.status, 500) << route.second << " " << body.substr(0, 40) << " -> " << reply.body;
        }
    }
    EXPECT_EQ(http.get("/healthz").status, 200);
}

TEST(VimdMetrics, PrometheusTextWithHostsVmsCapacityAndLatencies) {
    VimdProcess vimd;
    AgentDouble agent;
    const auto http = vimd.client();
    ASSERT_EQ(http.post("/v1/hosts", vim::testing::host_registration("h1", agent.url(), 2, 4096)).status,
              201);
    ASSERT_EQ(http.get("/v1/hosts").status, 200);
    const auto reply = http.get("/metrics");
    ASSERT_EQ(reply.status, 200);
    EXPECT_EQ(reply.headers.at("Content-Type"), "text/plain; version=0.0.4");
    const std::string& text = reply.body;
    EXPECT_NE(text.find("vim_hosts{state=\"ready\"} 1\n"), std::string::npos) << text;
    EXPECT_NE(text.find("vim_capacity{resource=\"vcpus\",kind=\"free\"} 8\n"), std::string::npos) << text;
    EXPECT_NE(text.find("# TYPE vim_api_request_duration_seconds histogram"), std::string::npos);
    EXPECT_NE(
        text.find(
            "vim_api_request_duration_seconds_count{route=\"/v1/hosts\",method=\"GET\",code=\"200\"} 1"),
        std::string::npos)
        << text;
    EXPECT_NE(text.find("vim_operations{state=\"running\"} 0"), std::string::npos);
    EXPECT_NE(text.find("# TYPE vim_scheduler_placement_duration_seconds histogram"), std::string::npos);
}

}  // namespace
