#include "hostd_harness.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <stdexcept>

namespace vim::testing {

using json = nlohmann::json;
using namespace std::chrono_literals;

ControllerDouble::ControllerDouble() {
    server_.Post("/v1/hosts", [this](const httplib::Request& request, httplib::Response& response) {
        const json body = json::parse(request.body);
        std::lock_guard lock(mutex_);
        registrations_.push_back(body);
        authorizations_.push_back(request.get_header_value("Authorization"));
        hosts_forgotten_ = false;
        response.status = 201;
        response.set_content(json{{"id", "id-" + body.value("name", "")}, {"name", body["name"]}}.dump(),
                             "application/json");
    });
    server_.Post(R"(/v1/hosts/([^/]+)/heartbeat)",
                 [this](const httplib::Request& request, httplib::Response& response) {
                     const json body = json::parse(request.body);
                     std::chrono::milliseconds delay;
                     json ids = json::array();
                     {
                         std::lock_guard lock(mutex_);
                         if (hosts_forgotten_) {
                             response.status = 404;
                             response.set_content(R"({"error": "no such host"})", "application/json");
                             return;
                         }
                         heartbeats_.push_back(body);
                         authorizations_.push_back(request.get_header_value("Authorization"));
                         if (placed_) {
                             for (const std::string& id : *placed_) {
                                 ids.push_back(id);
                             }
                         } else {
                             for (const json& vm : body.value("vms", json::array())) {
                                 ids.push_back(vm["id"]);
                             }
                         }
                         delay = delay_;
                     }
                     std::this_thread::sleep_for(delay);
                     response.set_content(json{{"vms", ids}}.dump(), "application/json");
                 });
    server_.Get(R"(/images/([^/]+))", [this](const httplib::Request& request, httplib::Response& response) {
        std::lock_guard lock(mutex_);
        const auto found = images_.find(request.matches[1]);
        if (found == images_.end()) {
            response.status = 404;
            return;
        }
        response.set_content(found->second, "application/octet-stream");
    });
    const int port = server_.bind_to_any_port("127.0.0.1");
    url_ = "http://127.0.0.1:" + std::to_string(port);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) {
        std::this_thread::sleep_for(1ms);
    }
}

ControllerDouble::~ControllerDouble() {
    server_.stop();
    thread_.join();
}

std::string ControllerDouble::serve_image(const std::string& name, const std::string& content) {
    std::lock_guard lock(mutex_);
    images_[name] = content;
    return url_ + "/images/" + name;
}

void ControllerDouble::place(std::set<std::string> ids) {
    std::lock_guard lock(mutex_);
    placed_ = std::move(ids);
}

void ControllerDouble::delay_replies(std::chrono::milliseconds delay) {
    std::lock_guard lock(mutex_);
    delay_ = delay;
}

void ControllerDouble::forget_hosts() {
    std::lock_guard lock(mutex_);
    hosts_forgotten_ = true;
}

std::vector<json> ControllerDouble::registrations() const {
    std::lock_guard lock(mutex_);
    return registrations_;
}

std::vector<json> ControllerDouble::heartbeats() const {
    std::lock_guard lock(mutex_);
    return heartbeats_;
}

std::vector<std::string> ControllerDouble::authorizations() const {
    std::lock_guard lock(mutex_);
    return authorizations_;
}

json ControllerDouble::wait_for_heartbeat(const std::function<bool(const json&)>& predicate,
                                          std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::size_t seen = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        const auto all = heartbeats();
        for (; seen < all.size(); ++seen) {
            if (predicate(all[seen])) {
                return all[seen];
            }
        }
        std::this_thread::sleep_for(20ms);
    }
    throw std::runtime_error("no such heartbeat within " + std::to_string(timeout.count()) + " ms");
}

HostdProcess::HostdProcess(const ControllerDouble& controller, const std::filesystem::path& kvm_device,
                           Options options)
    : controller_(controller), kvm_device_(kvm_device), options_(std::move(options)) {
    std::ofstream(state_dir_ / "vmlinuz") << "not a kernel: fake_vmm boots nothing\n";
    if (options_.token) {
        std::ofstream(state_dir_ / "token") << *options_.token << "\n";
    }
    start();
}

HostdProcess::~HostdProcess() { terminate(); }

