#include "table.h"

#include <algorithm>

namespace vim::controller::vimctl {

std::string cell_text(const nlohmann::json& value) {
    if (value.is_string()) {
        return value.get<std::string>();
    }
    if (value.is_null()) {
        return "";
    }
    if (value.is_array()) {
        std::string text;
        for (const auto& item : value) {
            // Appended piece by piece: GCC 12 at -O3 sees a false overlap in
            // `"," + std::string` (-Werror=restrict).
            if (!text.empty()) {
                text += ',';
            }
            text += cell_text(item);
        }
        return text;
    }
    return value.dump();
}

Column field_column(std::string title, std::string field) {
    return {std::move(title), [field](const nlohmann::json& item) {
                return item.contains(field) ? cell_text(item[field]) : std::string();
            }};
}

void print_table(std::ostream& out, const std::vector<Column>& columns, const nlohmann::json& items) {
    std::vector<std::vector<std::string>> rows;
    std::vector<std::size_t> widths;
    for (const auto& column : columns) {
        widths.push_back(column.title.size());
    }
    for (const auto& item : items) {
        auto& row = rows.emplace_back();
        for (std::size_t i = 0; i < columns.size(); ++i) {
            row.push_back(columns[i].cell(item));
            widths[i] = std::max(widths[i], row.back().size());
        }
    }
    const auto print_row = [&](const std::vector<std::string>& cells) {
        std::string line;
        for (std::size_t i = 0; i < cells.size(); ++i) {
            line += cells[i];
            if (i + 1 < cells.size()) {
                line += std::string(widths[i] - cells[i].size() + 2, ' ');
            }
        }
        out << line << "\n";
    };
    std::vector<std::string> titles;
    for (const auto& column : columns) {
        titles.push_back(column.title);
    }
    print_row(titles);
    for (const auto& row : rows) {
        print_row(row);
    }
}

void print_record(std::ostream& out, const nlohmann::json& record) {
    std::size_t width = 0;
    for (const auto& [key, value] : record.items()) {
        width = std::max(width, key.size());
    }
    for (const auto& [key, value] : record.items()) {
        out << key << ":" << std::string(width - key.size() + 1, ' ') << cell_text(value) << "\n";
    }
}

}  // namespace vim::controller::vimctl
