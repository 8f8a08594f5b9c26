#include "vmm/kvm/vm.h"

#include <linux/kvm.h>
#include <sys/mman.h>

#include <stdexcept>
#include <string>

#include "ioctl.h"

namespace vmm::kvm {

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
    auto run = sys::Mapping::map("kvm_run", run_mapping_size_, PROT_READ | PROT_WRITE, MAP_SHARED,
                                 vcpu.get());
    return Vcpu(std::move(vcpu), std::move(run), id);
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

void KvmVm::clear_dirty_log(std::uint32_t slot, std::span<const std::uint64_t> pages) {
    std::uint64_t slot_pages = slot_size(slot) / kPageSize;
    std::uint64_t count = std::min<std::uint64_t>(pages.size() * 64, slot_pages);
    if (count == 0) {
        return;
    }
    kvm_clear_dirty_log clear{};
    clear.slot = slot;
    clear.first_page = 0;
    // KVM wants a multiple of 64 pages unless the range ends at the slot's end.
    clear.num_pages = static_cast<std::uint32_t>(count == slot_pages ? count : count / 64 * 64);
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

void KvmVm::register_ioevent(const IoEvent& event) {
    kvm_ioeventfd ioeventfd{};
    ioeventfd.addr = event.address;
    ioeventfd.len = event.length;
    ioeventfd.fd = event.eventfd;
    ioeventfd.datamatch = event.datamatch;
    ioeventfd.flags = (event.space == IoEvent::Space::Pio ? KVM_IOEVENTFD_FLAG_PIO : 0u) |
                      (event.has_datamatch ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0u);
    detail::ioctl_or_throw(fd_.get(), KVM_IOEVENTFD, &ioeventfd, "KVM_IOEVENTFD");
}

}  // namespace vmm::kvm
