#pragma once

#include <atomic>
#include <cstdint>

#include "vmm/memory/guest_memory.h"

namespace vim::vmm::virtio {

// The ring indices and flags are 16-bit fields one side writes while the
// other reads. Each is accessed once, whole, as an atomic, so the compiler
// neither tears nor repeats the access. Queue::enable() checked that the
// rings' host addresses are aligned as std::atomic_ref requires.

inline std::uint16_t load_ring_field(const memory::GuestMemory& memory, memory::GuestAddress address) {
    auto bytes = memory.read_span(address, sizeof(std::uint16_t));
    // Only loaded through: atomic_ref just has no const form before C++26.
    auto& field = *reinterpret_cast<std::uint16_t*>(const_cast<std::uint8_t*>(bytes.data()));
    return std::atomic_ref<std::uint16_t>(field).load(std::memory_order_relaxed);
}

// Through write_span(), so the page is marked dirty.
inline void store_ring_field(memory::GuestMemory& memory, memory::GuestAddress address, std::uint16_t value) {
    auto bytes = memory.write_span(address, sizeof(std::uint16_t));
    auto& field = *reinterpret_cast<std::uint16_t*>(bytes.data());
    std::atomic_ref<std::uint16_t>(field).store(value, std::memory_order_relaxed);
}

}  // namespace vim::vmm::virtio
