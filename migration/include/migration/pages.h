#pragma once

// Guest pages in the stream. A Pages section's payload:
//
//   u32 count, u32 reserved (0)
//   count entries: u64 guest-physical address of the page | flags (bit 0: the page is zero)
//   the 4 KiB of each non-zero page, in entry order
//
// Zero pages travel as a flag, not as data.

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "migration/stream.h"
#include "vmm/memory/guest_memory.h"

namespace vim::migration {

inline constexpr std::uint64_t kMaxBatchPages = 1024;
inline constexpr std::uint64_t kMaxPagesPayload = 8 + kMaxBatchPages * (8 + vmm::memory::kPageSize);
inline constexpr std::uint64_t kZeroPageFlag = 1;

// The pages of one region to send, one bit per page as GuestMemory lays them
// out, and those of them known to be zero without reading them (discarded).
struct RegionPages {
    std::vector<std::uint64_t> dirty;
    std::vector<std::uint64_t> discarded;
};

// Every page of `memory` that may hold data: a first round. The memfd's holes
// (pages never written, or given back) are left out: the destination's fresh
// memory reads zero there already, and reading them here would cost a page
// fault and an allocation each. A page written after this call is in the
// next round's dirty log.
std::vector<RegionPages> all_pages(const vmm::memory::GuestMemory& memory);
// Whether `page`'s bit is set in a bitmap of one bit per page (false past its end).
inline bool is_page_set(std::span<const std::uint64_t> bitmap, std::uint64_t page) {
    return page / 64 < bitmap.size() && (bitmap[page / 64] >> (page % 64) & 1) != 0;
}
// Whether the 4 KiB at `page` are all zero.
bool is_zero_page(const std::uint8_t* page);
std::uint64_t count_pages(std::span<const RegionPages> pages);

struct PageCounts {
    std::uint64_t pages = 0;
    std::uint64_t zero_pages = 0;
    std::uint64_t bytes = 0;  // written to the stream, headers included

    PageCounts& operator+=(const PageCounts& other);
};

class PageSender {
public:
    PageSender(StreamWriter& writer, const vmm::memory::GuestMemory& memory, std::uint64_t batch_pages = 256);

    // Sends the pages set in `pages[i].dirty` of region i, in batches; calls
    // `after_batch` with the totals so far after each (to pace, or to stop by
    // throwing).
    PageCounts send(std::span<const RegionPages> pages,
                    const std::function<void(const PageCounts&)>& after_batch = {});

private:
    void flush(PageCounts& counts);

    StreamWriter& writer_;
    const vmm::memory::GuestMemory& memory_;
    std::uint64_t batch_pages_;
    std::vector<std::uint64_t> entries_;
    // Pages are copied here before they are hashed and sent: the guest keeps
    // writing during pre-copy, and a page changed between its checksum and
    // its send would fail the checksum (it is dirty, and is sent again).
    std::vector<std::uint8_t> data_;
    std::uint64_t data_pages_ = 0;
};

// Writes received pages straight into guest memory.
class PageReceiver {
public:
    explicit PageReceiver(vmm::memory::GuestMemory& memory);

    // One Pages section, whose header `reader` just read. Every address is
    // checked to lie in guest RAM before any byte is written.
    void receive(StreamReader& reader, const SectionHeader& section);

private:
    vmm::memory::GuestMemory& memory_;
    // Pages written before: a zero page must clear them. A page never written
    // is already zero in fresh memory, and is left untouched (not allocated).
    std::vector<std::vector<bool>> received_;
};

}  // namespace vim::migration
