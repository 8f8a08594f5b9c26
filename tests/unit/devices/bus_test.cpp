#include "vmm/devices/bus.h"

#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace vim::vmm::devices {
namespace {

// Remembers accesses and answers reads with the offset, so tests see where
// the bus routed them.
class RecordingDevice final : public BusDevice {
public:
    void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
        reads.push_back(offset);
        for (auto& byte : data) {
            byte = static_cast<std::uint8_t>(offset);
        }
    }
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
        writes.emplace_back(offset, std::vector<std::uint8_t>(data.begin(), data.end()));
    }

    std::vector<std::uint64_t> reads;
    std::vector<std::pair<std::uint64_t, std::vector<std::uint8_t>>> writes;
};

std::string add_error(Bus& bus, std::string name, std::uint64_t base, std::uint64_t length) {
    try {
        bus.add(std::move(name), base, length, std::make_shared<RecordingDevice>());
    } catch (const std::invalid_argument& error) {
        return error.what();
    }
    return "";
}

TEST(Bus, DispatchesWithOffsetFromBase) {
    Bus bus("port I/O", 0x10000);
    auto serial = std::make_shared<RecordingDevice>();
    bus.add("serial", 0x3f8, 8, serial);

    std::array<std::uint8_t, 1> byte{};
    EXPECT_TRUE(bus.read(0x3fd, byte));
    EXPECT_EQ(byte[0], 5);
    const std::array<std::uint8_t, 1> value{0x41};
    EXPECT_TRUE(bus.write(0x3f8, value));

    ASSERT_EQ(serial->writes.size(), 1u);
    EXPECT_EQ(serial->writes[0].first, 0);
    EXPECT_EQ(serial->writes[0].second, std::vector<std::uint8_t>{0x41});
    EXPECT_EQ(bus.unhandled_reads(), 0u);
    EXPECT_EQ(bus.unhandled_writes(), 0u);
}

TEST(Bus, RoutesAdjacentRangesToTheirOwners) {
    Bus bus("port I/O", 0x10000);
    auto low = std::make_shared<RecordingDevice>();
    auto high = std::make_shared<RecordingDevice>();
    bus.add("low", 0x70, 2, low);
    bus.add("high", 0x72, 2, high);

    std::array<std::uint8_t, 1> byte{};
    EXPECT_TRUE(bus.read(0x71, byte));
    EXPECT_TRUE(bus.read(0x72, byte));
    EXPECT_EQ(low->reads, std::vector<std::uint64_t>{1});
    EXPECT_EQ(high->reads, std::vector<std::uint64_t>{0});
}

TEST(Bus, UnknownPortsReadAllOnesAndAreCounted) {
    Bus bus("port I/O", 0x10000);
    bus.add("serial", 0x3f8, 8, std::make_shared<RecordingDevice>());

    std::array<std::uint8_t, 4> data{};
    EXPECT_FALSE(bus.read(0x2f8, data));
    EXPECT_EQ(data, (std::array<std::uint8_t, 4>{0xff, 0xff, 0xff, 0xff}));
    const std::array<std::uint8_t, 1> value{0};
    EXPECT_FALSE(bus.write(0x80, value));
    EXPECT_FALSE(bus.write(0x81, value));

    EXPECT_EQ(bus.unhandled_reads(), 1u);
    EXPECT_EQ(bus.unhandled_writes(), 2u);
}

TEST(Bus, AccessRunningPastTheEndOfARangeIsUnhandled) {
    Bus bus("port I/O", 0x10000);
    auto device = std::make_shared<RecordingDevice>();
    bus.add("cmos", 0x70, 2, device);

    std::array<std::uint8_t, 2> word{};
    EXPECT_FALSE(bus.read(0x71, word));
    EXPECT_TRUE(device->reads.empty());
    EXPECT_EQ(bus.unhandled_reads(), 1u);
}

TEST(Bus, RejectsOverlapsNamingBothDevices) {
    Bus bus("port I/O", 0x10000);
    bus.add("serial", 0x3f8, 8, std::make_shared<RecordingDevice>());

    EXPECT_EQ(add_error(bus, "other", 0x3f8, 8),
              "port I/O bus: other at 0x3f8-0x3ff overlaps serial at 0x3f8-0x3ff");
    EXPECT_EQ(add_error(bus, "below", 0x3f0, 9),
              "port I/O bus: below at 0x3f0-0x3f8 overlaps serial at 0x3f8-0x3ff");
    EXPECT_EQ(add_error(bus, "inside", 0x3fa, 1),
              "port I/O bus: inside at 0x3fa-0x3fa overlaps serial at 0x3f8-0x3ff");
    EXPECT_EQ(add_error(bus, "above", 0x3ff, 4),
              "port I/O bus: above at 0x3ff-0x402 overlaps serial at 0x3f8-0x3ff");
    // Touching ranges do not overlap.
    EXPECT_EQ(add_error(bus, "before", 0x3f0, 8), "");
    EXPECT_EQ(add_error(bus, "after", 0x400, 8), "");
}

