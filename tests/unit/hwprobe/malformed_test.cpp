#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "fixture_tree.h"
#include "hwprobe/probe.h"
#include "hwprobe/report.h"

// Damaged or missing files give a partial report whose warnings name the file
// and what was wrong with it; everything else is still read.
namespace vim::hwprobe {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::Field;
using testing::FixtureTree;

class Malformed : public ::testing::Test {
protected:
    Inventory probe_tree() { return probe(tree.options()); }

    // The one warning the damage caused.
    Warning only_warning(const Inventory& inventory) {
        EXPECT_EQ(inventory.warnings.size(), 1u);
        return inventory.warnings.empty() ? Warning{} : inventory.warnings[0];
    }

    std::string file(const std::string& relative) { return tree.path(relative).string(); }

    FixtureTree tree{"numa-2socket"};
};

TEST_F(Malformed, GarbageInMeminfoLeavesThatValueNull) {
    tree.write("proc/meminfo", "MemTotal:       lots kB\nMemAvailable:   1000 kB\n");
    const Inventory inventory = probe_tree();
    const Warning warning = only_warning(inventory);
    EXPECT_EQ(warning.file, file("proc/meminfo"));
    EXPECT_EQ(warning.problem, "MemTotal: not a size: \"lots\"");
    EXPECT_EQ(inventory.memory.total_bytes, std::nullopt);
    EXPECT_EQ(inventory.memory.available_bytes, 1024000u);
}

TEST_F(Malformed, AMeminfoLineWithoutAColonIsNamedAndSkipped) {
    tree.write("proc/meminfo", "MemTotal: 2048 kB\ngarbage line\nMemAvailable: 1024 kB\n");
    const Inventory inventory = probe_tree();
    EXPECT_EQ(only_warning(inventory).problem, "line without a colon: \"garbage line\"");
    EXPECT_EQ(inventory.memory.total_bytes, 2048u * 1024);
    EXPECT_EQ(inventory.memory.available_bytes, 1024u * 1024);
}

TEST_F(Malformed, AMissingMeminfoIsNamed) {
    tree.remove("proc/meminfo");
    const Inventory inventory = probe_tree();
    const Warning warning = only_warning(inventory);
    EXPECT_EQ(warning.file, file("proc/meminfo"));
    EXPECT_EQ(warning.problem, "No such file or directory");
    EXPECT_EQ(inventory.memory.total_bytes, std::nullopt);
    EXPECT_EQ(inventory.memory.hugepages.size(), 2u);  // the rest is still there
}

TEST_F(Malformed, AMeminfoLineWithoutItsKeyIsNamed) {
    tree.write("proc/meminfo", "MemTotal: 2048 kB\n");
    const Warning warning = only_warning(probe_tree());
    EXPECT_EQ(warning.problem, "no MemAvailable line");
}

TEST_F(Malformed, AnEmptyOnlineListIsNotZeroCpus) {
    tree.write("sys/devices/system/cpu/online", "");
    const Inventory inventory = probe_tree();
    const Warning warning = only_warning(inventory);
    EXPECT_EQ(warning.file, file("sys/devices/system/cpu/online"));
    EXPECT_EQ(warning.problem, "empty");
    EXPECT_EQ(inventory.cpu.threads, std::nullopt);
    EXPECT_EQ(inventory.cpu.sockets, std::nullopt);
}

TEST_F(Malformed, AReversedRangeIsNamed) {
    tree.write("sys/devices/system/cpu/online", "7-3\n");
    const Warning warning = only_warning(probe_tree());
    EXPECT_EQ(warning.problem, "not a list of numbers and ranges: \"7-3\"");
}

TEST_F(Malformed, AHugeRangeIsRefusedRatherThanAllocated) {
    tree.write("sys/devices/system/node/node1/cpulist", "0-4294967295\n");
    const Inventory inventory = probe_tree();
    const Warning warning = only_warning(inventory);
    EXPECT_EQ(warning.file, file("sys/devices/system/node/node1/cpulist"));
    EXPECT_TRUE(inventory.numa_nodes[1].cpus.empty());
}

TEST_F(Malformed, AGarbagePackageIdCountsTheCpusThatHaveOne) {
    tree.write("sys/devices/system/cpu/cpu4/topology/physical_package_id", "banana\n");
    const Inventory inventory = probe_tree();
    const Warning warning = only_warning(inventory);
    EXPECT_EQ(warning.file, file("sys/devices/system/cpu/cpu4/topology/physical_package_id"));
    EXPECT_EQ(warning.problem, "not an unsigned number: \"banana\"");
    EXPECT_EQ(inventory.cpu.sockets, 2u);
    EXPECT_EQ(inventory.cpu.cores, 8u);
    EXPECT_EQ(inventory.cpu.threads, 16u);
}

TEST_F(Malformed, ANegativeHugepageCountIsNamed) {
    tree.write("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "-5\n");
    const Inventory inventory = probe_tree();
    const Warning warning = only_warning(inventory);
    EXPECT_EQ(warning.file, file("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"));
    EXPECT_EQ(warning.problem, "not an unsigned number: \"-5\"");
    EXPECT_EQ(inventory.memory.hugepages[0].total, std::nullopt);
    EXPECT_EQ(inventory.memory.hugepages[0].free, 768u);
}

TEST_F(Malformed, AnEmptyKsmFileIsNamed) {
    tree.write("sys/kernel/mm/ksm/run", "\n");
    const Inventory inventory = probe_tree();
    EXPECT_EQ(only_warning(inventory).problem, "empty");
    EXPECT_TRUE(inventory.memory.ksm.available);
    EXPECT_EQ(inventory.memory.ksm.run, std::nullopt);
    EXPECT_EQ(inventory.memory.ksm.pages_sharing, 45000u);
}

TEST_F(Malformed, AKernelWithoutKsmIsNoFault) {
    tree.remove("sys/kernel/mm/ksm");
    const Inventory inventory = probe_tree();
    EXPECT_TRUE(inventory.warnings.empty());
    EXPECT_FALSE(inventory.memory.ksm.available);
}

TEST_F(Malformed, ABadDistanceDropsTheNodesDistances) {
    tree.write("sys/devices/system/node/node0/distance", "10 x\n");
    const Inventory inventory = probe_tree();
    EXPECT_EQ(only_warning(inventory).problem, "not a list of distances: \"10 x\"");
    EXPECT_TRUE(inventory.numa_nodes[0].distances.empty());
    EXPECT_THAT(inventory.numa_nodes[1].distances, ElementsAre(21, 10));
}

TEST_F(Malformed, AnOverflowingDiskSizeIsNamed) {
    tree.write("sys/block/sda/size", "123456789012345678901234567890\n");
    const Inventory inventory = probe_tree();
    EXPECT_EQ(only_warning(inventory).file, file("sys/block/sda/size"));
    const auto sda = std::find_if(inventory.disks.begin(), inventory.disks.end(),
                                  [](const Disk& disk) { return disk.name == "sda"; });
    ASSERT_NE(sda, inventory.disks.end());
    EXPECT_EQ(sda->size_bytes, std::nullopt);
    EXPECT_EQ(sda->rotational, true);
}

TEST_F(Malformed, ASizeThatOverflowsInBytesIsNamed) {
    tree.write("sys/block/sda/size", "18446744073709551615\n");
    EXPECT_EQ(only_warning(probe_tree()).problem, "more sectors than 64 bits of bytes hold");
}

TEST_F(Malformed, ARotationalFlagOtherThanZeroOrOneIsNamed) {
    tree.write("sys/block/sda/queue/rotational", "7\n");
    EXPECT_EQ(only_warning(probe_tree()).problem, "not 0 or 1: 7");
}

TEST_F(Malformed, ControlCharactersAreNotCopiedIntoTheWarning) {
    tree.write("sys/block/sda/queue/logical_block_size", std::string("5\x01\x1b[2J\xff", 7));
    EXPECT_EQ(only_warning(probe_tree()).problem, "not an unsigned number: \"5??[2J?\"");
}

TEST_F(Malformed, ALongValueIsCutShortInTheWarning) {
    tree.write("sys/block/sda/queue/logical_block_size", std::string(5000, 'x'));
    EXPECT_EQ(only_warning(probe_tree()).problem,
              "not an unsigned number: \"" + std::string(40, 'x') + "...\"");
}

TEST_F(Malformed, AnOutOfRangePciIdIsNamed) {
    tree.write("sys/bus/pci/devices/0000:17:00.0/vendor", "0x123456\n");
    const Inventory inventory = probe_tree();
    EXPECT_EQ(only_warning(inventory).problem, "out of range: 1193046");
    EXPECT_EQ(inventory.pci_devices[1].vendor, std::nullopt);
    EXPECT_EQ(inventory.pci_devices[1].device, 0x1593u);
}

TEST_F(Malformed, AGarbagePciClassIsNamed) {
    tree.write("sys/bus/pci/devices/0000:17:00.0/class", "0xzz\n");
    EXPECT_EQ(only_warning(probe_tree()).problem, "not an unsigned number: \"0xzz\"");
}

TEST_F(Malformed, AnIommuGroupLinkToANonNumberIsNamed) {
    tree.remove("sys/bus/pci/devices/0000:17:00.0/iommu_group");
    std::filesystem::create_symlink("../../../kernel/iommu_groups/abc",
                                    tree.path("sys/bus/pci/devices/0000:17:00.0/iommu_group"));
    const Inventory inventory = probe_tree();
    const Warning warning = only_warning(inventory);
    EXPECT_EQ(warning.file, file("sys/bus/pci/devices/0000:17:00.0/iommu_group"));
    EXPECT_EQ(warning.problem, "links to \"abc\", not a group number");
}

TEST_F(Malformed, ADirectoryWhereAFileBelongsIsNamed) {
    tree.remove("proc/sys/vm/overcommit_ratio");
    std::filesystem::create_directories(tree.path("proc/sys/vm/overcommit_ratio"));
    const Inventory inventory = probe_tree();
    EXPECT_EQ(only_warning(inventory).problem, "Is a directory");
    EXPECT_EQ(inventory.memory.overcommit.ratio_percent, std::nullopt);
    EXPECT_EQ(inventory.memory.overcommit.policy, 0u);
}

TEST_F(Malformed, AMissingKernelReleaseIsNamed) {
    tree.remove("proc/sys/kernel/osrelease");
    const Inventory inventory = probe_tree();
    EXPECT_EQ(only_warning(inventory).file, file("proc/sys/kernel/osrelease"));
    EXPECT_EQ(inventory.kernel.release, "");
}

TEST_F(Malformed, AGarbageCpuFrequencyIsNamed) {
    tree.write("proc/cpuinfo", "processor\t: 0\ncpu MHz\t\t: fast\n\n");
    const Inventory inventory = probe(tree.options(testing::epyc_7763()));
    EXPECT_EQ(only_warning(inventory).problem, "cpu MHz: not a frequency: \"fast\"");
    EXPECT_EQ(inventory.cpu.tsc.hz, std::nullopt);
    EXPECT_EQ(inventory.cpu.tsc.source, "none");
}

TEST_F(Malformed, NodeMeminfoGarbageIsNamed) {
    tree.write("sys/devices/system/node/node0/meminfo", "Node 0 MemTotal: \nNode 0 MemFree: 10 kB\n");
    const Inventory inventory = probe_tree();
    EXPECT_EQ(only_warning(inventory).problem, "MemTotal: not a size: \"\"");
    EXPECT_EQ(inventory.numa_nodes[0].memory_total_bytes, std::nullopt);
    EXPECT_EQ(inventory.numa_nodes[0].memory_free_bytes, 10240u);
}

TEST(EmptyHost, NothingToReadGivesAWarnedPartialReportNotACrash) {
    FixtureTree tree("numa-2socket");
    tree.remove("sys");
    tree.remove("proc");
    const Inventory inventory = probe(tree.options());
    EXPECT_EQ(inventory.cpu.vendor, "GenuineIntel");  // CPUID needs no files
    EXPECT_EQ(inventory.cpu.threads, std::nullopt);
    EXPECT_EQ(inventory.memory.total_bytes, std::nullopt);
    EXPECT_TRUE(inventory.disks.empty());
    EXPECT_THAT(inventory.warnings, Contains(AllOf(Field(&Warning::file, tree.path("proc/meminfo").string()),
                                                   Field(&Warning::problem, "No such file or directory"))));
    EXPECT_THAT(inventory.warnings, Contains(Field(&Warning::file, tree.path("sys/block").string())));
    EXPECT_NO_THROW(to_json(inventory).dump());
    EXPECT_NO_THROW(to_table(inventory));
}

}  // namespace
}  // namespace vim::hwprobe
