#include <gtest/gtest.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "hwprobe/probe.h"
#include "vmm/netlink/netlink.h"

// hwprobe's NICs against links this test makes, in a network namespace of its
// own so the host's interfaces are never touched.
namespace vim::hwprobe {
namespace {

class NetworkNamespace : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) {
            GTEST_SKIP() << "making a network namespace needs root";
        }
        // A mount namespace too: sysfs shows the network namespace of whoever
        // mounts it, and a tap's tun_flags are read there.
        ASSERT_EQ(::unshare(CLONE_NEWNET | CLONE_NEWNS), 0) << std::strerror(errno);
        ASSERT_EQ(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0) << std::strerror(errno);
        sysfs_ = (std::filesystem::temp_directory_path() / "hwprobe-sysfs-XXXXXX").string();
        ASSERT_NE(::mkdtemp(sysfs_.data()), nullptr) << std::strerror(errno);
        ASSERT_EQ(::mount("sysfs", sysfs_.c_str(), "sysfs", 0, nullptr), 0) << std::strerror(errno);
        netlink_.emplace();
    }
    void TearDown() override {
        if (!sysfs_.empty()) {
            ::umount(sysfs_.c_str());
            ::rmdir(sysfs_.c_str());
        }
    }

    Inventory probe_namespace() {
        ProbeOptions options;
        options.sysfs_root = sysfs_;
        return probe(options);
    }

    static const Nic& nic_named(const Inventory& inventory, const std::string& name) {
        const auto found = std::find_if(inventory.nics.begin(), inventory.nics.end(),
                                        [&](const Nic& nic) { return nic.name == name; });
        if (found == inventory.nics.end()) {
            throw std::runtime_error("hwprobe reported no " + name);
        }
        return *found;
    }

    std::optional<vmm::netlink::Netlink> netlink_;
    std::string sysfs_;
};

TEST_F(NetworkNamespace, ReportsABridgeVethPairAndTapWithKindMasterAndMtu) {
    netlink_->create_bridge("br-probe");
    netlink_->create_veth("veth-a", "veth-b");
    netlink_->set_mtu("veth-a", 1400);
    netlink_->set_master("veth-a", "br-probe");
    netlink_->set_mtu("veth-b", 9000);
    netlink_->create_tap("tap-probe");
    netlink_->set_mtu("tap-probe", 1300);
    netlink_->set_master("tap-probe", "br-probe");
    netlink_->set_mtu("br-probe", 1280);
    netlink_->set_up("br-probe", true);

    const Inventory inventory = probe_namespace();
    EXPECT_TRUE(inventory.warnings.empty());
    const Nic& bridge = nic_named(inventory, "br-probe");
    EXPECT_EQ(bridge.kind, "bridge");
    EXPECT_EQ(bridge.master, "");
    EXPECT_EQ(bridge.mtu, 1280u);
    EXPECT_TRUE(bridge.up);
    const Nic& veth_a = nic_named(inventory, "veth-a");
    EXPECT_EQ(veth_a.kind, "veth");
    EXPECT_EQ(veth_a.master, "br-probe");
    EXPECT_EQ(veth_a.mtu, 1400u);
    EXPECT_EQ(veth_a.mac.size(), 17u);
    EXPECT_EQ(veth_a.vlan_id, std::nullopt);
    const Nic& veth_b = nic_named(inventory, "veth-b");
    EXPECT_EQ(veth_b.kind, "veth");
    EXPECT_EQ(veth_b.master, "");
    EXPECT_EQ(veth_b.mtu, 9000u);
    const Nic& tap = nic_named(inventory, "tap-probe");
    EXPECT_EQ(tap.kind, "tap");
    EXPECT_EQ(tap.master, "br-probe");
    EXPECT_EQ(tap.mtu, 1300u);
    EXPECT_EQ(nic_named(inventory, "lo").kind, "");
    EXPECT_EQ(inventory.nics.size(), 5u);  // nothing of the host's
    EXPECT_EQ(inventory.nics.front().name, "lo");
}

TEST_F(NetworkNamespace, ReportsAVlanWithItsIdParentAndMtu) {
    netlink_->create_veth("veth-a", "veth-b");
    netlink_->set_mtu("veth-b", 9000);
    try {
        netlink_->create_vlan("vlan42", "veth-b", 42);
    } catch (const std::system_error& error) {
        if (error.code() == std::errc::operation_not_supported) {
            GTEST_SKIP() << "the kernel has no 802.1Q VLANs (CONFIG_VLAN_8021Q): " << error.what();
        }
        throw;
    }
    netlink_->set_mtu("vlan42", 1496);

    const Inventory inventory = probe_namespace();
    const Nic& vlan = nic_named(inventory, "vlan42");
    EXPECT_EQ(vlan.kind, "vlan");
    EXPECT_EQ(vlan.vlan_id, 42u);
    EXPECT_EQ(vlan.parent, "veth-b");
    EXPECT_EQ(vlan.master, "");
    EXPECT_EQ(vlan.mtu, 1496u);
}

}  // namespace
}  // namespace vim::hwprobe
