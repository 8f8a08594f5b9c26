#include "vmm/pci/msix.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "vim/testing/fake_msi_vectors.h"

namespace vim::vmm::pci {
namespace {

using vim::testing::FakeMsiVectors;
using Route = std::pair<std::size_t, devices::MsiMessage>;

constexpr DeviceIdentity kIdentity{.vendor_id = 0x1af4, .device_id = 0x1042};
constexpr std::uint32_t kTable = 0x800;
constexpr std::uint32_t kPba = 0xc00;
constexpr std::uint16_t kEnable = 1u << 15;
constexpr std::uint16_t kFunctionMask = 1u << 14;
constexpr std::uint64_t kAddressLow = 0;
constexpr std::uint64_t kAddressHigh = 4;
constexpr std::uint64_t kData = 8;
constexpr std::uint64_t kControl = 12;

template <std::size_t N>
std::array<std::uint8_t, N> bytes_of(std::uint64_t value) {
    std::array<std::uint8_t, N> bytes{};
    for (std::size_t i = 0; i < N; ++i) {
        bytes[i] = static_cast<std::uint8_t>(value >> (8 * i));
    }
    return bytes;
}

template <std::size_t N>
std::uint64_t value_of(const std::array<std::uint8_t, N>& bytes) {
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < N; ++i) {
        value |= std::uint64_t{bytes[i]} << (8 * i);
    }
    return value;
}

class MsixTest : public ::testing::Test {
protected:
    MsixTest() {
        config.add_bar(0, {.size = 0x1000});
        capability = msix.add_capability(config, {0, kTable}, {0, kPba});
    }

    // What the guest's driver does through config space.
    void write_control(std::uint16_t control) {
        config.write(capability / 4, 2, bytes_of<2>(control));
        msix.sync(config);
    }
    std::uint16_t control() const { return static_cast<std::uint16_t>(config.read(capability / 4) >> 16); }

    // What it does through the BAR.
    bool write_entry32(std::size_t vector, std::uint64_t field, std::uint32_t value) {
        return msix.write(0, kTable + 16 * vector + field, bytes_of<4>(value));
    }
    std::uint32_t read_entry32(std::size_t vector, std::uint64_t field) {
        std::array<std::uint8_t, 4> data{};
        EXPECT_TRUE(msix.read(0, kTable + 16 * vector + field, data));
        return static_cast<std::uint32_t>(value_of(data));
    }
    std::uint64_t read_pba() {
        std::array<std::uint8_t, 8> data{};
        EXPECT_TRUE(msix.read(0, kPba, data));
        return value_of(data);
    }
    void program(std::size_t vector, std::uint64_t address, std::uint32_t data) {
        write_entry32(vector, kAddressLow, static_cast<std::uint32_t>(address));
        write_entry32(vector, kAddressHigh, static_cast<std::uint32_t>(address >> 32));
        write_entry32(vector, kData, data);
    }
    // Enabled, unmasked, entry `vector` programmed and unmasked.
    void make_live(std::size_t vector) {
        write_control(kEnable);
        program(vector, 0xfee00000, 0x4020 + static_cast<std::uint32_t>(vector));
        write_entry32(vector, kControl, 0);
    }

