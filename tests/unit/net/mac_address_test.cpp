#include "vmm/virtio/net/mac_address.h"

#include <gtest/gtest.h>

namespace vim::vmm::virtio::net {
namespace {

TEST(StableMac, IsTheSameForTheSameSeedAndDiffersForAnother) {
    EXPECT_EQ(stable_mac("tap-web1"), stable_mac("tap-web1"));
    EXPECT_NE(stable_mac("tap-web1"), stable_mac("tap-web2"));
}

TEST(StableMac, IsALocallyAdministeredUnicastAddress) {
    for (const char* seed : {"", "tap0", "a-rather-long-name"}) {
        const MacAddress mac = stable_mac(seed);
        EXPECT_EQ(mac[0], 0x52) << seed;
        EXPECT_EQ(mac[1], 0x54) << seed;
        EXPECT_EQ(mac[2], 0x00) << seed;
        EXPECT_EQ(mac[0] & 1, 0) << "multicast for " << seed;
        EXPECT_EQ(mac[0] & 2, 2) << "not locally administered for " << seed;
    }
}

TEST(MacAddress, PrintsAsColonSeparatedHex) {
    EXPECT_EQ(to_string(MacAddress{0x52, 0x54, 0x00, 0x0a, 0xbc, 0xff}), "52:54:00:0a:bc:ff");
}

}  // namespace
}  // namespace vim::vmm::virtio::net
