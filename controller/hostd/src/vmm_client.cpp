#include "vmm_client.h"

#include <fstream>
#include <iterator>

#include "vmm/control/client.h"

namespace vim::controller::hostd {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr auto kStatsTimeout = 1s;

double number_at(const json& object, const char* key) {
    const auto field = object.find(key);
    return field != object.end() && field->is_number() ? field->get<double>() : 0;
}

}  // namespace

bool answers_status(const std::string& socket) {
    try {
        return !socket.empty() &&
               vmm::control::send_command(socket, {{"cmd", "status"}}, kControlTimeout).value("ok", false);
    } catch (const std::exception&) {
        return false;
    }
}

std::uintmax_t file_size_or_zero(const std::filesystem::path& path) {
    std::error_code error;
    const auto size = std::filesystem::file_size(path, error);
    return error ? 0 : size;
}

// What the vmm wrote to stderr since offset: its reason for exiting, or the line a test waits for.
std::string text_since(const std::filesystem::path& path, std::uintmax_t offset) {
    std::ifstream file(path, std::ios::binary);
    file.seekg(static_cast<std::streamoff>(offset));
    return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

std::string last_line(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) {
        text.pop_back();
    }
    const auto newline = text.rfind('\n');
    return newline == std::string::npos ? text : text.substr(newline + 1);
}

// The figures the contract names, from /proc and the vmm's stats (left out where the vmm does not answer).
json vm_figures(const Process& process, const std::string& socket) {
    json result = {{"resident_mib", process.resident_mib()}, {"vcpu_time_ms", process.cpu_time_ms()}};
    json stats;
    try {
        stats = vmm::control::send_command(socket, {{"cmd", "stats"}}, kStatsTimeout);
    } catch (const std::exception&) {
        return result;
    }
    if (!stats.value("ok", false)) {
        return result;
    }
    double exits = 0, balloon = 0, disk_read = 0, disk_write = 0, net_rx = 0, net_tx = 0;
    if (const auto vcpus = stats.find("vcpus"); vcpus != stats.end() && vcpus->is_array()) {
        for (const json& vcpu : *vcpus) {
            if (vcpu.contains("exits") && vcpu["exits"].is_object()) {
                exits += number_at(vcpu["exits"], "total");
            }
        }
    }
    if (const auto devices = stats.find("devices"); devices != stats.end() && devices->is_object()) {
        for (const json& device : *devices) {
            if (!device.is_object()) {
                continue;
            }
            disk_read += number_at(device, "bytes_read");
            disk_write += number_at(device, "bytes_written");
            balloon += number_at(device, "actual_mib");
            if (device.contains("rx") && device["rx"].is_object()) {
                net_rx += number_at(device["rx"], "bytes");
            }
            if (device.contains("tx") && device["tx"].is_object()) {
                net_tx += number_at(device["tx"], "bytes");
            }
        }
    }
    result.update({{"vm_exits", exits},
                   {"balloon_mib", balloon},
                   {"disk_read_bytes", disk_read},
                   {"disk_write_bytes", disk_write},
                   {"net_rx_bytes", net_rx},
                   {"net_tx_bytes", net_tx}});
    return result;
}

}  // namespace vim::controller::hostd
