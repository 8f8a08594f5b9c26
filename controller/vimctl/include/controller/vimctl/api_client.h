#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>

namespace vim::controller::vimctl {

// The controller refused a request (what() is its {"error": ...} text), or could not be reached
// (status 0, what() says why).
class ApiError : public std::runtime_error {
public:
    ApiError(int status, const std::string& message) : std::runtime_error(message), status_(status) {}
    int status() const { return status_; }

private:
    int status_;
};

// A client of vimd's REST API (controller/api/openapi.json).
class ApiClient {
public:
    // controller_url: http://HOST:PORT; token: sent as Authorization: Bearer when present.
    ApiClient(std::string controller_url, std::optional<std::string> token);

    nlohmann::json get(const std::string& path, const std::map<std::string, std::string>& query = {}) const;
    nlohmann::json post(const std::string& path, const nlohmann::json& body,
                        const std::map<std::string, std::string>& headers = {}) const;
    nlohmann::json patch(const std::string& path, const nlohmann::json& body) const;
    // DELETE; the reply is {} for 204.
    nlohmann::json remove(const std::string& path) const;

    // Streams a file as the body of POST path?query, calling progress(sent, total) as it goes.
    using Progress = std::function<void(std::uint64_t sent, std::uint64_t total)>;
    nlohmann::json upload(const std::string& path, const std::map<std::string, std::string>& query,
                          const std::filesystem::path& file, const Progress& progress) const;
    // Writes GET path's body to file.
    void download(const std::string& path, const std::filesystem::path& file) const;

    const std::string& url() const { return url_; }

private:
    std::string url_;
    std::optional<std::string> token_;
};

// "a=1&b=x%20y" from a map (values percent-encoded).
std::string query_string(const std::map<std::string, std::string>& query);

}  // namespace vim::controller::vimctl
