#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <span>

#include "vmm/devices/bus_device.h"
#include "vmm/devices/interrupts.h"
#include "vmm/state/state.h"

namespace vim::vmm::devices {

// The ACPI PM1a fixed-hardware registers the FADT points at. They are two
// separate blocks at addresses the FADT gives independently, so they are two
// devices; they share no state, because SCI_EN is always set (there is no
// SMI_CMD port: the guest finds ACPI already enabled).

// PM1a event block: PM1_STS (2 bytes, write 1 to clear) then PM1_EN (2 bytes).
// The one event is the fixed-hardware power button, the graceful way for the
// host to ask an ACPI-aware guest (systemd, acpid) to shut down.
class AcpiPm1EventBlock final : public BusDevice, public state::Stateful {
public:
    static constexpr std::uint16_t kPortSpan = 4;  // the FADT's PM1_EVT_LEN

    // `sci` is the ACPI system control interrupt the FADT names.
    explicit AcpiPm1EventBlock(InterruptLine& sci);

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    // Host side, from any thread: a press of the power button. The guest sees
    // it once it has enabled the power-button event.
    void press_power_button();

    // PM1_STS and PM1_EN; restore() raises the SCI when an enabled event is pending.
    state::State save() const override;
    void restore(const state::State& state) override;

private:
    void update_interrupt();

    InterruptLine& sci_;
    mutable std::mutex mutex_;
    std::uint16_t status_ = 0;
    std::uint16_t enable_ = 0;
    bool interrupt_level_ = false;
};

// PM1a control block: PM1_CNT (2 bytes). Writing SLP_EN with the S5 sleep
// type (the one the DSDT's \_S5 advertises) powers the machine off; other
// sleep types are not advertised and are ignored.
class AcpiPm1ControlBlock final : public BusDevice, public state::Stateful {
public:
    static constexpr std::uint16_t kPortSpan = 2;  // the FADT's PM1_CNT_LEN

    // `on_power_off` is called on the vCPU thread, without the block's lock
    // held. Throws std::invalid_argument if `s5_sleep_type` does not fit
    // SLP_TYP's 3 bits.
    AcpiPm1ControlBlock(std::uint8_t s5_sleep_type, std::function<void()> on_power_off);

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    // PM1_CNT as the guest left it (SLP_TYP and the bits it may set).
    state::State save() const override;
    void restore(const state::State& state) override;

private:
    const std::uint8_t s5_sleep_type_;
    const std::function<void()> on_power_off_;
    mutable std::mutex mutex_;
    std::uint16_t control_ = 0;
};

}  // namespace vim::vmm::devices
