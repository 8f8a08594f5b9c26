#include "controller/api/types.h"

#include <arpa/inet.h>

#include <set>

#include "controller/api/validation.h"

namespace vim::controller::api {

namespace {

constexpr double kMaxOvercommit = 64.0;

void require_http_url(const std::string& field, const std::string& url) {
    if (!url.starts_with("http://") || url.size() <= 7) {
        throw ValidationError(field, "must be an http:// URL");
    }
}

void check_sha256(const std::string& field, const std::string& text) {
    const bool hex = text.find_first_not_of("0123456789abcdef") == std::string::npos;
    if (text.size() != 64 || !hex) {
        throw ValidationError(field, "must be 64 lowercase hexadecimal digits");
    }
}

void check_feature_names(const std::string& field, const std::vector<std::string>& names) {
    for (std::size_t i = 0; i < names.size(); ++i) {
        const auto& name = names[i];
        if (name.empty() ||
            name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_.") != std::string::npos) {
            throw ValidationError(field + "[" + std::to_string(i) + "]",
                                  "must be a CPU feature name such as avx2");
        }
    }
}

void check_mac(const std::string& field, const std::string& mac) {
    bool valid = mac.size() == 17;
    for (std::size_t i = 0; valid && i < mac.size(); ++i) {
        valid = (i % 3 == 2) ? mac[i] == ':' : std::isxdigit(static_cast<unsigned char>(mac[i])) != 0;
    }
    if (!valid) {
        throw ValidationError(field, "must be a MAC address such as 52:54:00:12:34:56");
    }
}

// A free-form object of name -> number (metrics, figures): at most max_values, names 1-64 characters.
std::map<std::string, double> read_numbers(ObjectReader& reader, const std::string& key,
                                           std::size_t max_values) {
    std::map<std::string, double> numbers;
    auto object = reader.optional_free_object(key);
    if (!object) {
        return numbers;
    }
    const std::string field = reader.field(key);
    if (object->size() > max_values) {
        throw ValidationError(field, "may hold at most " + std::to_string(max_values) + " values");
    }
    ObjectReader values(*object, field);
    for (const auto& [name, value] : object->items()) {
        if (name.empty() || name.size() > 64) {
            throw ValidationError(field, "names must be 1 to 64 characters long");
        }
        numbers[name] = values.number(name, -1e18, 1e18);
    }
    return numbers;
}

}  // namespace

HostRegistration HostRegistration::from_json(const nlohmann::json& body) {
    ObjectReader reader(body, "");
    HostRegistration host;
    host.name = reader.name("name");
    host.agent_url = reader.string("agent_url", 256);
    require_http_url("agent_url", host.agent_url);
    host.cpus = reader.integer("cpus", 1, kMaxHostCpus);
    host.memory_mib = reader.integer("memory_mib", 64, kMaxHostMemoryMib);
    host.disk_gib = reader.optional_integer("disk_gib", 0, kMaxHostDiskGib).value_or(0);
    host.cpu_features = reader.string_list("cpu_features", 1024, 64);
    check_feature_names("cpu_features", host.cpu_features);
    for (auto& node : reader.object_list("numa_nodes", 64)) {
        NumaNode parsed;
        parsed.cpus = node.integer("cpus", 1, kMaxHostCpus);
        parsed.memory_mib = node.integer("memory_mib", 0, kMaxHostMemoryMib);
        node.finish();
        host.numa_nodes.push_back(parsed);
    }
    host.cpu_overcommit = reader.optional_number("cpu_overcommit", 0.1, kMaxOvercommit);
    host.ram_overcommit = reader.optional_number("ram_overcommit", 0.1, kMaxOvercommit);
    host.disk_overcommit = reader.optional_number("disk_overcommit", 0.1, kMaxOvercommit);
    host.reserved_cpus = reader.optional_integer("reserved_cpus", 0, host.cpus - 1).value_or(0);
    host.reserved_memory_mib = reader.optional_integer("reserved_memory_mib", 0, host.memory_mib).value_or(0);
    host.reserved_disk_gib = reader.optional_integer("reserved_disk_gib", 0, host.disk_gib).value_or(0);
    host.tags = reader.name_list("tags", kMaxListItems);
    host.inventory = reader.optional_free_object("inventory").value_or(nlohmann::json::object());
    reader.finish();
    return host;
}

nlohmann::json HostRegistration::to_json() const {
    nlohmann::json body = {{"name", name},
                           {"agent_url", agent_url},
                           {"cpus", cpus},
                           {"memory_mib", memory_mib},
                           {"disk_gib", disk_gib},
                           {"cpu_features", cpu_features},
                           {"numa_nodes", nlohmann::json::array()},
                           {"reserved_cpus", reserved_cpus},
                           {"reserved_memory_mib", reserved_memory_mib},
                           {"reserved_disk_gib", reserved_disk_gib},
                           {"tags", tags},
                           {"inventory", inventory}};
    for (const auto& node : numa_nodes) {
        body["numa_nodes"].push_back({{"cpus", node.cpus}, {"memory_mib", node.memory_mib}});
    }
    if (cpu_overcommit) {
        body["cpu_overcommit"] = *cpu_overcommit;
    }
    if (ram_overcommit) {
        body["ram_overcommit"] = *ram_overcommit;
    }
    if (disk_overcommit) {
        body["disk_overcommit"] = *disk_overcommit;
    }
    return body;
}

HostHeartbeat HostHeartbeat::from_json(const nlohmann::json& body) {
    ObjectReader reader(body, "");
    HostHeartbeat heartbeat;
    heartbeat.metrics = read_numbers(reader, "metrics", 256);
    std::set<std::string> ids;
    for (auto& item : reader.object_list("vms", kMaxHeartbeatItems)) {
        Vm vm;
        vm.id = item.string("id", 64);
        if (vm.id.empty()) {
            throw ValidationError(item.field("id"), "must not be empty");
        }
        if (!ids.insert(vm.id).second) {
            throw ValidationError(item.field("id"), "\"" + vm.id + "\" is listed twice");
        }
        const auto state = item.string("state", 16);
        if (state != "running" && state != "stopped") {
            throw ValidationError(item.field("state"), "must be running or stopped");
        }
        vm.state = state == "running" ? Vm::State::running : Vm::State::stopped;
        vm.figures = read_numbers(item, "figures", kMaxFigures);
        item.finish();
        heartbeat.vms.push_back(std::move(vm));
    }
    std::set<std::uint64_t> pids;
    for (auto& item : reader.object_list("unmanaged", kMaxHeartbeatItems)) {
        Unmanaged process;
        process.pid = item.integer("pid", 1, kMaxPid);
        if (!pids.insert(process.pid).second) {
            throw ValidationError(item.field("pid"), std::to_string(process.pid) + " is listed twice");
        }
        process.command = item.string("command", kMaxCommandLength);
        process.api_socket = item.optional_string("api_socket", kMaxSocketPathLength).value_or("");
        item.finish();
        heartbeat.unmanaged.push_back(std::move(process));
    }
    reader.finish();
    return heartbeat;
}

nlohmann::json HostHeartbeat::to_json() const {
    nlohmann::json body = {
        {"metrics", metrics}, {"vms", nlohmann::json::array()}, {"unmanaged", nlohmann::json::array()}};
    for (const auto& vm : vms) {
        body["vms"].push_back({{"id", vm.id}, {"state", to_string(vm.state)}, {"figures", vm.figures}});
    }
    for (const auto& process : unmanaged) {
        body["unmanaged"].push_back(
            {{"pid", process.pid}, {"command", process.command}, {"api_socket", process.api_socket}});
    }
    return body;
}

std::string to_string(HostHeartbeat::Vm::State state) {
    return state == HostHeartbeat::Vm::State::running ? "running" : "stopped";
}

HeartbeatReply HeartbeatReply::from_json(const nlohmann::json& body) {
    ObjectReader reader(body, "");
    HeartbeatReply reply;
    // A host holds at most what its heartbeat may report, plus the migrations under way to it.
    reply.vms = reader.string_list("vms", 2 * kMaxHeartbeatItems, 64);
    reader.finish();
    return reply;
}

nlohmann::json HeartbeatReply::to_json() const { return {{"vms", vms}}; }

HostUpdate HostUpdate::from_json(const nlohmann::json& body) {
    ObjectReader reader(body, "");
    HostUpdate update;
    update.maintenance = reader.optional_boolean("maintenance");
    update.enabled = reader.optional_boolean("enabled");
    reader.finish();
    if (!update.maintenance && !update.enabled) {
        throw ValidationError("body", "must set maintenance or enabled");
    }
    return update;
}

nlohmann::json HostUpdate::to_json() const {
    nlohmann::json body = nlohmann::json::object();
    if (maintenance) {
        body["maintenance"] = *maintenance;
    }
    if (enabled) {
        body["enabled"] = *enabled;
    }
    return body;
}

VmCreate VmCreate::from_json(const nlohmann::json& body, NameRule name_rule) {
    ObjectReader reader(body, "");
    VmCreate vm;
    if (name_rule == NameRule::required) {
        vm.name = reader.name("name");
    } else {
        vm.name = reader.optional_name("name").value_or("");
    }
    vm.vcpus = reader.integer("vcpus", 1, kMaxVcpus);
    vm.memory_mib = reader.integer("memory_mib", kMinMemoryMib, kMaxMemoryMib);
    vm.image = reader.name("image");
    for (auto& disk : reader.object_list("disks", kMaxDisks)) {
        vm.disks.push_back({.size_gib = disk.integer("size_gib", 1, kMaxDiskGib)});
        disk.finish();
    }
    for (auto& nic : reader.object_list("nics", kMaxNics)) {
        vm.nics.push_back({.network = nic.name("network")});
        nic.finish();
    }
    vm.server_group = reader.optional_name("server_group");
    vm.host_affinity = reader.name_list("host_affinity", kMaxListItems);
    vm.host_anti_affinity = reader.name_list("host_anti_affinity", kMaxListItems);
    vm.cpu_features = reader.string_list("cpu_features", kMaxListItems, 64);
    check_feature_names("cpu_features", vm.cpu_features);
    reader.finish();
    return vm;
}

nlohmann::json VmCreate::to_json() const {
    nlohmann::json body = {{"vcpus", vcpus}, {"memory_mib", memory_mib}, {"image", image}};
    if (!name.empty()) {
        body["name"] = name;
    }
    if (!disks.empty()) {
        body["disks"] = nlohmann::json::array();
        for (const auto& disk : disks) {
            body["disks"].push_back({{"size_gib", disk.size_gib}});
        }
    }
    if (!nics.empty()) {
        body["nics"] = nlohmann::json::array();
        for (const auto& nic : nics) {
            body["nics"].push_back({{"network", nic.network}});
        }
    }
    if (server_group) {
        body["server_group"] = *server_group;
    }
    if (!host_affinity.empty()) {
        body["host_affinity"] = host_affinity;
    }
    if (!host_anti_affinity.empty()) {
        body["host_anti_affinity"] = host_anti_affinity;
    }
    if (!cpu_features.empty()) {
        body["cpu_features"] = cpu_features;
    }
    return body;
}

VmMigrate VmMigrate::from_json(const nlohmann::json& body) {
    ObjectReader reader(body, "");
    VmMigrate migrate{.host = reader.optional_name("host")};
    reader.finish();
    return migrate;
}

nlohmann::json VmMigrate::to_json() const {
    return host ? nlohmann::json{{"host", *host}} : nlohmann::json::object();
}

VmSnapshot VmSnapshot::from_json(const nlohmann::json& body) {
    ObjectReader reader(body, "");
    VmSnapshot snapshot{.name = reader.optional_name("name")};
    reader.finish();
    return snapshot;
}

nlohmann::json VmSnapshot::to_json() const {
    return name ? nlohmann::json{{"name", *name}} : nlohmann::json::object();
}

std::string to_string(GroupPolicy policy) {
    switch (policy) {
    case GroupPolicy::affinity:
        return "affinity";
    case GroupPolicy::anti_affinity:
        return "anti-affinity";
    case GroupPolicy::soft_affinity:
        return "soft-affinity";
    case GroupPolicy::soft_anti_affinity:
        return "soft-anti-affinity";
    }
    return "unknown";
}

GroupPolicy parse_group_policy(const std::string& field, const std::string& text) {
    for (const auto policy : {GroupPolicy::affinity, GroupPolicy::anti_affinity, GroupPolicy::soft_affinity,
                              GroupPolicy::soft_anti_affinity}) {
        if (text == to_string(policy)) {
            return policy;
        }
    }
    throw ValidationError(field, "must be affinity, anti-affinity, soft-affinity or soft-anti-affinity");
}

ServerGroupCreate ServerGroupCreate::from_json(const nlohmann::json& body) {
    ObjectReader reader(body, "");
    ServerGroupCreate group;
    group.name = reader.name("name");
    group.policy = parse_group_policy("policy", reader.string("policy", 64));
    reader.finish();
    return group;
}

nlohmann::json ServerGroupCreate::to_json() const { return {{"name", name}, {"policy", to_string(policy)}}; }

NetworkCreate NetworkCreate::from_json(const nlohmann::json& body) {
    ObjectReader reader(body, "");
    NetworkCreate network;
    network.name = reader.name("name");
    network.vlan = reader.integer("vlan", 1, 4094);
    network.cidr = reader.string("cidr", 32);
    Ipv4Network::parse("cidr", network.cidr);
    reader.finish();
    return network;
}

nlohmann::json NetworkCreate::to_json() const { return {{"name", name}, {"vlan", vlan}, {"cidr", cidr}}; }

Ipv4Network Ipv4Network::parse(const std::string& field, const std::string& cidr) {
    const auto slash = cidr.find('/');
    const std::string problem = "must be an IPv4 network such as 10.1.0.0/24 with a prefix from 8 to 30";
    if (slash == std::string::npos || slash + 1 >= cidr.size() || cidr.size() - slash > 3) {
        throw ValidationError(field, problem);
    }
    const std::string address_text = cidr.substr(0, slash);
    const std::string prefix_text = cidr.substr(slash + 1);
    if (prefix_text.find_first_not_of("0123456789") != std::string::npos) {
        throw ValidationError(field, problem);
    }
    in_addr address{};
    if (::inet_pton(AF_INET, address_text.c_str(), &address) != 1) {
        throw ValidationError(field, problem);
    }
    Ipv4Network network{.address = ntohl(address.s_addr),
                        .prefix = static_cast<unsigned>(std::stoul(prefix_text))};
    if (network.prefix < 8 || network.prefix > 30) {
        throw ValidationError(field, problem);
    }
    const std::uint32_t host_mask = (1u << (32 - network.prefix)) - 1;
    if ((network.address & host_mask) != 0) {
        throw ValidationError(field, "has host bits set: " + cidr);
    }
    return network;
}

std::uint64_t Ipv4Network::host_count() const { return (std::uint64_t{1} << (32 - prefix)) - 3; }

namespace {

std::string dotted(std::uint32_t host_order_address) {
    in_addr address{.s_addr = htonl(host_order_address)};
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &address, text, sizeof(text));
    return text;
}

}  // namespace

