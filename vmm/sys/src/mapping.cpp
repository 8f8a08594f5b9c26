#include "vmm/sys/mapping.h"

#include <sys/mman.h>

#include "vmm/sys/error.h"

namespace vim::vmm::sys {

Mapping& Mapping::operator=(Mapping&& other) noexcept {
    if (this != &other) {
        unmap();
        address_ = std::exchange(other.address_, nullptr);
        size_ = std::exchange(other.size_, 0);
    }
    return *this;
}

Mapping::~Mapping() { unmap(); }

Mapping Mapping::map(const char* what, std::size_t size, int protection, int flags, int fd, long offset) {
    void* address = ::mmap(nullptr, size, protection, flags, fd, offset);
    if (address == MAP_FAILED) {
        throw_errno(std::string("mmap ") + what);
    }
    return Mapping(address, size);
}

void Mapping::unmap() noexcept {
    if (address_ != nullptr) {
        ::munmap(address_, size_);
        address_ = nullptr;
        size_ = 0;
    }
}

}  // namespace vim::vmm::sys
