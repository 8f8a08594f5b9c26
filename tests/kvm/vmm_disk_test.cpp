// Disks and the entropy device as a guest sees them: Debian's kernel with its
// own virtio_pci, virtio_blk and virtio-rng drivers, checked through the
// bytes in the host's image files and what the guest prints.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vmm_fixture.h"
#include "vmm_process.h"

namespace {

using namespace vim::testing;
using nlohmann::json;

constexpr std::uint64_t kMiB = 1ull << 20;

// What `command` printed on the host, or "" if it failed.
std::string host_output(const std::string& command) {
    HostResult result = run_on_host(command);
    return result.status == 0 ? result.output : "";
}

std::string host_sha256(const std::string& path) { return host_output("sha256sum " + path).substr(0, 64); }

std::vector<char> read_file(const std::string& path, std::size_t length) {
    std::vector<char> bytes(length);
    std::ifstream file(path, std::ios::binary);
    file.read(bytes.data(), static_cast<std::streamsize>(length));
    bytes.resize(static_cast<std::size_t>(file.gcount()));
    return bytes;
}

// A file of `size` bytes: zeros (sparse), or a pattern that differs at every
// offset a guest could confuse with another.
void make_image(const std::string& path, std::uint64_t size, bool pattern) {
    std::ofstream file(path, std::ios::binary | std::ios::trunc);
    if (pattern) {
        std::vector<char> block(kMiB);
        for (std::uint64_t offset = 0; offset < size; offset += block.size()) {
            for (std::size_t i = 0; i < block.size(); ++i) {
                block[i] = static_cast<char>(((offset + i) * 7 + (offset + i) / 4096) % 251);
            }
            file.write(block.data(), static_cast<std::streamsize>(block.size()));
        }
    }
    file.close();
    std::filesystem::resize_file(path, size);
}

class VmmDisks : public VmmBoot {
protected:
    // The 64 hex digits the guest printed after `key=` (not the typed
    // command's echo, which has a format there).
    static std::string printed_hash(const std::string& output, const std::string& key) {
        const std::string marker = key + "=";
        for (auto at = output.find(marker); at != std::string::npos; at = output.find(marker, at + 1)) {
            std::string hash = output.substr(at + marker.size(), 64);
            if (hash.size() == 64 && hash.find_first_not_of("0123456789abcdef") == std::string::npos) {
                return hash;
            }
        }
        return "";
    }

