#include "render.h"

#include "controller/api/types.h"

namespace vim::controller::vimd {

std::vector<std::string> sorted(const std::set<std::string>& items) { return {items.begin(), items.end()}; }

nlohmann::json resources_json(const store::Resources& resources) {
    return {
        {"vcpus", resources.vcpus}, {"memory_mib", resources.memory_mib}, {"disk_gib", resources.disk_gib}};
}

nlohmann::json parse_stored_json(const std::string& text) {
    auto value = nlohmann::json::parse(text, nullptr, false);
    return value.is_discarded() ? nlohmann::json::object() : value;
}

nlohmann::json operation_json(const store::Operation& operation) {
    return {{"id", operation.id},
            {"kind", operation.kind},
            {"target_id", operation.target_id},
            {"state", store::to_string(operation.state)},
            {"progress", operation.progress},
            {"result", parse_stored_json(operation.result)},
            {"error", operation.error},
            {"created_ms", operation.created_ms},
            {"updated_ms", operation.updated_ms},
            {"deadline_ms", operation.deadline_ms}};
}

nlohmann::json image_json(const store::Image& image) {
    const bool ready = image.status == store::ImageStatus::ready;
    return {{"id", image.id},
            {"name", image.name},
            {"sha256", ready ? image.id : ""},
            {"size_bytes", image.size_bytes},
            {"status", store::to_string(image.status)},
            {"created_ms", image.created_ms}};
}

nlohmann::json group_json(const store::ServerGroup& group) {
    return {{"id", group.id},
            {"name", group.name},
            {"policy", store::to_string(group.policy)},
            {"created_ms", group.created_ms}};
}

nlohmann::json network_json(const store::Network& network) {
    return {{"id", network.id},
            {"name", network.name},
            {"vlan", network.vlan_id},
            {"cidr", network.cidr},
            {"gateway", api::Ipv4Network::parse("cidr", network.cidr).gateway()},
            {"created_ms", network.created_ms}};
}

}  // namespace vim::controller::vimd
