#include "vmm/config/vm_config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>

namespace vmm::config {
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

}  // namespace

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

std::optional<VmConfig> parse_command_line(int argc, const char* const* argv) {
    VmConfig config;
    std::string memory = "512M";
    std::string serial = "stdio";
    std::vector<std::string> disks, nets;
    std::string incoming, restore;

    CLI::App app{"vmm: runs one virtual machine on /dev/kvm"};
    app.set_version_flag("--version", "vmm 0.1");
    app.add_option("--kernel", config.kernel,
                   "Linux kernel to boot: a bzImage, or the uncompressed ELF vmlinux that unpack-kernel "
                   "takes out of one (boots faster)")
        ->required();
    app.add_option("--initrd", config.initrd, "initial ramdisk");
    app.add_option("--cmdline", config.cmdline, "kernel command line")->capture_default_str();
    app.add_option("--cpus", config.cpus, "number of vCPUs")->capture_default_str();
    app.add_option("--memory", memory, "guest RAM, e.g. 512M or 2G")->capture_default_str();
    app.add_option("--serial", serial, "stdio, file=PATH or none")->capture_default_str();
    app.add_option("--api-socket", config.api_socket, "control socket path");
    app.add_option(
        "--disk", disks,
        "a virtio disk, raw image or block device: path=P[,readonly=on][,direct=on]; repeat for more");
    app.add_option("--net", nets, "tap=T[,mac=M]");
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
    // These flags belong to the contract; the devices and the migration
    // receiver behind them are not built yet, so refuse them honestly.
    for (const auto& [flag, values] :
         {std::pair{"--net", nets.size()}, {"--incoming", incoming.size()}, {"--restore", restore.size()}}) {
        if (values != 0) {
            throw UsageError(std::string(flag) + " is not supported by this vmm yet");
        }
    }
    for (const std::string& disk : disks) {
        config.disks.push_back(parse_disk(disk));
    }
    config.memory_bytes = parse_memory_size(memory);
    config.serial = parse_serial(serial);
    return config;
}

void validate(const VmConfig& config, const HostLimits& limits) {
    require_readable_file("--kernel", config.kernel);
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

}  // namespace vmm::config
