#include "vmm/kvm/vm.h"

#include <linux/kvm.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "ioctl.h"

namespace vim::vmm::kvm {

KvmVm::KvmVm(sys::Fd fd, std::size_t run_mapping_size)
    : fd_(std::move(fd)), run_mapping_size_(run_mapping_size) {}

void KvmVm::create_irqchip() {
    detail::ioctl_or_throw(fd_.get(), KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP");
}

void KvmVm::create_pit() {
    kvm_pit_config config{};
    // Port 0x61 (the speaker) is then answered in the kernel, not by an exit.
    config.flags = KVM_PIT_SPEAKER_DUMMY;
    detail::ioctl_or_throw(fd_.get(), KVM_CREATE_PIT2, &config, "KVM_CREATE_PIT2");
}

void KvmVm::set_tss_address(std::uint64_t address) {
    detail::ioctl_or_throw(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(address),
                           "KVM_SET_TSS_ADDR");
}

void KvmVm::set_identity_map_address(std::uint64_t address) {
    std::uint64_t value = address;
    detail::ioctl_or_throw(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &value, "KVM_SET_IDENTITY_MAP_ADDR");
}

Vcpu KvmVm::create_vcpu(std::uint32_t id) {
    sys::Fd vcpu(detail::ioctl_or_throw(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id),
                                        ("KVM_CREATE_VCPU " + std::to_string(id)).c_str()));
    auto run =
        sys::Mapping::map("kvm_run", run_mapping_size_, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu.get());
    // AMX and later extensions make the area larger than the 4 KiB of KVM_GET_XSAVE.
    const int xsave2 = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
    const std::size_t xsave_size =
        std::max<std::size_t>(xsave2 > 0 ? static_cast<std::size_t>(xsave2) : 0, detail::kXsaveLegacySize);
    return Vcpu(std::move(vcpu), std::move(run), id, xsave_size);
}

void KvmVm::enable_manual_dirty_log_protect() {
    kvm_enable_cap cap{};
    cap.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
    cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
    if (::ioctl(fd_.get(), KVM_ENABLE_CAP, &cap) == 0) {
        return;
    }
    // Kernels before 5.8 know manual protection but not INITIALLY_SET.
    cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
    detail::ioctl_or_throw(fd_.get(), KVM_ENABLE_CAP, &cap,
                           "KVM_ENABLE_CAP KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
}

IrqchipState KvmVm::irqchip(IrqchipState::Chip chip) const {
    static_assert(sizeof(IrqchipState::bytes) == sizeof(kvm_irqchip));
    kvm_irqchip state{};
    state.chip_id = static_cast<std::uint32_t>(chip);
    detail::ioctl_or_throw(fd_.get(), KVM_GET_IRQCHIP, &state, "KVM_GET_IRQCHIP");
    IrqchipState saved;
    std::memcpy(saved.bytes.data(), &state, sizeof state);
    return saved;
}

void KvmVm::set_irqchip(const IrqchipState& saved) {
    kvm_irqchip state;
    std::memcpy(&state, saved.bytes.data(), sizeof state);
    if (state.chip_id > KVM_IRQCHIP_IOAPIC) {
        throw std::invalid_argument("KVM_SET_IRQCHIP: no interrupt controller " +
                                    std::to_string(state.chip_id));
    }
    detail::ioctl_or_throw(fd_.get(), KVM_SET_IRQCHIP, &state, "KVM_SET_IRQCHIP");
}

PitState KvmVm::pit() const {
    static_assert(sizeof(PitState::bytes) == sizeof(kvm_pit_state2));
    kvm_pit_state2 state{};
    detail::ioctl_or_throw(fd_.get(), KVM_GET_PIT2, &state, "KVM_GET_PIT2");
    PitState saved;
    std::memcpy(saved.bytes.data(), &state, sizeof state);
    return saved;
}

void KvmVm::set_pit(const PitState& saved) {
    kvm_pit_state2 state;
    std::memcpy(&state, saved.bytes.data(), sizeof state);
    detail::ioctl_or_throw(fd_.get(), KVM_SET_PIT2, &state, "KVM_SET_PIT2");
}

ClockState KvmVm::clock() const {
    kvm_clock_data data{};
    detail::ioctl_or_throw(fd_.get(), KVM_GET_CLOCK, &data, "KVM_GET_CLOCK");
    return {data.clock, (data.flags & KVM_CLOCK_REALTIME) ? data.realtime : 0};
}

void KvmVm::set_clock(const ClockState& state) {
    kvm_clock_data data{};
    data.clock = state.clock_ns;
    if (state.realtime_ns != 0) {
        data.flags = KVM_CLOCK_REALTIME;
        data.realtime = state.realtime_ns;
    }
    detail::ioctl_or_throw(fd_.get(), KVM_SET_CLOCK, &data, "KVM_SET_CLOCK");
}

void KvmVm::set_memory_slot(const MemorySlot& slot) {
    if (slot.size % kPageSize != 0 || slot.guest_address % kPageSize != 0) {
        throw std::invalid_argument("memory slot " + std::to_string(slot.slot) +
                                    ": address and size must be multiples of 4 KiB");
    }
    kvm_userspace_memory_region region{};
    region.slot = slot.slot;
    region.guest_phys_addr = slot.guest_address;
    region.memory_size = slot.size;
    region.userspace_addr = reinterpret_cast<std::uint64_t>(slot.host_address);
    region.flags = (slot.log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0u) | (slot.read_only ? KVM_MEM_READONLY : 0u);
    detail::ioctl_or_throw(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region,
                           ("KVM_SET_USER_MEMORY_REGION slot " + std::to_string(slot.slot)).c_str());
    slot_sizes_[slot.slot] = slot.size;
}

std::uint64_t KvmVm::slot_size(std::uint32_t slot) const {
    auto found = slot_sizes_.find(slot);
    if (found == slot_sizes_.end()) {
        throw std::invalid_argument("memory slot " + std::to_string(slot) + " does not exist");
    }
    return found->second;
}

std::vector<std::uint64_t> KvmVm::dirty_log(std::uint32_t slot) {
    std::uint64_t pages = slot_size(slot) / kPageSize;
    std::vector<std::uint64_t> bitmap((pages + 63) / 64);
    kvm_dirty_log log{};
    log.slot = slot;
    log.dirty_bitmap = bitmap.data();
    detail::ioctl_or_throw(fd_.get(), KVM_GET_DIRTY_LOG, &log,
                           ("KVM_GET_DIRTY_LOG slot " + std::to_string(slot)).c_str());
    return bitmap;
}

void KvmVm::clear_dirty_log(std::uint32_t slot, std::uint64_t first_page,
                            std::span<const std::uint64_t> pages) {
    std::uint64_t slot_pages = slot_size(slot) / kPageSize;
    if (first_page % 64 != 0 || first_page > slot_pages) {
        throw std::invalid_argument("clear dirty log of slot " + std::to_string(slot) + ": first page " +
                                    std::to_string(first_page) + " is not a multiple of 64 inside the slot");
    }
    std::uint64_t count = std::min<std::uint64_t>(pages.size() * 64, slot_pages - first_page);
    if (count == 0) {
        return;
    }
    kvm_clear_dirty_log clear{};
    clear.slot = slot;
    clear.first_page = first_page;
    // KVM wants a multiple of 64 pages unless the range ends at the slot's end.
    clear.num_pages = static_cast<std::uint32_t>(first_page + count == slot_pages ? count : count / 64 * 64);
    clear.dirty_bitmap = const_cast<std::uint64_t*>(pages.data());
    detail::ioctl_or_throw(fd_.get(), KVM_CLEAR_DIRTY_LOG, &clear,
                           ("KVM_CLEAR_DIRTY_LOG slot " + std::to_string(slot)).c_str());
}

void KvmVm::set_irq_line(std::uint32_t irq, bool high) {
    kvm_irq_level level{};
    level.irq = irq;
    level.level = high ? 1 : 0;
    detail::ioctl_or_throw(fd_.get(), KVM_IRQ_LINE, &level, "KVM_IRQ_LINE");
}

void KvmVm::register_irqfd(int eventfd, std::uint32_t gsi) {
    kvm_irqfd irqfd{};
    irqfd.fd = static_cast<std::uint32_t>(eventfd);
    irqfd.gsi = gsi;
    detail::ioctl_or_throw(fd_.get(), KVM_IRQFD, &irqfd, "KVM_IRQFD");
}

namespace {

kvm_ioeventfd to_kvm(const IoEvent& event) {
    kvm_ioeventfd ioeventfd{};
    ioeventfd.addr = event.address;
    ioeventfd.len = event.length;
    ioeventfd.fd = event.eventfd;
    ioeventfd.datamatch = event.datamatch;
    ioeventfd.flags = (event.space == IoEvent::Space::Pio ? KVM_IOEVENTFD_FLAG_PIO : 0u) |
                      (event.has_datamatch ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0u);
    return ioeventfd;
}

// KVM's default routing, which KVM_SET_GSI_ROUTING replaces whole and so
// must be given again: GSIs 0-15 reach both the PICs (master pins 0-7, slave
// 8-15) and the IOAPIC, GSIs 16-23 the IOAPIC only.
void add_pin_routes(std::vector<kvm_irq_routing_entry>& entries) {
    constexpr std::uint32_t kPicMaster = 0, kPicSlave = 1, kIoapic = 2;
    constexpr std::uint32_t kPicPins = 16, kIoapicPins = 24;
    auto pin_route = [&](std::uint32_t gsi, std::uint32_t chip, std::uint32_t pin) {
        kvm_irq_routing_entry entry{};
        entry.gsi = gsi;
        entry.type = KVM_IRQ_ROUTING_IRQCHIP;
        entry.u.irqchip.irqchip = chip;
        entry.u.irqchip.pin = pin;
        entries.push_back(entry);
    };
    for (std::uint32_t gsi = 0; gsi < kIoapicPins; ++gsi) {
        if (gsi < kPicPins) {
            pin_route(gsi, gsi < 8 ? kPicMaster : kPicSlave, gsi % 8);
        }
        pin_route(gsi, kIoapic, gsi);
    }
    static_assert(kIoapicPins == kFirstMsiGsi);
}

}  // namespace

void KvmVm::register_ioevent(const IoEvent& event) {
    auto ioeventfd = to_kvm(event);
    detail::ioctl_or_throw(fd_.get(), KVM_IOEVENTFD, &ioeventfd, "KVM_IOEVENTFD");
}

void KvmVm::unregister_ioevent(const IoEvent& event) {
    auto ioeventfd = to_kvm(event);
    ioeventfd.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
    detail::ioctl_or_throw(fd_.get(), KVM_IOEVENTFD, &ioeventfd, "KVM_IOEVENTFD deassign");
}

void KvmVm::set_msi_routes(std::span<const MsiRoute> routes) {
    std::vector<kvm_irq_routing_entry> entries;
    add_pin_routes(entries);
    for (const MsiRoute& route : routes) {
        if (route.gsi < kFirstMsiGsi) {
            throw std::invalid_argument("MSI route on GSI " + std::to_string(route.gsi) +
                                        ", which belongs to an interrupt controller pin");
        }
        kvm_irq_routing_entry entry{};
        entry.gsi = route.gsi;
        entry.type = KVM_IRQ_ROUTING_MSI;
        entry.u.msi.address_lo = static_cast<std::uint32_t>(route.address);
        entry.u.msi.address_hi = static_cast<std::uint32_t>(route.address >> 32);
        entry.u.msi.data = route.data;
        entries.push_back(entry);
    }
    detail::FlexibleArray<kvm_irq_routing_entry> table(entries.size());
    std::memcpy(table.entries(), entries.data(), entries.size() * sizeof(kvm_irq_routing_entry));
    detail::ioctl_or_throw(fd_.get(), detail::kSetGsiRouting, table.data(), "KVM_SET_GSI_ROUTING");
}

}  // namespace vim::vmm::kvm
