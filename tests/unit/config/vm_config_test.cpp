#include "vmm/config/vm_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace {

using vim::vmm::config::UsageError;
using vim::vmm::config::VmConfig;

std::optional<VmConfig> parse(std::vector<std::string> arguments) {
    arguments.insert(arguments.begin(), "vmm");
    std::vector<const char*> argv;
    for (const auto& argument : arguments) {
        argv.push_back(argument.c_str());
    }
    return vim::vmm::config::parse_command_line(static_cast<int>(argv.size()), argv.data());
}

std::string usage_error(std::vector<std::string> arguments) {
    try {
        parse(std::move(arguments));
    } catch (const UsageError& error) {
        return error.what();
    }
    return "(accepted)";
}

TEST(ParseCommandLine, DefaultsAndValues) {
    auto config =
        parse({"--kernel", "/k", "--initrd", "/i", "--cmdline", "console=ttyS0 quiet", "--cpus", "4",
               "--memory", "2G", "--serial", "file=/tmp/console.log", "--api-socket", "/run/vm.sock"});
    ASSERT_TRUE(config);
    EXPECT_EQ(config->kernel, "/k");
    EXPECT_EQ(config->initrd, "/i");
    EXPECT_EQ(config->cmdline, "console=ttyS0 quiet");
    EXPECT_EQ(config->cpus, 4u);
    EXPECT_EQ(config->memory_bytes, 2ull << 30);
    EXPECT_EQ(config->serial.kind, vim::vmm::config::SerialConfig::Kind::File);
    EXPECT_EQ(config->serial.path, "/tmp/console.log");
    EXPECT_EQ(config->api_socket, "/run/vm.sock");

    auto defaults = parse({"--kernel", "/k"});
    ASSERT_TRUE(defaults);
    EXPECT_EQ(defaults->cpus, 1u);
    EXPECT_EQ(defaults->memory_bytes, 512ull << 20);
    EXPECT_EQ(defaults->serial.kind, vim::vmm::config::SerialConfig::Kind::Stdio);
}

TEST(ParseCommandLine, BadFlagsAreNamed) {
    EXPECT_NE(usage_error({"--kernel", "/k", "--bogus"}).find("--bogus"), std::string::npos);
    EXPECT_NE(usage_error({}).find("--kernel"), std::string::npos);
    EXPECT_NE(usage_error({"--kernel", "/k", "--cpus", "many"}).find("--cpus"), std::string::npos);
    EXPECT_EQ(usage_error({"--kernel", "/k", "--serial", "tty"}),
              "--serial: 'tty' is not stdio, none or file=PATH");
    EXPECT_EQ(usage_error({"--kernel", "/k", "--memory", "12X"}),
              "--memory: '12X' is not a size like 512M, 2G or 1048576K");
}

TEST(ParseCommandLine, DisksInOrderWithTheirOptions) {
    auto config =
        parse({"--kernel", "/k", "--disk", "path=/a.raw", "--disk", "readonly=on,path=/b.raw,direct=on"});
    ASSERT_TRUE(config);
    ASSERT_EQ(config->disks.size(), 2u);
    EXPECT_EQ(config->disks[0], (vim::vmm::config::DiskConfig{"/a.raw", false, false}));
    EXPECT_EQ(config->disks[1], (vim::vmm::config::DiskConfig{"/b.raw", true, true}));
}

TEST(ParseCommandLine, BadDiskOptionsNameTheDiskAndThePart) {
    EXPECT_EQ(usage_error({"--kernel", "/k", "--disk", "readonly=on"}),
              "--disk readonly=on: path=P is missing");
    EXPECT_EQ(usage_error({"--kernel", "/k", "--disk", "path="}), "--disk path=: the path is empty");
    EXPECT_EQ(
        usage_error({"--kernel", "/k", "--disk", "path=/a,cache=none"}),
        "--disk path=/a,cache=none: unknown option 'cache=none' (path=P, readonly=on|off, direct=on|off)");
    EXPECT_EQ(usage_error({"--kernel", "/k", "--disk", "path=/a,readonly=yes"}),
              "--disk path=/a,readonly=yes: readonly='yes' is not on or off");
    EXPECT_EQ(usage_error({"--kernel", "/k", "--disk", "/a.raw"}),
              "--disk /a.raw: '/a.raw' is not KEY=VALUE");
}

