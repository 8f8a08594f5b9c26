#pragma once

#include <sys/types.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "vim/testing/temp_dir.h"

namespace vim::testing {

// A reply as a test sees it.
struct HttpReply {
    int status = 0;  // 0: no reply (connection failed)
    std::string body;
    std::map<std::string, std::string> headers;
    nlohmann::json json() const;  // the body as JSON (throws when it is not)
    std::string error() const;    // the "error" field of a JSON body, "" when none
};

// HTTP on loopback to one server, each call on a fresh connection unless told otherwise.
class HttpClient {
public:
    HttpClient(std::string base_url, std::optional<std::string> token = std::nullopt)
        : base_url_(std::move(base_url)), token_(std::move(token)) {}

    HttpReply request(const std::string& method, const std::string& path, const std::string& body = "",
                      const std::map<std::string, std::string>& headers = {}) const;
    HttpReply get(const std::string& path) const { return request("GET", path); }
    HttpReply post(const std::string& path, const nlohmann::json& body,
                   const std::map<std::string, std::string>& headers = {}) const {
        return request("POST", path, body.dump(), headers);
    }
    HttpReply patch(const std::string& path, const nlohmann::json& body) const {
        return request("PATCH", path, body.dump());
    }
    HttpReply remove(const std::string& path) const { return request("DELETE", path); }
    const std::string& base_url() const { return base_url_; }

private:
    std::string base_url_;
    std::optional<std::string> token_;
};

// A real vimd process on a loopback port with its own SQLite file and state directory.
class VimdProcess {
public:
    struct Options {
        std::optional<std::string> token{};  // written to a token file and passed with --token-file
        int agent_timeout_ms = 10'000;
        std::vector<std::string> extra_arguments{};
    };

    explicit VimdProcess(Options options);
    VimdProcess() : VimdProcess(Options{}) {}
    ~VimdProcess();
    VimdProcess(const VimdProcess&) = delete;
    VimdProcess& operator=(const VimdProcess&) = delete;

    const std::string& url() const { return url_; }
    int port() const { return port_; }
    const std::filesystem::path& state_dir() const { return state_dir_; }
    std::filesystem::path db_path() const { return state_dir_ / "vimd.db"; }
    std::filesystem::path token_file() const { return state_dir_ / "token"; }
    // A client that sends the token (when the process has one).
    HttpClient client() const { return HttpClient(url_, token_); }
    // SIGKILL, then the same command line again on the same files.
    void kill_and_restart();
    // Waits for an operation to end; returns its record.
    nlohmann::json wait_for_operation(const std::string& id, int timeout_ms = 20'000) const;

private:
    void start();
    void stop();

    Options options_;
    TempDir state_;
    std::filesystem::path state_dir_{state_.path()};
    std::optional<std::string> token_;
    pid_t pid_ = -1;
    int port_ = 0;
    std::string url_;
};

// A host registration body for an agent at agent_url.
nlohmann::json host_registration(const std::string& name, const std::string& agent_url, int cpus = 8,
                                 int memory_mib = 16384);
// POST /v1/images?name=NAME[&sha256=...] with content as the body.
HttpReply upload_image(const HttpClient& http, const std::string& name, const std::string& content,
                       const std::optional<std::string>& sha256 = std::nullopt);
// A VM request for the image.
nlohmann::json vm_request(const std::string& name, const std::string& image, int vcpus = 1,
                          int memory_mib = 256);

// The path of a built binary of this tree (vimd, vimctl), from the test's compile definitions.
std::filesystem::path vimd_binary();
std::filesystem::path vimctl_binary();

}  // namespace vim::testing
