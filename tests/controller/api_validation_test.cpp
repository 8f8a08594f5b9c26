#include <gtest/gtest.h>

#include "controller/api/types.h"
#include "controller/api/validation.h"

namespace {

using vim::controller::api::AgentVmSpec;
using vim::controller::api::HostRegistration;
using vim::controller::api::Ipv4Network;
using vim::controller::api::NetworkCreate;
using vim::controller::api::parse_body;
using vim::controller::api::ValidationError;
using vim::controller::api::VmCreate;

std::string error_of(const std::function<void()>& parse) {
    try {
        parse();
    } catch (const ValidationError& error) {
        return error.what();
    }
    return "(no error)";
}

nlohmann::json valid_vm() {
    return {{"name", "web-1"}, {"vcpus", 2}, {"memory_mib", 1024}, {"image", "debian"}};
}

std::string vm_error(const nlohmann::json& body) {
    return error_of([&] { VmCreate::from_json(body); });
}

TEST(ApiValidation, AValidVmRequestReadsBackAsWritten) {
    auto body = valid_vm();
    body["disks"] = {{{"size_gib", 20}}};
    body["nics"] = {{{"network", "blue"}}};
    body["server_group"] = "db";
    body["cpu_features"] = {"avx2"};
    const auto vm = VmCreate::from_json(body);
    EXPECT_EQ(vm.name, "web-1");
    EXPECT_EQ(vm.vcpus, 2u);
    EXPECT_EQ(vm.disks.at(0).size_gib, 20u);
    EXPECT_EQ(vm.nics.at(0).network, "blue");
    EXPECT_EQ(VmCreate::from_json(vm.to_json()).to_json(), vm.to_json());
}

TEST(ApiValidation, MalformedJsonNamesTheBody) {
    EXPECT_EQ(error_of([] { parse_body("{\"name\": "); }).substr(0, 20), "body: malformed JSON");
    EXPECT_EQ(error_of([] { parse_body(""); }), "body: a JSON object is required");
    EXPECT_EQ(vm_error(nlohmann::json::array()), "body: must be a JSON object, not array");
}

TEST(ApiValidation, UnknownFieldsAreRefusedByName) {
    auto body = valid_vm();
    body["vcpu"] = 2;
    EXPECT_EQ(vm_error(body), "vcpu: unknown field");
    body = valid_vm();
    body["disks"] = {{{"size_gib", 1}, {"sise", 2}}};
    EXPECT_EQ(vm_error(body), "disks[0].sise: unknown field");
}

TEST(ApiValidation, WrongTypesNameTheField) {
    auto body = valid_vm();
    body["vcpus"] = "2";
    EXPECT_EQ(vm_error(body), "vcpus: must be an integer, not string");
    body = valid_vm();
    body["vcpus"] = 2.5;
    EXPECT_EQ(vm_error(body), "vcpus: must be an integer from 1 to 256, not 2.5");
    body = valid_vm();
    body["name"] = 7;
    EXPECT_EQ(vm_error(body), "name: must be a string, not number");
    body = valid_vm();
    body["nics"] = "blue";
    EXPECT_EQ(vm_error(body), "nics: must be an array, not string");
}

TEST(ApiValidation, NegativeAndAbsurdSizesAreRefused) {
    auto body = valid_vm();
    body["memory_mib"] = -1;
    EXPECT_EQ(vm_error(body), "memory_mib: must be an integer from 16 to 4194304, not -1");
    body["memory_mib"] = 1e300;
    EXPECT_EQ(vm_error(body).substr(0, 46), "memory_mib: must be an integer from 16 to 4194");
    body = valid_vm();
    body["vcpus"] = 100000;
    EXPECT_EQ(vm_error(body), "vcpus: must be an integer from 1 to 256, not 100000");
    body = valid_vm();
    body["disks"] = {{{"size_gib", 0}}};
    EXPECT_EQ(vm_error(body), "disks[0].size_gib: must be an integer from 1 to 65536, not 0");
    body = valid_vm();
    body["nics"] = nlohmann::json::array();
    for (int i = 0; i < 9; ++i) {
        body["nics"].push_back({{"network", "n"}});
    }
    EXPECT_EQ(vm_error(body), "nics: may hold at most 8 items");
}

TEST(ApiValidation, MissingFieldsAndBadNames) {
    auto body = valid_vm();
    body.erase("image");
    EXPECT_EQ(vm_error(body), "image: is required");
    body = valid_vm();
    body["name"] = "Web 1";
    EXPECT_EQ(vm_error(body), "name: may hold only a-z, 0-9, '-', '_' and '.'");
    body["name"] = std::string(64, 'a');
    EXPECT_EQ(vm_error(body), "name: must be 1 to 63 characters long");
    body["name"] = "-x";
    EXPECT_EQ(vm_error(body), "name: must start with a letter or a digit");
}

TEST(ApiValidation, NetworksCheckVlanAndCidr) {
    const auto network_error = [](const nlohmann::json& body) {
        return error_of([&] { NetworkCreate::from_json(body); });
    };
    EXPECT_EQ(network_error({{"name", "blue"}, {"vlan", 4095}, {"cidr", "10.0.0.0/24"}}),
              "vlan: must be an integer from 1 to 4094, not 4095");
    EXPECT_EQ(network_error({{"name", "blue"}, {"vlan", 10}, {"cidr", "10.0.0.1/24"}}),
              "cidr: has host bits set: 10.0.0.1/24");
    EXPECT_EQ(network_error({{"name", "blue"}, {"vlan", 10}, {"cidr", "10.0.0.0/31"}}),
              "cidr: must be an IPv4 network such as 10.1.0.0/24 with a prefix from 8 to 30");
    EXPECT_EQ(network_error({{"name", "blue"}, {"vlan", 10}, {"cidr", "banana"}}),
              "cidr: must be an IPv4 network such as 10.1.0.0/24 with a prefix from 8 to 30");
    const auto pool = Ipv4Network::parse("cidr", "10.1.0.0/24");
    EXPECT_EQ(pool.gateway(), "10.1.0.1");
    EXPECT_EQ(pool.host_address(0), "10.1.0.2");
    EXPECT_EQ(pool.host_count(), 253u);
}

TEST(ApiValidation, HostRegistrationChecksItsNumbers) {
    const nlohmann::json host = {
        {"name", "h1"}, {"agent_url", "http://127.0.0.1:1"}, {"cpus", 8}, {"memory_mib", 4096}};
    EXPECT_EQ(HostRegistration::from_json(host).cpus, 8u);
    auto body = host;
    body["cpu_overcommit"] = 0;
    EXPECT_EQ(error_of([&] { HostRegistration::from_json(body); }),
              "cpu_overcommit: must be a number from 0.1 to 64.0, not 0");
    body = host;
    body["agent_url"] = "ftp://x";
    EXPECT_EQ(error_of([&] { HostRegistration::from_json(body); }), "agent_url: must be an http:// URL");
    body = host;
    body["numa_nodes"] = {{{"cpus", 4}}};
    EXPECT_EQ(error_of([&] { HostRegistration::from_json(body); }), "numa_nodes[0].memory_mib: is required");
}

TEST(ApiValidation, AgentSpecsAreStrictToo) {
    nlohmann::json spec = {
        {"id", "x"},
        {"name", "web-1"},
        {"vcpus", 1},
        {"memory_mib", 64},
        {"image", {{"sha256", std::string(64, 'a')}, {"size", 10}, {"url", "http://c/v1/images/a"}}},
        {"nics",
         {{{"network", "blue"}, {"vlan", 5}, {"mac", "52:54:00:00:00:01"}, {"address", "10.0.0.2/24"}}}}};
    EXPECT_EQ(AgentVmSpec::from_json(spec).to_json(),
              AgentVmSpec::from_json(AgentVmSpec::from_json(spec).to_json()).to_json());
    spec["nics"][0]["mac"] = "52-54-00-00-00-01";
    EXPECT_EQ(error_of([&] { AgentVmSpec::from_json(spec); }),
              "nics[0].mac: must be a MAC address such as 52:54:00:12:34:56");
}

}  // namespace

