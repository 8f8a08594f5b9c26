#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace vim::controller::api {

// A client's mistake in a request: what() reads "<field>: <problem>", e.g.
// "memory_mib: must be an integer from 64 to 4194304", so the server can hand it back as is.
class ValidationError : public std::invalid_argument {
public:
    ValidationError(const std::string& field, const std::string& problem);
    const std::string& field() const { return field_; }

private:
    std::string field_;
};

// Parses a request body; malformed JSON is a ValidationError on the field "body".
nlohmann::json parse_body(std::string_view body);

// Throws ValidationError unless name is 1-63 characters of [a-z0-9._-] starting with a letter or digit:
// names end up in URLs, file names and tables, so they stay plain.
void check_name(const std::string& field, const std::string& name);

// Reads the fields of one JSON object strictly: every read checks presence and type, and finish()
// rejects the fields nobody read, so a misspelt optional field is an error rather than a silent default.
class ObjectReader {
public:
    // path names the object in errors ("" for the body itself, "disks[1]" for a nested one).
    ObjectReader(const nlohmann::json& value, std::string path);

    std::string string(const std::string& key, std::size_t max_length = 1024);
    std::optional<std::string> optional_string(const std::string& key, std::size_t max_length = 1024);
    std::string name(const std::string& key);
    std::optional<std::string> optional_name(const std::string& key);
    std::uint64_t integer(const std::string& key, std::uint64_t min, std::uint64_t max);
    std::optional<std::uint64_t> optional_integer(const std::string& key, std::uint64_t min,
                                                  std::uint64_t max);
    double number(const std::string& key, double min, double max);
    std::optional<double> optional_number(const std::string& key, double min, double max);
    bool boolean(const std::string& key);
    std::optional<bool> optional_boolean(const std::string& key);
    // A missing list reads as empty.
    std::vector<std::string> string_list(const std::string& key, std::size_t max_items,
                                         std::size_t max_length = 256);
    std::vector<std::string> name_list(const std::string& key, std::size_t max_items);
    // The elements of an array of objects, each with its own reader; a missing list reads as empty.
    std::vector<ObjectReader> object_list(const std::string& key, std::size_t max_items);
    std::optional<ObjectReader> optional_object(const std::string& key);
    // The raw value of a free-form field (an inventory, metrics), which must be an object.
    std::optional<nlohmann::json> optional_free_object(const std::string& key);

    // Throws on the first field that no read asked for.
    void finish() const;

    const std::string& path() const { return path_; }
    std::string field(const std::string& key) const;

private:
    const nlohmann::json* find(const std::string& key);

    const nlohmann::json& value_;
    std::string path_;
    std::set<std::string> read_;
};

}  // namespace vim::controller::api
