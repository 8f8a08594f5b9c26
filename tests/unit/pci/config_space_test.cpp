#include "vmm/pci/config_space.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace vim::vmm::pci {
namespace {

constexpr DeviceIdentity kIdentity{.vendor_id = 0x1af4,
                                   .device_id = 0x1042,
                                   .revision = 1,
                                   .class_code = 0x01,
                                   .subclass = 0x80,
                                   .programming_interface = 0x02,
                                   .subsystem_vendor_id = 0x1af4,
                                   .subsystem_id = 0x0002};

void write32(ConfigSpace& config, std::size_t index, std::uint32_t value) {
    const std::array<std::uint8_t, 4> bytes{
        static_cast<std::uint8_t>(value), static_cast<std::uint8_t>(value >> 8),
        static_cast<std::uint8_t>(value >> 16), static_cast<std::uint8_t>(value >> 24)};
    config.write(index, 0, bytes);
}

void write16(ConfigSpace& config, std::size_t byte_offset, std::uint16_t value) {
    const std::array<std::uint8_t, 2> bytes{static_cast<std::uint8_t>(value),
                                            static_cast<std::uint8_t>(value >> 8)};
    config.write(byte_offset / 4, byte_offset % 4, bytes);
}

void write8(ConfigSpace& config, std::size_t byte_offset, std::uint8_t value) {
    config.write(byte_offset / 4, byte_offset % 4, std::span(&value, 1));
}

std::uint8_t read8(const ConfigSpace& config, std::size_t byte_offset) {
    return static_cast<std::uint8_t>(config.read(byte_offset / 4) >> (8 * (byte_offset % 4)));
}

std::string add_bar_error(ConfigSpace& config, std::size_t index, const MemoryBar& bar) {
    try {
        config.add_bar(index, bar);
    } catch (const std::invalid_argument& error) {
        return error.what();
    }
    return "";
}

TEST(ConfigSpace, HeaderCarriesTheIdentity) {
    const ConfigSpace config(kIdentity);
    EXPECT_EQ(config.read(0), 0x10421af4u);
    EXPECT_EQ(config.read(2), 0x01800201u);  // class 01, subclass 80, prog-if 02, revision 1
    EXPECT_EQ(config.read(11), 0x00021af4u);
    EXPECT_EQ(config.read(kHeaderTypeRegister), 0u);  // type 0, single function
    EXPECT_EQ(config.read(kCommandStatusRegister), 0u);
    EXPECT_EQ(config.read(kCapabilityPointerRegister), 0u);
    EXPECT_EQ(config.read(12), 0u);  // no expansion ROM
    for (std::size_t bar = 0; bar < kBarCount; ++bar) {
        EXPECT_EQ(config.read(kFirstBarRegister + bar), 0u) << "BAR " << bar;
    }
    EXPECT_EQ(config.describe(), "pci device 1af4:1042");
}

TEST(ConfigSpace, AllOnesEverywhereChangesOnlyWritableBits) {
    ConfigSpace config(kIdentity);
    config.add_bar(0, {.size = 0x1000});
    const std::array<std::uint8_t, 4> body{1, 2, 3, 4};
    config.add_capability(kCapabilityVendorSpecific, body);
    config.set_interrupt_pin(kInterruptPinA);
    std::array<std::uint32_t, kConfigRegisterCount> before{};
    for (std::size_t index = 0; index < kConfigRegisterCount; ++index) {
        before[index] = config.read(index);
    }

    for (std::size_t index = 0; index < kConfigRegisterCount; ++index) {
        write32(config, index, 0xffffffff);
    }

    for (std::size_t index = 0; index < kConfigRegisterCount; ++index) {
        std::uint32_t expected = before[index];
        switch (index) {
        case kCommandStatusRegister:
            // Memory space, bus master, parity and SERR# response, INTx
            // disable; never I/O space, and status stays as it was.
            expected |= 0x0546;
            break;
        case kHeaderTypeRegister:
            expected |= 0xff;  // cache line size only
            break;
        case kFirstBarRegister:
            expected = 0xfffff000;  // the size mask
            break;
        case kInterruptRegister:
            expected |= 0xff;  // interrupt line only
            break;
        }
        EXPECT_EQ(config.read(index), expected) << "register " << index;
    }
}

TEST(ConfigSpace, ByteEnablesLimitAWrite) {
    ConfigSpace config(kIdentity);
    write8(config, 0x05, 0x04);  // command's high byte: INTx disable
    EXPECT_EQ(config.command(), kCommandIntxDisable);
    write16(config, 0x04, kCommandMemorySpace | kCommandBusMaster);
    EXPECT_EQ(config.command(), kCommandMemorySpace | kCommandBusMaster);
    write8(config, 0x3c, 0x17);
    EXPECT_EQ(read8(config, 0x3c), 0x17);
    write8(config, 0x0c, 0x10);
    EXPECT_EQ(read8(config, 0x0c), 0x10);
    // Bytes past the register are dropped, not carried into the next one.
    const std::array<std::uint8_t, 4> spill{0x20, 0xff, 0xff, 0xff};
    config.write(kInterruptRegister, 3, spill);
    EXPECT_EQ(config.read(kInterruptRegister), 0x17u);
    config.write(kInterruptRegister - 1, 3, spill);
    EXPECT_EQ(config.read(kInterruptRegister), 0x17u);
}

TEST(ConfigSpace, OutOfRangeRegistersReadAllOnesAndIgnoreWrites) {
    ConfigSpace config(kIdentity);
    EXPECT_EQ(config.read(kConfigRegisterCount), 0xffffffffu);
    EXPECT_EQ(config.read(1000), 0xffffffffu);
    write32(config, kConfigRegisterCount, 0x12345678);
    EXPECT_EQ(config.read(kConfigRegisterCount), 0xffffffffu);
}

TEST(ConfigSpace, StatusErrorBitsClearWhenOnesAreWritten) {
    ConfigSpace config(kIdentity);
    constexpr std::uint16_t kReceivedMasterAbort = 1u << 13;
    constexpr std::uint16_t kSignaledTargetAbort = 1u << 11;
    config.report_status_errors(kReceivedMasterAbort | kSignaledTargetAbort | kStatusInterrupt);
    EXPECT_EQ(config.status(), kReceivedMasterAbort | kSignaledTargetAbort);  // not the interrupt bit

    write16(config, 0x06, 0);
    EXPECT_EQ(config.status(), kReceivedMasterAbort | kSignaledTargetAbort);
    write16(config, 0x06, kReceivedMasterAbort);
    EXPECT_EQ(config.status(), kSignaledTargetAbort);
    // A command write in the same dword leaves status alone where it wrote 0s.
    write32(config, kCommandStatusRegister, kCommandMemorySpace);
    EXPECT_EQ(config.status(), kSignaledTargetAbort);
    EXPECT_EQ(config.command(), kCommandMemorySpace);
}

TEST(ConfigSpace, InterruptBitsAreTheDevicesOnly) {
    ConfigSpace config(kIdentity);
    config.set_interrupt_pin(kInterruptPinA);
    config.set_interrupt_line(18);
    EXPECT_EQ(config.read(kInterruptRegister), 0x0112u);
    config.set_interrupt_status(true);
    write16(config, 0x06, 0xffff);
    EXPECT_EQ(config.status(), kStatusInterrupt);
    config.set_interrupt_status(false);
    EXPECT_EQ(config.status(), 0);
    write8(config, 0x3d, 4);  // the pin is read-only
    EXPECT_EQ(read8(config, 0x3d), kInterruptPinA);
}

TEST(ConfigSpace, Sizes32BitBarAsLinuxProbesIt) {
    ConfigSpace config(kIdentity);
    config.add_bar(1, {.size = 0x2000, .prefetchable = true});
    const std::size_t reg = kFirstBarRegister + 1;
    write32(config, reg, 0xc0002000);
    const std::uint32_t original = config.read(reg);
    EXPECT_EQ(original, 0xc0002008u);  // the prefetchable bit rides along

    write32(config, reg, 0xffffffff);
    EXPECT_EQ(config.read(reg), 0xffffe008u);
    write32(config, reg, original);
    EXPECT_EQ(config.read(reg), 0xc0002008u);
    EXPECT_EQ(config.bar_size(1), 0x2000u);
    // Address bits below the size cannot be set: the BAR stays aligned.
    write32(config, reg, 0xc0003ff0);
    EXPECT_EQ(config.read(reg), 0xc0002008u);
}

TEST(ConfigSpace, Sizes64BitBarAsLinuxProbesIt) {
    ConfigSpace config(kIdentity);
    config.add_bar(2, {.size = 0x4000, .is_64bit = true});
    const std::size_t low = kFirstBarRegister + 2;
    EXPECT_EQ(config.read(low), kBarMemory64);

    write32(config, low, 0xffffffff);
    write32(config, low + 1, 0xffffffff);
    EXPECT_EQ(config.read(low), 0xffffc004u);
    EXPECT_EQ(config.read(low + 1), 0xffffffffu);
    write32(config, low, 0xd0000000);
    write32(config, low + 1, 0x1);
    EXPECT_EQ(config.read(low), 0xd0000004u);
    EXPECT_EQ(config.read(low + 1), 1u);
    EXPECT_EQ(config.bar_size(2), 0x4000u);
    EXPECT_EQ(config.bar_size(3), 0u);  // the upper half is no BAR of its own
}

TEST(ConfigSpace, Sizes64BitBarLargerThan4GiB) {
    ConfigSpace config(kIdentity);
    config.add_bar(0, {.size = 8ull << 30, .is_64bit = true, .prefetchable = true});
    write32(config, kFirstBarRegister, 0xffffffff);
    write32(config, kFirstBarRegister + 1, 0xffffffff);
    EXPECT_EQ(config.read(kFirstBarRegister), 0x0000000cu);
    EXPECT_EQ(config.read(kFirstBarRegister + 1), 0xfffffffeu);
}

TEST(ConfigSpace, RefusesBadBars) {
    ConfigSpace config(kIdentity);
    EXPECT_EQ(add_bar_error(config, 6, {.size = 0x1000}),
              "pci device 1af4:1042: BAR 6 does not exist (BARs 0-5)");
    EXPECT_EQ(add_bar_error(config, 5, {.size = 0x1000, .is_64bit = true}),
              "pci device 1af4:1042: BAR 5 cannot be 64-bit: BAR 5 is the last");
    EXPECT_EQ(add_bar_error(config, 0, {.size = 0x1800}),
              "pci device 1af4:1042: BAR 0: size 0x1800 is not a power of two of 16 bytes or more");
    EXPECT_EQ(add_bar_error(config, 0, {.size = 8}),
              "pci device 1af4:1042: BAR 0: size 0x8 is not a power of two of 16 bytes or more");
    EXPECT_EQ(add_bar_error(config, 0, {.size = 0}),
              "pci device 1af4:1042: BAR 0: size 0x0 is not a power of two of 16 bytes or more");
    EXPECT_EQ(add_bar_error(config, 0, {.size = 4ull << 30}),
              "pci device 1af4:1042: BAR 0: size 0x100000000 does not fit a 32-bit BAR");
    config.add_bar(0, {.size = 0x1000, .is_64bit = true});
    EXPECT_EQ(add_bar_error(config, 1, {.size = 0x1000}),
              "pci device 1af4:1042: BAR 1: register of BAR 1 is already taken");
    config.add_bar(3, {.size = 0x1000});
    EXPECT_EQ(add_bar_error(config, 2, {.size = 0x1000, .is_64bit = true}),
              "pci device 1af4:1042: BAR 2: register of BAR 3 is already taken");
}

TEST(ConfigSpace, CapabilityListWalksAsLinuxWalksIt) {
    ConfigSpace config(kIdentity);
    // A virtio-style vendor capability: cap_len, cfg_type, bar, id, padding,
    // offset, length (cap_len counts the two header bytes).
    const std::vector<std::uint8_t> common{16, 1, 0, 0, 0, 0, 0x00, 0x10, 0, 0, 0x38, 0, 0, 0};
    const std::vector<std::uint8_t> notify{20, 2, 0, 0, 0, 0, 0x00, 0x20, 0, 0, 0, 0x10, 0, 0, 4, 0, 0, 0};
    const std::vector<std::uint8_t> odd{7, 9, 9, 9, 9};
    const std::size_t first = config.add_capability(kCapabilityVendorSpecific, common);
    const std::size_t second = config.add_capability(kCapabilityVendorSpecific, notify);
    const std::size_t third = config.add_capability(kCapabilityVendorSpecific, odd);
    EXPECT_EQ(first, 0x40u);
    EXPECT_EQ(second, 0x50u);
    EXPECT_EQ(third, 0x64u);

    ASSERT_TRUE(config.status() & kStatusCapabilityList);
    std::vector<std::size_t> walked;
    for (std::size_t at = read8(config, 0x34) & ~3u; at != 0 && walked.size() < 48;
         at = read8(config, at + 1) & ~3u) {
        EXPECT_EQ(read8(config, at), kCapabilityVendorSpecific);
        walked.push_back(at);
    }
    EXPECT_EQ(walked, (std::vector<std::size_t>{first, second, third}));
    for (std::size_t i = 0; i < notify.size(); ++i) {
        EXPECT_EQ(read8(config, second + 2 + i), notify[i]) << "byte " << i;
    }
}

TEST(ConfigSpace, CapabilitiesAreReadOnlyUnlessMaskedWritable) {
    ConfigSpace config(kIdentity);
    const std::array<std::uint8_t, 6> body{0x11, 0x22, 0x33, 0x44, 0x55, 0x66};
    const std::array<std::uint8_t, 6> writable{0, 0, 0xff, 0x0f, 0, 0};
    const std::size_t at = config.add_capability(kCapabilityVendorSpecific, body, writable);
    write32(config, at / 4, 0xffffffff);
    write32(config, at / 4 + 1, 0xffffffff);
    EXPECT_EQ(config.read(at / 4), 0x22110009u);  // ID and next pointer stay
    EXPECT_EQ(config.read(at / 4 + 1), 0x66554fffu);
    // The header's capability pointer is read-only too.
    write8(config, 0x34, 0x80);
    EXPECT_EQ(read8(config, 0x34), at);
}

TEST(ConfigSpace, RefusesCapabilitiesThatDoNotFit) {
    ConfigSpace config(kIdentity);
    const std::vector<std::uint8_t> big(0xb0, 0);
    const std::size_t at = config.add_capability(kCapabilityVendorSpecific, big);
    EXPECT_EQ(at, 0x40u);
    const std::vector<std::uint8_t> rest(0x100 - 0xf4 - 2, 0);  // ends exactly at 256
    try {
        config.add_capability(kCapabilityVendorSpecific, std::vector<std::uint8_t>(0x0e, 0));
        FAIL() << "a capability past 256 bytes was accepted";
    } catch (const std::invalid_argument& error) {
        EXPECT_STREQ(error.what(), "pci device 1af4:1042: no room for capability 0x9 of 16 bytes at 0xf4");
    }
    EXPECT_EQ(config.add_capability(kCapabilityVendorSpecific, rest), 0xf4u);
    const std::array<std::uint8_t, 2> body{1, 2};
    const std::array<std::uint8_t, 1> short_mask{0xff};
    ConfigSpace other(kIdentity);
    EXPECT_THROW(other.add_capability(kCapabilityVendorSpecific, body, short_mask), std::invalid_argument);
}

}  // namespace
}  // namespace vim::vmm::pci
