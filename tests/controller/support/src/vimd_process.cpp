#include "vim/testing/vimd_process.h"

#include <fcntl.h>
#include <httplib.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace vim::testing {

namespace {

std::string read_file(const std::filesystem::path& path) {
    std::ifstream file(path);
    return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

}  // namespace

nlohmann::json host_registration(const std::string& name, const std::string& agent_url, int cpus,
                                 int memory_mib) {
    return {{"name", name},
            {"agent_url", agent_url},
            {"cpus", cpus},
            {"memory_mib", memory_mib},
            {"disk_gib", 1000}};
}

HttpReply upload_image(const HttpClient& http, const std::string& name, const std::string& content,
                       const std::optional<std::string>& sha256) {
    std::string path = "/v1/images?name=" + name;
    if (sha256) {
        path += "&sha256=" + *sha256;
    }
    return http.request("POST", path, content, {{"Content-Type", "application/octet-stream"}});
}

nlohmann::json vm_request(const std::string& name, const std::string& image, int vcpus, int memory_mib) {
    return {{"name", name}, {"vcpus", vcpus}, {"memory_mib", memory_mib}, {"image", image}};
}

std::filesystem::path vimd_binary() { return VIM_TEST_VIMD_BINARY; }
std::filesystem::path vimctl_binary() { return VIM_TEST_VIMCTL_BINARY; }

nlohmann::json HttpReply::json() const { return nlohmann::json::parse(body); }

std::string HttpReply::error() const {
    const auto value = nlohmann::json::parse(body, nullptr, false);
    if (value.is_object() && value.contains("error") && value["error"].is_string()) {
        return value["error"].get<std::string>();
    }
    return "";
}

HttpReply HttpClient::request(const std::string& method, const std::string& path, const std::string& body,
                              const std::map<std::string, std::string>& headers) const {
    httplib::Client client(base_url_);
    client.set_read_timeout(std::chrono::seconds(30));
    httplib::Request request;
    request.method = method;
    request.path = path;
    for (const auto& [name, value] : headers) {
        request.set_header(name, value);
    }
    if (token_ && !headers.contains("Authorization")) {
        request.set_header("Authorization", "Bearer " + *token_);
    }
    if (!body.empty() || method == "POST" || method == "PATCH") {
        request.body = body;
        if (!request.has_header("Content-Type")) {
            request.set_header("Content-Type", "application/json");
        }
    }
    HttpReply reply;
    auto result = client.send(request);
    if (!result) {
        reply.body = "no reply: " + httplib::to_string(result.error());
        return reply;
    }
    reply.status = result->status;
    reply.body = result->body;
    for (const auto& [name, value] : result->headers) {
        reply.headers[name] = value;
    }
    return reply;
}

VimdProcess::VimdProcess(Options options) : options_(std::move(options)), token_(options_.token) {
    if (token_) {
        std::ofstream(token_file()) << *token_ << "\n";
    }
    start();
}

VimdProcess::~VimdProcess() { stop(); }

void VimdProcess::start() {
    std::vector<std::string> arguments = {vimd_binary().string(),
                                          "--listen",
                                          port_ == 0 ? "127.0.0.1:0" : "127.0.0.1:" + std::to_string(port_),
                                          "--db",
                                          db_path().string(),
                                          "--agent-timeout-ms",
                                          std::to_string(options_.agent_timeout_ms),
                                          "--operation-sweep-ms",
                                          "100",
                                          "--log-level",
                                          "warn"};
    if (token_) {
        arguments.push_back("--token-file");
        arguments.push_back(token_file().string());
    }
    arguments.insert(arguments.end(), options_.extra_arguments.begin(), options_.extra_arguments.end());

    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        throw std::runtime_error("pipe for vimd's stdout failed");
    }
    const std::string log_path = (state_dir() / "vimd.log").string();
    pid_ = ::fork();
    if (pid_ == 0) {
        ::dup2(pipe_fds[1], STDOUT_FILENO);
        const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        ::dup2(log, STDERR_FILENO);
        std::vector<char*> argv;
        for (auto& argument : arguments) {
            argv.push_back(argument.data());
        }
        argv.push_back(nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    ::close(pipe_fds[1]);
    // The first line on stdout says the port is bound: "vimd: listening on http://127.0.0.1:PORT".
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
        pollfd waiting{.fd = pipe_fds[0], .events = POLLIN, .revents = 0};
        if (::poll(&waiting, 1, 100) <= 0) {
            continue;
        }
        char buffer[256];
        const ssize_t got = ::read(pipe_fds[0], buffer, sizeof(buffer));
        if (got <= 0) {
            break;
        }
        line.append(buffer, static_cast<std::size_t>(got));
    }
    ::close(pipe_fds[0]);
    const std::string prefix = "vimd: listening on ";
    if (!line.starts_with(prefix)) {
        stop();
        throw std::runtime_error("vimd did not start; its log:\n" + read_file(log_path));
    }
    url_ = line.substr(prefix.size(), line.find('\n') - prefix.size());
    port_ = std::stoi(url_.substr(url_.rfind(':') + 1));
}

void VimdProcess::stop() {
    if (pid_ <= 0) {
        return;
    }
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 100; ++i) {
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
}

void VimdProcess::kill_and_restart() {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    start();
}

nlohmann::json VimdProcess::wait_for_operation(const std::string& id, int timeout_ms) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    const auto http = client();
    for (;;) {
        const auto reply = http.get("/v1/operations/" + id);
        if (reply.status != 200) {
            throw std::runtime_error("GET /v1/operations/" + id + ": " + std::to_string(reply.status) + " " +
                                     reply.body);
        }
        auto operation = reply.json();
        const auto state = operation["state"].get<std::string>();
        if (state == "succeeded" || state == "failed") {
            return operation;
        }
        if (std::chrono::steady_clock::now() > deadline) {
            throw std::runtime_error("operation " + id + " still " + state + " after " +
                                     std::to_string(timeout_ms) + " ms");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

}  // namespace vim::testing
