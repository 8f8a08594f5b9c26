#include "vmm/virtio/block/io_uring_engine.h"

#include <liburing.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "request_progress.h"
#include "vmm/sys/error.h"
#include "vmm/sys/event_fd.h"

namespace vim::vmm::virtio::block {
namespace {

std::string setup_failure(int error) {
    std::string reason = std::string("io_uring_setup: ") + std::strerror(error);
    if (error == ENOSYS) {
        reason += " (the kernel has no io_uring)";
    } else if (error == EPERM) {
        reason += " (forbidden by a seccomp filter or sysctl kernel.io_uring_disabled)";
    } else if (error == ENOMEM) {
        reason += " (before 5.12 the ring counts against RLIMIT_MEMLOCK)";
    }
    return reason;
}

struct RequiredOperation {
    int opcode;
    const char* name;
};

// All arrived by 5.6, as did the probe itself.
constexpr RequiredOperation kRequiredOperations[] = {
    {IORING_OP_ASYNC_CANCEL, "IORING_OP_ASYNC_CANCEL"},
    {IORING_OP_READV, "IORING_OP_READV"},
    {IORING_OP_WRITEV, "IORING_OP_WRITEV"},
    {IORING_OP_FSYNC, "IORING_OP_FSYNC"},
    {IORING_OP_FALLOCATE, "IORING_OP_FALLOCATE"},
};

// Sole owner of a ring; with `entries` submission slots, and twice as many for completions.
class Ring {
public:
    explicit Ring(unsigned entries) {
        const int error = io_uring_queue_init(entries, &ring_, 0);
        if (error < 0) {
            throw IoUringUnavailable(setup_failure(-error));
        }
    }
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    ~Ring() { io_uring_queue_exit(&ring_); }

    io_uring* get() noexcept { return &ring_; }

private:
    io_uring ring_{};
};

void check_operations(io_uring* ring) {
    io_uring_probe* probe = io_uring_get_probe_ring(ring);
    if (probe == nullptr) {
        throw IoUringUnavailable("io_uring: the kernel cannot list its operations (before 5.6)");
    }
    for (const RequiredOperation& operation : kRequiredOperations) {
        if (!io_uring_opcode_supported(probe, operation.opcode)) {
            io_uring_free_probe(probe);
            throw IoUringUnavailable(std::string("io_uring lacks ") + operation.name);
        }
    }
    io_uring_free_probe(probe);
}

// user_data of the cancellations the destructor sends; slot indices are below kMaxQueueDepth.
constexpr std::uint64_t kCancelTag = ~std::uint64_t{0};

class IoUringEngine final : public IoEngine {
public:
    IoUringEngine(int fd, unsigned queue_depth)
        : fd_(fd),
          slots_(queue_depth),
          notification_("io_uring block engine completions"),
          ring_(queue_depth) {
        check_operations(ring_.get());
        const int error = io_uring_register_eventfd(ring_.get(), notification_.get());
        if (error < 0) {
            throw IoUringUnavailable(std::string("io_uring_register_eventfd: ") + std::strerror(-error));
        }
    }

    // The kernel may still be writing into the callers' memory. Cancel what has not started and
    // wait for the rest (a transfer the disk is already doing) before the caller frees it.
    ~IoUringEngine() override {
        unsigned outstanding = slots_.in_use();
        if (outstanding == 0) {
            return;
        }
        io_uring* ring = ring_.get();
        // First into the kernel what is still queued, to make room for the cancellations.
        while (io_uring_sq_ready(ring) > 0) {
            if (io_uring_submit(ring) < 0) {
                break;
            }
        }
        for (std::uint32_t index = 0; index < slots_.capacity(); ++index) {
            io_uring_sqe* sqe = slots_.in_use(index) ? io_uring_get_sqe(ring) : nullptr;
            if (sqe != nullptr) {
                io_uring_prep_cancel64(sqe, index, 0);
                io_uring_sqe_set_data64(sqe, kCancelTag);
            }
        }
        while (outstanding > 0) {
            const int error = io_uring_submit_and_wait(ring, 1);
            if (error < 0 && error != -EINTR && error != -EAGAIN && error != -EBUSY) {
                return;  // nothing more to do than what io_uring_queue_exit() does
            }
            io_uring_cqe* cqe = nullptr;
            unsigned head = 0;
            unsigned seen = 0;
            io_uring_for_each_cqe(ring, head, cqe) {
                ++seen;
                if (io_uring_cqe_get_data64(cqe) != kCancelTag) {
                    --outstanding;
                }
            }
            io_uring_cq_advance(ring, seen);
        }
    }

