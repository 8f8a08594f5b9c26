#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "hwprobe/inventory.h"

namespace vim::hwprobe {

// The report that hwprobe/schema/inventory.schema.json describes.
nlohmann::json to_json(const Inventory& inventory);

// "no_device", "permission_denied", "module_not_loaded", "unusable".
std::string_view to_string(KvmAbsence absence);

// The same for people: one section per heading, aligned columns.
std::string to_table(const Inventory& inventory);

}  // namespace vim::hwprobe
