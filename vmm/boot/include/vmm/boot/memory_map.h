#pragma once

// Where guest RAM lies and how the guest is told about it (the e820 map).

#include <cstdint>
#include <span>
#include <vector>

#include "vmm/memory/guest_memory.h"

namespace vim::vmm::boot {

enum class E820Type : std::uint32_t {
    Ram = 1,
    Reserved = 2,
};

struct E820Entry {
    std::uint64_t address;
    std::uint64_t size;
    E820Type type;

    bool operator==(const E820Entry&) const = default;
};

// Guest RAM of `ram_size` bytes (a positive multiple of the page size) laid
// out around the MMIO hole: up to 3 GiB from address 0, the rest from 4 GiB.
std::vector<memory::RegionLayout> ram_layout(std::uint64_t ram_size);

// The e820 map for guest RAM laid out as `ram` (as ram_layout() makes it):
// RAM below the EBDA, the EBDA and BIOS area reserved (ACPI and MP tables live
// there), RAM from 1 MiB on. Sorted by address. The MMIO hole is left out
// rather than reserved, as Firecracker and Cloud Hypervisor do: Linux looks
// for PCI windows in the gaps of the e820 map.
std::vector<E820Entry> e820_map(std::span<const memory::RegionLayout> ram);

}  // namespace vim::vmm::boot
