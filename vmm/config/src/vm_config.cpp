#include "vmm/config/vm_config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>

namespace vim::vmm::config {
namespace {

constexpr std::uint64_t kPageSize = 4096;

SerialConfig parse_serial(const std::string& text) {
    if (text == "stdio") {
        return {SerialConfig::Kind::Stdio, {}};
    }
    if (text == "none") {
        return {SerialConfig::Kind::None, {}};
    }
    if (text.rfind("file=", 0) == 0 && text.size() > 5) {
        return {SerialConfig::Kind::File, text.substr(5)};
    }
    throw UsageError("--serial: '" + text + "' is not stdio, none or file=PATH");
}

void require_readable_file(const std::string& flag, const std::string& path) {
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0) {
        throw UsageError(flag + " " + path + ": " + std::strerror(errno));
    }
    if (!S_ISREG(info.st_mode)) {
        throw UsageError(flag + " " + path + ": not a regular file");
    }
    if (::access(path.c_str(), R_OK) != 0) {
        throw UsageError(flag + " " + path + ": " + std::strerror(errno));
    }
}

bool parse_switch(const std::string& flag, const std::string& key, const std::string& value) {
    if (value == "on") {
        return true;
    }
    if (value == "off") {
        return false;
    }
    throw UsageError(flag + ": " + key + "='" + value + "' is not on or off");
}

// What Linux takes as an interface name (dev_valid_name()), without '%',
// which would make the kernel pick the name (and the MAC derived from it).
void require_interface_name(const std::string& flag, const std::string& key, const std::string& name) {
    constexpr std::size_t kMaxInterfaceName = 15;
    if (name.empty() || name.size() > kMaxInterfaceName || name == "." || name == "..") {
        throw UsageError(flag + ": " + key + "='" + name +
                         "' is not an interface name of 1 to 15 characters");
    }
    for (const char character : name) {
        if (character == '/' || character == ':' || character == '%' ||
            std::isspace(static_cast<unsigned char>(character))) {
            throw UsageError(flag + ": " + key + "='" + name + "' holds '" + character +
                             "', which an interface name cannot");
        }
    }
}

std::array<std::uint8_t, 6> parse_mac(const std::string& flag, const std::string& text) {
    std::array<std::uint8_t, 6> mac{};
    const auto hex_digit = [](char character) {
        return std::isxdigit(static_cast<unsigned char>(character));
    };
    bool well_formed = text.size() == 17;
    for (std::size_t i = 0; well_formed && i < mac.size(); ++i) {
        const std::size_t at = i * 3;
        well_formed = hex_digit(text[at]) && hex_digit(text[at + 1]) && (i == 5 || text[at + 2] == ':');
        if (well_formed) {
            mac[i] = static_cast<std::uint8_t>(std::stoul(text.substr(at, 2), nullptr, 16));
        }
    }
    if (!well_formed) {
        throw UsageError(flag + ": mac='" + text + "' is not six hex bytes like 52:54:00:12:34:56");
    }
    if ((mac[0] & 1) != 0) {
        throw UsageError(flag + ": mac='" + text + "' is a multicast address");
    }
    if (mac == std::array<std::uint8_t, 6>{}) {
        throw UsageError(flag + ": mac='" + text + "' is all zeroes");
    }
    return mac;
}

}  // namespace

NetConfig parse_net(const std::string& text) {
    const std::string flag = "--net " + text;
    NetConfig net;
    bool has_tap = false;
    std::stringstream options(text);
    std::string option;
    while (std::getline(options, option, ',')) {
        const auto equals = option.find('=');
        if (equals == std::string::npos) {
            throw UsageError(flag + ": '" + option + "' is not KEY=VALUE");
        }
        const std::string key = option.substr(0, equals);
        const std::string value = option.substr(equals + 1);
        if (key == "tap") {
            require_interface_name(flag, key, value);
            net.tap = value;
            has_tap = true;
        } else if (key == "mac") {
            net.mac = parse_mac(flag, value);
        } else if (key == "bridge") {
            require_interface_name(flag, key, value);
            net.bridge = value;
        } else if (key == "mtu") {
            const bool digits =
                !value.empty() && value.size() <= 5 && std::all_of(value.begin(), value.end(), [](char c) {
                    return std::isdigit(static_cast<unsigned char>(c));
                });
            const unsigned long mtu = digits ? std::stoul(value) : 0;
            if (mtu < 68 || mtu > 65535) {
                throw UsageError(flag + ": mtu='" + value + "' is not a number from 68 to 65535");
            }
            net.mtu = static_cast<std::uint16_t>(mtu);
        } else {
            throw UsageError(flag + ": unknown option '" + option +
                             "' (tap=NAME, mac=MAC, bridge=BRIDGE, mtu=N)");
        }
    }
    if (!has_tap) {
        throw UsageError(flag + ": tap=NAME is missing");
    }
    return net;
}