TEST(Bus, RejectsEmptyNullAndOutOfSpaceRanges) {
    Bus bus("port I/O", 0x10000);
    EXPECT_EQ(add_error(bus, "empty", 0x10, 0), "port I/O bus: device empty has an empty range");
    EXPECT_EQ(add_error(bus, "tail", 0xfff8, 9),
              "port I/O bus: tail at 0xfff8 of length 0x9 runs past the end of the space");
    EXPECT_EQ(add_error(bus, "last", 0xfff8, 8), "");
    EXPECT_THROW(bus.add("null", 0x10, 1, nullptr), std::invalid_argument);
}

TEST(Bus, SixtyFourBitSpaceTakesRangesUpToTheTopButNotAcrossIt) {
    Bus bus("MMIO", 0);
    auto top = std::make_shared<RecordingDevice>();
    bus.add("top", 0xffff'ffff'ffff'f000, 0x1000, top);
    EXPECT_EQ(add_error(bus, "wrap", 0xffff'ffff'ffff'ff00, 0x200),
              "MMIO bus: wrap at 0xffffffffffffff00 of length 0x200 runs past the end of the space");

    std::array<std::uint8_t, 8> quad{};
    EXPECT_TRUE(bus.read(0xffff'ffff'ffff'fff8, quad));
    EXPECT_EQ(top->reads, std::vector<std::uint64_t>{0xff8});
    EXPECT_FALSE(bus.read(0xffff'ffff'ffff'fffc, quad));  // would wrap past the top
}

// What a PCI BAR write does: the device answers at its new address only.
TEST(Bus, MovedRangeAnswersAtItsNewBaseOnly) {
    Bus bus("MMIO", 0);
    auto bar = std::make_shared<RecordingDevice>();
    bus.add("virtio-blk BAR 0", 0xc000'0000, 0x4000, bar);
    bus.move(0xc000'0000, 0xc010'0000);

    std::array<std::uint8_t, 4> data{};
    EXPECT_FALSE(bus.read(0xc000'0010, data));
    EXPECT_TRUE(bus.read(0xc010'0010, data));
    EXPECT_EQ(bar->reads, std::vector<std::uint64_t>{0x10});
    // Moving onto its own old place, partly overlapping itself, is allowed.
    bus.move(0xc010'0000, 0xc010'2000);
    EXPECT_TRUE(bus.read(0xc010'5fff, std::span(data).first(1)));
}

TEST(Bus, RefusedMoveLeavesTheRangeWhereItWas) {
    Bus bus("MMIO", 0);
    auto first = std::make_shared<RecordingDevice>();
    bus.add("first", 0x1000, 0x1000, first);
    bus.add("second", 0x3000, 0x1000, std::make_shared<RecordingDevice>());
    try {
        bus.move(0x1000, 0x3800);
        FAIL() << "move onto another range succeeded";
    } catch (const std::invalid_argument& error) {
        EXPECT_STREQ(error.what(), "MMIO bus: first at 0x3800-0x47ff overlaps second at 0x3000-0x3fff");
    }
    std::array<std::uint8_t, 1> byte{};
    EXPECT_TRUE(bus.read(0x1000, byte));
    EXPECT_THROW(bus.move(0x2000, 0x5000), std::invalid_argument);
}

TEST(Bus, RemovedRangeIsUnhandledAndItsSpaceFree) {
    Bus bus("MMIO", 0);
    bus.add("bar", 0x1000, 0x1000, std::make_shared<RecordingDevice>());
    bus.remove(0x1000);
    std::array<std::uint8_t, 1> byte{};
    EXPECT_FALSE(bus.read(0x1000, byte));
    EXPECT_EQ(add_error(bus, "other", 0x1800, 0x10), "");
    EXPECT_THROW(bus.remove(0x1000), std::invalid_argument);
}

// A device may move its own range from inside its handler (a BAR write): the
// bus holds no lock while a device runs.
TEST(Bus, DeviceCanMoveItselfFromItsOwnHandler) {
    Bus bus("MMIO", 0);
    class SelfMoving final : public BusDevice {
    public:
        explicit SelfMoving(Bus& bus) : bus_(bus) {}
        void read(std::uint64_t, std::span<std::uint8_t>) override {}
        void write(std::uint64_t, std::span<const std::uint8_t>) override { bus_.move(0x1000, 0x8000); }

    private:
        Bus& bus_;
    };
    bus.add("self", 0x1000, 0x100, std::make_shared<SelfMoving>(bus));
    const std::array<std::uint8_t, 4> value{};
    EXPECT_TRUE(bus.write(0x1000, value));
    std::array<std::uint8_t, 1> byte{};
    EXPECT_TRUE(bus.read(0x8000, byte));
}

}  // namespace
}  // namespace vim::vmm::devices
