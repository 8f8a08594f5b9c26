#include "request_progress.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <stdexcept>
#include <string>

#include "vmm/sys/mapping.h"

namespace vim::vmm::virtio::block {
namespace {

constexpr std::uint64_t kZeroChunk = 1 << 20;

// Reads as zeroes and costs no memory: every page is the kernel's shared zero page. Page-aligned,
// so O_DIRECT takes it too.
const iovec& zero_chunk() {
    static const sys::Mapping mapping = sys::Mapping::map("zero chunk for WriteZeroes", kZeroChunk, PROT_READ,
                                                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
    static const iovec chunk{mapping.data(), kZeroChunk};
    return chunk;
}

int fallocate_mode(ZeroingMethod method) {
    return method == ZeroingMethod::ZeroRange ? FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE
                                              : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
}

}  // namespace

void RequestProgress::start(const Request& request, ZeroingMethod zeroing) {
    operation_ = request.operation;
    user_data_ = request.user_data;
    offset_ = request.offset;
    transferred_ = 0;
    remaining_ = request.length;
    zeroing_ = zeroing;
    iovecs_.assign(request.iovecs.begin(), request.iovecs.end());
    first_iovec_ = 0;
    skip_empty_iovecs();
}

SystemCall RequestProgress::next_call() {
    switch (operation_) {
    case Operation::Read:
    case Operation::Write: {
        // More than IOV_MAX segments would be refused whole (EINVAL); passing the first IOV_MAX
        // makes the call a short transfer that the next one continues.
        const auto count = std::min<std::size_t>(iovecs_.size() - first_iovec_, IOV_MAX);
        return {.kind = operation_ == Operation::Read ? SystemCall::Kind::Readv : SystemCall::Kind::Writev,
                .offset = offset_,
                .iovecs = iovecs_.data() + first_iovec_,
                .iovec_count = static_cast<int>(count)};
    }
    case Operation::Flush:
        return {.kind = SystemCall::Kind::Fdatasync};
    case Operation::Discard:
        return {.kind = SystemCall::Kind::Fallocate,
                .offset = offset_,
                .fallocate_mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                .length = remaining_};
    case Operation::WriteZeroes:
        if (zeroing_ != ZeroingMethod::Writes) {
            return {.kind = SystemCall::Kind::Fallocate,
                    .offset = offset_,
                    .fallocate_mode = fallocate_mode(zeroing_),
                    .length = remaining_};
        }
        iovecs_.assign(1, zero_chunk());
        iovecs_[0].iov_len = std::min(remaining_, kZeroChunk);
        first_iovec_ = 0;
        return {
            .kind = SystemCall::Kind::Writev, .offset = offset_, .iovecs = iovecs_.data(), .iovec_count = 1};
    }
    throw std::logic_error("block request: operation " + std::to_string(static_cast<int>(operation_)));
}

std::optional<std::int64_t> RequestProgress::advance(std::int64_t result, ZeroingMethod& engine_zeroing) {
    switch (operation_) {
    case Operation::Read:
    case Operation::Write:
        return advance_transfer(result);
    case Operation::WriteZeroes:
        return advance_zeroing(result, engine_zeroing);
    case Operation::Flush:
    case Operation::Discard:
        break;
    }
    return result;
}

std::optional<std::int64_t> RequestProgress::advance_transfer(std::int64_t result) {
    if (result < 0) {
        return result;
    }
    if (result == 0) {
        // The end of the file, or a device that takes no more: the caller sees the short count.
        return static_cast<std::int64_t>(transferred_);
    }
    auto left = static_cast<std::uint64_t>(result);
    transferred_ += left;
    offset_ += left;
    while (left > 0 && first_iovec_ < iovecs_.size()) {
        iovec& segment = iovecs_[first_iovec_];
        if (left >= segment.iov_len) {
            left -= segment.iov_len;
            ++first_iovec_;
        } else {
            segment.iov_base = static_cast<char*>(segment.iov_base) + left;
            segment.iov_len -= left;
            left = 0;
        }
    }
    skip_empty_iovecs();
    if (first_iovec_ == iovecs_.size()) {
        return static_cast<std::int64_t>(transferred_);
    }
    return std::nullopt;
}

std::optional<std::int64_t> RequestProgress::advance_zeroing(std::int64_t result,
                                                             ZeroingMethod& engine_zeroing) {
    if (zeroing_ != ZeroingMethod::Writes) {
        if (result != -EOPNOTSUPP) {
            return result;
        }
        zeroing_ = zeroing_ == ZeroingMethod::ZeroRange ? ZeroingMethod::PunchHole : ZeroingMethod::Writes;
        engine_zeroing = std::max(engine_zeroing, zeroing_);
        return std::nullopt;
    }
    if (result < 0) {
        return result;
    }
    if (result == 0) {
        // Without progress another write would loop forever.
        return -EIO;
    }
    offset_ += static_cast<std::uint64_t>(result);
    remaining_ -= std::min(remaining_, static_cast<std::uint64_t>(result));
    if (remaining_ == 0) {
        return 0;
    }
    return std::nullopt;
}

void RequestProgress::skip_empty_iovecs() noexcept {
    while (first_iovec_ < iovecs_.size() && iovecs_[first_iovec_].iov_len == 0) {
        ++first_iovec_;
    }
}

RequestSlots::RequestSlots(unsigned queue_depth) {
    if (queue_depth == 0 || queue_depth > kMaxQueueDepth) {
        throw std::invalid_argument("block engine: queue depth " + std::to_string(queue_depth) +
                                    " is outside 1.." + std::to_string(kMaxQueueDepth));
    }
    slots_.resize(queue_depth);
    used_.resize(queue_depth);
    free_.reserve(queue_depth);
    for (std::uint32_t index = queue_depth; index > 0; --index) {
        free_.push_back(index - 1);
    }
}

std::optional<std::uint32_t> RequestSlots::acquire() noexcept {
    if (free_.empty()) {
        return std::nullopt;
    }
    const std::uint32_t index = free_.back();
    free_.pop_back();
    used_[index] = true;
    return index;
}

}  // namespace vim::vmm::virtio::block