DiskConfig parse_disk(const std::string& text) {
    DiskConfig disk;
    bool has_path = false;
    std::stringstream options(text);
    std::string option;
    while (std::getline(options, option, ',')) {
        const auto equals = option.find('=');
        if (equals == std::string::npos) {
            throw UsageError("--disk " + text + ": '" + option + "' is not KEY=VALUE");
        }
        const std::string key = option.substr(0, equals);
        const std::string value = option.substr(equals + 1);
        if (key == "path") {
            if (value.empty()) {
                throw UsageError("--disk " + text + ": the path is empty");
            }
            disk.path = value;
            has_path = true;
        } else if (key == "readonly") {
            disk.readonly = parse_switch("--disk " + text, key, value);
        } else if (key == "direct") {
            disk.direct = parse_switch("--disk " + text, key, value);
        } else {
            throw UsageError("--disk " + text + ": unknown option '" + option +
                             "' (path=P, readonly=on|off, direct=on|off)");
        }
    }
    if (!has_path) {
        throw UsageError("--disk " + text + ": path=P is missing");
    }
    return disk;
}

std::uint64_t parse_memory_size(const std::string& text) {
    std::size_t digits = 0;
    while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) {
        ++digits;
    }
    std::string suffix = text.substr(digits);
    std::uint64_t unit;
    if (suffix.empty() || suffix == "M" || suffix == "m") {
        unit = 1ull << 20;
    } else if (suffix == "K" || suffix == "k") {
        unit = 1ull << 10;
    } else if (suffix == "G" || suffix == "g") {
        unit = 1ull << 30;
    } else {
        digits = 0;  // reported below
    }
    if (digits == 0 || digits > 15) {
        throw UsageError("--memory: '" + text + "' is not a size like 512M, 2G or 1048576K");
    }
    std::uint64_t value = std::stoull(text.substr(0, digits));
    if (value > std::numeric_limits<std::uint64_t>::max() / unit) {
        throw UsageError("--memory: '" + text + "' is too large");
    }
    return value * unit;
}

namespace {

std::string disk_text(const DiskConfig& disk) {
    return "path=" + disk.path + ",readonly=" + (disk.readonly ? "on" : "off") +
           ",direct=" + (disk.direct ? "on" : "off");
}

std::string net_text(const NetConfig& net) {
    std::string text = "tap=" + net.tap;
    if (net.mac) {
        char mac[18];
        std::snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", (*net.mac)[0], (*net.mac)[1],
                      (*net.mac)[2], (*net.mac)[3], (*net.mac)[4], (*net.mac)[5]);
        text += ",mac=";
        text += mac;
    }
    if (!net.bridge.empty()) {
        text += ",bridge=" + net.bridge;
    }
    if (net.mtu) {
        text += ",mtu=" + std::to_string(*net.mtu);
    }
    return text;
}

// The list `name` of `shape`, each entry parsed by `parse`; `given` (this
// end's flags) replaces it entry for entry when not empty.
template <typename Entry, typename Parse>
std::vector<Entry> travelling_list(const nlohmann::json& shape, const char* name, std::vector<Entry> given,
                                   Parse parse) {
    const auto list = shape.find(name);
    if (list == shape.end() || !list->is_array()) {
        throw UsageError(std::string("the VM's shape: ") + name + " is missing or not a list");
    }
    std::vector<Entry> travelling;
    for (const auto& entry : *list) {
        if (!entry.is_string()) {
            throw UsageError(std::string("the VM's shape: ") + name + ": an entry is not a string");
        }
        travelling.push_back(parse(entry.get<std::string>()));
    }
    if (given.empty()) {
        return travelling;
    }
    if (given.size() != travelling.size()) {
        throw UsageError("--" + std::string(name).substr(0, std::string(name).size() - 1) + ": " +
                         std::to_string(given.size()) + " given, the VM has " +
                         std::to_string(travelling.size()));
    }
    return given;
}

}  // namespace