    const char* name() const noexcept override { return "io_uring"; }
    unsigned queue_depth() const noexcept override { return slots_.capacity(); }
    unsigned in_flight() const noexcept override { return slots_.in_use(); }

    bool enqueue(const Request& request) override {
        const std::optional<std::uint32_t> index = slots_.acquire();
        if (!index) {
            return false;
        }
        slots_[*index].start(request, zeroing_);
        prepare(*index);
        return true;
    }

    void submit() override {
        while (io_uring_sq_ready(ring_.get()) > 0) {
            const int submitted = io_uring_submit(ring_.get());
            if (submitted == -EINTR) {
                continue;
            }
            if (submitted == -EAGAIN || submitted == -EBUSY || submitted == 0) {
                // The kernel is short of memory for now. The SQEs stay in the ring; waking the
                // caller's loop makes next_completion() offer them again.
                notification_.signal();
                return;
            }
            if (submitted < 0) {
                sys::throw_errno("io_uring_enter submitting block requests", -submitted);
            }
        }
    }

    int completion_fd() const noexcept override { return notification_.get(); }

    std::optional<Completion> next_completion() override {
        bool submitted = false;
        bool drained = false;
        for (;;) {
            io_uring_cqe* cqe = nullptr;
            if (io_uring_peek_cqe(ring_.get(), &cqe) == 0 && cqe != nullptr) {
                const auto index = static_cast<std::uint32_t>(io_uring_cqe_get_data64(cqe));
                const std::int64_t result = cqe->res;
                io_uring_cqe_seen(ring_.get(), cqe);
                RequestProgress& request = slots_[index];
                if (const std::optional<std::int64_t> final_result = request.advance(result, zeroing_)) {
                    slots_.release(index);
                    return Completion{request.user_data(), *final_result};
                }
                prepare(index);
                submitted = false;
                continue;
            }
            // Submitting before answering nullopt lets a caller that only waits never stall on
            // requests it queued, and buffered I/O that completes inline is returned at once.
            if (!submitted && io_uring_sq_ready(ring_.get()) > 0) {
                submit();
                submitted = true;
                continue;
            }
            if (drained) {
                if (io_uring_sq_ready(ring_.get()) > 0) {
                    notification_.signal();  // still refused (EAGAIN): come back soon
                }
                return std::nullopt;
            }
            // The kernel posts a CQE before it signals the eventfd, so looking at the ring once
            // more after the drain catches any completion whose signal the drain swallowed.
            notification_.drain();
            drained = true;
        }
    }

private:
    // One SQE for the next system call of the request in slot `index`.
    void prepare(std::uint32_t index) {
        const SystemCall call = slots_[index].next_call();
        // Each slot has at most one SQE in the ring, and the ring has an entry per slot.
        io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
        if (sqe == nullptr) {
            throw std::logic_error("io_uring block engine: submission ring full");
        }
        switch (call.kind) {
        case SystemCall::Kind::Readv:
            io_uring_prep_readv(sqe, fd_, call.iovecs, static_cast<unsigned>(call.iovec_count), call.offset);
            break;
        case SystemCall::Kind::Writev:
            io_uring_prep_writev(sqe, fd_, call.iovecs, static_cast<unsigned>(call.iovec_count), call.offset);
            break;
        case SystemCall::Kind::Fdatasync:
            io_uring_prep_fsync(sqe, fd_, IORING_FSYNC_DATASYNC);
            break;
        case SystemCall::Kind::Fallocate:
            io_uring_prep_fallocate(sqe, fd_, call.fallocate_mode, static_cast<off_t>(call.offset),
                                    static_cast<off_t>(call.length));
            break;
        }
        io_uring_sqe_set_data64(sqe, index);
    }

    int fd_;
    RequestSlots slots_;
    ZeroingMethod zeroing_ = ZeroingMethod::ZeroRange;
    sys::EventFd notification_;
    Ring ring_;  // after the eventfd and the slots: torn down first, while they still exist
};

}  // namespace

std::unique_ptr<IoEngine> make_io_uring_engine(int fd, unsigned queue_depth) {
    return std::make_unique<IoUringEngine>(fd, queue_depth);
}

}  // namespace vim::vmm::virtio::block
