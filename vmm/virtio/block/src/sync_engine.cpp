#include "vmm/virtio/block/sync_engine.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <vector>

#include "request_progress.h"
#include "vmm/sys/event_fd.h"

namespace vim::vmm::virtio::block {
namespace {

// The call's result as io_uring reports it: bytes, or -errno.
std::int64_t make_call(int fd, const SystemCall& call) {
    for (;;) {
        long result = -1;
        switch (call.kind) {
        case SystemCall::Kind::Readv:
            result = ::preadv(fd, call.iovecs, call.iovec_count, static_cast<off_t>(call.offset));
            break;
        case SystemCall::Kind::Writev:
            result = ::pwritev(fd, call.iovecs, call.iovec_count, static_cast<off_t>(call.offset));
            break;
        case SystemCall::Kind::Fdatasync:
            result = ::fdatasync(fd);
            break;
        case SystemCall::Kind::Fallocate:
            result = ::fallocate(fd, call.fallocate_mode, static_cast<off_t>(call.offset),
                                 static_cast<off_t>(call.length));
            break;
        }
        if (result >= 0) {
            return result;
        }
        if (errno != EINTR) {
            return -errno;
        }
    }
}

class SyncEngine final : public IoEngine {
public:
    SyncEngine(int fd, unsigned queue_depth)
        : fd_(fd), slots_(queue_depth), notification_("sync block engine completions") {
        queued_.reserve(queue_depth);
    }

    const char* name() const noexcept override { return "sync"; }
    unsigned queue_depth() const noexcept override { return slots_.capacity(); }
    unsigned in_flight() const noexcept override {
        return slots_.in_use() + static_cast<unsigned>(ready_.size());
    }

    bool enqueue(const Request& request) override {
        // Finished requests count until they are returned, so the caller never holds more
        // than queue_depth completions it has not seen.
        if (in_flight() >= queue_depth()) {
            return false;
        }
        const std::uint32_t index = *slots_.acquire();
        slots_[index].start(request, zeroing_);
        queued_.push_back(index);
        return true;
    }

    void submit() override {
        if (queued_.empty()) {
            return;
        }
        for (const std::uint32_t index : queued_) {
            RequestProgress& request = slots_[index];
            std::optional<std::int64_t> result;
            while (!result) {
                result = request.advance(make_call(fd_, request.next_call()), zeroing_);
            }
            ready_.push_back({request.user_data(), *result});
            slots_.release(index);
        }
        queued_.clear();
        notification_.signal();
    }

    int completion_fd() const noexcept override { return notification_.get(); }

    std::optional<Completion> next_completion() override {
        if (ready_.empty()) {
            submit();
        }
        if (ready_.empty()) {
            notification_.drain();
            return std::nullopt;
        }
        const Completion completion = ready_.front();
        ready_.pop_front();
        return completion;
    }

private:
    int fd_;
    RequestSlots slots_;
    std::vector<std::uint32_t> queued_;
    std::deque<Completion> ready_;
    ZeroingMethod zeroing_ = ZeroingMethod::ZeroRange;
    sys::EventFd notification_;
};

}  // namespace

std::unique_ptr<IoEngine> make_sync_engine(int fd, unsigned queue_depth) {
    return std::make_unique<SyncEngine>(fd, queue_depth);
}

}  // namespace vim::vmm::virtio::block