TEST(ParseCommandLine, NicsInOrderWithTheirOptions) {
    using vim::vmm::config::NetConfig;
    auto config = parse({"--kernel", "/k", "--net", "tap=vm1-0", "--net",
                         "mtu=9000,bridge=br-lan,tap=vm1-1,mac=52:54:00:AB:cd:01"});
    ASSERT_TRUE(config);
    ASSERT_EQ(config->nets.size(), 2u);
    EXPECT_EQ(config->nets[0], (NetConfig{"vm1-0", std::nullopt, "", std::nullopt}));
    EXPECT_EQ(config->nets[1],
              (NetConfig{"vm1-1", std::array<std::uint8_t, 6>{0x52, 0x54, 0x00, 0xab, 0xcd, 0x01}, "br-lan",
                         9000}));
    EXPECT_TRUE(parse({"--kernel", "/k"})->nets.empty());
}

TEST(ParseCommandLine, BadNicOptionsNameTheNicAndThePart) {
    const auto error = [](const std::string& net) { return usage_error({"--kernel", "/k", "--net", net}); };
    EXPECT_EQ(error("mac=52:54:00:00:00:01"), "--net mac=52:54:00:00:00:01: tap=NAME is missing");
    EXPECT_EQ(error("tap0"), "--net tap0: 'tap0' is not KEY=VALUE");
    EXPECT_EQ(error("tap=t0,vhost=on"),
              "--net tap=t0,vhost=on: unknown option 'vhost=on' (tap=NAME, mac=MAC, bridge=BRIDGE, mtu=N)");
    EXPECT_EQ(error("tap="), "--net tap=: tap='' is not an interface name of 1 to 15 characters");
    EXPECT_EQ(
        error("tap=a-name-of-16-chr"),
        "--net tap=a-name-of-16-chr: tap='a-name-of-16-chr' is not an interface name of 1 to 15 characters");
    EXPECT_EQ(error("tap=t/0"), "--net tap=t/0: tap='t/0' holds '/', which an interface name cannot");
    EXPECT_EQ(error("tap=tap%d"), "--net tap=tap%d: tap='tap%d' holds '%', which an interface name cannot");
    EXPECT_EQ(error("tap=t0,bridge=br 0"),
              "--net tap=t0,bridge=br 0: bridge='br 0' holds ' ', which an interface name cannot");
    EXPECT_EQ(
        error("tap=t0,mac=52:54:00:12:34"),
        "--net tap=t0,mac=52:54:00:12:34: mac='52:54:00:12:34' is not six hex bytes like 52:54:00:12:34:56");
    EXPECT_EQ(error("tap=t0,mac=52-54-00-12-34-56"),
              "--net tap=t0,mac=52-54-00-12-34-56: mac='52-54-00-12-34-56' is not six hex bytes like "
              "52:54:00:12:34:56");
    EXPECT_EQ(error("tap=t0,mac=52:54:00:12:34:5g"),
              "--net tap=t0,mac=52:54:00:12:34:5g: mac='52:54:00:12:34:5g' is not six hex bytes like "
              "52:54:00:12:34:56");
    EXPECT_EQ(error("tap=t0,mac=01:00:5e:00:00:01"),
              "--net tap=t0,mac=01:00:5e:00:00:01: mac='01:00:5e:00:00:01' is a multicast address");
    EXPECT_EQ(error("tap=t0,mac=ff:ff:ff:ff:ff:ff"),
              "--net tap=t0,mac=ff:ff:ff:ff:ff:ff: mac='ff:ff:ff:ff:ff:ff' is a multicast address");
    EXPECT_EQ(error("tap=t0,mac=00:00:00:00:00:00"),
              "--net tap=t0,mac=00:00:00:00:00:00: mac='00:00:00:00:00:00' is all zeroes");
    EXPECT_EQ(error("tap=t0,mtu=67"), "--net tap=t0,mtu=67: mtu='67' is not a number from 68 to 65535");
    EXPECT_EQ(error("tap=t0,mtu=65536"),
              "--net tap=t0,mtu=65536: mtu='65536' is not a number from 68 to 65535");
    EXPECT_EQ(error("tap=t0,mtu=1500x"),
              "--net tap=t0,mtu=1500x: mtu='1500x' is not a number from 68 to 65535");
    EXPECT_EQ(error("tap=t0,mtu=-1"), "--net tap=t0,mtu=-1: mtu='-1' is not a number from 68 to 65535");
}

