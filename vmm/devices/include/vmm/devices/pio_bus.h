#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string>

#include "vmm/devices/pio_device.h"

namespace vmm::devices {

// Routes the guest's port I/O to the device that owns the port.
//
// Ownership: the bus shares ownership of its devices. The machine also drives
// some of them from host threads (console input into the UART, a shutdown
// request into the i8042), and a shared owner keeps a device alive for as long
// as any vCPU may still dispatch to it, whatever order teardown runs in.
//
// Concurrency: read() and write() may be called from any number of vCPU
// threads at once. The bus serialises nothing itself: it holds its table lock
// shared during a dispatch, and every device serialises its own registers with
// a mutex of its own. So vCPUs touching different devices never wait on each
// other, and a device's host-side entry points (console input, shutdown
// requests) take the same lock as the guest's accesses. Registration takes the
// table lock exclusively and is meant for machine setup, before vCPUs run.
class PioBus {
public:
    // Claims ports [base, base + length) for `device`. `name` appears in error
    // messages. Throws std::invalid_argument for an empty or null device, a
    // range past port 0xffff, or one that overlaps a registered range.
    void add_device(std::string name, std::uint16_t base, std::uint16_t length,
                    std::shared_ptr<PioDevice> device);

    // Dispatches an access to the device whose range holds every byte of it,
    // at the offset from the device's base. Returns false when no device does:
    // a read then sees all-ones (an undriven ISA bus floats high), a write is
    // dropped, and the access is counted instead of failing the vCPU, because
    // guests probe for hardware that is not there.
    bool read(std::uint16_t port, std::span<std::uint8_t> data);
    bool write(std::uint16_t port, std::span<const std::uint8_t> data);

    std::uint64_t unhandled_reads() const;
    std::uint64_t unhandled_writes() const;

private:
    struct Range {
        std::string name;
        std::uint32_t end;  // one past the last port; 0x10000 fits
        std::shared_ptr<PioDevice> device;
    };

    // The range holding [port, port + size), or nullptr.
    const Range* find(std::uint16_t port, std::size_t size, std::uint16_t& base) const;

    mutable std::shared_mutex mutex_;
    std::map<std::uint16_t, Range> ranges_;  // keyed by first port
    std::atomic<std::uint64_t> unhandled_reads_{0};
    std::atomic<std::uint64_t> unhandled_writes_{0};
};

}  // namespace vmm::devices
