#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>

#include "vmm/devices/bus_device.h"
#include "vmm/state/state.h"

namespace vim::vmm::devices {

// The PC's CMOS RAM and real-time clock (an MC146818), at an index port and a
// data port (0x70 and 0x71 on a PC); the index's bit 7 is the NMI mask, which
// is not part of the address.
//
// The clock is the host's: every read of a time register converts the host's
// UTC time at that moment, in BCD or binary and 12- or 24-hour form as
// register B asks. The guest may write the time registers, and the bytes are
// stored, but the clock keeps the host's time: a guest must not be able to
// move its own wall clock away from the host's, and Linux only writes the RTC
// to mirror a time it got from NTP anyway. Update-in-progress always reads
// clear, since no update cycle ever runs; Linux re-reads the seconds to catch
// a read that straddles a tick. No alarm, periodic or update interrupts.
//
// Firmware conventionally leaves the memory size in CMOS; the boot path does
// not need it, but guests and tools that look there find what QEMU and Cloud
// Hypervisor put.
class Cmos final : public BusDevice, public state::Stateful {
public:
    struct MemorySize {
        std::uint64_t below_4g = 0;  // bytes of RAM below 4 GiB (including the first MiB)
        std::uint64_t above_4g = 0;  // bytes of RAM from 4 GiB up
    };
    using Clock = std::function<std::chrono::system_clock::time_point()>;

    static constexpr std::uint16_t kIndexOffset = 0;
    static constexpr std::uint16_t kDataOffset = 1;
    static constexpr std::uint16_t kPortSpan = 2;

    explicit Cmos(
        MemorySize memory, Clock clock = [] { return std::chrono::system_clock::now(); });

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    // The RAM bytes (what the guest wrote, the time registers among them)
    // and the index; the clock itself is the destination host's.
    state::State save() const override;
    void restore(const state::State& state) override;

private:
    std::uint8_t read_data();
    void write_data(std::uint8_t value);
    std::uint8_t encode(int value) const;

    const Clock clock_;
    mutable std::mutex mutex_;
    std::array<std::uint8_t, 128> bytes_{};
    std::uint8_t index_ = 0;
};

}  // namespace vim::vmm::devices
