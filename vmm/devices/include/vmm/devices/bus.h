#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string>

#include "vmm/devices/bus_device.h"

namespace vim::vmm::devices {

// Routes the guest's accesses in one address space (port I/O or MMIO) to the
// device that owns the address. Ranges can be added, removed and moved while
// vCPUs run, as PCI BAR programming needs.
//
// Ownership: the bus shares ownership of its devices. The machine also drives
// some of them from host threads (console input into the UART, a shutdown
// request into the i8042), and a shared owner keeps a device alive for as long
// as any vCPU may still dispatch to it, whatever order teardown runs in.
//
// Concurrency: read() and write() may be called from any number of vCPU
// threads at once. The bus serialises nothing itself: it looks the range up
// under its table lock held shared, takes a reference to the device, and
// calls the device with no lock held. So vCPUs touching different devices
// never wait on each other, and a device may change the bus it is on (a BAR
// write that moves the device's own range) from inside its handler. Every
// device serialises its own registers with a mutex of its own.
class Bus {
public:
    // `name` appears in error messages ("port I/O", "MMIO"); addresses run
    // from 0 up to `end` (exclusive; 0 means the full 64-bit space).
    Bus(std::string name, std::uint64_t end);

    // Claims [base, base + length) for `device`. `device_name` appears in
    // error messages. Throws std::invalid_argument for an empty range, a null
    // device, a range past the end of the space, or one that overlaps a
    // registered range (naming both devices).
    void add(std::string device_name, std::uint64_t base, std::uint64_t length,
             std::shared_ptr<BusDevice> device);
    // Releases the range that starts at `base`; throws std::invalid_argument
    // if none does.
    void remove(std::uint64_t base);
    // Moves the range that starts at `base` to start at `new_base`, as one
    // step: no access sees the device at neither place. Throws as add() and
    // remove() do, and then leaves the range where it was.
    void move(std::uint64_t base, std::uint64_t new_base);

    // Dispatches an access to the device whose range holds every byte of it,
    // at the offset from the range's start. Returns false when no device does:
    // a read then sees all-ones (an undriven bus floats high), a write is
    // dropped, and the access is counted instead of failing the vCPU, because
    // guests probe for hardware that is not there.
    bool read(std::uint64_t address, std::span<std::uint8_t> data);
    bool write(std::uint64_t address, std::span<const std::uint8_t> data);

    std::uint64_t unhandled_reads() const;
    std::uint64_t unhandled_writes() const;

private:
    struct Range {
        std::string name;
        std::uint64_t length;
        std::shared_ptr<BusDevice> device;
    };

    // The device whose range holds [address, address + size), with the
    // access's offset in it; null when there is none.
    std::shared_ptr<BusDevice> find(std::uint64_t address, std::size_t size, std::uint64_t& offset) const;
    // Throws unless [base, base + length) is inside the space and free,
    // ignoring the range at `ignored_base` (the one being moved).
    void check_free(const std::string& device_name, std::uint64_t base, std::uint64_t length,
                    const Range* ignored) const;
    std::string describe(const std::string& device_name, std::uint64_t base, std::uint64_t length) const;

    std::string name_;
    std::uint64_t end_;
    mutable std::shared_mutex mutex_;
    std::map<std::uint64_t, Range> ranges_;  // keyed by first address
    std::atomic<std::uint64_t> unhandled_reads_{0};
    std::atomic<std::uint64_t> unhandled_writes_{0};
};

}  // namespace vim::vmm::devices
