#include <algorithm>
#include <cstdio>
#include <sstream>

#include "hwprobe/report.h"

namespace vim::hwprobe {
namespace {

// Rows of cells printed with each column as wide as its widest cell.
class Columns {
public:
    void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

    void print(std::ostream& out, const std::string& indent) const {
        std::vector<std::size_t> widths;
        for (const auto& row : rows_) {
            widths.resize(std::max(widths.size(), row.size()));
            for (std::size_t column = 0; column < row.size(); ++column) {
                widths[column] = std::max(widths[column], row[column].size());
            }
        }
        for (const auto& row : rows_) {
            std::string line = indent;
            for (std::size_t column = 0; column < row.size(); ++column) {
                line += row[column];
                if (column + 1 < row.size()) {
                    line += std::string(widths[column] - row[column].size() + 2, ' ');
                }
            }
            out << line << '\n';
        }
    }

private:
    std::vector<std::vector<std::string>> rows_;
};

template <typename T>
std::string or_unknown(const std::optional<T>& value) {
    return value ? std::to_string(*value) : "?";
}

std::string bytes(const std::optional<std::uint64_t>& value) {
    if (!value) {
        return "?";
    }
    constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double amount = static_cast<double>(*value);
    std::size_t unit = 0;
    while (amount >= 1024 && unit + 1 < std::size(kUnits)) {
        amount /= 1024;
        ++unit;
    }
    char text[32];
    std::snprintf(text, sizeof(text), unit == 0 ? "%.0f %s" : "%.1f %s", amount, kUnits[unit]);
    return text;
}

std::string hex(std::uint32_t value, int digits) {
    char text[16];
    std::snprintf(text, sizeof(text), "%0*x", digits, value);
    return text;
}

std::string hex_or_unknown(const std::optional<std::uint32_t>& value, int digits) {
    return value ? hex(*value, digits) : "?";
}

// 0,1,2,3,8 -> "0-3,8", as the kernel writes CPU lists.
std::string ranges(const std::vector<std::uint32_t>& values) {
    std::string text;
    for (std::size_t first = 0; first < values.size();) {
        std::size_t last = first;
        while (last + 1 < values.size() && values[last + 1] == values[last] + 1) {
            ++last;
        }
        // Appended piece by piece: GCC 12 at -O3 sees a false overlap in
        // `"-" + std::to_string(...)` (-Werror=restrict).
        if (!text.empty()) {
            text += ',';
        }
        text += std::to_string(values[first]);
        if (last > first) {
            text += '-';
            text += std::to_string(values[last]);
        }
        first = last + 1;
    }
    return text.empty() ? "none" : text;
}

std::string joined(const std::vector<std::string>& words) {
    std::string text;
    for (const std::string& word : words) {
        if (!text.empty()) {
            text += ' ';
        }
        text += word;
    }
    return text;
}

std::string or_dash(const std::string& text) { return text.empty() ? "-" : text; }

std::string facility(const Facility& facility) {
    return facility.usable ? "usable" : "no: " + facility.detail;
}

std::string pools(const std::vector<HugepagePool>& pools) {
    std::string text;
    for (const HugepagePool& pool : pools) {
        text += (text.empty() ? "" : ", ") + bytes(pool.page_size_bytes) + ": " + or_unknown(pool.free) +
                "/" + or_unknown(pool.total) + " free";
    }
    return text.empty() ? "none" : text;
}

void host(std::ostream& out, const Inventory& inventory) {
    Columns lines;
    lines.add({"host", inventory.hostname});
    lines.add({"kernel", inventory.kernel.release});
    lines.add({"io_uring", facility(inventory.kernel.io_uring)});
    lines.add({"userfaultfd", facility(inventory.kernel.userfaultfd)});
    lines.add({"vhost-net", facility(inventory.kernel.vhost_net)});
    lines.print(out, "");
}

void cpu(std::ostream& out, const Cpu& cpu) {
    out << "\nCPU\n";
    Columns lines;
    lines.add({"model", cpu.model_name + " (" + cpu.vendor + " family " + std::to_string(cpu.family) +
                            " model " + std::to_string(cpu.model) + " stepping " +
                            std::to_string(cpu.stepping) + ")"});
    lines.add({"topology", or_unknown(cpu.sockets) + " sockets, " + or_unknown(cpu.cores) + " cores, " +
                               or_unknown(cpu.threads) + " threads"});
    lines.add({"online", ranges(cpu.online)});
    std::string tsc =
        cpu.tsc.hz ? std::to_string(*cpu.tsc.hz / 1000) + " kHz (" + cpu.tsc.source + ")" : "unknown";
    lines.add({"tsc", tsc + (cpu.tsc.invariant ? ", invariant" : ", not invariant")});
    lines.add(
        {"nested paging", (cpu.nested_paging ? (*cpu.nested_paging ? "yes" : "no") : std::string("unknown")) +
                              " (" + cpu.nested_paging_source + ")"});
    lines.add({"hypervisor", or_dash(cpu.hypervisor)});
    lines.add({"features", joined(cpu.features)});
    lines.print(out, "  ");
}

void kvm(std::ostream& out, const Kvm& kvm) {
    out << "\nKVM\n";
    Columns lines;
    if (!kvm.present) {
        lines.add(
            {"absent", std::string(kvm.absence ? to_string(*kvm.absence) : "") + ": " + kvm.absence_detail});
        lines.print(out, "  ");
        return;
    }
    lines.add({"api version", std::to_string(kvm.api_version)});
    lines.add({"vcpus", std::to_string(kvm.recommended_vcpus) + " recommended, " +
                            std::to_string(kvm.max_vcpus) + " at most"});
    lines.add({"dirty ring", std::to_string(kvm.dirty_ring_max_bytes) + " bytes, acquire/release " +
                                 std::to_string(kvm.dirty_ring_acquire_release_max_bytes) + " bytes"});
    lines.add({"vmm requirements", kvm.required_capabilities_met ? "met" : "NOT met"});
    for (const KvmCapability& capability : kvm.capabilities) {
        lines.add({"  " + capability.name,
                   std::to_string(capability.value) + (capability.required ? " (required)" : "")});
    }
    lines.add({"guest features", joined(kvm.guest_features)});
    lines.print(out, "  ");
}

void memory(std::ostream& out, const Memory& memory, const std::vector<NumaNode>& nodes) {
    out << "\nMemory\n";
    Columns lines;
    lines.add({"total", bytes(memory.total_bytes) + ", " + bytes(memory.available_bytes) + " available"});
    lines.add({"hugepages", pools(memory.hugepages)});
    lines.add({"ksm", memory.ksm.available ? "run " + or_unknown(memory.ksm.run) + ", " +
                                                 or_unknown(memory.ksm.pages_sharing) + " pages sharing"
                                           : "not built in"});
    lines.add({"overcommit", "policy " + or_unknown(memory.overcommit.policy) + ", ratio " +
                                 or_unknown(memory.overcommit.ratio_percent) + "%"});
    lines.print(out, "  ");
    if (nodes.empty()) {
        return;
    }
    out << "\nNUMA\n";
    Columns table;
    table.add({"node", "cpus", "memory", "free", "distances", "hugepages"});
    for (const NumaNode& node : nodes) {
        std::vector<std::string> distances;
        for (std::uint32_t distance : node.distances) {
            distances.push_back(std::to_string(distance));
        }
        table.add({std::to_string(node.id), ranges(node.cpus), bytes(node.memory_total_bytes),
                   bytes(node.memory_free_bytes), joined(distances), pools(node.hugepages)});
    }
    table.print(out, "  ");
}

void storage(std::ostream& out, const Inventory& inventory) {
    out << "\nDisks\n";
    Columns table;
    table.add({"name", "size", "logical", "physical", "rotational", "model"});
    for (const Disk& disk : inventory.disks) {
        table.add({disk.name, bytes(disk.size_bytes), or_unknown(disk.logical_block_size),
                   or_unknown(disk.physical_block_size),
                   disk.rotational ? (*disk.rotational ? "yes" : "no") : std::string("?"),
                   or_dash(disk.model)});
    }
    table.print(out, "  ");
    if (const auto& state = inventory.state_directory) {
        out << "  state directory " << state->path << ": " << bytes(state->free_bytes) << " free of "
            << bytes(state->total_bytes) << '\n';
    }
}

void nics(std::ostream& out, const std::vector<Nic>& nics) {
    out << "\nNICs\n";
    Columns table;
    table.add({"index", "name", "kind", "master", "mtu", "mac", "state", "vlan", "speed"});
    for (const Nic& nic : nics) {
        const std::string vlan = nic.vlan_id ? std::to_string(*nic.vlan_id) + " on " + nic.parent : "-";
        table.add({std::to_string(nic.index), nic.name, or_dash(nic.kind), or_dash(nic.master),
                   std::to_string(nic.mtu), or_dash(nic.mac),
                   std::string(nic.up ? "up" : "down") + "/" + nic.operational_state, vlan,
                   nic.speed_mbps ? std::to_string(*nic.speed_mbps) + " Mb/s" : "-"});
    }
    table.print(out, "  ");
}

void pci(std::ostream& out, const std::vector<PciDevice>& devices) {
    out << "\nPCI\n";
    Columns table;
    table.add({"address", "class", "vendor:device", "iommu group", "driver"});
    for (const PciDevice& device : devices) {
        table.add({device.address, hex_or_unknown(device.class_code, 6),
                   hex_or_unknown(device.vendor, 4) + ":" + hex_or_unknown(device.device, 4),
                   device.iommu_group ? std::to_string(*device.iommu_group) : "-", or_dash(device.driver)});
    }
    table.print(out, "  ");
}

}  // namespace

std::string to_table(const Inventory& inventory) {
    std::ostringstream out;
    host(out, inventory);
    cpu(out, inventory.cpu);
    kvm(out, inventory.kvm);
    memory(out, inventory.memory, inventory.numa_nodes);
    storage(out, inventory);
    nics(out, inventory.nics);
    pci(out, inventory.pci_devices);
    if (!inventory.warnings.empty()) {
        out << "\nWarnings\n";
        for (const Warning& warning : inventory.warnings) {
            out << "  " << warning.file << ": " << warning.problem << '\n';
        }
    }
    return out.str();
}

}  // namespace vim::hwprobe
