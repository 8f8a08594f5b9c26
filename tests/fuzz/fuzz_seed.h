#pragma once

// Seed inputs for the fuzzers that read a virtqueue from their input: guest
// RAM and a queue that the test driver lays out, saved in virtqueue_fuzz's
// format after whatever header of its own a fuzzer puts first.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <stdexcept>
#include <vector>

#include "vim/testing/guest_ram.h"
#include "vim/testing/virtio_driver.h"
#include "virtqueue_fuzz_input.h"

namespace vim::fuzz {

inline constexpr std::uint16_t kSeedQueueSize = 16;
inline constexpr std::uint32_t kSeedRamStartPage = 0x10;

// A seed's RAM of `pages` (split as the header says), with the queue at its
// start and the driver's buffers after the rings, in the first region.
class Seed {
public:
    explicit Seed(std::uint64_t pages, std::uint8_t low_region_pages = 0, bool event_idx = false)
        : header_(header_for(low_region_pages, event_idx)),
          ram_(fuzz_ram_layout(header_, pages * vmm::memory::kPageSize)),
          driver_(ram_.memory(), kSeedQueueSize,
                  testing::RingLayout{header_.descriptor_table, header_.avail_ring, header_.used_ring},
                  data_start(), ram_.memory().regions().front().size - (data_start() - ram_start())) {}

    testing::VirtqueueDriver& driver() { return driver_; }
    vmm::memory::GuestAddress last_region_start() const { return ram_.memory().regions().back().start; }

    // Writes `prefix`, the queue's header and guest RAM into `file`.
    void save(const std::filesystem::path& file, std::span<const std::uint8_t> prefix = {}) {
        header_.next_avail = header_.next_used = driver_.used_idx();
        std::ofstream out(file, std::ios::binary);
        out.write(reinterpret_cast<const char*>(prefix.data()), static_cast<std::streamsize>(prefix.size()));
        out.write(reinterpret_cast<const char*>(&header_), sizeof header_);
        for (const auto& region : ram_.memory().regions()) {
            out.write(reinterpret_cast<const char*>(region.host), static_cast<std::streamsize>(region.size));
        }
        if (!out) {
            throw std::runtime_error("write " + file.string() + " failed");
        }
    }

private:
    static VirtqueueFuzzHeader header_for(std::uint8_t low_region_pages, bool event_idx) {
        const testing::RingLayout rings = testing::RingLayout::packed(
            std::uint64_t{kSeedRamStartPage} * vmm::memory::kPageSize, kSeedQueueSize);
        VirtqueueFuzzHeader header{};
        header.queue_size = kSeedQueueSize;
        header.event_idx = event_idx ? 1 : 0;
        header.low_region_pages = low_region_pages;
        header.ram_start_page = kSeedRamStartPage;
        header.descriptor_table = static_cast<std::uint32_t>(rings.descriptor_table);
        header.avail_ring = static_cast<std::uint32_t>(rings.avail_ring);
        header.used_ring = static_cast<std::uint32_t>(rings.used_ring);
        return header;
    }

    vmm::memory::GuestAddress ram_start() const {
        return std::uint64_t{kSeedRamStartPage} * vmm::memory::kPageSize;
    }
    vmm::memory::GuestAddress data_start() const { return ram_start() + 0x400; }

    VirtqueueFuzzHeader header_;
    testing::GuestRam ram_;
    testing::VirtqueueDriver driver_;
};

inline std::vector<std::uint8_t> bytes(std::size_t length, std::uint8_t value) {
    return std::vector(length, value);
}

}  // namespace vim::fuzz
