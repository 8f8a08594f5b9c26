#include "migration/dirty_tracker.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace vim::migration {

DirtyTracker::DirtyTracker(vmm::kvm::Vm& vm, vmm::memory::GuestMemory& memory,
                           std::uint64_t clear_chunk_pages)
    : vm_(vm), memory_(memory), clear_chunk_pages_(clear_chunk_pages) {
    if (clear_chunk_pages == 0 || clear_chunk_pages % 64 != 0) {
        throw std::invalid_argument("dirty tracking: clear chunk of " + std::to_string(clear_chunk_pages) +
                                    " pages is not a multiple of 64");
    }
}

DirtyTracker::~DirtyTracker() {
    try {
        stop();
    } catch (...) {
        // Only the guest's speed suffers from logging left on; nothing to report to.
    }
}

void DirtyTracker::start() {
    set_logging(true);
    // Start afresh: the VMM's writes before now are in the first round, which sends every page.
    written_by_vmm_.clear();
    for (std::size_t index = 0; index < memory_.regions().size(); ++index) {
        written_by_vmm_.emplace_back(memory_.take_dirty_pages(index).size(), 0);
    }
}

void DirtyTracker::stop() {
    if (logging_) {
        set_logging(false);
    }
}

void DirtyTracker::set_logging(bool on) {
    const auto& regions = memory_.regions();
    for (std::size_t index = 0; index < regions.size(); ++index) {
        vm_.set_memory_slot({.slot = static_cast<std::uint32_t>(index),
                             .guest_address = regions[index].start,
                             .size = regions[index].size,
                             .host_address = regions[index].host,
                             .log_dirty = on});
    }
    logging_ = on;
}

std::vector<RegionPages> DirtyTracker::collect() { return collect_pages(/*rearm=*/true); }

std::vector<RegionPages> DirtyTracker::collect_pages(bool rearm) {
    const std::size_t chunk_words = clear_chunk_pages_ / 64;
    std::vector<RegionPages> pages;
    for (std::size_t index = 0; index < memory_.regions().size(); ++index) {
        const auto slot = static_cast<std::uint32_t>(index);
        std::vector<std::uint64_t> guest_written = vm_.dirty_log(slot);
        for (std::size_t word = 0; rearm && word < guest_written.size(); word += chunk_words) {
            const std::span<const std::uint64_t> chunk(guest_written.data() + word,
                                                       std::min(chunk_words, guest_written.size() - word));
            if (std::any_of(chunk.begin(), chunk.end(), [](std::uint64_t bits) { return bits != 0; })) {
                vm_.clear_dirty_log(slot, word * 64, chunk);
            }
        }
        // A page the guest wrote after it was discarded holds data again.
        memory_.clear_discarded(index, guest_written);
        RegionPages region{memory_.take_dirty_pages(index), memory_.discarded_pages(index)};
        for (std::size_t word = 0; word < region.dirty.size(); ++word) {
            // Not the pages only discarded since: a discard marks its pages
            // once the hole is punched, so none is collected half done.
            written_by_vmm_[index][word] |= region.dirty[word] & ~region.discarded[word];
            if (word < guest_written.size()) {
                region.dirty[word] |= guest_written[word];
            }
        }
        pages.push_back(std::move(region));
    }
    return pages;
}

std::vector<RegionPages> DirtyTracker::collect_final() {
    // Nothing is collected after this: the log need not be cleared, and the
    // write protection that clearing sets up would only cost time.
    std::vector<RegionPages> pages = collect_pages(/*rearm=*/false);
    for (std::size_t index = 0; index < pages.size(); ++index) {
        for (std::size_t word = 0; word < pages[index].dirty.size(); ++word) {
            pages[index].dirty[word] |= written_by_vmm_[index][word];
        }
    }
    return pages;
}

}  // namespace vim::migration