TEST(ParseCommandLine, TheBalloonOffersReportingAndDeflateOnOomUnlessTurnedOff) {
    auto defaults = parse({"--kernel", "/k"});
    ASSERT_TRUE(defaults);
    EXPECT_TRUE(defaults->balloon.free_page_reporting);
    EXPECT_TRUE(defaults->balloon.deflate_on_oom);
    auto without_reporting = parse({"--kernel", "/k", "--balloon", "free_page_reporting=off"});
    ASSERT_TRUE(without_reporting);
    EXPECT_FALSE(without_reporting->balloon.free_page_reporting);
    EXPECT_TRUE(without_reporting->balloon.deflate_on_oom);
    auto neither = parse({"--kernel", "/k", "--balloon", "deflate_on_oom=off,free_page_reporting=off"});
    ASSERT_TRUE(neither);
    EXPECT_FALSE(neither->balloon.free_page_reporting);
    EXPECT_FALSE(neither->balloon.deflate_on_oom);

    EXPECT_EQ(usage_error({"--kernel", "/k", "--balloon", "free_page_reporting=maybe"}),
              "--balloon free_page_reporting=maybe: free_page_reporting='maybe' is not on or off");
    EXPECT_EQ(usage_error({"--kernel", "/k", "--balloon", "size=10"}),
              "--balloon size=10: 'size=10' is not free_page_reporting=on|off or deflate_on_oom=on|off");
    EXPECT_EQ(usage_error({"--kernel", "/k", "--balloon", "deflate_on_oom"}),
              "--balloon deflate_on_oom: 'deflate_on_oom' is not free_page_reporting=on|off or "
              "deflate_on_oom=on|off");
}

TEST(ParseCommandLine, TwoNicsCannotShareATapOrAMac) {
    EXPECT_EQ(usage_error({"--kernel", "/k", "--net", "tap=t0", "--net", "tap=t0,mac=52:54:00:00:00:02"}),
              "--net tap=t0,mac=52:54:00:00:00:02: tap t0 is already another --net's");
    EXPECT_EQ(usage_error({"--kernel", "/k", "--net", "tap=t0,mac=52:54:00:00:00:02", "--net",
                           "tap=t1,mac=52:54:00:00:00:02"}),
              "--net tap=t1,mac=52:54:00:00:00:02: the MAC is already another --net's");
}

TEST(ParseMemorySize, Units) {
    EXPECT_EQ(vim::vmm::config::parse_memory_size("256"), 256ull << 20);
    EXPECT_EQ(vim::vmm::config::parse_memory_size("64K"), 64ull << 10);
    EXPECT_EQ(vim::vmm::config::parse_memory_size("3g"), 3ull << 30);
    EXPECT_THROW(vim::vmm::config::parse_memory_size(""), UsageError);
    EXPECT_THROW(vim::vmm::config::parse_memory_size("M"), UsageError);
    EXPECT_THROW(vim::vmm::config::parse_memory_size("-1M"), UsageError);
    EXPECT_THROW(vim::vmm::config::parse_memory_size("99999999999999G"), UsageError);
}

