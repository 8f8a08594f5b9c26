// Writes seed inputs for virtqueue_fuzz into a folder: queues the test driver
// lays out, from plain chains to the hostile ones the unit tests cover, so
// that the fuzzer starts from inputs that already reach deep into pop().
#include <array>
#include <cstdio>
#include <filesystem>

#include "fuzz_seed.h"

using vim::fuzz::bytes;
using vim::fuzz::kSeedQueueSize;
using vim::fuzz::Seed;
using vim::testing::DriverBuffer;
using vim::vmm::memory::GuestAddress;
using vim::vmm::memory::kPageSize;
using namespace vim::vmm::virtio;

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
