#pragma once

// Builds small synthetic bzImages: a setup header with chosen fields, and a
// protected-mode kernel filled with a recognisable pattern, or carrying a
// given compressed payload.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

namespace vim::vmm::boot::testing {

struct FakeBzImage {
    std::uint8_t setup_sects = 1;
    std::uint16_t version = 0x020f;
    std::uint8_t header_length = 0x6a;  // the byte at 0x201: header ends at 0x26c
    std::uint8_t loadflags = 0x01;
    std::uint16_t xloadflags = 0x0001;
    std::uint32_t kernel_size = 0x3000;
    std::uint32_t kernel_alignment = 0x200000;
    std::uint8_t relocatable = 1;
    std::uint64_t pref_address = 0x200000;
    std::uint32_t init_size = 0x100000;
    std::uint32_t initrd_addr_max = 0x7fffffff;
    std::uint32_t cmdline_size = 255;
    std::uint32_t payload_offset = 0x100;
    std::uint32_t payload_length = 0x1000;
    // Written at payload_offset over the pattern, when not empty.
    std::vector<std::uint8_t> payload;

    // Carries `bytes` as the compressed payload: sets payload_length, and
    // grows kernel_size (a multiple of 16: syssize counts 16-byte units) to
    // hold it and code behind it, where a real image has the decompressor's.
    void put_payload(std::vector<std::uint8_t> bytes) {
        payload = std::move(bytes);
        payload_length = static_cast<std::uint32_t>(payload.size());
        const std::uint32_t needed = (payload_offset + payload_length + 0x100 + 15) & ~15u;
        kernel_size = std::max(kernel_size, needed);
    }

    std::uint64_t kernel_offset() const { return ((setup_sects == 0 ? 4u : setup_sects) + 1u) * 512u; }

    std::vector<std::uint8_t> bytes() const {
        std::vector<std::uint8_t> image(kernel_offset() + kernel_size);
        auto put = [&](std::size_t offset, auto value) { std::memcpy(&image[offset], &value, sizeof value); };
        put(0x1f1, setup_sects);
        put(0x1f4, static_cast<std::uint32_t>(kernel_size / 16));
        put(0x1fe, std::uint16_t{0xaa55});
        put(0x200, std::uint8_t{0xeb});
        put(0x201, header_length);
        std::memcpy(&image[0x202], "HdrS", 4);
        put(0x206, version);
        put(0x211, loadflags);
        put(0x214, std::uint32_t{0x100000});
        put(0x22c, initrd_addr_max);
        put(0x230, kernel_alignment);
        put(0x234, relocatable);
        put(0x236, xloadflags);
        put(0x238, cmdline_size);
        put(0x248, payload_offset);
        put(0x24c, payload_length);
        put(0x258, pref_address);
        put(0x260, init_size);
        for (std::size_t i = kernel_offset(); i < image.size(); ++i) {
            image[i] = static_cast<std::uint8_t>(i * 7 + 3);
        }
        if (payload_offset + payload.size() <= kernel_size) {
            std::copy(payload.begin(), payload.end(), image.begin() + kernel_offset() + payload_offset);
        }
        return image;
    }
};

}  // namespace vim::vmm::boot::testing