std::string Ipv4Network::host_address(std::uint64_t index) const {
    return dotted(address + 2 + static_cast<std::uint32_t>(index));
}

std::string Ipv4Network::gateway() const { return dotted(address + 1); }

AgentVmSpec AgentVmSpec::from_json(const nlohmann::json& body) {
    ObjectReader reader(body, "");
    AgentVmSpec spec;
    spec.id = reader.string("id", 64);
    spec.name = reader.name("name");
    spec.vcpus = reader.integer("vcpus", 1, kMaxVcpus);
    spec.memory_mib = reader.integer("memory_mib", kMinMemoryMib, kMaxMemoryMib);
    if (auto image = reader.optional_object("image")) {
        spec.image.sha256 = image->string("sha256", 64);
        check_sha256(image->field("sha256"), spec.image.sha256);
        spec.image.size = image->integer("size", 0, std::uint64_t{1} << 50);
        spec.image.url = image->string("url", 1024);
        require_http_url(image->field("url"), spec.image.url);
        image->finish();
    } else {
        throw ValidationError("image", "is required");
    }
    for (auto& disk : reader.object_list("disks", kMaxDisks)) {
        spec.disks.push_back({.size_gib = disk.integer("size_gib", 1, kMaxDiskGib)});
        disk.finish();
    }
    for (auto& nic : reader.object_list("nics", kMaxNics)) {
        Nic parsed;
        parsed.network = nic.name("network");
        parsed.vlan = nic.integer("vlan", 1, 4094);
        parsed.mac = nic.string("mac", 17);
        check_mac(nic.field("mac"), parsed.mac);
        parsed.address = nic.string("address", 32);
        nic.finish();
        spec.nics.push_back(parsed);
    }
    reader.finish();
    return spec;
}

