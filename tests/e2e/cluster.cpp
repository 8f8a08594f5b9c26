#include "cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "vim/testing/vimd_process.h"

namespace vim::testing {
namespace {

using namespace std::chrono_literals;

std::string joined(const std::vector<std::string>& arguments) {
    std::string text;
    for (const auto& argument : arguments) {
        if (!text.empty()) {
            text.push_back(' ');
        }
        text.append(argument);
    }
    return text;
}

// Runs a command to its end; its output is captured through files (a pipe
// could fill while the test waits).
CommandResult run_command(const std::vector<std::string>& arguments) {
    char directory[] = "/tmp/vim-e2e-command.XXXXXX";
    if (::mkdtemp(directory) == nullptr) {
        throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
    }
    const std::filesystem::path out = std::filesystem::path(directory) / "out";
    CommandResult result;
    {
        Process process(arguments, out);
        result.exit_code = process.wait_exit(300s).value_or(-1);
    }
    result.out = read_file(out);
    result.err = read_file(std::string(out) + ".err");
    std::filesystem::remove_all(directory);
    return result;
}

void must(const std::vector<std::string>& arguments) {
    const auto result = run_command(arguments);
    if (result.exit_code != 0) {
        throw std::runtime_error("`" + joined(arguments) + "` exited " + std::to_string(result.exit_code) +
                                 ": " + result.err);
    }
}

}  // namespace

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

Process::Process(const std::vector<std::string>& arguments, const std::filesystem::path& output) {
    const std::string out = output.string();
    const std::string err = out + ".err";
    std::vector<char*> argv;
    for (const auto& argument : arguments) {
        argv.push_back(const_cast<char*>(argument.c_str()));
    }
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) {
        throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
    }
    if (pid_ == 0) {
        const int in_fd = ::open("/dev/null", O_RDONLY);
        const int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        const int err_fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (in_fd < 0 || out_fd < 0 || err_fd < 0 || ::dup2(in_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 ||
            ::dup2(err_fd, 2) < 0) {
            ::_exit(127);
        }
        ::execvp(argv[0], argv.data());
        ::_exit(127);
    }
}

Process::~Process() {
    if (!status_) {
        ::kill(pid_, SIGKILL);
        wait_exit(10s);
    }
}

void Process::signal(int number) const { ::kill(pid_, number); }

std::optional<int> Process::wait_exit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!status_) {
        int status = 0;
        const pid_t done = ::waitpid(pid_, &status, WNOHANG);
        if (done == pid_) {
            status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        } else if (std::chrono::steady_clock::now() >= deadline) {
            return std::nullopt;
        } else {
            std::this_thread::sleep_for(20ms);
        }
    }
    return status_;
}

Cluster::Cluster(int hosts) : prefix_("ve" + std::to_string(::getpid() % 100000)) {
    char directory[] = "/tmp/vim-e2e.XXXXXX";
    if (::mkdtemp(directory) == nullptr) {
        throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
    }
    root_ = directory;
    std::filesystem::create_directories(shared_dir());

    // The controller's namespace holds the bridge every host's uplink joins.
    const std::string controller = controller_namespace();
    must({"ip", "netns", "add", controller});
    must({"ip", "-n", controller, "link", "set", "lo", "up"});
    must({"ip", "-n", controller, "link", "add", "br0", "type", "bridge"});
    must({"ip", "-n", controller, "addr", "add", std::string(kControllerAddress) + "/24", "dev", "br0"});
    must({"ip", "-n", controller, "link", "set", "br0", "up"});
    for (int index = 0; index < hosts; ++index) {
        const std::string host = host_namespace(index);
        const std::string port = std::string("p").append(host_name(index));
        must({"ip", "netns", "add", host});
        must({"ip", "-n", host, "link", "set", "lo", "up"});
        // The host's end is its uplink: its address untagged, its networks' VLANs tagged on it.
        must({"ip", "-n", controller, "link", "add", port, "type", "veth", "peer", "name", "uplink", "netns",
              host});
        must({"ip", "-n", controller, "link", "set", port, "master", "br0", "up"});
        must({"ip", "-n", host, "addr", "add", host_address(index) + "/24", "dev", "uplink"});
        must({"ip", "-n", host, "link", "set", "uplink", "up"});
    }
    start_vimd();
    for (int index = 0; index < hosts; ++index) {
        hostd_.emplace_back();
        start_hostd(index);
    }
    const bool registered = eventually(
        [&] {
            const auto result = vimctl({"--json", "host", "list"});
            if (result.exit_code != 0) {
                return false;
            }
            const auto list = nlohmann::json::parse(result.out, nullptr, false);
            return list.is_object() && list.contains("items") && list["items"].size() == hostd_.size();
        },
        60s);
    if (!registered) {
        throw std::runtime_error("the hosts did not register within 60 s: " + vimctl({"host", "list"}).out +
                                 read_file(host_state_dir(0) / "hostd.log.err"));
    }
}

