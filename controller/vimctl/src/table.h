#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

namespace vim::controller::vimctl {

struct Column {
    std::string title;
    // Renders one item's cell.
    std::function<std::string(const nlohmann::json& item)> cell;
};

// A column showing a top-level field of each item (strings as is, other values as JSON).
Column field_column(std::string title, std::string field);
std::string cell_text(const nlohmann::json& value);

// Columns padded to their widest cell, titles first.
void print_table(std::ostream& out, const std::vector<Column>& columns, const nlohmann::json& items);
// One "field: value" line per top-level field.
void print_record(std::ostream& out, const nlohmann::json& record);

}  // namespace vim::controller::vimctl
