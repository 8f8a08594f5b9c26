#include <charconv>

#include "sqlite_store_impl.h"

namespace vim::controller::store {

using Json = nlohmann::json;

std::string numa_to_json(const std::vector<NumaNode>& nodes) {
    Json array = Json::array();
    for (const auto& node : nodes) {
        array.push_back({{"id", node.id}, {"vcpus", node.vcpus}, {"memory_mib", node.memory_mib}});
    }
    return array.dump();
}

std::vector<NumaNode> numa_from_json(const std::string& text) {
    std::vector<NumaNode> nodes;
    for (const auto& item : Json::parse(text)) {
        nodes.push_back({item.at("id").get<int>(), item.at("vcpus").get<std::int64_t>(),
                         item.at("memory_mib").get<std::int64_t>()});
    }
    return nodes;
}

std::string nics_to_json(const std::vector<Nic>& nics) {
    Json array = Json::array();
    for (const auto& nic : nics) {
        array.push_back({{"network_id", nic.network_id}, {"mac", nic.mac}, {"ip", nic.ip}});
    }
    return array.dump();
}

std::vector<Nic> nics_from_json(const std::string& text) {
    std::vector<Nic> nics;
    for (const auto& item : Json::parse(text)) {
        nics.push_back({item.at("network_id").get<std::string>(), item.at("mac").get<std::string>(),
                        item.at("ip").get<std::string>()});
    }
    return nics;
}

std::int64_t parse_page_token(const PageRequest& page) {
    if (page.limit < 1 || page.limit > kMaxPageLimit) {
        throw InvalidArgumentError("page limit " + std::to_string(page.limit) + " is not within 1.." +
                                   std::to_string(kMaxPageLimit));
    }
    if (page.page_token.empty()) {
        return -1;
    }
    std::int64_t seq = 0;
    auto [end, error] =
        std::from_chars(page.page_token.data(), page.page_token.data() + page.page_token.size(), seq);
    if (error != std::errc() || end != page.page_token.data() + page.page_token.size() || seq < 0) {
        throw InvalidArgumentError("page token " + in_quotes(page.page_token) + " is not valid");
    }
    return seq;
}

void Query::where(const std::string& condition_with_placeholders, Parameter value) {
    parameters.push_back(std::move(value));
    std::string numbered = "?";  // then +=: GCC 12 at -O3 sees a false overlap in "?" + std::string
    numbered += std::to_string(parameters.size());
    std::string condition;
    for (char c : condition_with_placeholders) {
        if (c == '?') {
            condition += numbered;
        } else {
            condition += c;
        }
    }
    conditions.push_back(condition);
}

Host read_host(const Connection::Statement& row) {
    Host host;
    host.id = row.text(0);
    host.name = row.text(1);
    host.agent_url = row.text(2);
    host.enabled = row.integer(3) != 0;
    host.maintenance = row.integer(4) != 0;
    host.last_heartbeat_ms = row.integer(5);
    host.capacity = {row.integer(6), row.integer(7), row.integer(8)};
    host.ratios = {row.real(9), row.real(10), row.real(11)};
    host.reserved = {row.integer(12), row.integer(13), row.integer(14)};
    host.cpu_features = strings_from_json<std::set<std::string>>(row.text(15));
    host.numa_nodes = numa_from_json(row.text(16));
    host.inventory = row.text(17);
    host.metrics = row.text(18);
    host.tags = strings_from_json<std::set<std::string>>(row.text(19));
    host.created_ms = row.integer(20);
    host.updated_ms = row.integer(21);
    return host;
}

Image read_image(const Connection::Statement& row) {
    return {row.text(0), row.text(1), row.integer(2), parse_image_status(row.text(3)), row.integer(4)};
}

ServerGroup read_group(const Connection::Statement& row) {
    return {row.text(0), row.text(1), parse_group_policy(row.text(2)), row.integer(3)};
}

Network read_network(const Connection::Statement& row) {
    return {row.text(0), row.text(1), static_cast<int>(row.integer(2)), row.text(3), row.integer(4)};
}

Vm read_vm(const Connection::Statement& row) {
    Vm vm;
    vm.id = row.text(0);
    vm.name = row.text(1);
    vm.vcpus = row.integer(2);
    vm.memory_mib = row.integer(3);
    vm.disk_gib = row.integer(4);
    vm.image_id = row.text(5);
    vm.host_id = row.text(6);
    vm.numa_node = static_cast<int>(row.integer(7));
    vm.migration_host_id = row.text(8);
    vm.migration_numa_node = static_cast<int>(row.integer(9));
    vm.state = parse_vm_state(row.text(10));
    vm.server_group_id = row.text(11);
    vm.host_affinity = strings_from_json<std::vector<std::string>>(row.text(12));
    vm.host_anti_affinity = strings_from_json<std::vector<std::string>>(row.text(13));
    vm.required_cpu_features = strings_from_json<std::set<std::string>>(row.text(14));
    vm.nics = nics_from_json(row.text(15));
    vm.created_ms = row.integer(16);
    vm.updated_ms = row.integer(17);
    vm.figures = row.text(18);
    vm.unmanaged_pid = row.integer(19);
    vm.unmanaged_command = row.text(20);
    vm.unmanaged_api_socket = row.text(21);
    vm.found_running = row.integer(22) != 0;
    return vm;
}

Operation read_operation(const Connection::Statement& row) {
    Operation operation;
    operation.id = row.text(0);
    operation.kind = row.text(1);
    operation.target_id = row.text(2);
    operation.state = parse_operation_state(row.text(3));
    operation.progress = static_cast<int>(row.integer(4));
    operation.result = row.text(5);
    operation.error = row.text(6);
    operation.created_ms = row.integer(7);
    operation.updated_ms = row.integer(8);
    operation.deadline_ms = row.integer(9);
    return operation;
}
std::int64_t count(Connection& connection, const std::string& sql, const std::string& value) {
    auto statement = connection.prepare(sql);
    statement.bind(1, value);
    statement.step();
    return statement.integer(0);
}

void require_changed(Connection& connection, const char* noun, const std::string& id) {
    if (connection.changes() == 0) {
        throw NotFoundError("id", std::string(noun) + " " + in_quotes(id) + " not found");
    }
}

}  // namespace vim::controller::store
