// libFuzzer target: guest RAM and a queue's registers straight from the input,
// then the device's whole loop over them (pop, use the buffers, complete,
// notify) until the queue runs dry or breaks. A guest controls all of that
// memory; the VMM must never touch memory outside it (ASan watches the
// buffers' edges, the checks below the ranges pop() hands out), loop, or crash.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "vim/testing/guest_ram.h"
#include "virtqueue_fuzz_input.h"
#include "vmm/virtio/queue.h"

namespace {

using vim::fuzz::VirtqueueFuzzHeader;
using vim::vmm::memory::GuestMemory;
using namespace vim::vmm::virtio;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "virtqueue_fuzz: %s\n", what);
    std::abort();
}

void check_in_ram(const GuestMemory& memory, const std::vector<GuestBuffer>& buffers) {
    for (const GuestBuffer& buffer : buffers) {
        bool inside = false;
        for (const auto& region : memory.regions()) {
            inside = inside || region.contains(buffer.address, buffer.length);
        }
        if (!inside) {
            fail("pop() returned a buffer outside guest RAM");
        }
    }
}

// What a device does with a chain: reads the request, writes the reply,
// returns how much it wrote.
std::uint32_t serve(GuestMemory& memory, const DescriptorChain& chain) {
    check_in_ram(memory, chain.readable);
    check_in_ram(memory, chain.writable);
    std::uint8_t checksum = 0;
    for (const iovec& part : chain.readable_iovecs(memory)) {
        for (std::size_t i = 0; i < part.iov_len; ++i) {
            checksum ^= static_cast<const std::uint8_t*>(part.iov_base)[i];
        }
    }
    std::uint8_t header[16];
    (void)chain.read(memory, 0, header);
    for (const iovec& part : chain.writable_iovecs(memory)) {
        std::memset(part.iov_base, checksum, part.iov_len);
    }
    const std::uint64_t writable = chain.writable_length();
    if (writable != 0) {
        const std::uint8_t status = 0;
        if (chain.write(memory, writable - 1, {&status, 1}) != 1) {
            fail("the last writable byte was not writable");
        }
    }
    return static_cast<std::uint32_t>(std::min<std::uint64_t>(writable, UINT32_MAX));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    VirtqueueFuzzHeader header;
    if (size < sizeof header) {
        return 0;
    }
    std::memcpy(&header, data, sizeof header);
    vim::testing::GuestRam ram = vim::fuzz::fuzz_ram(header, {data + sizeof header, size - sizeof header});
    GuestMemory& memory = ram.memory();
    std::optional<Queue> restored = vim::fuzz::fuzz_queue(header, memory);
    if (!restored) {
        return 0;
    }
    Queue& queue = *restored;

    // The device's writes can land in the rings (a guest may overlap them
    // with buffers) and offer more chains: the rounds are bounded.
    queue.disable_notification(memory);
    for (int round = 0; round < 2 * vim::fuzz::kMaxFuzzQueueSize; ++round) {
        try {
            std::optional<DescriptorChain> chain = queue.pop(memory);
            if (!chain) {
                if (!queue.enable_notification(memory)) {
                    break;
                }
                queue.disable_notification(memory);
                continue;
            }
            queue.add_used(memory, *chain, serve(memory, *chain));
        } catch (const InvalidChainError& error) {
            queue.add_used(memory, error.head(), 0);
        } catch (const QueueBrokenError&) {
            break;
        }
        (void)queue.needs_notification(memory);
    }
    return 0;
}
