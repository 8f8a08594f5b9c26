#pragma once

#include <vector>

#include "migration/pages.h"
#include "vmm/kvm/vm.h"
#include "vmm/memory/guest_memory.h"

namespace vim::migration {

// The pages written while a migration runs: the guest's, from KVM's dirty log
// of each memory slot (slot i holds region i of the memory, as the machine
// registers them), and the VMM's own, from GuestMemory's bitmap of the
// writes its devices made. Dirty logging is on between start() and stop()
// only, as it slows the guest's first write to every page.
class DirtyTracker {
public:
    // `clear_chunk_pages`: a multiple of 64 (KVM's rule), changed only by tests.
    DirtyTracker(vmm::kvm::Vm& vm, vmm::memory::GuestMemory& memory,
                 std::uint64_t clear_chunk_pages = kClearChunkPages);
    DirtyTracker(const DirtyTracker&) = delete;
    DirtyTracker& operator=(const DirtyTracker&) = delete;
    // Stops logging if still on.
    ~DirtyTracker();

    void start();
    // The pages written since start() or the previous collect(), per region,
    // and which of them are discarded (zero, not to be read). The log is
    // cleared (re-armed) in chunks of kClearChunkPages, so KVM write-protects
    // a large guest a piece at a time.
    std::vector<RegionPages> collect();
    // As collect(), for the last round, with the guest paused and its I/O
    // drained: adds every page the VMM wrote since start() (discards aside).
    // GuestMemory marks a page before the VMM writes it (write_span(), then
    // the copy or the I/O), so a page collected between the two was sent
    // with its old bytes, and nothing marks it again.
    std::vector<RegionPages> collect_final();
    // Turns logging off; does nothing when it is off.
    void stop();

    static constexpr std::uint64_t kClearChunkPages = 64 * 1024;  // 256 MiB of guest RAM

private:
    // collect(); `rearm`: clear the log it read, for a next collection.
    std::vector<RegionPages> collect_pages(bool rearm);
    void set_logging(bool on);

    vmm::kvm::Vm& vm_;
    vmm::memory::GuestMemory& memory_;
    std::uint64_t clear_chunk_pages_;
    bool logging_ = false;
    // Per region, every page the VMM wrote since start(): for collect_final().
    std::vector<std::vector<std::uint64_t>> written_by_vmm_;
};

}  // namespace vim::migration
