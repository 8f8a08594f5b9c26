#include "vmm/devices/acpi_pm.h"

#include <stdexcept>
#include <string>

namespace vim::vmm::devices {
namespace {

constexpr std::uint16_t kPowerButton = 1u << 8;  // PWRBTN_STS / PWRBTN_EN
// Events this block can raise; status bits outside it never get set.
constexpr std::uint16_t kEvents = kPowerButton;

constexpr std::uint16_t kSciEnable = 1u << 0;
constexpr std::uint16_t kGlobalLockRelease = 1u << 2;  // GBL_RLS, write-only
constexpr unsigned kSleepTypeShift = 10;
constexpr std::uint16_t kSleepTypeMask = 0x7u << kSleepTypeShift;
constexpr std::uint16_t kSleepEnable = 1u << 13;  // SLP_EN, write-only
constexpr std::uint16_t kWriteOnly = kSleepEnable | kGlobalLockRelease;

std::uint8_t byte_of(std::uint32_t value, std::size_t index) {
    return static_cast<std::uint8_t>(value >> (8 * index));
}

}  // namespace

AcpiPm1EventBlock::AcpiPm1EventBlock(InterruptLine& sci) : sci_(sci) {}

void AcpiPm1EventBlock::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    const std::uint32_t block = status_ | std::uint32_t{enable_} << 16;
    for (std::size_t i = 0; i < data.size(); ++i) {
        const std::size_t index = offset + i;
        data[i] = index < kPortSpan ? byte_of(block, index) : 0xff;
    }
}

void AcpiPm1EventBlock::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < data.size(); ++i) {
        const std::size_t index = offset + i;
        const std::uint16_t shift = 8 * (index % 2);
        if (index < 2) {
            status_ &= static_cast<std::uint16_t>(~(data[i] << shift));
        } else if (index < kPortSpan) {
            enable_ = static_cast<std::uint16_t>((enable_ & ~(0xff << shift)) | data[i] << shift);
        }
    }
    update_interrupt();
}

void AcpiPm1EventBlock::press_power_button() {
    std::lock_guard lock(mutex_);
    status_ |= kPowerButton;
    update_interrupt();
}

state::State AcpiPm1EventBlock::save() const {
    std::lock_guard lock(mutex_);
    return {{"status", status_}, {"enable", enable_}};
}

void AcpiPm1EventBlock::restore(const state::State& state) {
    state::restoring("acpi-pm1-event", [&] {
        const auto status = state::unsigned_field<std::uint16_t>(state, "status");
        if (status & ~kEvents) {
            throw state::StateError("status: " + std::to_string(status) +
                                    " has events this block never raises");
        }
        const auto enable = state::unsigned_field<std::uint16_t>(state, "enable");
        std::lock_guard lock(mutex_);
        status_ = status;
        enable_ = enable;
        interrupt_level_ = false;  // as a line never driven: raised if an event is pending
        update_interrupt();
    });
}

void AcpiPm1EventBlock::update_interrupt() {
    // The SCI is level-triggered: it stays up until the guest clears the
    // status bit or disables the event.
    const bool level = (status_ & enable_ & kEvents) != 0;
    if (level != interrupt_level_) {
        interrupt_level_ = level;
        sci_.set_level(level);
    }
}

AcpiPm1ControlBlock::AcpiPm1ControlBlock(std::uint8_t s5_sleep_type, std::function<void()> on_power_off)
    : s5_sleep_type_(s5_sleep_type), on_power_off_(std::move(on_power_off)) {
    if (s5_sleep_type > (kSleepTypeMask >> kSleepTypeShift)) {
        throw std::invalid_argument("acpi pm1 control: S5 sleep type " + std::to_string(s5_sleep_type) +
                                    " does not fit SLP_TYP's 3 bits");
    }
}

state::State AcpiPm1ControlBlock::save() const {
    std::lock_guard lock(mutex_);
    return {{"control", control_}};
}

void AcpiPm1ControlBlock::restore(const state::State& state) {
    state::restoring("acpi-pm1-control", [&] {
        const auto control = state::unsigned_field<std::uint16_t>(state, "control");
        if (control & kWriteOnly) {
            throw state::StateError("control: " + std::to_string(control) + " has write-only bits set");
        }
        std::lock_guard lock(mutex_);
        control_ = control;
    });
}

void AcpiPm1ControlBlock::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    const std::uint16_t value = control_ | kSciEnable;
    for (std::size_t i = 0; i < data.size(); ++i) {
        const std::size_t index = offset + i;
        data[i] = index < kPortSpan ? byte_of(value, index) : 0xff;
    }
}

void AcpiPm1ControlBlock::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    bool power_off = false;
    {
        std::lock_guard lock(mutex_);
        std::uint16_t value = control_;
        bool written = false;
        for (std::size_t i = 0; i < data.size(); ++i) {
            const std::size_t index = offset + i;
            if (index < kPortSpan) {
                const unsigned shift = 8 * index;
                value = static_cast<std::uint16_t>((value & ~(0xffu << shift)) | data[i] << shift);
                written = true;
            }
        }
        if (!written) {
            return;
        }
        // SLP_TYP and SLP_EN share the high byte, so a byte write of it alone
        // is a complete sleep request, as is the usual 16-bit write.
        power_off = (value & kSleepEnable) && ((value & kSleepTypeMask) >> kSleepTypeShift) == s5_sleep_type_;
        control_ = value & ~kWriteOnly;
    }
    if (power_off && on_power_off_) {
        on_power_off_();
    }
}

}  // namespace vim::vmm::devices
