#include "host_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <system_error>

#include "vmm/sys/fd.h"

namespace vim::hwprobe::detail {
namespace {

// /proc/cpuinfo of a few hundred CPUs stays far below this; a larger file is not what we expect.
constexpr std::size_t kMaxFileBytes = 16 << 20;

// Whether a problem with a file deserves a warning, given how much the file was needed.
bool worth_warning(Need need, bool missing) {
    switch (need) {
    case Need::required:
        return true;
    case Need::optional:
        return !missing;
    case Need::if_readable:
        return false;
    }
    return true;
}

}  // namespace

std::string quoted_excerpt(std::string_view text) {
    constexpr std::size_t kShown = 40;
    std::string shown(text.substr(0, kShown));
    std::replace_if(
        shown.begin(), shown.end(), [](char c) { return c < 0x20 || c > 0x7e; }, '?');
    return "\"" + shown + (text.size() > kShown ? "...\"" : "\"");
}

std::string_view trim(std::string_view text) {
    constexpr std::string_view kSpace = " \t\n\r\f\v";
    const std::size_t first = text.find_first_not_of(kSpace);
    if (first == std::string_view::npos) {
        return {};
    }
    return text.substr(first, text.find_last_not_of(kSpace) - first + 1);
}

std::optional<std::uint64_t> parse_unsigned(std::string_view text) {
    int base = 10;
    if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
        text.remove_prefix(2);
        base = 16;
    }
    std::uint64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, base);
    if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
        return std::nullopt;
    }
    return value;
}

std::optional<std::vector<std::uint32_t>> parse_list(std::string_view text) {
    // Bounds a hostile "0-4294967295" to what a real host could have.
    constexpr std::uint64_t kMaxIndex = 1 << 20;
    std::vector<std::uint32_t> values;
    while (!text.empty()) {
        const std::size_t comma = text.find(',');
        const std::string_view range = text.substr(0, comma);
        text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
        const std::size_t dash = range.find('-');
        const auto first = parse_unsigned(range.substr(0, dash));
        const auto last = dash == std::string_view::npos ? first : parse_unsigned(range.substr(dash + 1));
        if (!first || !last || *first > *last || *last > kMaxIndex) {
            return std::nullopt;
        }
        for (std::uint64_t value = *first; value <= *last; ++value) {
            values.push_back(static_cast<std::uint32_t>(value));
        }
    }
    std::sort(values.begin(), values.end());
    values.erase(std::unique(values.begin(), values.end()), values.end());
    return values;
}

void HostFiles::warn(const std::filesystem::path& file, std::string problem) {
    warnings_.push_back({file.string(), std::move(problem)});
}

std::optional<std::string> HostFiles::read(const std::filesystem::path& file, Need need, std::size_t limit) {
    vmm::sys::Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        if (worth_warning(need, errno == ENOENT)) {
            warn(file, std::strerror(errno));
        }
        return std::nullopt;
    }
    std::string content;
    char buffer[4096];
    for (;;) {
        const ssize_t got = ::read(fd.get(), buffer, sizeof(buffer));
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            if (worth_warning(need, false)) {
                warn(file, std::strerror(errno));
            }
            return std::nullopt;
        }
        content.append(buffer, static_cast<std::size_t>(got));
        if (got == 0 || content.size() >= limit) {
            return content;
        }
        if (content.size() > kMaxFileBytes) {
            warn(file, "larger than " + std::to_string(kMaxFileBytes) + " bytes");
            return std::nullopt;
        }
    }
}

std::optional<std::string> HostFiles::read_value(const std::filesystem::path& file, Need need) {
    auto content = read(file, need);
    if (!content) {
        return std::nullopt;
    }
    const std::string_view value = trim(*content);
    if (value.empty()) {
        if (worth_warning(need, false)) {
            warn(file, "empty");
        }
        return std::nullopt;
    }
    return std::string(value);
}

std::optional<std::uint64_t> HostFiles::read_unsigned(const std::filesystem::path& file, Need need) {
    auto text = read_value(file, need);
    if (!text) {
        return std::nullopt;
    }
    auto value = parse_unsigned(*text);
    if (!value && worth_warning(need, false)) {
        warn(file, "not an unsigned number: " + quoted_excerpt(*text));
    }
    return value;
}

std::optional<std::vector<std::uint32_t>> HostFiles::read_list(const std::filesystem::path& file, Need need) {
    auto content = read(file, need);
    if (!content) {
        return std::nullopt;
    }
    // An empty list is valid: a memory-only NUMA node has no CPUs.
    auto values = parse_list(trim(*content));
    if (!values && worth_warning(need, false)) {
        warn(file, "not a list of numbers and ranges: " + quoted_excerpt(trim(*content)));
    }
    return values;
}

std::map<std::string, std::optional<std::uint64_t>> HostFiles::read_meminfo(const std::filesystem::path& file,
                                                                            Need need) {
    std::map<std::string, std::optional<std::uint64_t>> values;
    auto content = read(file, need);
    if (!content) {
        return values;
    }
    std::string_view rest = *content;
    while (!rest.empty()) {
        const std::size_t newline = rest.find('\n');
        std::string_view line = rest.substr(0, newline);
        rest = newline == std::string_view::npos ? std::string_view() : rest.substr(newline + 1);
        if (trim(line).empty()) {
            continue;
        }
        if (line.starts_with("Node ")) {
            const std::size_t space = line.find(' ', 5);
            line = space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
        }
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos) {
            if (worth_warning(need, false)) {
                warn(file, "line without a colon: " + quoted_excerpt(line));
            }
            continue;
        }
        const std::string key(trim(line.substr(0, colon)));
        std::string_view text = trim(line.substr(colon + 1));
        std::uint64_t unit = 1;
        if (text.ends_with(" kB")) {
            text = trim(text.substr(0, text.size() - 3));
            unit = 1024;
        }
        const auto value = parse_unsigned(text);
        if (!value || *value > UINT64_MAX / unit) {
            if (worth_warning(need, false)) {
                warn(file, key + ": not a size: " + quoted_excerpt(text));
            }
            values[key] = std::nullopt;
            continue;
        }
        values[key] = *value * unit;
    }
    return values;
}

std::optional<std::string> HostFiles::read_link_name(const std::filesystem::path& link, Need need) {
    std::error_code error;
    const std::filesystem::path target = std::filesystem::read_symlink(link, error);
    if (error) {
        if (worth_warning(need, error == std::errc::no_such_file_or_directory)) {
            warn(link, error.message());
        }
        return std::nullopt;
    }
    return target.filename().string();
}

std::vector<std::string> HostFiles::list(const std::filesystem::path& directory, Need need) {
    std::vector<std::string> names;
    std::error_code error;
    for (std::filesystem::directory_iterator it(directory, error), end; !error && it != end;
         it.increment(error)) {
        names.push_back(it->path().filename().string());
    }
    if (error && worth_warning(need, error == std::errc::no_such_file_or_directory)) {
        warn(directory, error.message());
    }
    std::sort(names.begin(), names.end());
    return names;
}

}  // namespace vim::hwprobe::detail
