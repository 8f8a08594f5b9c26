// Writes seed inputs for block_request_fuzz into a folder: requests of every
// type as Linux lays them out, split oddly, and refused for every reason the
// unit tests cover, so that the fuzzer starts deep inside decode_request().
#include <array>
#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <span>

#include "block_request_fuzz_input.h"
#include "fuzz_seed.h"
#include "request_bytes.h"

using vim::fuzz::BlockRequestFuzzHeader;
using vim::fuzz::bytes;
using vim::fuzz::Seed;
using vim::testing::DriverBuffer;
using vim::vmm::virtio::block::RangeSegment;
using vim::vmm::virtio::block::RequestType;
using vim::vmm::virtio::block::kSegmentUnmap;
using vim::vmm::virtio::block::testing::bytes_of;
using vim::vmm::virtio::block::testing::header_bytes;
using vim::vmm::virtio::block::testing::segment_bytes;

namespace {

constexpr std::uint64_t kCapacity = 2048;

std::vector<std::uint8_t> disk(std::uint8_t flags) {
    return bytes_of(BlockRequestFuzzHeader{.capacity_sectors = kCapacity,
                                           .flags = flags,
                                           .max_discard_segments = 4,
                                           .max_write_zeroes_segments = 4,
                                           .unused = 0,
                                           .max_discard_sectors = 1024,
                                           .max_write_zeroes_sectors = 1024,
                                           .unused2 = 0});
}

constexpr std::uint8_t kWritable = BlockRequestFuzzHeader::kDiscard | BlockRequestFuzzHeader::kWriteZeroes;

std::vector<std::uint8_t> joined(std::vector<std::uint8_t> first, const std::vector<std::uint8_t>& second) {
    first.insert(first.end(), second.begin(), second.end());
    return first;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const std::filesystem::path dir = argv[1];
    std::filesystem::create_directories(dir);

    {  // Read, write, flush and GET_ID, each buffer on its own.
        Seed seed(3);
        auto& driver = seed.driver();
        driver.add_chain(std::array{driver.readable(header_bytes(RequestType::In, 8)), driver.writable(512),
                                    driver.writable(1)});
        driver.add_chain(std::array{driver.readable(header_bytes(RequestType::Out, 16)),
                                    driver.readable(bytes(512, 7)), driver.writable(1)});
        driver.add_chain(std::array{driver.readable(header_bytes(RequestType::Flush)), driver.writable(1)});
        driver.add_chain(std::array{driver.readable(header_bytes(RequestType::GetId)), driver.writable(20),
                                    driver.writable(1)});
        seed.save(dir / "transfers", disk(kWritable));
    }
    {  // A header split in two, data sharing buffers with the header and the status, an indirect table.
        Seed seed(4);
        auto& driver = seed.driver();
        const auto header = header_bytes(RequestType::In, 2);
        driver.add_chain(std::array{driver.readable(std::span(header).first(3)),
                                    driver.readable(std::span(header).subspan(3)), driver.writable(513)});
        driver.add_chain(std::array{
            driver.readable(joined(header_bytes(RequestType::Out, 4), bytes(1024, 9))), driver.writable(1)});
        driver.add_indirect_chain(std::array{driver.readable(header_bytes(RequestType::In, kCapacity - 1)),
                                             driver.writable(256), driver.writable(257)});
        seed.save(dir / "split", disk(kWritable));
    }
    {  // Discard and write zeroes, with several segments, unmap, an empty one.
        Seed seed(2);
        auto& driver = seed.driver();
        const auto ranges = [&](RequestType type, std::initializer_list<RangeSegment> segments) {
            driver.add_chain(std::array{driver.readable(header_bytes(type)),
                                        driver.readable(segment_bytes(segments)), driver.writable(1)});
        };
        ranges(RequestType::Discard, {{0, 8, 0}, {100, 1024, 0}});
        ranges(RequestType::WriteZeroes, {{16, 16, kSegmentUnmap}, {64, 0, 0}});
        ranges(RequestType::Discard, {{0, 8, kSegmentUnmap}});
        ranges(RequestType::WriteZeroes, {{kCapacity - 8, 8, 0}, {0, 1, 2}});
        seed.save(dir / "ranges", disk(kWritable));
    }
    {  // Refused: past the end, part of a sector, an unknown type, data the wrong way, no status, a short
       // header.
        Seed seed(3);
        auto& driver = seed.driver();
        driver.add_chain(std::array{driver.readable(header_bytes(RequestType::In, kCapacity - 1)),
                                    driver.writable(1024), driver.writable(1)});
        driver.add_chain(std::array{driver.readable(header_bytes(RequestType::Out)),
                                    driver.readable(bytes(100, 3)), driver.writable(1)});
        driver.add_chain(std::array{driver.readable(header_bytes(10)), driver.writable(1)});
        driver.add_chain(std::array{driver.readable(header_bytes(RequestType::In)),
                                    driver.readable(bytes(512, 1)), driver.writable(512),
                                    driver.writable(1)});
        driver.add_chain(
            std::array{driver.readable(header_bytes(RequestType::Out)), driver.readable(bytes(512, 2))});
        driver.add_chain(std::array{driver.readable(bytes(8, 0)), driver.writable(1)});
        seed.save(dir / "refused", disk(kWritable));
    }
    {  // A read-only disk.
        Seed seed(2);
        auto& driver = seed.driver();
        driver.add_chain(std::array{driver.readable(header_bytes(RequestType::Out)),
                                    driver.readable(bytes(512, 4)), driver.writable(1)});
        driver.add_chain(std::array{driver.readable(header_bytes(RequestType::Discard)),
                                    driver.readable(segment_bytes({{0, 8, 0}})), driver.writable(1)});
        driver.add_chain(std::array{driver.readable(header_bytes(RequestType::In)), driver.writable(512),
                                    driver.writable(1)});
        seed.save(dir / "read_only", disk(kWritable | BlockRequestFuzzHeader::kReadOnly));
    }
    return 0;
}
