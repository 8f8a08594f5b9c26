#pragma once

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vim/testing/guest_ram.h"
#include "vim/testing/virtio_driver.h"
#include "vmm/virtio/queue.h"

namespace vim::vmm::virtio {

// Guest RAM of two regions with a hole between them, as x86 has below 4 GiB:
// a queue's rings at the start of the low one, its buffers after them.
class QueueTest : public ::testing::Test {
protected:
    static constexpr std::uint16_t kSize = 16;
    static constexpr memory::GuestAddress kLowRam = 0x10000;
    static constexpr std::uint64_t kLowRamSize = 0x10000;
    static constexpr memory::GuestAddress kHole = kLowRam + kLowRamSize;
    static constexpr memory::GuestAddress kHighRam = 0x40000;
    static constexpr std::uint64_t kHighRamSize = 0x4000;
    static constexpr memory::GuestAddress kData = kLowRam + 0x1000;

    vim::testing::GuestRam ram{
        std::array{memory::RegionLayout{kLowRam, kLowRamSize}, memory::RegionLayout{kHighRam, kHighRamSize}}};
    vim::testing::VirtqueueDriver driver{ram.memory(), kSize,
                                         vim::testing::RingLayout::packed(kLowRam, kSize), kData,
                                         kLowRam + kLowRamSize - kData};
    Queue queue{"test queue", 256};

    memory::GuestMemory& memory() { return ram.memory(); }

    DescriptorChain pop_chain() {
        std::optional<DescriptorChain> chain = queue.pop(memory());
        if (!chain) {
            ADD_FAILURE() << "no chain available";
            return {};
        }
        return *chain;
    }

    // What pop() says of a chain it refuses; checks that the refusal names
    // the chain's head.
    std::string chain_error(std::uint16_t head) {
        try {
            (void)queue.pop(memory());
        } catch (const InvalidChainError& error) {
            EXPECT_EQ(error.head(), head);
            return error.what();
        }
        return "no InvalidChainError";
    }

    std::string broken_queue_error() {
        try {
            (void)queue.pop(memory());
        } catch (const QueueBrokenError& error) {
            return error.what();
        }
        return "no QueueBrokenError";
    }

    std::string enable_error() {
        try {
            queue.enable(memory());
        } catch (const QueueBrokenError& error) {
            EXPECT_FALSE(queue.ready());
            return error.what();
        }
        return "no QueueBrokenError";
    }
};

inline std::vector<std::uint8_t> bytes_of(std::string_view text) { return {text.begin(), text.end()}; }

}  // namespace vim::vmm::virtio