    FakeMsiVectors vectors{3};
    ConfigSpace config{kIdentity};
    Msix msix{vectors};
    std::size_t capability = 0;
};

TEST_F(MsixTest, CapabilityDescribesTableAndPba) {
    EXPECT_EQ(capability, 0x40u);
    EXPECT_EQ(config.read(kCapabilityPointerRegister) & 0xff, capability);
    EXPECT_EQ(config.read(capability / 4), 0x00020000u | kCapabilityMsix);  // 3 vectors, N-1 encoded; no next
    EXPECT_EQ(config.read(capability / 4 + 1), kTable | 0u);                // BIR 0
    EXPECT_EQ(config.read(capability / 4 + 2), kPba | 0u);
    EXPECT_EQ(msix.table_size(), 48u);
    EXPECT_EQ(msix.pba_size(), 8u);

    for (std::size_t i = 0; i < 3; ++i) {
        config.write(capability / 4 + i, 0, bytes_of<4>(0xffffffff));
    }
    msix.sync(config);
    EXPECT_EQ(config.read(capability / 4), 0xc0020000u | kCapabilityMsix);  // only enable and function mask
    EXPECT_EQ(config.read(capability / 4 + 1), kTable);
    EXPECT_EQ(config.read(capability / 4 + 2), kPba);
    EXPECT_TRUE(msix.enabled());
}

TEST_F(MsixTest, EntriesStartMasked) {
    for (std::size_t vector = 0; vector < 3; ++vector) {
        EXPECT_EQ(read_entry32(vector, kAddressLow), 0u);
        EXPECT_EQ(read_entry32(vector, kData), 0u);
        EXPECT_EQ(read_entry32(vector, kControl), 1u);
    }
    EXPECT_EQ(read_pba(), 0u);
}

TEST_F(MsixTest, RoutesOnceWhenLinuxFinishesProgramming) {
    // msix_capability_init: enable with the function masked, program the
    // entries masked, lift the function mask, then unmask each vector.
    write_control(kEnable | kFunctionMask);
    program(0, 0xfee01000, 0x4021);
    program(1, 0xfee02000, 0x4022);
    EXPECT_TRUE(vectors.routes.empty());
    write_control(kEnable);
    EXPECT_TRUE(vectors.routes.empty());  // entries still masked

    write_entry32(0, kControl, 0);
    EXPECT_EQ(vectors.routes, (std::vector<Route>{{0, {0xfee01000, 0x4021}}}));
    EXPECT_EQ(msix.notify(0), Msix::Delivery::kSent);
    EXPECT_EQ(msix.notify(1), Msix::Delivery::kPending);  // never unmasked
    EXPECT_EQ(vectors.triggers, std::vector<std::size_t>{0});
}

TEST_F(MsixTest, MaskedVectorPendsAndFiresOnUnmask) {
    make_live(1);
    write_entry32(1, kControl, 1);
    EXPECT_EQ(msix.notify(1), Msix::Delivery::kPending);
    EXPECT_EQ(msix.notify(1), Msix::Delivery::kPending);
    EXPECT_TRUE(vectors.triggers.empty());
    EXPECT_EQ(read_pba(), 0b010u);
    std::array<std::uint8_t, 4> low{};
    EXPECT_TRUE(msix.read(0, kPba, low));
    EXPECT_EQ(value_of(low), 0b010u);

    write_entry32(1, kControl, 0);
    EXPECT_EQ(vectors.triggers, std::vector<std::size_t>{1});  // once: pending is one bit
    EXPECT_EQ(read_pba(), 0u);
}

TEST_F(MsixTest, FunctionMaskPendsEveryVector) {
    make_live(0);
    make_live(2);
    write_control(kEnable | kFunctionMask);
    EXPECT_EQ(msix.notify(0), Msix::Delivery::kPending);
    EXPECT_EQ(msix.notify(2), Msix::Delivery::kPending);
    EXPECT_EQ(read_pba(), 0b101u);
    EXPECT_TRUE(vectors.triggers.empty());

    write_control(kEnable);
    EXPECT_EQ(vectors.triggers, (std::vector<std::size_t>{0, 2}));
    EXPECT_EQ(read_pba(), 0u);
}

TEST_F(MsixTest, DisabledLeavesTheInterruptToIntx) {
    program(0, 0xfee00000, 0x4020);
    write_entry32(0, kControl, 0);
    EXPECT_EQ(msix.notify(0), Msix::Delivery::kDisabled);
    EXPECT_EQ(read_pba(), 0u);
    write_control(kEnable);
    EXPECT_TRUE(vectors.triggers.empty());  // nothing was held back for MSI-X
    EXPECT_EQ(vectors.routes.size(), 1u);   // routed once it became live
}

TEST_F(MsixTest, VectorsPastTheTableRaiseNothing) {
    make_live(0);
    EXPECT_EQ(msix.notify(3), Msix::Delivery::kNoSuchVector);
    EXPECT_EQ(msix.notify(0xffff), Msix::Delivery::kNoSuchVector);  // virtio's VIRTIO_MSI_NO_VECTOR
    EXPECT_TRUE(vectors.triggers.empty());
}

TEST_F(MsixTest, RewritingALiveEntryReroutesIt) {
    make_live(0);
    ASSERT_EQ(vectors.routes.size(), 1u);
    write_entry32(0, kData, 0x4030);
    EXPECT_EQ(vectors.routes.back(), (Route{0, {0xfee00000, 0x4030}}));
    write_entry32(0, kData, 0x4030);
    EXPECT_EQ(vectors.routes.size(), 2u);  // unchanged: no new route
    // Masked again and reprogrammed: routed once unmasked, not before.
    write_entry32(0, kControl, 1);
    program(0, 0xfee03000, 0x4031);
    EXPECT_EQ(vectors.routes.size(), 2u);
    write_entry32(0, kControl, 0);
    EXPECT_EQ(vectors.routes.back(), (Route{0, {0xfee03000, 0x4031}}));
}

TEST_F(MsixTest, QwordAccesses) {
    write_control(kEnable);
    EXPECT_TRUE(msix.write(0, kTable + 32, bytes_of<8>(0x00000001fee04000)));
    EXPECT_TRUE(msix.write(0, kTable + 40, bytes_of<8>(0x0000000000004040)));  // data, control 0: unmasked
    EXPECT_EQ(vectors.routes, (std::vector<Route>{{2, {0x00000001fee04000, 0x4040}}}));
    std::array<std::uint8_t, 8> data{};
    EXPECT_TRUE(msix.read(0, kTable + 32, data));
    EXPECT_EQ(value_of(data), 0x00000001fee04000u);
    EXPECT_TRUE(msix.read(0, kTable + 40, data));
    EXPECT_EQ(value_of(data), 0x0000000000004040u);
    EXPECT_EQ(read_entry32(2, kAddressHigh), 1u);
}

TEST_F(MsixTest, ReservedControlBitsStayZero) {
    write_entry32(0, kControl, 0xfffffffe);
    EXPECT_EQ(read_entry32(0, kControl), 0u);
    write_entry32(0, kControl, 0xffffffff);
    EXPECT_EQ(read_entry32(0, kControl), 1u);
}

TEST_F(MsixTest, BadSizesAndAlignmentsAreIgnored) {
    write_control(kEnable);
    const std::array<std::uint8_t, 1> byte{0};
    const std::array<std::uint8_t, 2> word{0, 0};
    EXPECT_TRUE(msix.write(0, kTable + kControl, byte));  // would unmask entry 0
    EXPECT_TRUE(msix.write(0, kTable + kControl, word));
    EXPECT_TRUE(msix.write(0, kTable + 2, bytes_of<4>(0)));   // misaligned dword
    EXPECT_TRUE(msix.write(0, kTable + 4, bytes_of<8>(0)));   // misaligned qword
    EXPECT_TRUE(msix.write(0, kTable + 44, bytes_of<8>(0)));  // straddles the table's end
    EXPECT_EQ(read_entry32(0, kControl), 1u);
    EXPECT_EQ(read_entry32(2, kControl), 1u);
    EXPECT_TRUE(vectors.routes.empty());

    std::array<std::uint8_t, 2> read_word{};
    EXPECT_TRUE(msix.read(0, kTable, read_word));
    EXPECT_EQ(read_word, (std::array<std::uint8_t, 2>{0xff, 0xff}));
    std::array<std::uint8_t, 4> read_dword{};
    EXPECT_TRUE(msix.read(0, kTable + 1, read_dword));
    EXPECT_EQ(value_of(read_dword), 0xffffffffu);
}

TEST_F(MsixTest, PbaIsReadOnly) {
    make_live(0);
    write_entry32(0, kControl, 1);
    msix.notify(0);
    EXPECT_TRUE(msix.write(0, kPba, bytes_of<8>(0)));
    EXPECT_TRUE(msix.write(0, kPba, bytes_of<8>(0xff)));
    EXPECT_EQ(read_pba(), 1u);
    EXPECT_TRUE(vectors.triggers.empty());
}

TEST_F(MsixTest, OtherAccessesAreTheDevices) {
    std::array<std::uint8_t, 4> data{};
    EXPECT_FALSE(msix.read(0, 0, data));
    EXPECT_FALSE(msix.read(0, kTable - 4, data));
    EXPECT_FALSE(msix.read(0, kTable + 48, data));
    EXPECT_FALSE(msix.read(0, kPba + 8, data));
    EXPECT_FALSE(msix.read(1, kTable, data));
    EXPECT_FALSE(msix.write(2, kTable, bytes_of<4>(0)));
    std::array<std::uint8_t, 8> straddling{};
    EXPECT_TRUE(msix.read(0, kTable - 4, straddling));  // touches the table: not the device's
    EXPECT_EQ(value_of(straddling), ~std::uint64_t{0});
}

std::string constructor_error(std::size_t count) {
    FakeMsiVectors vectors(count);
    try {
        Msix msix(vectors);
    } catch (const std::invalid_argument& error) {
        return error.what();
    }
    return "";
}

std::string capability_error(BarLocation table, BarLocation pba, std::size_t count = 3) {
    ConfigSpace config(kIdentity);
    config.add_bar(0, {.size = 0x1000});
    config.add_bar(1, {.size = 0x100});
    FakeMsiVectors vectors(count);
    Msix msix(vectors);
    try {
        msix.add_capability(config, table, pba);
    } catch (const std::invalid_argument& error) {
        return error.what();
    }
    return "";
}

TEST(Msix, RefusesBadLayouts) {
    EXPECT_EQ(constructor_error(0), "MSI-X: 0 vectors, not 1 to 2048");
    EXPECT_EQ(constructor_error(2049), "MSI-X: 2049 vectors, not 1 to 2048");
    EXPECT_EQ(constructor_error(2048), "");
    EXPECT_EQ(capability_error({2, 0}, {0, kPba}),
              "pci device 1af4:1042: MSI-X table at offset 0x0 of BAR 2: no such BAR");
    EXPECT_EQ(capability_error({0, 0x804}, {0, kPba}),
              "pci device 1af4:1042: MSI-X table at offset 0x804 of BAR 0: not 8-byte aligned");
    EXPECT_EQ(
        capability_error({1, 0x80}, {0, kPba}, 16),
        "pci device 1af4:1042: MSI-X table at offset 0x80 of BAR 1: 0x100 bytes do not fit in the BAR's "
        "0x100");
    EXPECT_EQ(capability_error({0, 0}, {0, 0x1000}),
              "pci device 1af4:1042: MSI-X PBA at offset 0x1000 of BAR 0: 0x8 bytes do not fit in the BAR's "
              "0x1000");
    EXPECT_EQ(capability_error({0, 0}, {0, 0x28}),
              "pci device 1af4:1042: MSI-X table and PBA overlap in BAR 0");
    EXPECT_EQ(capability_error({0, 0}, {1, 0}), "");
}

TEST(Msix, RefusesASecondCapability) {
    ConfigSpace config(kIdentity);
    config.add_bar(0, {.size = 0x1000});
    FakeMsiVectors vectors(1);
    Msix msix(vectors);
    msix.add_capability(config, {0, 0}, {0, 0x800});
    EXPECT_THROW(msix.add_capability(config, {0, 0}, {0, 0x800}), std::invalid_argument);
}

}  // namespace
}  // namespace vim::vmm::pci
