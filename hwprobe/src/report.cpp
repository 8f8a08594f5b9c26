#include "hwprobe/report.h"

namespace vim::hwprobe {
namespace {

using nlohmann::json;

template <typename T>
json optional_value(const std::optional<T>& value) {
    return value ? json(*value) : json(nullptr);
}

json facility(const Facility& facility) { return {{"usable", facility.usable}, {"detail", facility.detail}}; }

json hugepages(const std::vector<HugepagePool>& pools) {
    json list = json::array();
    for (const HugepagePool& pool : pools) {
        list.push_back({{"page_size_bytes", pool.page_size_bytes},
                        {"total", optional_value(pool.total)},
                        {"free", optional_value(pool.free)}});
    }
    return list;
}

json cpu(const Cpu& cpu) {
    return {{"vendor", cpu.vendor},
            {"family", cpu.family},
            {"model", cpu.model},
            {"stepping", cpu.stepping},
            {"model_name", cpu.model_name},
            {"sockets", optional_value(cpu.sockets)},
            {"cores", optional_value(cpu.cores)},
            {"threads", optional_value(cpu.threads)},
            {"online", cpu.online},
            {"features", cpu.features},
            {"nested_paging", optional_value(cpu.nested_paging)},
            {"nested_paging_source", cpu.nested_paging_source},
            {"hypervisor", cpu.hypervisor},
            {"tsc",
             {{"frequency_hz", optional_value(cpu.tsc.hz)},
              {"source", cpu.tsc.source},
              {"invariant", cpu.tsc.invariant}}}};
}

json kvm(const Kvm& kvm) {
    // Absent, its numbers are unknown rather than zero.
    auto number = [&](int value) { return kvm.present ? json(value) : json(nullptr); };
    json capabilities = json::array();
    for (const KvmCapability& capability : kvm.capabilities) {
        capabilities.push_back({{"name", capability.name},
                                {"id", capability.id},
                                {"required", capability.required},
                                {"value", capability.value}});
    }
    json leaves = json::array();
    for (const CpuidLeaf& leaf : kvm.supported_cpuid) {
        leaves.push_back({{"function", leaf.function},
                          {"index", leaf.index},
                          {"eax", leaf.eax},
                          {"ebx", leaf.ebx},
                          {"ecx", leaf.ecx},
                          {"edx", leaf.edx}});
    }
    return {{"present", kvm.present},
            {"absence", kvm.absence ? json(to_string(*kvm.absence)) : json(nullptr)},
            {"absence_detail", kvm.absence_detail},
            {"api_version", number(kvm.api_version)},
            {"recommended_vcpus", number(kvm.recommended_vcpus)},
            {"max_vcpus", number(kvm.max_vcpus)},
            {"capabilities", capabilities},
            {"required_capabilities_met", kvm.present ? json(kvm.required_capabilities_met) : json(nullptr)},
            {"dirty_ring_max_bytes", number(kvm.dirty_ring_max_bytes)},
            {"dirty_ring_acquire_release_max_bytes", number(kvm.dirty_ring_acquire_release_max_bytes)},
            {"supported_cpuid", leaves},
            {"guest_features", kvm.guest_features}};
}

json memory(const Memory& memory) {
    return {{"total_bytes", optional_value(memory.total_bytes)},
            {"available_bytes", optional_value(memory.available_bytes)},
            {"hugepages", hugepages(memory.hugepages)},
            {"ksm",
             {{"available", memory.ksm.available},
              {"run", optional_value(memory.ksm.run)},
              {"pages_shared", optional_value(memory.ksm.pages_shared)},
              {"pages_sharing", optional_value(memory.ksm.pages_sharing)}}},
            {"overcommit",
             {{"policy", optional_value(memory.overcommit.policy)},
              {"ratio_percent", optional_value(memory.overcommit.ratio_percent)},
              {"kbytes", optional_value(memory.overcommit.kbytes)}}}};
}

json numa_nodes(const std::vector<NumaNode>& nodes) {
    json list = json::array();
    for (const NumaNode& node : nodes) {
        list.push_back({{"id", node.id},
                        {"cpus", node.cpus},
                        {"memory_total_bytes", optional_value(node.memory_total_bytes)},
                        {"memory_free_bytes", optional_value(node.memory_free_bytes)},
                        {"distances", node.distances},
                        {"hugepages", hugepages(node.hugepages)}});
    }
    return list;
}

json disks(const std::vector<Disk>& disks) {
    json list = json::array();
    for (const Disk& disk : disks) {
        list.push_back({{"name", disk.name},
                        {"size_bytes", optional_value(disk.size_bytes)},
                        {"logical_block_size", optional_value(disk.logical_block_size)},
                        {"physical_block_size", optional_value(disk.physical_block_size)},
                        {"rotational", optional_value(disk.rotational)},
                        {"model", disk.model}});
    }
    return list;
}

json state_directory(const std::optional<StateDirectory>& state) {
    if (!state) {
        return nullptr;
    }
    return {{"path", state->path},
            {"total_bytes", optional_value(state->total_bytes)},
            {"free_bytes", optional_value(state->free_bytes)}};
}

json nics(const std::vector<Nic>& nics) {
    json list = json::array();
    for (const Nic& nic : nics) {
        list.push_back({{"name", nic.name},
                        {"index", nic.index},
                        {"kind", nic.kind},
                        {"master", nic.master},
                        {"mtu", nic.mtu},
                        {"mac", nic.mac},
                        {"up", nic.up},
                        {"operational_state", nic.operational_state},
                        {"vlan_id", optional_value(nic.vlan_id)},
                        {"parent", nic.parent},
                        {"speed_mbps", optional_value(nic.speed_mbps)}});
    }
    return list;
}

json pci_devices(const std::vector<PciDevice>& devices) {
    json list = json::array();
    for (const PciDevice& device : devices) {
        list.push_back({{"address", device.address},
                        {"class", optional_value(device.class_code)},
                        {"vendor", optional_value(device.vendor)},
                        {"device", optional_value(device.device)},
                        {"iommu_group", optional_value(device.iommu_group)},
                        {"driver", device.driver}});
    }
    return list;
}

}  // namespace

std::string_view to_string(KvmAbsence absence) {
    switch (absence) {
    case KvmAbsence::no_device:
        return "no_device";
    case KvmAbsence::permission_denied:
        return "permission_denied";
    case KvmAbsence::module_not_loaded:
        return "module_not_loaded";
    case KvmAbsence::unusable:
        return "unusable";
    }
    return "unusable";
}

nlohmann::json to_json(const Inventory& inventory) {
    json warnings = json::array();
    for (const Warning& warning : inventory.warnings) {
        warnings.push_back({{"file", warning.file}, {"problem", warning.problem}});
    }
    return {{"schema_version", inventory.schema_version},
            {"hostname", inventory.hostname},
            {"kernel",
             {{"release", inventory.kernel.release},
              {"io_uring", facility(inventory.kernel.io_uring)},
              {"userfaultfd", facility(inventory.kernel.userfaultfd)},
              {"vhost_net", facility(inventory.kernel.vhost_net)}}},
            {"cpu", cpu(inventory.cpu)},
            {"kvm", kvm(inventory.kvm)},
            {"memory", memory(inventory.memory)},
            {"numa_nodes", numa_nodes(inventory.numa_nodes)},
            {"disks", disks(inventory.disks)},
            {"state_directory", state_directory(inventory.state_directory)},
            {"nics", nics(inventory.nics)},
            {"pci_devices", pci_devices(inventory.pci_devices)},
            {"warnings", warnings}};
}

}  // namespace vim::hwprobe
