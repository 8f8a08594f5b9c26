// libFuzzer target: virtio-blk requests popped from a queue and guest RAM
// that come straight from the input, decoded against a disk that does too.
// The decoder must read only inside the chain (ASan watches guest RAM's
// edges), hand out data only as pieces of the chain's buffers in the right
// direction, and accept only requests that keep every rule (the checks below
// restate them); then the harness does with each request what the device
// does with guest memory (host views of the data, the status byte, the used
// entry), so a piece outside RAM would fault here too.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <variant>
#include <vector>

#include "block_request_fuzz_input.h"
#include "vim/testing/guest_ram.h"
#include "virtqueue_fuzz_input.h"
#include "vmm/virtio/block/request.h"
#include "vmm/virtio/queue.h"

namespace {

using vim::vmm::memory::GuestMemory;
using namespace vim::vmm::virtio;
using namespace vim::vmm::virtio::block;

constexpr std::uint64_t kHeaderSize = sizeof(RequestHeader);

void expect(bool condition, const char* what) {
    if (!condition) {
        std::fprintf(stderr, "block_request_fuzz: %s\n", what);
        std::abort();
    }
}

// Whether each piece lies inside one of `buffers` and they add up to `length`.
bool pieces_of(const std::vector<GuestBuffer>& pieces, const std::vector<GuestBuffer>& buffers,
               std::uint64_t length) {
    std::uint64_t total = 0;
    for (const GuestBuffer& piece : pieces) {
        const bool inside = std::ranges::any_of(buffers, [&](const GuestBuffer& buffer) {
            return piece.address >= buffer.address && piece.length <= buffer.length &&
                   piece.address - buffer.address <= buffer.length - piece.length;
        });
        if (!inside) {
            return false;
        }
        total += piece.length;
    }
    return total == length;
}

bool inside_disk(std::uint64_t sector, std::uint64_t count, const DiskLimits& limits) {
    return sector <= limits.capacity_sectors && count <= limits.capacity_sectors - sector;
}

void check_ranges(const BlockRequest& request, const DiskLimits& limits) {
    const bool discard = request.type == RequestType::Discard;
    expect(discard ? limits.discard : limits.write_zeroes,
           "a range request without its feature was accepted");
    expect(!limits.read_only, "a range request on a read-only disk was accepted");
    expect(
        request.ranges.size() <= (discard ? limits.max_discard_segments : limits.max_write_zeroes_segments),
        "more ranges than advertised were accepted");
    for (const SectorRange& range : request.ranges) {
        expect(range.sectors != 0, "an empty range was kept");
        expect(range.sectors <= (discard ? limits.max_discard_sectors : limits.max_write_zeroes_sectors),
               "a range longer than advertised was accepted");
        expect(inside_disk(range.sector, range.sectors, limits),
               "a range past the end of the disk was accepted");
        expect(!(discard && range.unmap), "a discard with unmap was accepted");
    }
}

void check(const BlockRequest& request, const DescriptorChain& chain, const DiskLimits& limits) {
    switch (request.type) {
    case RequestType::In:
        expect(chain.readable_length() == kHeaderSize, "a read with readable data was accepted");
        expect(request.data_length + 1 == chain.writable_length(),
               "a read's data is not all but the status byte");
        expect(pieces_of(request.data, chain.writable, request.data_length), "a read's data is not writable");
        break;
    case RequestType::Out:
        expect(!limits.read_only, "a write to a read-only disk was accepted");
        expect(chain.writable_length() == 1, "a write with writable data was accepted");
        expect(request.data_length + kHeaderSize == chain.readable_length(),
               "a write's data is not all after the header");
        expect(pieces_of(request.data, chain.readable, request.data_length),
               "a write's data is not readable");
        break;
    case RequestType::GetId:
        expect(request.data_length >= 1 && request.data_length <= kIdBytes &&
                   request.data_length < chain.writable_length(),
               "GET_ID's room is not between the status byte and 20 bytes");
        expect(pieces_of(request.data, chain.writable, request.data_length), "GET_ID's room is not writable");
        break;
    case RequestType::Flush:
        expect(request.data.empty(), "a flush with data");
        break;
    case RequestType::Discard:
    case RequestType::WriteZeroes:
        check_ranges(request, limits);
        break;
    }
    if (request.type == RequestType::In || request.type == RequestType::Out) {
        expect(request.data_length % kSectorSize == 0, "a transfer of part of a sector was accepted");
        expect(inside_disk(request.sector, request.data_length / kSectorSize, limits),
               "a transfer past the end of the disk was accepted");
    }
}

// The device's accesses: the engine reads or writes the data in place.
void touch_data(GuestMemory& memory, const BlockRequest& request) {
    std::vector<std::uint8_t> disk;
    for (const GuestBuffer& piece : request.data) {
        if (request.type == RequestType::Out) {
            const auto bytes = memory.read_span(piece.address, piece.length);
            disk.insert(disk.end(), bytes.begin(), bytes.end());
        } else {
            const auto bytes = memory.write_span(piece.address, piece.length);
            std::memset(bytes.data(), 0x5a, bytes.size());
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    vim::fuzz::BlockRequestFuzzHeader disk;
    vim::fuzz::VirtqueueFuzzHeader header;
    if (size < sizeof disk + sizeof header) {
        return 0;
    }
    std::memcpy(&disk, data, sizeof disk);
    std::memcpy(&header, data + sizeof disk, sizeof header);
    const std::size_t image_offset = sizeof disk + sizeof header;
    vim::testing::GuestRam ram = vim::fuzz::fuzz_ram(header, {data + image_offset, size - image_offset});
    GuestMemory& memory = ram.memory();
    std::optional<Queue> restored = vim::fuzz::fuzz_queue(header, memory);
    if (!restored) {
        return 0;
    }
    Queue& queue = *restored;
    const DiskLimits limits = disk.limits();

    // The harness's writes can land in the rings and offer more chains: the rounds are bounded.
    for (int round = 0; round < 2 * vim::fuzz::kMaxFuzzQueueSize; ++round) {
        std::optional<DescriptorChain> chain;
        try {
            chain = queue.pop(memory);
        } catch (const InvalidChainError& error) {
            queue.add_used(memory, error.head(), 0);
            continue;
        } catch (const QueueBrokenError&) {
            break;
        }
        if (!chain) {
            break;
        }
        const DecodedRequest decoded = decode_request(*chain, memory, limits);
        std::uint32_t written = 0;
        Status status = Status::Ok;
        if (const auto* request = std::get_if<BlockRequest>(&decoded)) {
            check(*request, *chain, limits);
            touch_data(memory, *request);
            const bool data_written = request->type == RequestType::In || request->type == RequestType::GetId;
            written = static_cast<std::uint32_t>((data_written ? request->data_length : 0) + 1);
        } else if (const auto* refused = std::get_if<RefusedRequest>(&decoded)) {
            expect(refused->status == Status::IoError || refused->status == Status::Unsupported,
                   "a refusal that is not IOERR or UNSUPP");
            expect(!refused->reason.empty(), "a refusal without a reason");
            status = refused->status;
            written = 1;
        } else {
            expect(chain->writable_length() == 0, "a chain with a writable byte was found unanswerable");
            queue.add_used(memory, chain->head, 0);
            continue;
        }
        const auto status_byte = static_cast<std::uint8_t>(status);
        expect(chain->write(memory, chain->writable_length() - 1, {&status_byte, 1}) == 1,
               "the status byte was not writable");
        queue.add_used(memory, *chain, written);
    }
    return 0;
}