nlohmann::json AgentVmSpec::to_json() const {
    nlohmann::json body = {{"id", id},
                           {"name", name},
                           {"vcpus", vcpus},
                           {"memory_mib", memory_mib},
                           {"image", {{"sha256", image.sha256}, {"size", image.size}, {"url", image.url}}},
                           {"disks", nlohmann::json::array()},
                           {"nics", nlohmann::json::array()}};
    for (const auto& disk : disks) {
        body["disks"].push_back({{"size_gib", disk.size_gib}});
    }
    for (const auto& nic : nics) {
        body["nics"].push_back(
            {{"network", nic.network}, {"vlan", nic.vlan}, {"mac", nic.mac}, {"address", nic.address}});
    }
    return body;
}

AgentMigrate AgentMigrate::from_json(const nlohmann::json& body) {
    ObjectReader reader(body, "");
    AgentMigrate migrate{.uri = reader.string("uri", 256)};
    if (!migrate.uri.starts_with("tcp:")) {
        throw ValidationError("uri", "must be tcp:HOST:PORT");
    }
    reader.finish();
    return migrate;
}

nlohmann::json AgentMigrate::to_json() const { return {{"uri", uri}}; }

AgentAdopt AgentAdopt::from_json(const nlohmann::json& body) {
    ObjectReader reader(body, "");
    AgentAdopt adopt{.id = reader.string("id", 64)};
    if (adopt.id.empty()) {
        throw ValidationError("id", "must not be empty");
    }
    reader.finish();
    return adopt;
}

nlohmann::json AgentAdopt::to_json() const { return {{"id", id}}; }

AgentSnapshot AgentSnapshot::from_json(const nlohmann::json& body) {
    ObjectReader reader(body, "");
    AgentSnapshot snapshot{.name = reader.name("name")};
    reader.finish();
    return snapshot;
}

nlohmann::json AgentSnapshot::to_json() const { return {{"name", name}}; }

}  // namespace vim::controller::api
