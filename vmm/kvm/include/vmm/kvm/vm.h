#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "vmm/kvm/vcpu.h"
#include "vmm/sys/fd.h"

namespace vim::vmm::kvm {

inline constexpr std::uint64_t kPageSize = 4096;

struct MemorySlot {
    std::uint32_t slot;
    std::uint64_t guest_address;
    std::uint64_t size;  // a multiple of kPageSize
    void* host_address;
    bool log_dirty = false;
    bool read_only = false;
};

// A doorbell: a guest write of `length` bytes (0 = any) to `address`, matching
// `datamatch` if set, signals `eventfd` inside the kernel, without an exit to
// the VMM.
struct IoEvent {
    enum class Space { Pio, Mmio };
    Space space;
    std::uint64_t address;
    std::uint32_t length;
    int eventfd;
    bool has_datamatch = false;
    std::uint64_t datamatch = 0;
};

// A GSI that raises an MSI: the interrupt is a write of `data` to `address`.
struct MsiRoute {
    std::uint32_t gsi;
    std::uint64_t address;
    std::uint32_t data;
};

// The first GSI free for MSI routes: those below are the interrupt
// controllers' pins (PIC 0-15, IOAPIC 0-23), which keep their routes.
inline constexpr std::uint32_t kFirstMsiGsi = 24;

// What device, memory and migration code needs of a VM. KvmVm is the real
// one; tests use a fake that records calls and hands out injected dirty logs.
class Vm {
public:
    virtual ~Vm() = default;

    // Adds or replaces memory slot `slot`.
    virtual void set_memory_slot(const MemorySlot& slot) = 0;
    // One bit per page of the slot, set for each page the guest wrote since the
    // slot was added or last cleared. Reading does not clear.
    virtual std::vector<std::uint64_t> dirty_log(std::uint32_t slot) = 0;
    // Re-arms write tracking of the pages whose bits are set in `pages`, bit 0
    // being page `first_page` of the slot (the bitmap dirty_log returned, or a
    // chunk of it). KVM wants `first_page` a multiple of 64.
    virtual void clear_dirty_log(std::uint32_t slot, std::uint64_t first_page,
                                 std::span<const std::uint64_t> pages) = 0;

    virtual void set_irq_line(std::uint32_t irq, bool high) = 0;
    // Writing to `eventfd` raises interrupt `gsi` without a trip through the VMM.
    virtual void register_irqfd(int eventfd, std::uint32_t gsi) = 0;
    virtual void register_ioevent(const IoEvent& event) = 0;
    // Removes an ioevent registered with the same address, length, eventfd and datamatch.
    virtual void unregister_ioevent(const IoEvent& event) = 0;
    // Replaces every MSI route with `routes` (GSIs from kFirstMsiGsi on); the
    // interrupt controllers' pin routes stay as they are.
    virtual void set_msi_routes(std::span<const MsiRoute> routes) = 0;
};

class Kvm;

// A KVM virtual machine. Made by Kvm::create_vm(); makes its vCPUs.
class KvmVm final : public Vm {
public:
    KvmVm(KvmVm&&) noexcept = default;
    KvmVm& operator=(KvmVm&&) noexcept = default;

    // In-kernel PIC + IOAPIC + local APICs, and the PIT. x86 also needs the
    // addresses of three pages it keeps for itself (TSS, identity map) below 4 GiB.
    void create_irqchip();
    void create_pit();
    void set_tss_address(std::uint64_t address);
    void set_identity_map_address(std::uint64_t address);

    Vcpu create_vcpu(std::uint32_t id);

    // The in-kernel devices' state, for snapshots and migration: the PICs and
    // the IOAPIC, the PIT, and the kvmclock. Opaque outside the KVM layer.
    IrqchipState irqchip(IrqchipState::Chip chip) const;
    void set_irqchip(const IrqchipState& state);
    PitState pit() const;
    void set_pit(const PitState& state);
    ClockState clock() const;
    // Sets the kvmclock; where the state carries the host's real time
    // (KVM_CLOCK_REALTIME), KVM adds the real time passed since it was taken,
    // so the guest's clock neither goes back nor stands still across a move.
    void set_clock(const ClockState& state);

    // KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: reading the dirty log no longer
    // re-protects the pages; clear_dirty_log() does, chunk by chunk, so a large
    // guest is not write-protected at once. Asks for the pages to start dirty
    // (nothing write-protected when logging starts) where the kernel allows.
    // Call before any memory slot logs dirty pages.
    void enable_manual_dirty_log_protect();

    void set_memory_slot(const MemorySlot& slot) override;
    std::vector<std::uint64_t> dirty_log(std::uint32_t slot) override;
    void clear_dirty_log(std::uint32_t slot, std::uint64_t first_page,
                         std::span<const std::uint64_t> pages) override;
    void set_irq_line(std::uint32_t irq, bool high) override;
    void register_irqfd(int eventfd, std::uint32_t gsi) override;
    void register_ioevent(const IoEvent& event) override;
    void unregister_ioevent(const IoEvent& event) override;
    void set_msi_routes(std::span<const MsiRoute> routes) override;

    int fd() const noexcept { return fd_.get(); }

private:
    friend class Kvm;
    KvmVm(sys::Fd fd, std::size_t run_mapping_size);

    std::uint64_t slot_size(std::uint32_t slot) const;

    sys::Fd fd_;
    std::size_t run_mapping_size_;
    std::map<std::uint32_t, std::uint64_t> slot_sizes_;
};

}  // namespace vim::vmm::kvm
