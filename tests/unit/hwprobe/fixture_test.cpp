#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "fixture_tree.h"
#include "hwprobe/probe.h"

namespace vim::hwprobe {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using testing::FixtureTree;

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;
constexpr std::uint64_t kGiB = 1024 * kMiB;

std::string describe(const std::vector<Warning>& warnings) {
    std::string text;
    for (const Warning& warning : warnings) {
        text += warning.file + ": " + warning.problem + "\n";
    }
    return text;
}

const Disk* find_disk(const Inventory& inventory, const std::string& name) {
    auto found = std::find_if(inventory.disks.begin(), inventory.disks.end(),
                              [&](const Disk& disk) { return disk.name == name; });
    return found == inventory.disks.end() ? nullptr : &*found;
}

class NumaTwoSocket : public ::testing::Test {
protected:
    FixtureTree tree{"numa-2socket"};
    Inventory inventory = probe(tree.options());
};

TEST_F(NumaTwoSocket, ACompleteHostGivesNoWarnings) {
    EXPECT_THAT(inventory.warnings, IsEmpty()) << describe(inventory.warnings);
    EXPECT_EQ(inventory.schema_version, 1);
    EXPECT_EQ(inventory.hostname, "numa-host");
    EXPECT_EQ(inventory.kernel.release, "6.1.0-26-amd64");
}

TEST_F(NumaTwoSocket, CountsSocketsCoresAndThreadsOfTheOnlineCpus) {
    EXPECT_EQ(inventory.cpu.sockets, 2u);
    EXPECT_EQ(inventory.cpu.cores, 8u);
    EXPECT_EQ(inventory.cpu.threads, 16u);
    EXPECT_EQ(inventory.cpu.online.size(), 16u);
    EXPECT_EQ(inventory.cpu.online.back(), 15u);
}

TEST_F(NumaTwoSocket, CountsOnlyOnlineCpus) {
    tree.write("sys/devices/system/cpu/online", "0-3,8-11\n");  // socket 1 offline
    const Inventory partial = probe(tree.options());
    EXPECT_EQ(partial.cpu.sockets, 1u);
    EXPECT_EQ(partial.cpu.cores, 4u);
    EXPECT_EQ(partial.cpu.threads, 8u);
}

TEST_F(NumaTwoSocket, ReadsTheCpuFromCpuid) {
    const Cpu& cpu = inventory.cpu;
    EXPECT_EQ(cpu.vendor, "GenuineIntel");
    EXPECT_EQ(cpu.family, 6u);
    EXPECT_EQ(cpu.model, 106u);
    EXPECT_EQ(cpu.stepping, 6u);
    EXPECT_EQ(cpu.model_name, "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz");
    EXPECT_THAT(cpu.features, ElementsAre("aes", "avx", "avx2", "avx512bw", "avx512dq", "avx512f", "avx512vl",
                                          "invtsc", "rdrand", "rdseed", "vmx", "x2apic"));
    EXPECT_EQ(cpu.hypervisor, "");
    EXPECT_EQ(cpu.tsc.hz, 2000000000u);
    EXPECT_EQ(cpu.tsc.source, "cpuid 0x15");
    EXPECT_TRUE(cpu.tsc.invariant);
}

TEST_F(NumaTwoSocket, TakesIntelNestedPagingFromCpuinfo) {
    EXPECT_EQ(inventory.cpu.nested_paging, true);
    EXPECT_EQ(inventory.cpu.nested_paging_source, "cpuinfo");

    tree.write("proc/cpuinfo", "processor\t: 0\nflags\t\t: fpu vmx\nvmx flags\t: vnmi\n\n");
    const Inventory without_ept = probe(tree.options());
    EXPECT_EQ(without_ept.cpu.nested_paging, false);
}

TEST_F(NumaTwoSocket, ReadsMemoryHugepagesKsmAndOvercommit) {
    const Memory& memory = inventory.memory;
    EXPECT_EQ(memory.total_bytes, 131072000 * kKiB);
    EXPECT_EQ(memory.available_bytes, 110000000 * kKiB);
    ASSERT_EQ(memory.hugepages.size(), 2u);
    EXPECT_EQ(memory.hugepages[0].page_size_bytes, 2 * kMiB);
    EXPECT_EQ(memory.hugepages[0].total, 1024u);
    EXPECT_EQ(memory.hugepages[0].free, 768u);
    EXPECT_EQ(memory.hugepages[1].page_size_bytes, kGiB);
    EXPECT_EQ(memory.hugepages[1].total, 8u);
    EXPECT_EQ(memory.hugepages[1].free, 6u);
    EXPECT_TRUE(memory.ksm.available);
    EXPECT_EQ(memory.ksm.run, 1u);
    EXPECT_EQ(memory.ksm.pages_shared, 1200u);
    EXPECT_EQ(memory.ksm.pages_sharing, 45000u);
    EXPECT_EQ(memory.overcommit.policy, 0u);
    EXPECT_EQ(memory.overcommit.ratio_percent, 50u);
    EXPECT_EQ(memory.overcommit.kbytes, 0u);
}

TEST_F(NumaTwoSocket, ReadsNodesWithTheirCpusMemoryDistancesAndHugepages) {
    ASSERT_EQ(inventory.numa_nodes.size(), 2u);
    const NumaNode& node1 = inventory.numa_nodes[1];
    EXPECT_EQ(node1.id, 1u);
    EXPECT_THAT(node1.cpus, ElementsAre(4, 5, 6, 7, 12, 13, 14, 15));
    EXPECT_EQ(node1.memory_total_bytes, 67108864 * kKiB);
    EXPECT_EQ(node1.memory_free_bytes, 60000000 * kKiB);
    EXPECT_THAT(node1.distances, ElementsAre(21, 10));
    ASSERT_EQ(node1.hugepages.size(), 2u);
    EXPECT_EQ(node1.hugepages[1].page_size_bytes, kGiB);
    EXPECT_EQ(node1.hugepages[1].free, 2u);
    EXPECT_THAT(inventory.numa_nodes[0].cpus, ElementsAre(0, 1, 2, 3, 8, 9, 10, 11));
}

TEST_F(NumaTwoSocket, ReadsDisksAndLeavesOutUnusedLoopDevices) {
    EXPECT_EQ(find_disk(inventory, "loop0"), nullptr);
    ASSERT_EQ(inventory.disks.size(), 3u);
    const Disk* nvme = find_disk(inventory, "nvme0n1");
    ASSERT_NE(nvme, nullptr);
    EXPECT_EQ(nvme->size_bytes, 7501476528u * 512);
    EXPECT_EQ(nvme->logical_block_size, 512u);
    EXPECT_EQ(nvme->physical_block_size, 4096u);
    EXPECT_EQ(nvme->rotational, false);
    EXPECT_EQ(nvme->model, "SAMSUNG MZQL23T8HCLS-00A07");
    EXPECT_EQ(find_disk(inventory, "sda")->rotational, true);
    EXPECT_EQ(find_disk(inventory, "md0")->model, "");
}

TEST_F(NumaTwoSocket, ReadsPciDevicesWithIommuGroupsAndDrivers) {
    ASSERT_EQ(inventory.pci_devices.size(), 5u);
    const PciDevice& nic = inventory.pci_devices[1];
    EXPECT_EQ(nic.address, "0000:17:00.0");
    EXPECT_EQ(nic.class_code, 0x020000u);
    EXPECT_EQ(nic.vendor, 0x8086u);
    EXPECT_EQ(nic.device, 0x1593u);
    EXPECT_EQ(nic.iommu_group, 21u);
    EXPECT_EQ(nic.driver, "ice");
    EXPECT_EQ(inventory.pci_devices[2].iommu_group, 21u);  // the NIC's second function shares the group
    EXPECT_EQ(inventory.pci_devices[4].driver, "vfio-pci");
    EXPECT_EQ(inventory.pci_devices[0].driver, "");
}

TEST_F(NumaTwoSocket, HasNoIommuGroupsWithoutAnIommu) {
    for (const char* address :
         {"0000:00:00.0", "0000:17:00.0", "0000:17:00.1", "0000:3b:00.0", "0000:af:00.0"}) {
        tree.remove(std::string("sys/bus/pci/devices/") + address + "/iommu_group");
    }
    const Inventory without = probe(tree.options());
    EXPECT_THAT(without.warnings, IsEmpty()) << describe(without.warnings);
    EXPECT_EQ(without.pci_devices[1].iommu_group, std::nullopt);
}

TEST_F(NumaTwoSocket, ReportsKvmAbsentBecauseNoModuleIsLoaded) {
    EXPECT_FALSE(inventory.kvm.present);
    EXPECT_EQ(inventory.kvm.absence, KvmAbsence::module_not_loaded);
    EXPECT_EQ(inventory.kvm.absence_detail,
              "open " + tree.path("dev/kvm").string() + ": No such file or directory");
    EXPECT_THAT(inventory.kvm.capabilities, IsEmpty());
}

TEST_F(NumaTwoSocket, ReportsKvmAbsentForWantOfTheDeviceWhenTheModuleIsLoaded) {
    tree.write("sys/module/kvm_intel/parameters/nested", "Y\n");
    const Inventory with_module = probe(tree.options());
    EXPECT_EQ(with_module.kvm.absence, KvmAbsence::no_device);
}

TEST_F(NumaTwoSocket, ReportsKvmAbsentForWantOfPermission) {
    if (::geteuid() != 0) {
        GTEST_SKIP() << "needs root to probe as another user";
    }
    tree.write("dev/kvm", "");
    std::filesystem::permissions(tree.root(), std::filesystem::perms::owner_all |
                                                  std::filesystem::perms::others_read |
                                                  std::filesystem::perms::others_exec);
    std::filesystem::permissions(tree.path("dev/kvm"),
                                 std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    const ProbeOptions options = tree.options();
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        // As nobody, who may read the fixture but not open its /dev/kvm.
        if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) {
            ::_exit(100);
        }
        const Inventory as_nobody = probe(options);
        const bool denied = as_nobody.kvm.absence == KvmAbsence::permission_denied &&
                            as_nobody.kvm.absence_detail ==
                                "open " + (options.dev_root / "kvm").string() + ": Permission denied";
        ::_exit(denied ? 0 : 101);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0)
        << "100: could not become nobody, 101: not reported as permission_denied";
}