class Validate : public ::testing::Test {
protected:
    void SetUp() override {
        char pattern[] = "/tmp/vm-config-test-XXXXXX";
        ASSERT_NE(::mkdtemp(pattern), nullptr);
        directory_ = pattern;
        kernel_ = directory_ + "/kernel";
        std::ofstream(kernel_) << "kernel";
        config_.kernel = kernel_;
    }
    void TearDown() override { std::system(("rm -rf " + directory_).c_str()); }

    std::string error() {
        try {
            vim::vmm::config::validate(config_, {1ull << 30, 8});
        } catch (const UsageError& error) {
            return error.what();
        }
        return "(accepted)";
    }

    std::string directory_, kernel_;
    VmConfig config_;
};

TEST_F(Validate, AcceptsAGoodConfiguration) {
    config_.memory_bytes = 256ull << 20;
    EXPECT_EQ(error(), "(accepted)");
}

TEST_F(Validate, NamesEachProblem) {
    config_.kernel = directory_ + "/missing";
    EXPECT_EQ(error(), "--kernel " + directory_ + "/missing: No such file or directory");
    config_.kernel = directory_;
    EXPECT_EQ(error(), "--kernel " + directory_ + ": not a regular file");
    config_.kernel = kernel_;

    config_.initrd = directory_ + "/no-initrd";
    EXPECT_EQ(error(), "--initrd " + directory_ + "/no-initrd: No such file or directory");
    config_.initrd.clear();

    config_.memory_bytes = 0;
    EXPECT_EQ(error(), "--memory: must be more than 0");
    config_.memory_bytes = (1ull << 20) + 512;
    EXPECT_EQ(error(), "--memory: 1049088 bytes is not a multiple of the 4 KiB page size");
    config_.memory_bytes = 2ull << 30;
    EXPECT_EQ(error(), "--memory: 2048 MiB is more than the host's 1024 MiB");
    config_.memory_bytes = 256ull << 20;

    config_.cpus = 0;
    EXPECT_EQ(error(), "--cpus: must be at least 1");
    config_.cpus = 9;
    EXPECT_EQ(error(), "--cpus: 9 is more than KVM allows (8)");
}

TEST_F(Validate, UnreadableInitrdIsRefusedWhenNotRoot) {
    if (::geteuid() == 0) {
        GTEST_SKIP() << "root reads any file";
    }
    config_.initrd = directory_ + "/secret";
    std::ofstream(config_.initrd) << "x";
    ::chmod(config_.initrd.c_str(), 0);
    EXPECT_EQ(error(), "--initrd " + config_.initrd + ": Permission denied");
}

}  // namespace

