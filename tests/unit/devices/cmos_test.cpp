#include "vmm/devices/cmos.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <ctime>

namespace vim::vmm::devices {
namespace {

constexpr std::uint8_t kRegisterA = 0x0a, kRegisterB = 0x0b, kRegisterC = 0x0c, kRegisterD = 0x0d;
constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr std::uint64_t kGiB = 1024 * kMiB;

std::uint8_t read_cmos(Cmos& cmos, std::uint8_t index) {
    cmos.write(Cmos::kIndexOffset, {&index, 1});
    std::uint8_t value = 0;
    cmos.read(Cmos::kDataOffset, {&value, 1});
    return value;
}

void write_cmos(Cmos& cmos, std::uint8_t index, std::uint8_t value) {
    cmos.write(Cmos::kIndexOffset, {&index, 1});
    cmos.write(Cmos::kDataOffset, {&value, 1});
}

int from_bcd(std::uint8_t value) { return (value >> 4) * 10 + (value & 0x0f); }

// The time the way Linux's mc146818_get_time() rebuilds it, in seconds since
// the epoch.
std::time_t guest_time(Cmos& cmos) {
    const bool binary = read_cmos(cmos, kRegisterB) & 0x04;
    const auto decode = [&](std::uint8_t index) {
        const std::uint8_t raw = read_cmos(cmos, index);
        return binary ? int{raw} : from_bcd(raw);
    };
    std::tm tm{};
    tm.tm_sec = decode(0x00);
    tm.tm_min = decode(0x02);
    tm.tm_hour = decode(0x04);
    tm.tm_mday = decode(0x07);
    tm.tm_mon = decode(0x08) - 1;
    tm.tm_year = decode(0x32) * 100 + decode(0x09) - 1900;
    return timegm(&tm);
}

std::chrono::system_clock::time_point utc(int year, int month, int day, int hour, int minute, int second) {
    std::tm tm{};
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    return std::chrono::system_clock::from_time_t(timegm(&tm));
}

TEST(Cmos, TimeMatchesTheHostInBcd) {
    Cmos cmos({});
    const std::time_t host = std::time(nullptr);
    EXPECT_EQ(read_cmos(cmos, kRegisterB), 0x02);  // 24-hour BCD by default
    EXPECT_LE(std::llabs(static_cast<long long>(guest_time(cmos) - host)), 2);
}

TEST(Cmos, TimeMatchesTheHostInBinary) {
    Cmos cmos({});
    write_cmos(cmos, kRegisterB, 0x06);
    const std::time_t host = std::time(nullptr);
    EXPECT_LE(std::llabs(static_cast<long long>(guest_time(cmos) - host)), 2);
}

TEST(Cmos, EncodesEveryFieldInBcdAndBinary) {
    // Saturday 2087-11-29 21:47:38 UTC.
    Cmos cmos({}, [] { return utc(2087, 11, 29, 21, 47, 38); });
    EXPECT_EQ(read_cmos(cmos, 0x00), 0x38);
    EXPECT_EQ(read_cmos(cmos, 0x02), 0x47);
    EXPECT_EQ(read_cmos(cmos, 0x04), 0x21);
    EXPECT_EQ(read_cmos(cmos, 0x06), 0x07);  // Sunday is 1
    EXPECT_EQ(read_cmos(cmos, 0x07), 0x29);
    EXPECT_EQ(read_cmos(cmos, 0x08), 0x11);
    EXPECT_EQ(read_cmos(cmos, 0x09), 0x87);
    EXPECT_EQ(read_cmos(cmos, 0x32), 0x20);

    write_cmos(cmos, kRegisterB, 0x06);
    EXPECT_EQ(read_cmos(cmos, 0x00), 38);
    EXPECT_EQ(read_cmos(cmos, 0x04), 21);
    EXPECT_EQ(read_cmos(cmos, 0x09), 87);
    EXPECT_EQ(read_cmos(cmos, 0x32), 20);
}

TEST(Cmos, TwelveHourModeFlagsTheAfternoon) {
    auto now = utc(2024, 1, 1, 0, 5, 0);
    Cmos cmos({}, [&] { return now; });
    write_cmos(cmos, kRegisterB, 0x00);      // 12-hour, BCD
    EXPECT_EQ(read_cmos(cmos, 0x04), 0x12);  // 12 AM
    now = utc(2024, 1, 1, 11, 0, 0);
    EXPECT_EQ(read_cmos(cmos, 0x04), 0x11);
    now = utc(2024, 1, 1, 12, 0, 0);
    EXPECT_EQ(read_cmos(cmos, 0x04), 0x92);  // 12 PM
    now = utc(2024, 1, 1, 23, 0, 0);
    EXPECT_EQ(read_cmos(cmos, 0x04), 0x91);
    write_cmos(cmos, kRegisterB, 0x04);  // 12-hour, binary
    EXPECT_EQ(read_cmos(cmos, 0x04), 0x80 | 11);
}

TEST(Cmos, GuestWritesToTheClockDoNotMoveIt) {
    Cmos cmos({}, [] { return utc(2030, 6, 15, 8, 30, 0); });
    write_cmos(cmos, 0x04, 0x23);
    EXPECT_EQ(read_cmos(cmos, 0x04), 0x08);
}

TEST(Cmos, StatusRegisters) {
    Cmos cmos({});
    EXPECT_EQ(read_cmos(cmos, kRegisterA), 0x26);  // update never in progress
    write_cmos(cmos, kRegisterA, 0xa6);
    EXPECT_EQ(read_cmos(cmos, kRegisterA), 0x26);
    EXPECT_EQ(read_cmos(cmos, kRegisterC), 0x00);
    EXPECT_EQ(read_cmos(cmos, kRegisterD), 0x80);  // RAM and time valid
    write_cmos(cmos, kRegisterD, 0x00);
    EXPECT_EQ(read_cmos(cmos, kRegisterD), 0x80);
}

TEST(Cmos, NmiMaskBitIsNotPartOfTheIndex) {
    Cmos cmos({});
    write_cmos(cmos, 0x40, 0x5a);
    EXPECT_EQ(read_cmos(cmos, 0x80 | 0x40), 0x5a);
    write_cmos(cmos, 0x80 | 0x41, 0xa5);
    EXPECT_EQ(read_cmos(cmos, 0x41), 0xa5);
    EXPECT_EQ(read_cmos(cmos, 0x80 | kRegisterB), 0x02);
}

TEST(Cmos, MemorySizeBytes) {
    Cmos cmos({.below_4g = 3 * kGiB, .above_4g = 5 * kGiB});
    const auto word = [&](std::uint8_t index) {
        return read_cmos(cmos, index) | read_cmos(cmos, index + 1) << 8;
    };
    EXPECT_EQ(word(0x15), 640);
    EXPECT_EQ(word(0x17), 0xffff);  // capped: more than 64 MiB above 1 MiB
    EXPECT_EQ(word(0x30), 0xffff);
    EXPECT_EQ(word(0x34), (3 * kGiB - 16 * kMiB) / (64 * 1024));
    EXPECT_EQ(word(0x5b) | read_cmos(cmos, 0x5d) << 16, 5 * kGiB / (64 * 1024));
}

TEST(Cmos, SmallMemoryFillsOnlyTheLowFields) {
    Cmos cmos({.below_4g = 12 * kMiB});
    const auto word = [&](std::uint8_t index) {
        return read_cmos(cmos, index) | read_cmos(cmos, index + 1) << 8;
    };
    EXPECT_EQ(word(0x15), 640);
    EXPECT_EQ(word(0x17), 11 * 1024);
    EXPECT_EQ(word(0x34), 0);
    EXPECT_EQ(word(0x5b), 0);
}

TEST(Cmos, IndexPortReadsAsFloating) {
    Cmos cmos({});
    std::uint8_t value = 0;
    cmos.read(Cmos::kIndexOffset, {&value, 1});
    EXPECT_EQ(value, 0xff);
}

}  // namespace
}  // namespace vim::vmm::devices
