#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "vmm/virtio/block/io_engine.h"

namespace vim::vmm::virtio::block {

// How an engine zeroes a range. It only moves down the list, when the filesystem refuses a method.
enum class ZeroingMethod { ZeroRange, PunchHole, Writes };

// The system call a request needs next; io_uring prepares it as an SQE, the sync engine makes it.
struct SystemCall {
    enum class Kind { Readv, Writev, Fdatasync, Fallocate };
    Kind kind;
    std::uint64_t offset = 0;
    const iovec* iovecs = nullptr;
    int iovec_count = 0;
    int fallocate_mode = 0;
    std::uint64_t length = 0;
};

// One request from enqueue to completion: the system call it needs next, and what each result
// means. A short transfer continues from where it stopped; a zeroing method the filesystem
// refuses gives way to the next one.
class RequestProgress {
public:
    void start(const Request& request, ZeroingMethod zeroing);
    std::uint64_t user_data() const noexcept { return user_data_; }
    // Valid until advance() is called.
    SystemCall next_call();
    // Takes the result of next_call() (bytes or -errno). Returns the request's result when it is
    // finished, nullopt when it needs another call. `engine_zeroing` learns what was refused.
    std::optional<std::int64_t> advance(std::int64_t result, ZeroingMethod& engine_zeroing);

private:
    std::optional<std::int64_t> advance_transfer(std::int64_t result);
    std::optional<std::int64_t> advance_zeroing(std::int64_t result, ZeroingMethod& engine_zeroing);
    void skip_empty_iovecs() noexcept;

    Operation operation_ = Operation::Read;
    std::uint64_t user_data_ = 0;
    std::uint64_t offset_ = 0;       // where the next call starts
    std::uint64_t transferred_ = 0;  // Read, Write: bytes done so far
    std::uint64_t remaining_ = 0;    // Discard, WriteZeroes: bytes still to do
    ZeroingMethod zeroing_ = ZeroingMethod::ZeroRange;
    // The part of the request's iovecs not transferred yet starts at first_iovec_.
    std::vector<iovec> iovecs_;
    std::size_t first_iovec_ = 0;
};

// The RequestProgress of every request in flight, in a table of queue_depth entries allocated
// once, so the iovec arrays the kernel reads stay put and an index fits in user_data.
class RequestSlots {
public:
    // Throws std::invalid_argument for a depth outside 1..kMaxQueueDepth.
    explicit RequestSlots(unsigned queue_depth);

    unsigned capacity() const noexcept { return static_cast<unsigned>(slots_.size()); }
    unsigned in_use() const noexcept { return capacity() - static_cast<unsigned>(free_.size()); }
    bool in_use(std::uint32_t index) const noexcept { return used_[index]; }
    // nullopt when all are in use.
    std::optional<std::uint32_t> acquire() noexcept;
    void release(std::uint32_t index) noexcept {
        used_[index] = false;
        free_.push_back(index);
    }
    RequestProgress& operator[](std::uint32_t index) noexcept { return slots_[index]; }

private:
    std::vector<RequestProgress> slots_;
    std::vector<bool> used_;
    std::vector<std::uint32_t> free_;
};

}  // namespace vim::vmm::virtio::block
