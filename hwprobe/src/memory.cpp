#include <algorithm>
#include <charconv>

#include "sections.h"

namespace vim::hwprobe::detail {
namespace {

std::optional<std::uint64_t> find(const std::map<std::string, std::optional<std::uint64_t>>& values,
                                  const std::string& key, HostFiles& files,
                                  const std::filesystem::path& file) {
    const auto found = values.find(key);
    if (found == values.end()) {
        files.warn(file, "no " + key + " line");
        return std::nullopt;
    }
    return found->second;
}

// "hugepages-2048kB" -> 2 MiB.
std::optional<std::uint64_t> page_size_of(std::string_view name) {
    constexpr std::string_view kPrefix = "hugepages-";
    constexpr std::string_view kSuffix = "kB";
    if (!name.starts_with(kPrefix) || !name.ends_with(kSuffix)) {
        return std::nullopt;
    }
    const auto kib =
        parse_unsigned(name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size()));
    if (!kib || *kib == 0 || *kib > (UINT64_MAX >> 10)) {
        return std::nullopt;
    }
    return *kib << 10;
}

Ksm probe_ksm(HostFiles& files) {
    Ksm ksm;
    std::error_code error;
    // Kernels built without CONFIG_KSM have no such directory: not a fault.
    ksm.available = std::filesystem::is_directory(files.sys("kernel/mm/ksm"), error);
    if (ksm.available) {
        ksm.run = files.read_unsigned(files.sys("kernel/mm/ksm/run"), Need::required);
        ksm.pages_shared = files.read_unsigned(files.sys("kernel/mm/ksm/pages_shared"), Need::required);
        ksm.pages_sharing = files.read_unsigned(files.sys("kernel/mm/ksm/pages_sharing"), Need::required);
    }
    return ksm;
}

}  // namespace

std::vector<std::uint32_t> numbered_entries(HostFiles& files, const std::filesystem::path& directory,
                                            std::string_view prefix, Need need) {
    std::vector<std::uint32_t> numbers;
    for (const std::string& name : files.list(directory, need)) {
        if (!std::string_view(name).starts_with(prefix)) {
            continue;
        }
        std::uint32_t number = 0;
        const char* digits = name.data() + prefix.size();
        const auto [end, error] = std::from_chars(digits, name.data() + name.size(), number);
        if (error == std::errc() && end == name.data() + name.size() && end != digits) {
            numbers.push_back(number);
        }
    }
    std::sort(numbers.begin(), numbers.end());
    return numbers;
}

std::vector<HugepagePool> probe_hugepages(HostFiles& files, const std::filesystem::path& directory) {
    std::vector<HugepagePool> pools;
    for (const std::string& name : files.list(directory, Need::optional)) {
        const auto page_size = page_size_of(name);
        if (!page_size) {
            continue;
        }
        HugepagePool pool;
        pool.page_size_bytes = *page_size;
        pool.total = files.read_unsigned(directory / name / "nr_hugepages", Need::required);
        pool.free = files.read_unsigned(directory / name / "free_hugepages", Need::required);
        pools.push_back(pool);
    }
    std::sort(pools.begin(), pools.end(), [](const HugepagePool& left, const HugepagePool& right) {
        return left.page_size_bytes < right.page_size_bytes;
    });
    return pools;
}

Memory probe_memory(HostFiles& files) {
    Memory memory;
    const std::filesystem::path meminfo = files.proc("meminfo");
    const auto values = files.read_meminfo(meminfo, Need::required);
    if (!values.empty()) {
        memory.total_bytes = find(values, "MemTotal", files, meminfo);
        memory.available_bytes = find(values, "MemAvailable", files, meminfo);
    }
    memory.hugepages = probe_hugepages(files, files.sys("kernel/mm/hugepages"));
    memory.ksm = probe_ksm(files);
    memory.overcommit.policy = files.read_unsigned(files.proc("sys/vm/overcommit_memory"), Need::required);
    memory.overcommit.ratio_percent =
        files.read_unsigned(files.proc("sys/vm/overcommit_ratio"), Need::required);
    memory.overcommit.kbytes = files.read_unsigned(files.proc("sys/vm/overcommit_kbytes"), Need::optional);
    return memory;
}

std::vector<NumaNode> probe_numa(HostFiles& files) {
    std::vector<NumaNode> nodes;
    const std::filesystem::path root = files.sys("devices/system/node");
    // Kernels without CONFIG_NUMA have no node directory; the host is then one node.
    for (std::uint32_t id : numbered_entries(files, root, "node", Need::optional)) {
        const std::filesystem::path directory = root / ("node" + std::to_string(id));
        NumaNode node;
        node.id = id;
        node.cpus =
            files.read_list(directory / "cpulist", Need::required).value_or(std::vector<std::uint32_t>{});
        const std::filesystem::path meminfo = directory / "meminfo";
        const auto values = files.read_meminfo(meminfo, Need::required);
        if (!values.empty()) {
            node.memory_total_bytes = find(values, "MemTotal", files, meminfo);
            node.memory_free_bytes = find(values, "MemFree", files, meminfo);
        }
        if (const auto distance = files.read(directory / "distance", Need::required)) {
            std::string_view rest = trim(*distance);
            while (!rest.empty()) {
                const std::size_t space = rest.find(' ');
                const auto value = parse_unsigned(rest.substr(0, space));
                if (!value || *value > UINT32_MAX) {
                    files.warn(directory / "distance",
                               "not a list of distances: " + quoted_excerpt(trim(*distance)));
                    node.distances.clear();
                    break;
                }
                node.distances.push_back(static_cast<std::uint32_t>(*value));
                rest = space == std::string_view::npos ? std::string_view() : trim(rest.substr(space));
            }
        }
        node.hugepages = probe_hugepages(files, directory / "hugepages");
        nodes.push_back(std::move(node));
    }
    return nodes;
}

}  // namespace vim::hwprobe::detail
