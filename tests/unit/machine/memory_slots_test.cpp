#include "vmm/machine/memory_slots.h"

#include <gtest/gtest.h>

#include "fakes/fake_vm.h"

namespace {

using vim::vmm::memory::GuestMemory;
using vim::vmm::memory::kPageSize;

TEST(RegisterGuestMemory, OneSlotPerRegionInAddressOrder) {
    // Guest RAM split around an MMIO hole, as on x86 with more than 3 GiB.
    const vim::vmm::memory::RegionLayout layout[] = {{0, 16 * kPageSize}, {1ull << 32, 8 * kPageSize}};
    auto memory = GuestMemory::allocate(layout);
    vim::testing::FakeVm vm;

    vim::vmm::machine::register_guest_memory(vm, memory, /*log_dirty=*/true);

    ASSERT_EQ(vm.slots.size(), 2u);
    EXPECT_EQ(vm.slots[0].guest_address, 0u);
    EXPECT_EQ(vm.slots[0].size, 16 * kPageSize);
    EXPECT_EQ(vm.slots[0].host_address, memory.regions()[0].host);
    EXPECT_TRUE(vm.slots[0].log_dirty);
    EXPECT_FALSE(vm.slots[0].read_only);
    EXPECT_EQ(vm.slots[1].guest_address, 1ull << 32);
    EXPECT_EQ(vm.slots[1].host_address, memory.regions()[1].host);
}

TEST(RegisterGuestMemory, DirtyLoggingIsOptional) {
    const vim::vmm::memory::RegionLayout layout[] = {{0, 4 * kPageSize}};
    auto memory = GuestMemory::allocate(layout);
    vim::testing::FakeVm vm;
    vim::vmm::machine::register_guest_memory(vm, memory, /*log_dirty=*/false);
    EXPECT_FALSE(vm.slots.at(0).log_dirty);
    // The fake answers like KVM: a bitmap per slot page, cleared on request.
    vm.injected_dirty[0] = {0b1010};
    auto dirty = vm.dirty_log(0);
    EXPECT_EQ(dirty, std::vector<std::uint64_t>{0b1010});
    vm.clear_dirty_log(0, 0, dirty);
    EXPECT_EQ(vm.dirty_log(0), std::vector<std::uint64_t>{0});
    EXPECT_THROW(vm.dirty_log(3), std::invalid_argument);
}

}  // namespace