TEST_F(NumaTwoSocket, ReportsAFileThatIsNotKvmAsUnusable) {
    tree.write("dev/kvm", "");
    const Inventory with_file = probe(tree.options());
    EXPECT_FALSE(with_file.kvm.present);
    EXPECT_EQ(with_file.kvm.absence, KvmAbsence::unusable);
    EXPECT_EQ(with_file.kvm.absence_detail, "KVM_GET_API_VERSION: Inappropriate ioctl for device");
}

TEST_F(NumaTwoSocket, ReportsVhostNetUnusableWithoutTheDevice) {
    EXPECT_FALSE(inventory.kernel.vhost_net.usable);
    EXPECT_EQ(inventory.kernel.vhost_net.detail,
              "open " + tree.path("dev/vhost-net").string() + ": No such file or directory");
}

TEST_F(NumaTwoSocket, ReportsIoUringDisabledBySysctl) {
    tree.write("proc/sys/kernel/io_uring_disabled", "2\n");
    const Inventory disabled = probe(tree.options());
    EXPECT_FALSE(disabled.kernel.io_uring.usable);
    EXPECT_EQ(disabled.kernel.io_uring.detail, "disabled by kernel.io_uring_disabled = 2");
}

TEST_F(NumaTwoSocket, ReportsTheStateDirectorysFreeSpace) {
    ProbeOptions options = tree.options();
    options.state_directory = tree.root();
    const Inventory with_state = probe(options);
    ASSERT_TRUE(with_state.state_directory);
    EXPECT_EQ(with_state.state_directory->path, tree.root().string());
    ASSERT_TRUE(with_state.state_directory->total_bytes && with_state.state_directory->free_bytes);
    EXPECT_GT(*with_state.state_directory->total_bytes, 0u);
    EXPECT_LE(*with_state.state_directory->free_bytes, *with_state.state_directory->total_bytes);
    EXPECT_FALSE(inventory.state_directory);  // not asked for
}

