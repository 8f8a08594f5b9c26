#include "controller/api/validation.h"

#include <cmath>

namespace vim::controller::api {

namespace {

constexpr std::size_t kMaxNameLength = 63;

std::string range_text(std::uint64_t min, std::uint64_t max) {
    return "must be an integer from " + std::to_string(min) + " to " + std::to_string(max);
}

std::string type_name(const nlohmann::json& value) { return value.type_name(); }

}  // namespace

ValidationError::ValidationError(const std::string& field, const std::string& problem)
    : std::invalid_argument(field + ": " + problem), field_(field) {}

nlohmann::json parse_body(std::string_view body) {
    if (body.empty()) {
        throw ValidationError("body", "a JSON object is required");
    }
    try {
        return nlohmann::json::parse(body);
    } catch (const nlohmann::json::exception& error) {  // parse_error, or out_of_range for 1e999
        // nlohmann's text starts with "[json.exception.parse_error.101] "; the rest says where.
        std::string text = error.what();
        if (const auto end = text.find("] "); end != std::string::npos) {
            text = text.substr(end + 2);
        }
        throw ValidationError("body", "malformed JSON: " + text);
    }
}

void check_name(const std::string& field, const std::string& name) {
    if (name.empty() || name.size() > kMaxNameLength) {
        throw ValidationError(field, "must be 1 to 63 characters long");
    }
    for (const char c : name) {
        const bool plain =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
        if (!plain) {
            throw ValidationError(field, "may hold only a-z, 0-9, '-', '_' and '.'");
        }
    }
    if (name.front() == '-' || name.front() == '_' || name.front() == '.') {
        throw ValidationError(field, "must start with a letter or a digit");
    }
}

ObjectReader::ObjectReader(const nlohmann::json& value, std::string path)
    : value_(value), path_(std::move(path)) {
    if (!value_.is_object()) {
        throw ValidationError(path_.empty() ? "body" : path_,
                              "must be a JSON object, not " + type_name(value_));
    }
}

std::string ObjectReader::field(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
}

const nlohmann::json* ObjectReader::find(const std::string& key) {
    read_.insert(key);
    const auto it = value_.find(key);
    if (it == value_.end() || it->is_null()) {
        return nullptr;
    }
    return &*it;
}

std::optional<std::string> ObjectReader::optional_string(const std::string& key, std::size_t max_length) {
    const nlohmann::json* value = find(key);
    if (value == nullptr) {
        return std::nullopt;
    }
    if (!value->is_string()) {
        throw ValidationError(field(key), "must be a string, not " + type_name(*value));
    }
    std::string text = value->get<std::string>();
    if (text.size() > max_length) {
        throw ValidationError(field(key),
                              "must be at most " + std::to_string(max_length) + " characters long");
    }
    return text;
}

std::string ObjectReader::string(const std::string& key, std::size_t max_length) {
    auto text = optional_string(key, max_length);
    if (!text) {
        throw ValidationError(field(key), "is required");
    }
    return *text;
}

std::optional<std::string> ObjectReader::optional_name(const std::string& key) {
    auto text = optional_string(key, kMaxNameLength + 1);
    if (text) {
        check_name(field(key), *text);
    }
    return text;
}

std::string ObjectReader::name(const std::string& key) {
    auto text = optional_name(key);
    if (!text) {
        throw ValidationError(field(key), "is required");
    }
    return *text;
}

std::optional<std::uint64_t> ObjectReader::optional_integer(const std::string& key, std::uint64_t min,
                                                            std::uint64_t max) {
    const nlohmann::json* value = find(key);
    if (value == nullptr) {
        return std::nullopt;
    }
    // Parsed text gives number_unsigned for 0 and up, number_integer for negatives and number_float for
    // fractions and numbers too big for 64 bits; JSON built in C++ gives number_integer for any int.
    if (!value->is_number_integer()) {
        if (value->is_number()) {
            throw ValidationError(field(key), range_text(min, max) + ", not " + value->dump());
        }
        throw ValidationError(field(key), "must be an integer, not " + type_name(*value));
    }
    if (!value->is_number_unsigned() && value->get<std::int64_t>() < 0) {
        throw ValidationError(field(key), range_text(min, max) + ", not " + value->dump());
    }
    const auto number = value->get<std::uint64_t>();
    if (number < min || number > max) {
        throw ValidationError(field(key), range_text(min, max) + ", not " + std::to_string(number));
    }
    return number;
}

std::uint64_t ObjectReader::integer(const std::string& key, std::uint64_t min, std::uint64_t max) {
    auto number = optional_integer(key, min, max);
    if (!number) {
        throw ValidationError(field(key), "is required");
    }
    return *number;
}

std::optional<double> ObjectReader::optional_number(const std::string& key, double min, double max) {
    const nlohmann::json* value = find(key);
    if (value == nullptr) {
        return std::nullopt;
    }
    if (!value->is_number()) {
        throw ValidationError(field(key), "must be a number, not " + type_name(*value));
    }
    const auto number = value->get<double>();
    if (!std::isfinite(number) || number < min || number > max) {
        throw ValidationError(field(key), "must be a number from " + nlohmann::json(min).dump() + " to " +
                                              nlohmann::json(max).dump() + ", not " + value->dump());
    }
    return number;
}

double ObjectReader::number(const std::string& key, double min, double max) {
    auto number = optional_number(key, min, max);
    if (!number) {
        throw ValidationError(field(key), "is required");
    }
    return *number;
}

std::optional<bool> ObjectReader::optional_boolean(const std::string& key) {
    const nlohmann::json* value = find(key);
    if (value == nullptr) {
        return std::nullopt;
    }
    if (!value->is_boolean()) {
        throw ValidationError(field(key), "must be true or false, not " + type_name(*value));
    }
    return value->get<bool>();
}

bool ObjectReader::boolean(const std::string& key) {
    auto flag = optional_boolean(key);
    if (!flag) {
        throw ValidationError(field(key), "is required");
    }
    return *flag;
}

std::vector<std::string> ObjectReader::string_list(const std::string& key, std::size_t max_items,
                                                   std::size_t max_length) {
    const nlohmann::json* value = find(key);
    std::vector<std::string> items;
    if (value == nullptr) {
        return items;
    }
    if (!value->is_array()) {
        throw ValidationError(field(key), "must be an array, not " + type_name(*value));
    }
    if (value->size() > max_items) {
        throw ValidationError(field(key), "may hold at most " + std::to_string(max_items) + " items");
    }
    for (std::size_t i = 0; i < value->size(); ++i) {
        const auto& item = (*value)[i];
        const std::string item_field = field(key) + "[" + std::to_string(i) + "]";
        if (!item.is_string()) {
            throw ValidationError(item_field, "must be a string, not " + type_name(item));
        }
        if (item.get_ref<const std::string&>().size() > max_length) {
            throw ValidationError(item_field,
                                  "must be at most " + std::to_string(max_length) + " characters long");
        }
        items.push_back(item.get<std::string>());
    }
    return items;
}

std::vector<std::string> ObjectReader::name_list(const std::string& key, std::size_t max_items) {
    auto names = string_list(key, max_items, kMaxNameLength + 1);
    for (std::size_t i = 0; i < names.size(); ++i) {
        check_name(field(key) + "[" + std::to_string(i) + "]", names[i]);
    }
    return names;
}

std::vector<ObjectReader> ObjectReader::object_list(const std::string& key, std::size_t max_items) {
    const nlohmann::json* value = find(key);
    std::vector<ObjectReader> readers;
    if (value == nullptr) {
        return readers;
    }
    if (!value->is_array()) {
        throw ValidationError(field(key), "must be an array, not " + type_name(*value));
    }
    if (value->size() > max_items) {
        throw ValidationError(field(key), "may hold at most " + std::to_string(max_items) + " items");
    }
    for (std::size_t i = 0; i < value->size(); ++i) {
        readers.emplace_back((*value)[i], field(key) + "[" + std::to_string(i) + "]");
    }
    return readers;
}

std::optional<ObjectReader> ObjectReader::optional_object(const std::string& key) {
    const nlohmann::json* value = find(key);
    if (value == nullptr) {
        return std::nullopt;
    }
    return ObjectReader(*value, field(key));
}

std::optional<nlohmann::json> ObjectReader::optional_free_object(const std::string& key) {
    const nlohmann::json* value = find(key);
    if (value == nullptr) {
        return std::nullopt;
    }
    if (!value->is_object()) {
        throw ValidationError(field(key), "must be a JSON object, not " + type_name(*value));
    }
    return *value;
}

void ObjectReader::finish() const {
    for (const auto& [key, value] : value_.items()) {
        if (!read_.contains(key)) {
            throw ValidationError(field(key), "unknown field");
        }
    }
}

}  // namespace vim::controller::api
