#pragma once

// Guest RAM from 0 to 1 MiB, which holds the EBDA and the BIOS area the
// firmware tables go to, and the reads their tests make of it.

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "vmm/boot/layout.h"
#include "vmm/memory/guest_memory.h"

namespace vim::vmm::acpi::testing {

class LowMemory : public ::testing::Test {
protected:
    LowMemory()
        : ram_(boot::layout::kBiosAreaEnd),
          memory_(memory::GuestMemory::over({{0, ram_.size(), ram_.data()}})) {}

    template <typename T>
    T read(std::uint64_t address) const {
        return memory_.read_object<T>(address);
    }
    // `size` bytes as text: a signature, an OEM ID.
    std::string text(std::uint64_t address, std::size_t size) const {
        const auto bytes = memory_.read_span(address, size);
        return std::string(bytes.begin(), bytes.end());
    }
    // What a checksum makes zero.
    static unsigned byte_sum(std::span<const std::uint8_t> bytes) {
        return std::accumulate(bytes.begin(), bytes.end(), 0u) & 0xff;
    }

    std::vector<std::uint8_t> ram_;
    memory::GuestMemory memory_;
};

}  // namespace vim::vmm::acpi::testing
