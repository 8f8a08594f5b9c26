#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

namespace vim::vmm::sys {

// Sole owner of an mmap()ed range; unmapped once, on destruction.
class Mapping {
public:
    Mapping() = default;
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    Mapping(Mapping&& other) noexcept
        : address_(std::exchange(other.address_, nullptr)), size_(std::exchange(other.size_, 0)) {}
    Mapping& operator=(Mapping&& other) noexcept;
    ~Mapping();

    // mmap(nullptr, size, protection, flags, fd, offset); throws std::system_error
    // naming `what` on failure.
    static Mapping map(const char* what, std::size_t size, int protection, int flags, int fd = -1,
                       long offset = 0);

    std::uint8_t* data() const noexcept { return static_cast<std::uint8_t*>(address_); }
    std::size_t size() const noexcept { return size_; }
    std::span<std::uint8_t> bytes() const noexcept { return {data(), size_}; }
    bool valid() const noexcept { return address_ != nullptr; }

private:
    Mapping(void* address, std::size_t size) noexcept : address_(address), size_(size) {}
    void unmap() noexcept;

    void* address_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace vim::vmm::sys
