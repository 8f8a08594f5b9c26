#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "vmm/devices/interrupts.h"
#include "vmm/pci/config_space.h"
#include "vmm/state/state.h"

namespace vim::vmm::pci {

// Where an MSI-X structure (the table or the PBA) lies: a BAR and the offset
// in it, 8-byte aligned.
struct BarLocation {
    std::size_t bar = 0;
    std::uint32_t offset = 0;
};

// MSI-X for one function: the capability in config space, the vector table
// and the pending-bit array (PBA) the guest reaches through a BAR, and
// delivery through the function's MsiVectors.
//
// The capability's enable and function-mask bits live in the ConfigSpace,
// which the guest writes; sync() brings them here after each config write.
// Every vector's route follows its table entry whenever the vector could
// fire: when an entry becomes live (MSI-X enabled, function and entry
// unmasked) with a message other than the routed one, and when the guest
// rewrites a live entry. Drivers (Linux among them) program entries masked,
// one dword at a time, so this routes each finished message once instead of
// every half-written one.
//
// Thread-safe: vCPUs program the table while device threads notify().
class Msix {
public:
    static constexpr std::size_t kMaxVectors = 2048;
    static constexpr std::size_t kTableEntrySize = 16;

    // One table entry per vector of `vectors` (1 to 2048), all masked, as
    // after reset. Throws std::invalid_argument for another count.
    explicit Msix(devices::MsiVectors& vectors);

    // Adds the capability to `config`, whose BARs must already hold the
    // table and the PBA (without overlapping each other). Returns the
    // capability's offset. Throws std::invalid_argument otherwise, or if
    // called twice.
    std::size_t add_capability(ConfigSpace& config, BarLocation table, BarLocation pba);

    std::size_t vector_count() const { return table_.size(); }
    std::uint64_t table_size() const { return table_.size() * kTableEntrySize; }
    std::uint64_t pba_size() const { return (table_.size() + 63) / 64 * 8; }

    // After every guest write to `config`: picks up the enable and function-
    // mask bits, and sends what was pending on vectors they unmask.
    void sync(const ConfigSpace& config);

    // A BAR access, which the device passes here first. Returns false when it
    // does not touch the table or the PBA (the device handles it); otherwise
    // handles it. Only aligned dword and qword accesses do anything, as the
    // specification allows; others read all ones and write nothing.
    bool read(std::size_t bar, std::uint64_t offset, std::span<std::uint8_t> data);
    bool write(std::size_t bar, std::uint64_t offset, std::span<const std::uint8_t> data);

    enum class Delivery {
        kSent,
        kPending,       // masked: the PBA bit is set, and the vector fires on unmask
        kDisabled,      // MSI-X is off: the caller raises INTx instead
        kNoSuchVector,  // past the table (virtio's "no vector"): nothing is raised
    };
    // Raises `vector` for the device, from any thread.
    Delivery notify(std::size_t vector);

    bool enabled() const;

    // The table entries and pending bits; enable and function mask live in
    // the ConfigSpace. restore() takes them after `config` was restored:
    // every entry that is live gets its route set again, and a pending
    // vector stays pending (or fires, if live) as it would have.
    state::State save() const;
    void restore(const state::State& state, const ConfigSpace& config);

private:
    struct Entry {
        devices::MsiMessage message;
        std::uint32_t control = 1;  // bit 0: masked
        std::optional<devices::MsiMessage> routed;
        bool pending = false;
    };

    bool live(const Entry& entry) const;
    // Routes and delivers what is pending, once `vector` is live.
    void refresh(std::size_t vector);
    std::uint64_t read_table(std::uint64_t offset, std::size_t size) const;
    void write_table(std::uint64_t offset, std::size_t size, std::uint64_t value);
    std::uint64_t read_pba(std::uint64_t offset, std::size_t size) const;

    devices::MsiVectors& vectors_;
    mutable std::mutex mutex_;
    std::vector<Entry> table_;
    std::size_t capability_offset_ = 0;  // 0: not added yet
    BarLocation table_location_;
    BarLocation pba_location_;
    bool enabled_ = false;
    bool function_masked_ = false;
};

}  // namespace vim::vmm::pci
