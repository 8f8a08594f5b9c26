#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>

#include "sections.h"

namespace vim::hwprobe::detail {
namespace {

constexpr std::uint64_t kSectorBytes =
    512;  // /sys/block/*/size counts 512-byte sectors whatever the device's

// Unattached loop devices and unconfigured RAM disks exist on most hosts and hold nothing.
bool is_unused_placeholder(const std::string& name, const std::optional<std::uint64_t>& sectors) {
    const bool placeholder_kind =
        name.starts_with("loop") || name.starts_with("ram") || name.starts_with("zram");
    return placeholder_kind && sectors == 0u;
}

}  // namespace

std::vector<Disk> probe_disks(HostFiles& files) {
    std::vector<Disk> disks;
    const std::filesystem::path root = files.sys("block");
    for (const std::string& name : files.list(root, Need::required)) {
        const std::filesystem::path directory = root / name;
        const auto sectors = files.read_unsigned(directory / "size", Need::required);
        if (is_unused_placeholder(name, sectors)) {
            continue;
        }
        Disk disk;
        disk.name = name;
        if (sectors && *sectors <= UINT64_MAX / kSectorBytes) {
            disk.size_bytes = *sectors * kSectorBytes;
        } else if (sectors) {
            files.warn(directory / "size", "more sectors than 64 bits of bytes hold");
        }
        disk.logical_block_size = files.read_unsigned(directory / "queue/logical_block_size", Need::required);
        disk.physical_block_size =
            files.read_unsigned(directory / "queue/physical_block_size", Need::required);
        if (const auto rotational = files.read_unsigned(directory / "queue/rotational", Need::required)) {
            if (*rotational <= 1) {
                disk.rotational = *rotational == 1;
            } else {
                files.warn(directory / "queue/rotational", "not 0 or 1: " + std::to_string(*rotational));
            }
        }
        // virtio, device-mapper and md devices have no model.
        if (const auto model = files.read(directory / "device/model", Need::optional)) {
            disk.model = trim(*model);
        }
        disks.push_back(std::move(disk));
    }
    return disks;
}

std::optional<StateDirectory> probe_state_directory(HostFiles& files,
                                                    const std::optional<std::filesystem::path>& directory) {
    if (!directory) {
        return std::nullopt;
    }
    StateDirectory state;
    state.path = directory->string();
    struct statvfs filesystem {};
    if (::statvfs(directory->c_str(), &filesystem) != 0) {
        files.warn(*directory, std::string("statvfs: ") + std::strerror(errno));
        return state;
    }
    state.total_bytes = std::uint64_t{filesystem.f_blocks} * filesystem.f_frsize;
    state.free_bytes = std::uint64_t{filesystem.f_bavail} * filesystem.f_frsize;
    return state;
}

}  // namespace vim::hwprobe::detail
