#include "sections.h"

namespace vim::hwprobe::detail {
namespace {

std::optional<std::uint32_t> read_id(HostFiles& files, const std::filesystem::path& file, std::uint64_t max) {
    const auto value = files.read_unsigned(file, Need::required);
    if (value && *value > max) {
        files.warn(file, "out of range: " + std::to_string(*value));
        return std::nullopt;
    }
    return value ? std::optional<std::uint32_t>(static_cast<std::uint32_t>(*value)) : std::nullopt;
}

}  // namespace

std::vector<PciDevice> probe_pci(HostFiles& files) {
    std::vector<PciDevice> devices;
    const std::filesystem::path root = files.sys("bus/pci/devices");
    // A host without PCI (some microVMs) has no such directory.
    for (const std::string& address : files.list(root, Need::optional)) {
        const std::filesystem::path directory = root / address;
        PciDevice device;
        device.address = address;
        device.class_code = read_id(files, directory / "class", 0xffffff);
        device.vendor = read_id(files, directory / "vendor", 0xffff);
        device.device = read_id(files, directory / "device", 0xffff);
        // Without an IOMMU (or with it off) there are no groups.
        if (const auto group = files.read_link_name(directory / "iommu_group", Need::optional)) {
            const auto number = parse_unsigned(*group);
            if (number && *number <= UINT32_MAX) {
                device.iommu_group = static_cast<std::uint32_t>(*number);
            } else {
                files.warn(directory / "iommu_group",
                           "links to " + quoted_excerpt(*group) + ", not a group number");
            }
        }
        device.driver = files.read_link_name(directory / "driver", Need::optional).value_or("");
        devices.push_back(std::move(device));
    }
    return devices;
}

}  // namespace vim::hwprobe::detail
