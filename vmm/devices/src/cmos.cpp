#include "vmm/devices/cmos.h"

#include <algorithm>
#include <ctime>

namespace vim::vmm::devices {
namespace {

constexpr std::uint8_t kSeconds = 0x00;
constexpr std::uint8_t kMinutes = 0x02;
constexpr std::uint8_t kHours = 0x04;
constexpr std::uint8_t kWeekday = 0x06;
constexpr std::uint8_t kDayOfMonth = 0x07;
constexpr std::uint8_t kMonth = 0x08;
constexpr std::uint8_t kYear = 0x09;
constexpr std::uint8_t kRegisterA = 0x0a;
constexpr std::uint8_t kRegisterB = 0x0b;
constexpr std::uint8_t kRegisterC = 0x0c;
constexpr std::uint8_t kRegisterD = 0x0d;
constexpr std::uint8_t kCentury = 0x32;  // where ACPI's FADT says it is, and Linux looks

constexpr std::uint8_t kIndexMask = 0x7f;  // bit 7 masks NMIs; none come from here

// Register A: 32.768 kHz time base (divider 010) and a 1024 Hz periodic rate;
// bit 7, update in progress, reads as zero.
constexpr std::uint8_t kDefaultRegisterA = 0x26;
constexpr std::uint8_t kRegisterAUpdateInProgress = 0x80;
constexpr std::uint8_t kRegisterB24Hour = 0x02;
constexpr std::uint8_t kRegisterBBinary = 0x04;
constexpr std::uint8_t kDefaultRegisterB = kRegisterB24Hour;  // BCD, 24-hour
constexpr std::uint8_t kRegisterDValidRam = 0x80;
constexpr std::uint8_t kHourPm = 0x80;

// Memory size bytes, in the places and units BIOSes use.
constexpr std::uint8_t kBaseMemoryKiB = 0x15;          // 2 bytes, KiB below 640 KiB
constexpr std::uint8_t kExtendedMemoryKiB = 0x17;      // 2 bytes, KiB from 1 MiB up
constexpr std::uint8_t kExtendedMemoryKiBCopy = 0x30;  // the same, where POST reports it
constexpr std::uint8_t kMemoryAbove16M = 0x34;         // 2 bytes, 64 KiB units, up to 4 GiB
constexpr std::uint8_t kMemoryAbove4G = 0x5b;          // 3 bytes, 64 KiB units

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;

int to_bcd(int value) { return (value / 10) << 4 | value % 10; }

}  // namespace

Cmos::Cmos(MemorySize memory, Clock clock) : clock_(std::move(clock)) {
    bytes_[kRegisterA] = kDefaultRegisterA;
    bytes_[kRegisterB] = kDefaultRegisterB;
    bytes_[kRegisterD] = kRegisterDValidRam;

    const auto put = [this](std::uint8_t index, std::uint64_t value, int length) {
        for (int i = 0; i < length; ++i) {
            bytes_[index + i] = static_cast<std::uint8_t>(value >> (8 * i));
        }
    };
    const std::uint64_t below_4g = memory.below_4g;
    put(kBaseMemoryKiB, std::min<std::uint64_t>(below_4g / kKiB, 640), 2);
    const std::uint64_t extended =
        std::min<std::uint64_t>(below_4g > kMiB ? (below_4g - kMiB) / kKiB : 0, 0xffff);
    put(kExtendedMemoryKiB, extended, 2);
    put(kExtendedMemoryKiBCopy, extended, 2);
    put(kMemoryAbove16M,
        std::min<std::uint64_t>(below_4g > 16 * kMiB ? (below_4g - 16 * kMiB) / (64 * kKiB) : 0, 0xffff), 2);
    put(kMemoryAbove4G, std::min<std::uint64_t>(memory.above_4g / (64 * kKiB), 0xffffff), 3);
}

void Cmos::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < data.size(); ++i) {
        // The index port is write-only on the chip.
        data[i] = offset + i == kDataOffset ? read_data() : 0xff;
    }
}

void Cmos::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < data.size(); ++i) {
        if (offset + i == kIndexOffset) {
            index_ = data[i] & kIndexMask;
        } else if (offset + i == kDataOffset) {
            write_data(data[i]);
        }
    }
}

state::State Cmos::save() const {
    std::lock_guard lock(mutex_);
    return {{"bytes", state::binary(std::span<const std::uint8_t>(bytes_))}, {"index", index_}};
}

void Cmos::restore(const state::State& state) {
    state::restoring("cmos", [&] {
        std::array<std::uint8_t, 128> bytes;
        state::bytes_field(state, "bytes", bytes);
        if (bytes[kRegisterA] & kRegisterAUpdateInProgress) {
            throw state::StateError("bytes: register A has update-in-progress set, which no guest can write");
        }
        const auto index = state::unsigned_field<std::uint8_t>(state, "index");
        if (index > kIndexMask) {
            throw state::StateError("index: " + std::to_string(index) + " is past the 128 bytes");
        }
        std::lock_guard lock(mutex_);
        bytes_ = bytes;
        index_ = index;
    });
}

std::uint8_t Cmos::read_data() {
    switch (index_) {
    case kSeconds:
    case kMinutes:
    case kHours:
    case kWeekday:
    case kDayOfMonth:
    case kMonth:
    case kYear:
    case kCentury: {
        const std::time_t now = std::chrono::system_clock::to_time_t(clock_());
        std::tm utc{};
        gmtime_r(&now, &utc);
        switch (index_) {
        case kSeconds:
            return encode(utc.tm_sec);
        case kMinutes:
            return encode(utc.tm_min);
        case kHours:
            if (bytes_[kRegisterB] & kRegisterB24Hour) {
                return encode(utc.tm_hour);
            } else {
                // 12-hour form counts 12, 1, ..., 11 and flags the afternoon in bit 7.
                const int hour = utc.tm_hour % 12 == 0 ? 12 : utc.tm_hour % 12;
                return encode(hour) | (utc.tm_hour >= 12 ? kHourPm : 0);
            }
        case kWeekday:
            return encode(utc.tm_wday + 1);  // Sunday is 1
        case kDayOfMonth:
            return encode(utc.tm_mday);
        case kMonth:
            return encode(utc.tm_mon + 1);
        case kYear:
            return encode((utc.tm_year + 1900) % 100);
        default:
            return encode((utc.tm_year + 1900) / 100);
        }
    }
    case kRegisterC:
        return 0;  // no interrupt flags: no interrupts are generated
    case kRegisterD:
        return kRegisterDValidRam;  // the battery is fine
    default:
        return bytes_[index_];
    }
}

void Cmos::write_data(std::uint8_t value) {
    switch (index_) {
    case kRegisterA:
        bytes_[kRegisterA] = value & ~kRegisterAUpdateInProgress;
        break;
    case kRegisterC:
    case kRegisterD:
        break;  // read-only
    default:
        bytes_[index_] = value;
        break;
    }
}

std::uint8_t Cmos::encode(int value) const {
    return static_cast<std::uint8_t>((bytes_[kRegisterB] & kRegisterBBinary) ? value : to_bcd(value));
}

}  // namespace vim::vmm::devices