TEST_F(NumaTwoSocket, WarnsAboutAMissingStateDirectory) {
    ProbeOptions options = tree.options();
    options.state_directory = tree.path("no-such-dir");
    const Inventory missing = probe(options);
    ASSERT_TRUE(missing.state_directory);
    EXPECT_EQ(missing.state_directory->free_bytes, std::nullopt);
    ASSERT_EQ(missing.warnings.size(), 1u);
    EXPECT_EQ(missing.warnings[0].file, tree.path("no-such-dir").string());
    EXPECT_EQ(missing.warnings[0].problem, "statvfs: No such file or directory");
}

TEST(CpuidDecoding, ReadsAmdSvmNestedPagingAndIgnoresItsLeaf16) {
    FixtureTree tree("numa-2socket");
    const Inventory inventory = probe(tree.options(testing::epyc_7763()));
    EXPECT_EQ(inventory.cpu.vendor, "AuthenticAMD");
    EXPECT_EQ(inventory.cpu.family, 25u);  // 0xf + extended family 0xa
    EXPECT_EQ(inventory.cpu.model, 1u);
    EXPECT_EQ(inventory.cpu.stepping, 1u);
    EXPECT_EQ(inventory.cpu.model_name, "AMD EPYC 7763 64-Core Processor");
    EXPECT_THAT(inventory.cpu.features, ElementsAre("npt", "svm"));
    EXPECT_EQ(inventory.cpu.nested_paging, true);
    EXPECT_EQ(inventory.cpu.nested_paging_source, "cpuid 0x8000000a");
    EXPECT_EQ(inventory.cpu.tsc.source, "cpuinfo");  // the fixture's "cpu MHz: 2000.000"
    EXPECT_EQ(inventory.cpu.tsc.hz, 2000000000u);
    EXPECT_FALSE(inventory.cpu.tsc.invariant);
}

