#include "migration/pages.h"

// For XXH64_state_t, the streaming state kept on the stack.
#define XXH_STATIC_LINKING_ONLY
#include <sys/mman.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>

namespace vim::migration {
namespace {

using vmm::memory::GuestMemory;
using vmm::memory::kPageSize;
using vmm::memory::Region;

// Faults in the pages about to be received, a run of neighbours at a time:
// one call instead of a page fault per page in the middle of the copy out
// of the socket. Only advice: a kernel without MADV_POPULATE_WRITE (before
// 5.14) faults them in as they are written.
void populate(std::span<const iovec> pages) {
    std::size_t run = 0;
    for (std::size_t i = 1; i <= pages.size(); ++i) {
        const auto* run_start = static_cast<std::uint8_t*>(pages[run].iov_base);
        if (i < pages.size() && pages[i].iov_base == run_start + (i - run) * kPageSize) {
            continue;
        }
        ::madvise(const_cast<std::uint8_t*>(run_start), (i - run) * kPageSize, MADV_POPULATE_WRITE);
        run = i;
    }
}

}  // namespace

PageCounts& PageCounts::operator+=(const PageCounts& other) {
    pages += other.pages;
    zero_pages += other.zero_pages;
    bytes += other.bytes;
    return *this;
}

std::vector<RegionPages> all_pages(const GuestMemory& memory) {
    std::vector<RegionPages> pages;
    for (std::size_t index = 0; index < memory.regions().size(); ++index) {
        const std::uint64_t count = memory.regions()[index].size / kPageSize;
        RegionPages all{std::vector<std::uint64_t>((count + 63) / 64, ~std::uint64_t{0}), {}};
        if (count % 64 != 0) {
            all.dirty.back() = (std::uint64_t{1} << (count % 64)) - 1;
        }
        const std::vector<std::uint64_t> holes = memory.hole_pages(index);
        for (std::size_t word = 0; word < all.dirty.size(); ++word) {
            all.dirty[word] &= ~holes[word];
        }
        pages.push_back(std::move(all));
    }
    return pages;
}

bool is_zero_page(const std::uint8_t* page) {
    // glibc's memcmp stops at the first difference and reads vectors at a
    // time; the zero page it compares against stays in the cache.
    static const std::uint8_t zero[kPageSize] = {};
    return std::memcmp(page, zero, kPageSize) == 0;
}

std::uint64_t count_pages(std::span<const RegionPages> pages) {
    std::uint64_t count = 0;
    for (const RegionPages& region : pages) {
        for (std::uint64_t word : region.dirty) {
            count += static_cast<std::uint64_t>(__builtin_popcountll(word));
        }
    }
    return count;
}

PageSender::PageSender(StreamWriter& writer, const GuestMemory& memory, std::uint64_t batch_pages)
    : writer_(writer),
      memory_(memory),
      batch_pages_(std::clamp<std::uint64_t>(batch_pages, 1, kMaxBatchPages)) {
    entries_.reserve(batch_pages_ + 1);
    data_.resize(batch_pages_ * kPageSize);
}

PageCounts PageSender::send(std::span<const RegionPages> pages,
                            const std::function<void(const PageCounts&)>& after_batch) {
    PageCounts counts;
    const auto& regions = memory_.regions();
    for (std::size_t index = 0; index < regions.size() && index < pages.size(); ++index) {
        const Region& region = regions[index];
        const RegionPages& wanted = pages[index];
        for (std::size_t word = 0; word < wanted.dirty.size(); ++word) {
            for (std::uint64_t bits = wanted.dirty[word]; bits != 0; bits &= bits - 1) {
                const std::uint64_t page = word * 64 + static_cast<std::uint64_t>(__builtin_ctzll(bits));
                if (page * kPageSize >= region.size) {
                    break;
                }
                const std::uint8_t* host = region.host + page * kPageSize;
                const std::uint64_t address = region.start + page * kPageSize;
                // A discarded page is a hole: reading it would allocate it.
                if (is_page_set(wanted.discarded, page) || is_zero_page(host)) {
                    entries_.push_back(address | kZeroPageFlag);
                    ++counts.zero_pages;
                } else {
                    entries_.push_back(address);
                    std::memcpy(data_.data() + data_pages_ * kPageSize, host, kPageSize);
                    ++data_pages_;
                }
                ++counts.pages;
                if (entries_.size() == batch_pages_) {
                    flush(counts);
                    if (after_batch) {
                        after_batch(counts);
                    }
                }
            }
        }
    }
    if (!entries_.empty()) {
        flush(counts);
        if (after_batch) {
            after_batch(counts);
        }
    }
    return counts;
}

void PageSender::flush(PageCounts& counts) {
    std::uint32_t prefix[2] = {static_cast<std::uint32_t>(entries_.size()), 0};
    const iovec parts[] = {{prefix, sizeof prefix},
                           {entries_.data(), entries_.size() * sizeof(std::uint64_t)},
                           {data_.data(), data_pages_ * kPageSize}};
    XXH64_state_t state;
    XXH64_reset(&state, 0);
    for (const iovec& part : parts) {
        XXH64_update(&state, part.iov_base, part.iov_len);
    }
    const std::uint64_t before = writer_.bytes_written();
    writer_.write_section(SectionType::Pages, XXH64_digest(&state), parts);
    counts.bytes += writer_.bytes_written() - before;
    entries_.clear();
    data_pages_ = 0;
}

PageReceiver::PageReceiver(GuestMemory& memory) : memory_(memory) {
    for (const Region& region : memory.regions()) {
        received_.emplace_back(region.size / kPageSize, false);
    }
}

void PageReceiver::receive(StreamReader& reader, const SectionHeader& section) {
    std::uint32_t prefix[2];
    if (section.length < sizeof prefix) {
        reader.fail(section, "too short for a page batch");
    }
    iovec prefix_part{prefix, sizeof prefix};
    reader.read_exact(section, {&prefix_part, 1});
    const std::uint64_t count = prefix[0];
    if (count == 0 || count > kMaxBatchPages || prefix[1] != 0) {
        reader.fail(section, "batch of " + std::to_string(count) + " pages is not allowed");
    }
    if (section.length < sizeof prefix + count * 8) {
        reader.fail(section, "length " + std::to_string(section.length) + " is too short for " +
                                 std::to_string(count) + " pages");
    }
    std::vector<std::uint64_t> entries(count);
    iovec entries_part{entries.data(), count * 8};
    reader.read_exact(section, {&entries_part, 1});

    // Where each page goes, all checked before any byte is written: the
    // stream comes from the network.
    struct Target {
        std::size_t region;
        std::uint64_t page;
        bool zero;
    };
    std::vector<Target> targets;
    targets.reserve(count);
    std::vector<iovec> data_parts;
    const auto& regions = memory_.regions();
    for (std::uint64_t entry : entries) {
        const std::uint64_t address = entry & ~(kPageSize - 1);
        const std::uint64_t flags = entry & (kPageSize - 1);
        if ((flags & ~kZeroPageFlag) != 0) {
            reader.fail(section, "page entry has unknown flags " + std::to_string(flags));
        }
        const auto region = std::find_if(regions.begin(), regions.end(),
                                         [&](const Region& r) { return r.contains(address, kPageSize); });
        if (region == regions.end()) {
            reader.fail(section, "page at " + std::to_string(address) + " is not in guest RAM");
        }
        const std::uint64_t page = (address - region->start) / kPageSize;
        targets.push_back({static_cast<std::size_t>(region - regions.begin()), page, flags != 0});
        if (flags == 0) {
            data_parts.push_back({region->host + page * kPageSize, kPageSize});
        }
    }
    if (section.length != sizeof prefix + count * 8 + data_parts.size() * kPageSize) {
        reader.fail(section, "length " + std::to_string(section.length) + " does not match its " +
                                 std::to_string(count) + " pages");
    }
    populate(data_parts);
    reader.read_exact(section, data_parts);

    XXH64_state_t state;
    XXH64_reset(&state, 0);
    XXH64_update(&state, prefix, sizeof prefix);
    XXH64_update(&state, entries.data(), count * 8);
    for (const Target& target : targets) {
        if (!target.zero) {
            XXH64_update(&state, regions[target.region].host + target.page * kPageSize, kPageSize);
        }
    }
    if (XXH64_digest(&state) != section.checksum) {
        reader.fail(section, "checksum mismatch");
    }
    for (const Target& target : targets) {
        if (target.zero && received_[target.region][target.page]) {
            memory_.discard(regions[target.region].start + target.page * kPageSize, kPageSize);
        }
        received_[target.region][target.page] = !target.zero;
    }
}

}  // namespace vim::migration