namespace {

using vim::vmm::config::StartFrom;

TEST(ParseCommandLine, IncomingAndRestoreTakeTheVmsShapeFromWhereItComesFrom) {
    auto incoming = parse({"--incoming", "tcp:127.0.0.1:4444", "--api-socket", "/run/vm.sock"});
    ASSERT_TRUE(incoming);
    EXPECT_EQ(incoming->start.kind, StartFrom::Kind::Incoming);
    EXPECT_EQ(incoming->start.where, "tcp:127.0.0.1:4444");
    auto restore = parse({"--restore", "/snapshots/a", "--disk", "path=/img/a.raw"});
    ASSERT_TRUE(restore);
    EXPECT_EQ(restore->start.kind, StartFrom::Kind::Restore);
    EXPECT_EQ(restore->disks.size(), 1u);

    EXPECT_EQ(usage_error({"--incoming", "tcp:h:1", "--cpus", "2"}),
              "--cpus: the VM's own comes with --incoming; not with it");
    EXPECT_EQ(usage_error({"--restore", "/s", "--kernel", "/k"}),
              "--kernel: the VM's own comes with --restore; not with it");
    EXPECT_EQ(usage_error({"--restore", "/s", "--incoming", "tcp:h:1"}),
              "--incoming and --restore: a VM starts from one of them, not both");
    EXPECT_EQ(usage_error({"--cpus", "2"}), "--kernel is required (or --incoming or --restore)");
}

TEST(Shape, TravelsAndIsTakenBackWithItsDevices) {
    VmConfig source;
    source.cpus = 4;
    source.memory_bytes = 1ull << 30;
    source.disks = {{"/img/a.raw", true, false}, {"/img/b.raw", false, true}};
    source.nets = {vim::vmm::config::parse_net("tap=tap0,mac=52:54:00:12:34:56,bridge=br0,mtu=9000")};
    source.balloon.free_page_reporting = false;
    const nlohmann::json shape = vim::vmm::config::shape_to_json(source);

    VmConfig destination;  // no flags of its own: everything comes from the shape
    vim::vmm::config::apply_shape(nlohmann::json::parse(shape.dump()), destination);
    EXPECT_EQ(destination.cpus, 4u);
    EXPECT_EQ(destination.memory_bytes, 1ull << 30);
    EXPECT_EQ(destination.disks, source.disks);
    EXPECT_EQ(destination.nets, source.nets);
    EXPECT_FALSE(destination.balloon.free_page_reporting);
    EXPECT_TRUE(destination.balloon.deflate_on_oom);
}

TEST(Shape, LocalDisksRemapTheTravellingOnesOneForOne) {
    VmConfig source;
    source.disks = {{"/img/a.raw", false, false}};
    const nlohmann::json shape = vim::vmm::config::shape_to_json(source);

    VmConfig remapped;
    remapped.disks = {{"/elsewhere/a.raw", false, false}};
    vim::vmm::config::apply_shape(shape, remapped);
    EXPECT_EQ(remapped.disks[0].path, "/elsewhere/a.raw");

    VmConfig too_many;
    too_many.disks = {{"/x", false, false}, {"/y", false, false}};
    try {
        vim::vmm::config::apply_shape(shape, too_many);
        FAIL() << "accepted";
    } catch (const UsageError& error) {
        EXPECT_STREQ(error.what(), "--disk: 2 given, the VM has 1");
    }
}

TEST(Shape, HostileShapesAreRefusedNamingTheField) {
    auto refusal = [](const nlohmann::json& shape) {
        VmConfig config;
        try {
            vim::vmm::config::apply_shape(shape, config);
        } catch (const UsageError& error) {
            return std::string(error.what());
        }
        return std::string("(accepted)");
    };
    const VmConfig defaults;
    const nlohmann::json good = vim::vmm::config::shape_to_json(defaults);
    EXPECT_EQ(refusal(nlohmann::json::array()), "the VM's shape is not a JSON object");
    auto without_cpus = good;
    without_cpus.erase("cpus");
    EXPECT_EQ(refusal(without_cpus), "the VM's shape: cpus is missing or not a number");
    auto zero_cpus = good;
    zero_cpus["cpus"] = 0u;
    EXPECT_EQ(refusal(zero_cpus), "the VM's shape: cpus 0 is out of range");
    auto bad_disk = good;
    bad_disk["disks"] = {"path=/a,readonly=maybe"};
    EXPECT_EQ(refusal(bad_disk), "--disk path=/a,readonly=maybe: readonly='maybe' is not on or off");
    auto disk_not_text = good;
    disk_not_text["disks"] = {42};
    EXPECT_EQ(refusal(disk_not_text), "the VM's shape: disks: an entry is not a string");
    auto bad_balloon = good;
    bad_balloon["balloon"] = "free_page_reporting=sometimes";
    EXPECT_NE(refusal(bad_balloon).find("--balloon"), std::string::npos);
}

}  // namespace
