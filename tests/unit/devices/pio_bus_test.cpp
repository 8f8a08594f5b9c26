#include "vmm/devices/pio_bus.h"

#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace vmm::devices {
namespace {

// Remembers accesses and answers reads with the offset, so tests see where
// the bus routed them.
class RecordingDevice final : public PioDevice {
public:
    void read(std::uint16_t offset, std::span<std::uint8_t> data) override {
        reads.push_back(offset);
        for (auto& byte : data) {
            byte = static_cast<std::uint8_t>(offset);
        }
    }
    void write(std::uint16_t offset, std::span<const std::uint8_t> data) override {
        writes.emplace_back(offset, std::vector<std::uint8_t>(data.begin(), data.end()));
    }

    std::vector<std::uint16_t> reads;
    std::vector<std::pair<std::uint16_t, std::vector<std::uint8_t>>> writes;
};

std::string add_error(PioBus& bus, std::string name, std::uint16_t base, std::uint16_t length) {
    try {
        bus.add_device(std::move(name), base, length, std::make_shared<RecordingDevice>());
    } catch (const std::invalid_argument& error) {
        return error.what();
    }
    return "";
}

TEST(PioBus, DispatchesWithOffsetFromBase) {
    PioBus bus;
    auto serial = std::make_shared<RecordingDevice>();
    bus.add_device("serial", 0x3f8, 8, serial);

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

TEST(PioBus, RoutesAdjacentRangesToTheirOwners) {
    PioBus bus;
    auto low = std::make_shared<RecordingDevice>();
    auto high = std::make_shared<RecordingDevice>();
    bus.add_device("low", 0x70, 2, low);
    bus.add_device("high", 0x72, 2, high);

    std::array<std::uint8_t, 1> byte{};
    EXPECT_TRUE(bus.read(0x71, byte));
    EXPECT_TRUE(bus.read(0x72, byte));
    EXPECT_EQ(low->reads, std::vector<std::uint16_t>{1});
    EXPECT_EQ(high->reads, std::vector<std::uint16_t>{0});
}

TEST(PioBus, UnknownPortsReadAllOnesAndAreCounted) {
    PioBus bus;
    bus.add_device("serial", 0x3f8, 8, std::make_shared<RecordingDevice>());

    std::array<std::uint8_t, 4> data{};
    EXPECT_FALSE(bus.read(0x2f8, data));
    EXPECT_EQ(data, (std::array<std::uint8_t, 4>{0xff, 0xff, 0xff, 0xff}));
    const std::array<std::uint8_t, 1> value{0};
    EXPECT_FALSE(bus.write(0x80, value));
    EXPECT_FALSE(bus.write(0x81, value));

    EXPECT_EQ(bus.unhandled_reads(), 1u);
    EXPECT_EQ(bus.unhandled_writes(), 2u);
}

TEST(PioBus, AccessRunningPastTheEndOfARangeIsUnhandled) {
    PioBus bus;
    auto device = std::make_shared<RecordingDevice>();
    bus.add_device("cmos", 0x70, 2, device);

    std::array<std::uint8_t, 2> word{};
    EXPECT_FALSE(bus.read(0x71, word));
    EXPECT_TRUE(device->reads.empty());
    EXPECT_EQ(bus.unhandled_reads(), 1u);
}

TEST(PioBus, RejectsOverlapsNamingBothDevices) {
    PioBus bus;
    bus.add_device("serial", 0x3f8, 8, std::make_shared<RecordingDevice>());

    EXPECT_EQ(add_error(bus, "other", 0x3f8, 8),
              "pio bus: other at ports 0x3f8-0x3ff overlaps serial at ports 0x3f8-0x3ff");
    EXPECT_EQ(add_error(bus, "below", 0x3f0, 9),
              "pio bus: below at ports 0x3f0-0x3f8 overlaps serial at ports 0x3f8-0x3ff");
    EXPECT_EQ(add_error(bus, "inside", 0x3fa, 1),
              "pio bus: inside at ports 0x3fa-0x3fa overlaps serial at ports 0x3f8-0x3ff");
    EXPECT_EQ(add_error(bus, "above", 0x3ff, 4),
              "pio bus: above at ports 0x3ff-0x402 overlaps serial at ports 0x3f8-0x3ff");
    // Touching ranges do not overlap.
    EXPECT_EQ(add_error(bus, "before", 0x3f0, 8), "");
    EXPECT_EQ(add_error(bus, "after", 0x400, 8), "");
}

TEST(PioBus, RejectsEmptyNullAndOutOfSpaceRanges) {
    PioBus bus;
    EXPECT_EQ(add_error(bus, "empty", 0x10, 0), "pio bus: device empty has an empty port range");
    EXPECT_EQ(add_error(bus, "tail", 0xfff8, 9),
              "pio bus: tail at ports 0xfff8-0x10000 runs past port 0xffff");
    EXPECT_EQ(add_error(bus, "last", 0xfff8, 8), "");
    EXPECT_THROW(bus.add_device("null", 0x10, 1, nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace vmm::devices
