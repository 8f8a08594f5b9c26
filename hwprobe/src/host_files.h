#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hwprobe/inventory.h"

namespace vim::hwprobe::detail {

// Which problems with a file are worth a warning: every Linux host has
// /proc/meminfo, not every kernel has KSM or 1 GiB pages, and a link that is
// down answers EINVAL for its speed.
enum class Need {
    required,     // any problem
    optional,     // any but absence
    if_readable,  // none: the value is a bonus
};

// Reads files under the sysfs and procfs roots and records what went wrong as
// warnings that name the file, instead of throwing.
class HostFiles {
public:
    HostFiles(std::filesystem::path sysfs_root, std::filesystem::path procfs_root,
              std::vector<Warning>& warnings)
        : sysfs_root_(std::move(sysfs_root)), procfs_root_(std::move(procfs_root)), warnings_(warnings) {}

    std::filesystem::path sys(std::string_view relative) const { return sysfs_root_ / relative; }
    std::filesystem::path proc(std::string_view relative) const { return procfs_root_ / relative; }

    void warn(const std::filesystem::path& file, std::string problem);

    // The whole file, or its first `limit` bytes; nullopt when missing or unreadable.
    std::optional<std::string> read(const std::filesystem::path& file, Need need,
                                    std::size_t limit = std::string::npos);
    // The file without surrounding white space; an empty file is a warning.
    std::optional<std::string> read_value(const std::filesystem::path& file, Need need);
    // A decimal number (or 0x-prefixed hexadecimal, as PCI IDs are written).
    std::optional<std::uint64_t> read_unsigned(const std::filesystem::path& file, Need need);
    // "0-3,8-11" as sysfs writes CPU and node lists.
    std::optional<std::vector<std::uint32_t>> read_list(const std::filesystem::path& file, Need need);
    // "Key:   value kB" lines (meminfo) as byte counts by key, empty where the value
    // was malformed (and warned about); a node's "Node 0 " prefix is dropped.
    std::map<std::string, std::optional<std::uint64_t>> read_meminfo(const std::filesystem::path& file,
                                                                     Need need);
    // The last component of a symbolic link's target, e.g. an IOMMU group's number.
    std::optional<std::string> read_link_name(const std::filesystem::path& link, Need need);
    // Names of the entries of a directory, sorted; empty when it is missing.
    std::vector<std::string> list(const std::filesystem::path& directory, Need need);

private:
    std::filesystem::path sysfs_root_;
    std::filesystem::path procfs_root_;
    std::vector<Warning>& warnings_;
};

std::optional<std::uint64_t> parse_unsigned(std::string_view text);
std::optional<std::vector<std::uint32_t>> parse_list(std::string_view text);
std::string_view trim(std::string_view text);
// `text` in quotes for a warning: cut short, control characters replaced.
std::string quoted_excerpt(std::string_view text);

}  // namespace vim::hwprobe::detail
