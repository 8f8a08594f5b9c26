#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "controller/store/records.h"

// Records as the API shows them (the schemas of openapi.json). Hosts and VMs are rendered by the
// Service, which adds what the scheduler's view knows (usage, host names).
namespace vim::controller::vimd {

std::vector<std::string> sorted(const std::set<std::string>& items);
nlohmann::json resources_json(const store::Resources& resources);
// A JSON text the store keeps (inventory, metrics, results); {} if it does not parse.
nlohmann::json parse_stored_json(const std::string& text);
nlohmann::json operation_json(const store::Operation& operation);
nlohmann::json image_json(const store::Image& image);
nlohmann::json group_json(const store::ServerGroup& group);
nlohmann::json network_json(const store::Network& network);

}  // namespace vim::controller::vimd