    std::vector<std::string> disk_arguments(const std::string& mode, const std::vector<std::string>& disks,
                                            const std::string& extra_cmdline = "") {
        auto arguments = boot_arguments(mode, 2, "256M");
        arguments.back() += extra_cmdline;
        for (const std::string& disk : disks) {
            arguments.insert(arguments.end(), {"--disk", disk});
        }
        arguments.insert(arguments.end(), {"--api-socket", socket_path()});
        return arguments;
    }
};

// One guest for what a user does with disks, to boot once: the devices show
// up, bytes go both ways, a filesystem made in the guest is clean on the
// host, a read-only disk stays untouched, and /dev/hwrng works.
TEST_F(VmmDisks, GuestUsesItsDisksAndEntropyDevice) {
    const std::string scratch = directory_ + "/scratch.raw", pattern = directory_ + "/pattern.raw",
                      readonly = directory_ + "/readonly.raw";
    make_image(scratch, 64 * kMiB, false);
    make_image(pattern, 4 * kMiB, true);
    make_image(readonly, 1 * kMiB, true);
    const std::string pattern_sum = host_sha256(pattern), readonly_sum = host_sha256(readonly);
    ASSERT_EQ(pattern_sum.size(), 64u);

    VmmProcess vmm(
        disk_arguments("shell", {"path=" + scratch, "path=" + pattern, "path=" + readonly + ",readonly=on"}),
        VmmProcess::Input::Pipe);
    ASSERT_TRUE(vmm.wait_for_line("VIM-GUEST-SHELL", kBootTimeout)) << vmm.console() << vmm.errors();

    // The three disks, with their sizes in 512-byte sectors and the read-only flag.
    auto sizes = run_in_guest(
        vmm, "printf 'disk=%s:%s:%s\\n' vda $(cat /sys/block/vda/size) $(cat /sys/block/vda/ro);"
             "printf 'disk=%s:%s:%s\\n' vdb $(cat /sys/block/vdb/size) $(cat /sys/block/vdb/ro);"
             "printf 'disk=%s:%s:%s\\n' vdc $(cat /sys/block/vdc/size) $(cat /sys/block/vdc/ro)");
    EXPECT_NE(sizes.output.find("disk=vda:131072:0"), std::string::npos) << sizes.output;
    EXPECT_NE(sizes.output.find("disk=vdb:8192:0"), std::string::npos) << sizes.output;
    EXPECT_NE(sizes.output.find("disk=vdc:2048:1"), std::string::npos) << sizes.output;

    // A host-made pattern read in the guest.
    auto read = run_in_guest(vmm, "printf 'sum=%s\\n' $(sha256sum /dev/vdb | cut -d' ' -f1)");
    EXPECT_EQ(printed_hash(read.output, "sum"), pattern_sum) << read.output;

    // A guest-made pattern lands in the host's file (conv=fsync: a FLUSH too).
    auto write =
        run_in_guest(vmm, "yes VIM-DISK-PATTERN | head -c 1048576 | dd of=/dev/vda bs=65536 conv=fsync");
    EXPECT_EQ(write.status, 0) << write.output;
    std::string expected;
    while (expected.size() < kMiB) {
        expected += "VIM-DISK-PATTERN\n";
    }
    expected.resize(kMiB);
    auto written = read_file(scratch, kMiB);
    EXPECT_TRUE(std::string(written.begin(), written.end()) == expected)
        << "the host file lacks the guest's pattern";

    // A read-only disk cannot be written, and its file is unchanged.
    auto refused = run_in_guest(vmm, "dd if=/dev/zero of=/dev/vdc bs=4096 count=1 conv=fsync");
    EXPECT_NE(refused.status, 0) << refused.output;

    // A filesystem made and written in the guest, checked on the host later.
    auto filesystem =
        run_in_guest(vmm,
                     "mkfs.ext4 -q -F /dev/vda && mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && "
                     "echo hello-from-the-guest > /mnt/hello.txt && umount /mnt",
                     180s);
    EXPECT_EQ(filesystem.status, 0) << filesystem.output;

    // The entropy device is the guest's hardware RNG, and it gives bytes.
    auto rng = run_in_guest(vmm, "printf 'rng=%s random=%s\\n' $(cat /sys/class/misc/hw_random/rng_current) "
                                 "$(dd if=/dev/hwrng bs=32 count=1 2>/dev/null | sha256sum | cut -d' ' -f1)");
    EXPECT_NE(rng.output.find("rng=virtio_rng.0 "), std::string::npos) << rng.output;
    EXPECT_EQ(printed_hash(rng.output, "random").size(), 64u) << rng.output;
    // sha256 of 32 zero bytes: what a device that gives nothing would yield.
    EXPECT_NE(printed_hash(rng.output, "random"),
              "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925");

    // The control socket counts each disk's work.
    json stats = command(vmm, "stats");
    const json& vda = stats["devices"]["virtio-blk0"];
    EXPECT_GT(vda["requests"]["write"].get<long>(), 0) << stats.dump();
    EXPECT_GE(vda["bytes_written"].get<long>(), static_cast<long>(kMiB)) << stats.dump();
    EXPECT_GT(stats["devices"]["virtio-blk1"]["bytes_read"].get<long>(), 0) << stats.dump();
    EXPECT_GT(stats["devices"]["virtio-rng0"]["bytes"].get<long>(), 0) << stats.dump();

    vmm.type("poweroff -f\n");
    EXPECT_EQ(vmm.wait_exit(60s), 0) << vmm.errors();

    EXPECT_EQ(host_sha256(readonly), readonly_sum) << "the read-only disk was written";
    EXPECT_NE(host_output("e2fsck -fn " + scratch + " 2>&1; echo e2fsck-status=$?").find("e2fsck-status=0"),
              std::string::npos)
        << host_output("e2fsck -fn " + scratch + " 2>&1");
    EXPECT_EQ(host_output("debugfs -R 'cat /hello.txt' " + scratch + " 2>/dev/null"),
              "hello-from-the-guest\n");
}

// Without MSI-X (pci=nomsi) the disk interrupts through INTx: routed by the
// DSDT's _PRT with ACPI, by the MP table with acpi=off (where Linux finds PCI
// through configuration mechanism #1 alone).
class VmmDisksOnIntx : public VmmDisks, public ::testing::WithParamInterface<const char*> {};

TEST_P(VmmDisksOnIntx, GuestReadsItsDisk) {
    const std::string pattern = directory_ + "/pattern.raw";
    make_image(pattern, 4 * kMiB, true);
    VmmProcess vmm(
        disk_arguments("shell", {"path=" + pattern + ",readonly=on"}, std::string(" ") + GetParam()),
        VmmProcess::Input::Pipe);
    ASSERT_TRUE(vmm.wait_for_line("VIM-GUEST-SHELL", kBootTimeout)) << vmm.console() << vmm.errors();
    auto read = run_in_guest(vmm, "printf 'sum=%s\\n' $(sha256sum /dev/vda | cut -d' ' -f1)");
    EXPECT_EQ(printed_hash(read.output, "sum"), host_sha256(pattern)) << read.output;
    json stats = command(vmm, "stats");
    EXPECT_EQ(stats["devices"]["virtio-blk0"]["msix_enabled"], false) << stats.dump();
    EXPECT_GT(stats["devices"]["virtio-blk0"]["interrupts"].get<long>(), 0) << stats.dump();
    // Without ACPI Linux cannot power off; a reboot (reboot=k: through the i8042) ends the VM.
    vmm.type("reboot -f\n");
    EXPECT_EQ(vmm.wait_exit(60s), 0) << vmm.errors() << "\nconsole:\n" << vmm.console();
}

INSTANTIATE_TEST_SUITE_P(Routing, VmmDisksOnIntx, ::testing::Values("pci=nomsi", "acpi=off pci=nomsi"),
                         [](const auto& info) { return info.index == 0 ? "AcpiPrt" : "MpTable"; });

// The host's filesystem is full: the guest's writes fail with I/O errors,
// the vmm goes on serving, and nothing it could write is lost silently.
TEST_F(VmmDisks, FullHostFilesystemGivesTheGuestIoErrors) {
    const std::string full = directory_ + "/full";
    std::filesystem::create_directory(full);
    if (::mount("tmpfs", full.c_str(), "tmpfs", 0, "size=2m") != 0) {
        GTEST_SKIP() << "cannot mount a tmpfs here (not root?)";
    }
    const std::string image = full + "/disk.raw";
    make_image(image, 64 * kMiB, false);  // sparse: far more than the 2 MiB behind it

    VmmProcess vmm(disk_arguments("shell", {"path=" + image}), VmmProcess::Input::Pipe);
    ASSERT_TRUE(vmm.wait_for_line("VIM-GUEST-SHELL", kBootTimeout)) << vmm.console() << vmm.errors();
    auto write = run_in_guest(vmm, "dd if=/dev/zero of=/dev/vda bs=1048576 count=16 conv=fsync");
    EXPECT_NE(write.status, 0) << write.output;
    json status = command(vmm, "status");
    EXPECT_EQ(status["state"], "running");
    json stats = command(vmm, "stats");
    EXPECT_GT(stats["devices"]["virtio-blk0"]["errors"].get<long>(), 0) << stats.dump();
    // And the guest can still read its disk.
    auto read = run_in_guest(vmm, "dd if=/dev/vda of=/dev/null bs=65536 count=16 iflag=direct");
    EXPECT_EQ(read.status, 0) << read.output;
    vmm.type("poweroff -f\n");
    EXPECT_EQ(vmm.wait_exit(60s), 0) << vmm.errors();
    ::umount(full.c_str());
}

TEST_F(VmmConfiguration, DiskProblems) {
    const std::string odd = directory_ + "/odd.raw", good = directory_ + "/good.raw";
    make_image(odd, 1000, false);
    make_image(good, kMiB, false);
    expect_refused(with({"--disk", "path=" + directory_ + "/missing.raw"}),
                   "disk " + directory_ + "/missing.raw: open: No such file or directory");
    expect_refused(with({"--disk", "path=" + directory_}), "disk " + directory_ + ": is a directory");
    expect_refused(with({"--disk", "path=" + odd}), "disk " + odd + ": size 1000 is not a multiple of 512");
    expect_refused(with({"--disk", "path=" + good + ",cache=none"}),
                   "--disk path=" + good + ",cache=none: unknown option 'cache=none'");
    // Another vmm (here, the test) holds the disk.
    vim::vmm::sys::Fd holder(::open(good.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_EQ(::flock(holder.get(), LOCK_EX | LOCK_NB), 0);
    expect_refused(with({"--disk", "path=" + good}), "disk " + good + ": in use by another process (locked)");
}

}  // namespace
