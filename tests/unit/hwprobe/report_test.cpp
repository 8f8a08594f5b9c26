#include "hwprobe/report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fixture_tree.h"
#include "hwprobe/probe.h"

namespace vim::hwprobe {
namespace {

using ::testing::HasSubstr;
using testing::FixtureTree;

class Report : public ::testing::Test {
protected:
    FixtureTree tree{"numa-2socket"};
    Inventory inventory = probe(tree.options());
};

TEST_F(Report, SpellsTheSchemasFields) {
    const nlohmann::json report = to_json(inventory);
    EXPECT_EQ(report["schema_version"], 1);
    EXPECT_EQ(report["cpu"]["sockets"], 2);
    EXPECT_EQ(report["cpu"]["tsc"]["frequency_hz"], 2000000000u);
    EXPECT_EQ(report["cpu"]["tsc"]["source"], "cpuid 0x15");
    EXPECT_EQ(report["memory"]["hugepages"][1]["page_size_bytes"], 1u << 30);
    EXPECT_EQ(report["numa_nodes"][1]["distances"], nlohmann::json({21, 10}));
    EXPECT_EQ(report["pci_devices"][1]["iommu_group"], 21);
    EXPECT_EQ(report["pci_devices"][1]["class"], 0x020000);
    EXPECT_EQ(report["kvm"]["present"], false);
    EXPECT_EQ(report["kvm"]["absence"], "module_not_loaded");
    EXPECT_TRUE(report["kvm"]["api_version"].is_null());  // unknown, not 0
    EXPECT_TRUE(report["state_directory"].is_null());
    EXPECT_EQ(report["warnings"], nlohmann::json::array());
}

TEST_F(Report, WritesAnUnreadableValueAsNullAndItsWarning) {
    tree.write("proc/sys/vm/overcommit_ratio", "lots\n");
    const nlohmann::json report = to_json(probe(tree.options()));
    EXPECT_TRUE(report["memory"]["overcommit"]["ratio_percent"].is_null());
    ASSERT_EQ(report["warnings"].size(), 1u);
    EXPECT_EQ(report["warnings"][0]["file"], tree.path("proc/sys/vm/overcommit_ratio").string());
    EXPECT_EQ(report["warnings"][0]["problem"], "not an unsigned number: \"lots\"");
}

TEST_F(Report, TableShowsEachSectionForPeople) {
    const std::string table = to_table(inventory);
    EXPECT_THAT(table,
                HasSubstr("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz (GenuineIntel family 6 model 106"));
    EXPECT_THAT(table, HasSubstr("2 sockets, 8 cores, 16 threads"));
    EXPECT_THAT(table, HasSubstr("2000000 kHz (cpuid 0x15), invariant"));
    EXPECT_THAT(table, HasSubstr("2.0 MiB: 768/1024 free, 1.0 GiB: 6/8 free"));
    EXPECT_THAT(table, HasSubstr("0-3,8-11"));
    EXPECT_THAT(table, HasSubstr("SAMSUNG MZQL23T8HCLS-00A07"));
    EXPECT_THAT(table, HasSubstr("0000:17:00.0  020000  8086:1593      21           ice"));
    EXPECT_THAT(table, HasSubstr("absent  module_not_loaded: open " + tree.path("dev/kvm").string()));
    EXPECT_THAT(table, ::testing::Not(HasSubstr("Warnings")));
}

TEST_F(Report, TableEndsWithTheWarnings) {
    tree.remove("proc/meminfo");
    const std::string table = to_table(probe(tree.options()));
    EXPECT_THAT(table, HasSubstr("Warnings\n  " + tree.path("proc/meminfo").string() +
                                 ": No such file or directory\n"));
}

}  // namespace
}  // namespace vim::hwprobe