TEST(CpuidDecoding, TakesTheTscFromTheHypervisorsTimingLeafInAVm) {
    FixtureTree tree("numa-2socket");
    testing::FakeCpuid cpu = testing::epyc_7763();
    cpu.set_bit(0x1, 0, testing::Register::ecx, 31);                           // running under a hypervisor
    cpu.set(0x40000000, 0, {0x40000010, 0x4b4d564b, 0x564b4d56, 0x0000004d});  // "KVMKVMKVM"
    cpu.set(0x40000010, 0, {2450000, 0, 0, 0});                                // kHz
    const Inventory inventory = probe(tree.options(cpu));
    EXPECT_EQ(inventory.cpu.hypervisor, "KVMKVMKVM");
    EXPECT_EQ(inventory.cpu.tsc.hz, 2450000000u);
    EXPECT_EQ(inventory.cpu.tsc.source, "cpuid 0x40000010");
}

TEST(CpuidDecoding, ReadsNoHypervisorLeavesWithoutTheHypervisorBit) {
    FixtureTree tree("numa-2socket");
    testing::FakeCpuid cpu = testing::epyc_7763();
    cpu.set(0x40000000, 0, {0x40000010, 0x4b4d564b, 0x564b4d56, 0x0000004d});
    cpu.set(0x40000010, 0, {2450000, 0, 0, 0});
    const Inventory inventory = probe(tree.options(cpu));
    EXPECT_EQ(inventory.cpu.hypervisor, "");
    EXPECT_EQ(inventory.cpu.tsc.source, "cpuinfo");
}

TEST(CpuidDecoding, SaysNoNestedPagingWithoutVmxOrSvm) {
    FixtureTree tree("numa-2socket");
    testing::FakeCpuid cpu;
    cpu.set_vendor("GenuineIntel");
    cpu.set(0x1, 0, {0x000906ea, 0, 0, 0});
    const Inventory inventory = probe(tree.options(cpu));
    EXPECT_EQ(inventory.cpu.family, 6u);
    EXPECT_EQ(inventory.cpu.model, 0x9eu);
    EXPECT_EQ(inventory.cpu.model_name, "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz");  // from /proc/cpuinfo
    EXPECT_EQ(inventory.cpu.nested_paging, false);
    EXPECT_EQ(inventory.cpu.nested_paging_source, "no vmx or svm");
}

TEST(ThisMachine, ReplaysTheCapturedHostWithoutWarnings) {
    FixtureTree tree("this-machine");
    const Inventory inventory = probe(tree.options());
    EXPECT_THAT(inventory.warnings, IsEmpty()) << describe(inventory.warnings);
    EXPECT_EQ(inventory.hostname, "vm");
    EXPECT_EQ(inventory.kernel.release, "6.18.44-fc-v1147");
    EXPECT_EQ(inventory.cpu.sockets, 1u);
    EXPECT_EQ(inventory.cpu.cores, 2u);
    EXPECT_EQ(inventory.cpu.threads, 2u);
    ASSERT_EQ(inventory.numa_nodes.size(), 1u);
    EXPECT_THAT(inventory.numa_nodes[0].cpus, ElementsAre(0, 1));
    EXPECT_THAT(inventory.numa_nodes[0].distances, ElementsAre(10));
    ASSERT_EQ(inventory.memory.hugepages.size(), 1u);
    EXPECT_EQ(inventory.memory.hugepages[0].page_size_bytes, 2 * kMiB);
    ASSERT_EQ(inventory.disks.size(), 1u);  // loops and zram unused
    EXPECT_EQ(inventory.disks[0].name, "vda");
    EXPECT_EQ(inventory.disks[0].size_bytes, 256 * kGiB);
    EXPECT_EQ(inventory.pci_devices.size(), 6u);
    EXPECT_EQ(inventory.pci_devices[1].driver, "virtio-pci");
    EXPECT_EQ(inventory.pci_devices[1].vendor, 0x1af4u);
    EXPECT_EQ(inventory.pci_devices[1].iommu_group, std::nullopt);
}

}  // namespace
}  // namespace vim::hwprobe