nlohmann::json shape_to_json(const VmConfig& config) {
    nlohmann::json disks = nlohmann::json::array(), nets = nlohmann::json::array();
    for (const DiskConfig& disk : config.disks) {
        disks.push_back(disk_text(disk));
    }
    for (const NetConfig& net : config.nets) {
        nets.push_back(net_text(net));
    }
    return {{"cpus", config.cpus},
            {"memory_bytes", config.memory_bytes},
            {"disks", disks},
            {"nets", nets},
            {"balloon", std::string("free_page_reporting=") +
                            (config.balloon.free_page_reporting ? "on" : "off") +
                            ",deflate_on_oom=" + (config.balloon.deflate_on_oom ? "on" : "off")}};
}

void apply_shape(const nlohmann::json& shape, VmConfig& config) {
    if (!shape.is_object()) {
        throw UsageError("the VM's shape is not a JSON object");
    }
    auto number = [&](const char* name) {
        const auto field = shape.find(name);
        if (field == shape.end() || !field->is_number_unsigned()) {
            throw UsageError(std::string("the VM's shape: ") + name + " is missing or not a number");
        }
        return field->get<std::uint64_t>();
    };
    const std::uint64_t cpus = number("cpus");
    if (cpus == 0 || cpus > std::numeric_limits<std::uint32_t>::max()) {
        throw UsageError("the VM's shape: cpus " + std::to_string(cpus) + " is out of range");
    }
    config.cpus = static_cast<std::uint32_t>(cpus);
    config.memory_bytes = number("memory_bytes");
    const auto balloon = shape.find("balloon");
    if (balloon == shape.end() || !balloon->is_string()) {
        throw UsageError("the VM's shape: balloon is missing or not a string");
    }
    config.balloon = parse_balloon(balloon->get<std::string>());
    config.disks = travelling_list(shape, "disks", std::move(config.disks), parse_disk);
    config.nets = travelling_list(shape, "nets", std::move(config.nets), parse_net);
}

BalloonConfig parse_balloon(const std::string& text) {
    const std::string flag = "--balloon " + text;
    BalloonConfig balloon;
    std::size_t start = 0;
    while (start <= text.size()) {
        const std::size_t end = std::min(text.find(',', start), text.size());
        const std::string part = text.substr(start, end - start);
        const std::size_t equals = part.find('=');
        const std::string key = part.substr(0, equals);
        const std::string value = equals == std::string::npos ? "" : part.substr(equals + 1);
        if (key == "free_page_reporting" && equals != std::string::npos) {
            balloon.free_page_reporting = parse_switch(flag, key, value);
        } else if (key == "deflate_on_oom" && equals != std::string::npos) {
            balloon.deflate_on_oom = parse_switch(flag, key, value);
        } else {
            throw UsageError(flag + ": '" + part +
                             "' is not free_page_reporting=on|off or deflate_on_oom=on|off");
        }
        start = end + 1;
    }
    return balloon;
}