Cluster::~Cluster() {
    // The VMs' vmm processes outlive a hostd by design: end everything in the namespaces.
    for (int index = 0; index < hosts(); ++index) {
        crash_host(index);
    }
    vimd_.reset();
    std::this_thread::sleep_for(200ms);  // the killed vmm release their taps
    for (int index = 0; index < hosts(); ++index) {
        run_command({"ip", "netns", "delete", host_namespace(index)});
    }
    run_command({"ip", "netns", "delete", controller_namespace()});
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
}

std::string Cluster::host_namespace(int index) const { return prefix_ + "-" + host_name(index); }

std::string Cluster::controller_namespace() const { return prefix_ + "-ctl"; }

std::string Cluster::controller_url() const {
    return "http://" + std::string(kControllerAddress) + ":" + std::to_string(kControllerPort);
}

void Cluster::start_vimd() {
    vimd_ = std::make_unique<Process>(
        std::vector<std::string>{
            "ip", "netns", "exec", controller_namespace(), VIM_TEST_VIMD_BINARY, "--listen",
            std::string(kControllerAddress) + ":" + std::to_string(kControllerPort), "--state-dir",
            (root_ / "vimd").string(), "--advertise-url", controller_url(), "--heartbeat-staleness-ms",
            "5000", "--host-dead-after-ms", "8000"},
        root_ / "vimd.log");
    std::filesystem::create_directories(root_ / "vimd");
    if (!eventually([&] { return vimctl({"host", "list"}).exit_code == 0; }, 30s)) {
        throw std::runtime_error("vimd did not answer within 30 s: " + read_file(root_ / "vimd.log.err"));
    }
}

void Cluster::start_hostd(int index) {
    std::filesystem::create_directories(host_state_dir(index));
    hostd_[index] = std::make_unique<Process>(
        std::vector<std::string>{"ip",
                                 "netns",
                                 "exec",
                                 host_namespace(index),
                                 VIM_TEST_HOSTD_BINARY,
                                 "--controller",
                                 controller_url(),
                                 "--listen",
                                 host_address(index) + ":" + std::to_string(kAgentPort),
                                 "--name",
                                 host_name(index),
                                 "--state-dir",
                                 host_state_dir(index).string(),
                                 "--disk-dir",
                                 shared_dir().string(),
                                 "--uplink",
                                 "uplink",
                                 "--guest-kernel",
                                 VIM_TEST_GUEST_KERNEL,
                                 "--guest-initrd",
                                 VIM_GUEST_INITRAMFS,
                                 "--guest-cmdline",
                                 "console=ttyS0 guest.mode=service",
                                 "--heartbeat-ms",
                                 "500"},
        host_state_dir(index) / "hostd.log");
}

void Cluster::kill_and_restart_hostd(int index) {
    hostd_[index]->signal(SIGKILL);
    hostd_[index]->wait_exit(10s);
    start_hostd(index);
}

void Cluster::crash_host(int index) {
    hostd_[index].reset();
    const auto pids = run_command({"ip", "netns", "pids", host_namespace(index)});
    std::istringstream lines(pids.out);
    for (pid_t pid = 0; lines >> pid;) {
        ::kill(pid, SIGKILL);
    }
}

void Cluster::kill_and_restart_vimd() {
    vimd_->signal(SIGKILL);
    vimd_->wait_exit(10s);
    start_vimd();
}

CommandResult Cluster::vimctl(const std::vector<std::string>& arguments) const {
    std::vector<std::string> command{
        "ip",           "netns",         "exec", controller_namespace(), VIM_TEST_VIMCTL_BINARY,
        "--controller", controller_url()};
    command.insert(command.end(), arguments.begin(), arguments.end());
    return run_command(command);
}

nlohmann::json Cluster::vimctl_json(const std::vector<std::string>& arguments) const {
    std::vector<std::string> command{"--json"};
    command.insert(command.end(), arguments.begin(), arguments.end());
    const auto result = vimctl(command);
    if (result.exit_code != 0) {
        throw std::runtime_error("vimctl " + joined(arguments) + " exited " +
                                 std::to_string(result.exit_code) + ": " + result.err);
    }
    return result.out.empty() ? nlohmann::json::object() : nlohmann::json::parse(result.out);
}

CommandResult Cluster::run_on_host(int index, const std::vector<std::string>& arguments) const {
    std::vector<std::string> command{"ip", "netns", "exec", host_namespace(index)};
    command.insert(command.end(), arguments.begin(), arguments.end());
    return run_command(command);
}

std::string Cluster::console(const std::string& vm_id) const {
    std::filesystem::file_time_type newest{};
    std::string text;
    for (int index = 0; index < hosts(); ++index) {
        const auto path = host_state_dir(index) / "vms" / vm_id / "console.log";
        std::error_code error;
        const auto modified = std::filesystem::last_write_time(path, error);
        if (!error && (text.empty() || modified > newest)) {
            newest = modified;
            text = read_file(path);
        }
    }
    return text;
}

}  // namespace vim::testing