void HostdProcess::terminate() {
    if (pid_ <= 0) {
        return;
    }
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    // A sanitizer's report (a leak at exit, say) makes the exit status non-zero.
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::ifstream file(state_dir_ / "hostd.log");
        const std::string log((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
        ADD_FAILURE() << "hostd did not exit cleanly after SIGTERM (status " << status << "):\n" << log;
    }
}

void HostdProcess::kill_hard() {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
}

void HostdProcess::restart() {
    if (pid_ > 0) {
        kill_hard();
    }
    start();
}

void HostdProcess::start() {
    std::vector<std::string> arguments = {std::string(VIM_TEST_HOSTD_BINARY),
                                          "--controller",
                                          controller_.url(),
                                          "--listen",
                                          "127.0.0.1:0",
                                          "--name",
                                          options_.name,
                                          "--state-dir",
                                          state_dir_.string(),
                                          "--vmm",
                                          fake_vmm_binary(),
                                          "--guest-kernel",
                                          (state_dir_ / "vmlinuz").string(),
                                          "--heartbeat-ms",
                                          "100",
                                          "--stop-timeout-ms",
                                          "2000",
                                          "--kvm-device",
                                          kvm_device_.string()};
    if (options_.token) {
        arguments.insert(arguments.end(), {"--token-file", (state_dir_ / "token").string()});
    }
    if (!options_.disk_dir.empty()) {
        arguments.insert(arguments.end(), {"--disk-dir", options_.disk_dir.string()});
    }
    arguments.insert(arguments.end(), options_.extra_arguments.begin(), options_.extra_arguments.end());
    std::vector<char*> argv;
    for (auto& argument : arguments) {
        argv.push_back(argument.data());
    }
    argv.push_back(nullptr);
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) {
        throw std::runtime_error("pipe");
    }
    const std::string log = (state_dir_ / "hostd.log").string();
    const std::string device = kvm_device_.string();
    pid_ = ::fork();
    if (pid_ == 0) {
        ::setenv("FAKE_VMM_KVM_DEVICE", device.c_str(), 1);
        ::dup2(out[1], STDOUT_FILENO);
        const int err = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        ::dup2(err, STDERR_FILENO);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    ::close(out[1]);
    std::string said;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    constexpr std::string_view kListening = "hostd: listening on ";
    while (said.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
        pollfd readable{.fd = out[0], .events = POLLIN, .revents = 0};
        if (::poll(&readable, 1, 100) > 0) {
            char buffer[256];
            const ssize_t got = ::read(out[0], buffer, sizeof buffer);
            if (got <= 0) {
                break;
            }
            said.append(buffer, static_cast<std::size_t>(got));
        }
    }
    ::close(out[0]);
    const auto at = said.find(kListening);
    if (at == std::string::npos) {
        std::ifstream file(log);
        const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
        throw std::runtime_error("hostd did not start: " + said + text);
    }
    url_ = said.substr(at + kListening.size(), said.find('\n', at) - at - kListening.size());
}

Reply HostdProcess::request(const std::string& method, const std::string& path, const std::string& body,
                            std::optional<std::string> token) const {
    httplib::Client client(url_);
    client.set_read_timeout(60);
    httplib::Headers headers;
    if (const auto& use = token ? token : options_.token) {
        headers.emplace("Authorization", "Bearer " + *use);
    }
    httplib::Result result = method == "GET"      ? client.Get(path, headers)
                             : method == "DELETE" ? client.Delete(path, headers)
                                                  : client.Post(path, headers, body, "application/json");
    if (!result) {
        return {};
    }
    return {result->status, json::parse(result->body, nullptr, false)};
}

std::vector<pid_t> processes_holding(const std::filesystem::path& kvm_device) {
    std::vector<pid_t> pids;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
        const std::string name = entry.path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos) {
            continue;
        }
        std::error_code gone;
        for (const auto& fd : std::filesystem::directory_iterator(entry.path() / "fd", gone)) {
            std::error_code unreadable;
            if (std::filesystem::read_symlink(fd.path(), unreadable) == kvm_device) {
                pids.push_back(std::stoi(name));
                break;
            }
        }
    }
    return pids;
}

bool process_alive(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    std::getline(stat, text);
    const auto end = text.rfind(')');
    return end != std::string::npos && end + 2 < text.size() && text[end + 2] != 'Z';
}

std::filesystem::path fake_vmm_binary() { return VIM_TEST_FAKE_VMM_BINARY; }

}  // namespace vim::testing