std::optional<VmConfig> parse_command_line(int argc, const char* const* argv) {
    VmConfig config;
    std::string memory = "512M";
    std::string serial = "stdio";
    std::vector<std::string> disks, nets;
    std::string incoming, restore, balloon;

    CLI::App app{"vmm: runs one virtual machine on /dev/kvm"};
    app.set_version_flag("--version", "vmm 0.1");
    app.add_option("--kernel", config.kernel,
                   "Linux kernel to boot: a bzImage, or the uncompressed ELF vmlinux that unpack-kernel "
                   "takes out of one (boots faster)");
    app.add_option("--initrd", config.initrd, "initial ramdisk");
    app.add_option("--cmdline", config.cmdline, "kernel command line")->capture_default_str();
    app.add_option("--cpus", config.cpus, "number of vCPUs")->capture_default_str();
    app.add_option("--memory", memory, "guest RAM, e.g. 512M or 2G")->capture_default_str();
    app.add_option("--serial", serial, "stdio, file=PATH or none")->capture_default_str();
    app.add_option("--api-socket", config.api_socket, "control socket path");
    app.add_option(
        "--disk", disks,
        "a virtio disk, raw image or block device: path=P[,readonly=on][,direct=on]; repeat for more");
    app.add_option(
        "--net", nets,
        "a virtio NIC on a tap (created if missing): tap=NAME[,mac=MAC][,bridge=BR][,mtu=N]; repeat "
        "for more");
    app.add_option("--balloon", balloon,
                   "what the VM's memory balloon offers the guest: "
                   "free_page_reporting=on|off[,deflate_on_oom=on|off] (both on by default)");
    app.add_option("--incoming", incoming, "tcp:HOST:PORT to receive a migration");
    app.add_option("--restore", restore, "snapshot directory to restore");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        std::cout << app.help();
        return std::nullopt;
    } catch (const CLI::CallForVersion&) {
        std::cout << app.version() << "\n";
        return std::nullopt;
    } catch (const CLI::ParseError& error) {
        throw UsageError(error.what());
    }
    if (!incoming.empty() && !restore.empty()) {
        throw UsageError("--incoming and --restore: a VM starts from one of them, not both");
    }
    if (!incoming.empty() || !restore.empty()) {
        // The VM's shape and its guest come from the stream or the snapshot.
        config.start = {incoming.empty() ? StartFrom::Kind::Restore : StartFrom::Kind::Incoming,
                        incoming.empty() ? restore : incoming};
        const char* source = incoming.empty() ? "--restore" : "--incoming";
        for (const char* flag : {"--kernel", "--initrd", "--cmdline", "--cpus", "--memory", "--balloon"}) {
            if (app.count(flag) != 0) {
                throw UsageError(std::string(flag) + ": the VM's own comes with " + source + "; not with it");
            }
        }
    } else if (config.kernel.empty()) {
        throw UsageError("--kernel is required (or --incoming or --restore)");
    }
    if (!balloon.empty()) {
        config.balloon = parse_balloon(balloon);
    }
    for (const std::string& disk : disks) {
        config.disks.push_back(parse_disk(disk));
    }
    for (const std::string& text : nets) {
        NetConfig net = parse_net(text);
        for (const NetConfig& earlier : config.nets) {
            if (earlier.tap == net.tap) {
                throw UsageError("--net " + text + ": tap " + net.tap + " is already another --net's");
            }
            if (net.mac && earlier.mac == net.mac) {
                throw UsageError("--net " + text + ": the MAC is already another --net's");
            }
        }
        config.nets.push_back(std::move(net));
    }
    config.memory_bytes = parse_memory_size(memory);
    config.serial = parse_serial(serial);
    return config;
}

void validate(const VmConfig& config, const HostLimits& limits) {
    if (config.start.kind == StartFrom::Kind::Boot) {
        require_readable_file("--kernel", config.kernel);
    }
    if (!config.initrd.empty()) {
        require_readable_file("--initrd", config.initrd);
    }
    if (config.memory_bytes == 0) {
        throw UsageError("--memory: must be more than 0");
    }
    if (config.memory_bytes % kPageSize != 0) {
        throw UsageError("--memory: " + std::to_string(config.memory_bytes) +
                         " bytes is not a multiple of the 4 KiB page size");
    }
    if (config.memory_bytes > limits.memory_bytes) {
        throw UsageError("--memory: " + std::to_string(config.memory_bytes >> 20) +
                         " MiB is more than the host's " + std::to_string(limits.memory_bytes >> 20) +
                         " MiB");
    }
    if (config.cpus == 0) {
        throw UsageError("--cpus: must be at least 1");
    }
    if (config.cpus > limits.max_vcpus) {
        throw UsageError("--cpus: " + std::to_string(config.cpus) + " is more than KVM allows (" +
                         std::to_string(limits.max_vcpus) + ")");
    }
}

HostLimits host_limits(std::uint32_t kvm_max_vcpus) {
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    std::uint64_t kib = 0;
    std::string unit;
    while (meminfo >> key >> kib >> unit) {
        if (key == "MemTotal:") {
            break;
        }
    }
    return {kib << 10, kvm_max_vcpus};
}

}  // namespace vim::vmm::config