namespace {

using vim::controller::api::HeartbeatReply;
using vim::controller::api::HostHeartbeat;

nlohmann::json valid_heartbeat() {
    return {{"metrics", {{"cpu_load", 0.3}}},
            {"vms",
             {{{"id", "vm-1"}, {"state", "running"}, {"figures", {{"dirty_rate_pages_per_s", 1500}}}},
              {{"id", "vm-2"}, {"state", "stopped"}}}},
            {"unmanaged", {{{"pid", 4242}, {"command", "vmm --cpus 2"}, {"api_socket", "/tmp/x.sock"}}}}};
}

std::string heartbeat_error(const nlohmann::json& body) {
    return error_of([&] { HostHeartbeat::from_json(body); });
}

TEST(ApiValidation, AHeartbeatReadsItsVmsAndUnmanagedProcessesBackAsWritten) {
    const auto heartbeat = HostHeartbeat::from_json(valid_heartbeat());
    ASSERT_EQ(heartbeat.vms.size(), 2u);
    EXPECT_EQ(heartbeat.vms[0].figures.at("dirty_rate_pages_per_s"), 1500);
    EXPECT_EQ(heartbeat.vms[1].state, HostHeartbeat::Vm::State::stopped);
    ASSERT_EQ(heartbeat.unmanaged.size(), 1u);
    EXPECT_EQ(heartbeat.unmanaged[0].pid, 4242u);
    EXPECT_EQ(HostHeartbeat::from_json(heartbeat.to_json()).to_json(), heartbeat.to_json());
    // Both lists may be left out, and an api_socket too.
    EXPECT_TRUE(HostHeartbeat::from_json({{"metrics", nlohmann::json::object()}}).vms.empty());
    EXPECT_EQ(HostHeartbeat::from_json({{"unmanaged", {{{"pid", 1}, {"command", "qemu"}}}}})
                  .unmanaged[0]
                  .api_socket,
              "");
    const auto reply = HeartbeatReply::from_json({{"vms", {"a", "b"}}});
    EXPECT_EQ(reply.vms, (std::vector<std::string>{"a", "b"}));
}

TEST(ApiValidation, AHostileHeartbeatIsRefusedNamingTheField) {
    auto body = valid_heartbeat();
    body["vms"][0]["state"] = "paused";
    EXPECT_EQ(heartbeat_error(body), "vms[0].state: must be running or stopped");
    body = valid_heartbeat();
    body["vms"][1]["id"] = "vm-1";
    EXPECT_EQ(heartbeat_error(body), "vms[1].id: \"vm-1\" is listed twice");
    body = valid_heartbeat();
    body["vms"][0]["id"] = "";
    EXPECT_EQ(heartbeat_error(body), "vms[0].id: must not be empty");
    body = valid_heartbeat();
    body["vms"][0]["colour"] = "red";
    EXPECT_EQ(heartbeat_error(body), "vms[0].colour: unknown field");
    body = valid_heartbeat();
    body["vms"][0]["figures"]["resident_mib"] = "a lot";
    EXPECT_TRUE(heartbeat_error(body).starts_with("vms[0].figures.resident_mib: must be a number"))
        << heartbeat_error(body);
    body = valid_heartbeat();
    for (int i = 0; i < 65; ++i) {
        body["vms"][0]["figures"]["f" + std::to_string(i)] = i;
    }
    EXPECT_EQ(heartbeat_error(body), "vms[0].figures: may hold at most 64 values");
    body = valid_heartbeat();
    body["vms"] = nlohmann::json::array();
    for (int i = 0; i < 4097; ++i) {
        body["vms"].push_back({{"id", "vm-" + std::to_string(i)}, {"state", "running"}});
    }
    EXPECT_TRUE(heartbeat_error(body).starts_with("vms: ")) << heartbeat_error(body);
    body = valid_heartbeat();
    body["unmanaged"][0]["pid"] = 0;
    EXPECT_TRUE(heartbeat_error(body).starts_with("unmanaged[0].pid: must be an integer from 1"));
    body = valid_heartbeat();
    body["unmanaged"].push_back(body["unmanaged"][0]);
    EXPECT_EQ(heartbeat_error(body), "unmanaged[1].pid: 4242 is listed twice");
    body = valid_heartbeat();
    body["unmanaged"][0]["command"] = std::string(5000, 'x');
    EXPECT_TRUE(heartbeat_error(body).starts_with("unmanaged[0].command: ")) << heartbeat_error(body);
    body = valid_heartbeat();
    body["unmanaged"][0]["pid"] = -4;
    EXPECT_TRUE(heartbeat_error(body).starts_with("unmanaged[0].pid: ")) << heartbeat_error(body);
}

}  // namespace
