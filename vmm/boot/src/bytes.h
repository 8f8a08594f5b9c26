#pragma once

// Little-endian field access for the boot protocol's byte layouts. The VMM
// only runs on x86 hosts, so a plain copy already has guest byte order.

#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>

#include "vmm/sys/hex.h"

namespace vim::vmm::boot::detail {

static_assert(std::endian::native == std::endian::little, "boot structures are little-endian");

template <typename T>
T load_le(std::span<const std::uint8_t> bytes, std::size_t offset) {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    std::memcpy(&value, bytes.subspan(offset, sizeof(T)).data(), sizeof(T));
    return value;
}

template <typename T>
void store_le(std::span<std::uint8_t> bytes, std::size_t offset, T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    std::memcpy(bytes.subspan(offset, sizeof(T)).data(), &value, sizeof(T));
}

using sys::hex;

}  // namespace vim::vmm::boot::detail
