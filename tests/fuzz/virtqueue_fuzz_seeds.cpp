// Writes seed inputs for virtqueue_fuzz into a folder: queues the test driver
// lays out, from plain chains to the hostile ones the unit tests cover, so
// that the fuzzer starts from inputs that already reach deep into pop().
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "vim/testing/guest_ram.h"
#include "vim/testing/virtio_driver.h"
#include "virtqueue_fuzz_input.h"

namespace {

using vim::fuzz::VirtqueueFuzzHeader;
using vim::testing::DriverBuffer;
using vim::testing::RingLayout;
using vim::testing::VirtqueueDriver;
using vmm::memory::GuestAddress;
using vmm::memory::kPageSize;
using namespace vmm::virtio;

constexpr std::uint16_t kSeedQueueSize = 16;
constexpr std::uint32_t kRamStartPage = 0x10;

VirtqueueFuzzHeader header_for(std::uint8_t low_region_pages, bool event_idx) {
    const RingLayout rings = RingLayout::packed(std::uint64_t{kRamStartPage} * kPageSize, kSeedQueueSize);
    VirtqueueFuzzHeader header{};
    header.queue_size = kSeedQueueSize;
    header.event_idx = event_idx ? 1 : 0;
    header.low_region_pages = low_region_pages;
    header.ram_start_page = kRamStartPage;
    header.descriptor_table = static_cast<std::uint32_t>(rings.descriptor_table);
    header.avail_ring = static_cast<std::uint32_t>(rings.avail_ring);
    header.used_ring = static_cast<std::uint32_t>(rings.used_ring);
    return header;
}

// A seed's RAM of `pages` (split as the header says), with the queue at its
// start and the driver's buffers after the rings, in the first region.
class Seed {
public:
    Seed(std::uint64_t pages, std::uint8_t low_region_pages = 0, bool event_idx = false)
        : header_(header_for(low_region_pages, event_idx)),
          ram_(vim::fuzz::fuzz_ram_layout(header_, pages * kPageSize)),
          driver_(ram_.memory(), kSeedQueueSize,
                  RingLayout{header_.descriptor_table, header_.avail_ring, header_.used_ring}, data_start(),
                  ram_.memory().regions().front().size - (data_start() - ram_start())) {}

    VirtqueueDriver& driver() { return driver_; }
    GuestAddress last_region_start() const { return ram_.memory().regions().back().start; }

    void save(const std::filesystem::path& file) {
        header_.next_avail = header_.next_used = driver_.used_idx();
        std::ofstream out(file, std::ios::binary);
        out.write(reinterpret_cast<const char*>(&header_), sizeof header_);
        for (const auto& region : ram_.memory().regions()) {
            out.write(reinterpret_cast<const char*>(region.host), static_cast<std::streamsize>(region.size));
        }
        if (!out) {
            throw std::runtime_error("write " + file.string() + " failed");
        }
    }

private:
    GuestAddress ram_start() const { return std::uint64_t{kRamStartPage} * kPageSize; }
    GuestAddress data_start() const { return ram_start() + 0x400; }

    VirtqueueFuzzHeader header_;
    vim::testing::GuestRam ram_;
    VirtqueueDriver driver_;
};

std::vector<std::uint8_t> bytes(std::size_t length, std::uint8_t value) {
    return std::vector(length, value);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const std::filesystem::path dir = argv[1];
    std::filesystem::create_directories(dir);

    {  // A block device's read, write and flush.
        Seed seed(3);
        auto& driver = seed.driver();
        driver.add_chain(std::array{driver.readable(bytes(16, 0)), driver.writable(512), driver.writable(1)});
        driver.add_chain(
            std::array{driver.readable(bytes(16, 1)), driver.readable(bytes(512, 2)), driver.writable(1)});
        driver.add_chain(std::array{driver.readable(bytes(16, 4)), driver.writable(1)});
        seed.save(dir / "plain");
    }
    {  // Indirect tables, at the head and after a direct descriptor.
        Seed seed(3);
        auto& driver = seed.driver();
        driver.add_indirect_chain(
            std::array{driver.readable(bytes(16, 0)), driver.writable(64), driver.writable(1)});
        const GuestAddress table =
            driver.write_indirect_table(std::array{driver.writable(32), driver.writable(1)});
        const auto header = driver.readable(bytes(16, 1));
        const std::uint16_t first = driver.take_free_descriptor();
        const std::uint16_t second = driver.take_free_descriptor();
        driver.set_descriptor(first, {header.address, header.length, kDescriptorNext, second});
        driver.set_descriptor(second, {table, 2 * sizeof(Descriptor), kDescriptorIndirect, 0});
        driver.offer(first);
        seed.save(dir / "indirect");
    }
    {  // Event idx, with both indices about to wrap.
        Seed seed(2, 0, true);
        auto& driver = seed.driver();
        driver.start_indices_at(65530);
        for (int i = 0; i < 8; ++i) {
            driver.add_chain(
                std::array{driver.readable(bytes(8, static_cast<std::uint8_t>(i))), driver.writable(8)});
        }
        driver.set_used_event(65533);
        seed.save(dir / "event_idx_wrap");
    }
    {  // Two regions with a hole: a buffer in the second, one across the hole.
        Seed seed(4, 2);
        auto& driver = seed.driver();
        const GuestAddress high = seed.last_region_start();
        driver.add_chain(std::array{driver.readable(bytes(16, 0)), DriverBuffer{high, 256, true}});
        driver.add_chain(std::array{DriverBuffer{high - kPageSize - 8, 16, false}});
        seed.save(dir / "two_regions");
    }
    {  // Bad chains: a loop, a link past the table, readable after writable,
       // an indirect table inside an indirect table.
        Seed seed(2);
        auto& driver = seed.driver();
        const std::uint16_t loop = driver.add_chain(std::array{driver.writable(8), driver.writable(8)});
        driver.set_descriptor(
            static_cast<std::uint16_t>(loop + 1),
            {driver.descriptor(loop + 1).address, 8, kDescriptorWrite | kDescriptorNext, loop});
        const std::uint16_t past = driver.add_chain(std::array{driver.readable(bytes(4, 0))});
        driver.set_descriptor(past, {driver.descriptor(past).address, 4, kDescriptorNext, kSeedQueueSize});
        driver.add_chain(std::array{driver.writable(4), driver.readable(bytes(4, 0))});
        const GuestAddress inner = driver.write_indirect_table(std::array{driver.writable(4)});
        const GuestAddress outer = driver.allocate(16);
        driver.write(outer, Descriptor{inner, 16, kDescriptorIndirect, 0});
        const std::uint16_t nested = driver.take_free_descriptor();
        driver.set_descriptor(nested, {outer, 16, kDescriptorIndirect, 0});
        driver.offer(nested);
        seed.save(dir / "bad_chains");
    }
    return 0;
}
