#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace vim::vmm::virtio::block {

enum class Operation {
    Read,         // preadv into `iovecs`
    Write,        // pwritev from `iovecs`
    Flush,        // fdatasync
    Discard,      // fallocate(PUNCH_HOLE | KEEP_SIZE) over `length` bytes
    WriteZeroes,  // fallocate(ZERO_RANGE | KEEP_SIZE) over `length` bytes, see IoEngine
};

struct Request {
    Operation operation;
    std::uint64_t offset = 0;
    // Read and Write: the caller's memory, read or written in place. The engine copies this
    // array, so it may live on the caller's stack; the memory it points to must stay valid
    // until the request's completion has been returned, or the engine has been destroyed (which
    // drops requests in flight: what they did to the file is undefined).
    std::span<const iovec> iovecs = {};
    // Discard and WriteZeroes: bytes from `offset`; the kernel answers -EINVAL to 0.
    std::uint64_t length = 0;
    std::uint64_t user_data = 0;
};

struct Completion {
    std::uint64_t user_data;
    // Read and Write: the bytes transferred. A read that reaches the end of the file returns
    // fewer than asked for (0 at or past the end), and so does a write the device stops taking;
    // the caller compares with what it asked for. Other operations: 0. Failures: -errno.
    std::int64_t result;
};

// One disk's I/O, driven from one thread (an epoll loop, a device worker). Requests complete in
// any order; user_data tells them apart. A transfer the kernel cuts short is continued by the
// engine from where it stopped, so a completion always covers the whole request.
//
// WriteZeroes degrades once per engine where the filesystem refuses a method (EOPNOTSUPP):
// ZERO_RANGE, then PUNCH_HOLE (which reads back as zeroes too), then writing zeroes. The engine
// does not know the disk's size: keeping requests inside it is the caller's business.
//
// A virtio-blk device uses it so: on a queue notification, enqueue() one request per chain
// (user_data naming the chain) until the queue is empty or enqueue() says false (leave the rest
// in the ring), then submit() once; when completion_fd() is readable, take next_completion()
// until nullopt, answering each chain, then interrupt the guest once.
class IoEngine {
public:
    virtual ~IoEngine() = default;

    // "io_uring" or "sync": what `status` shows.
    virtual const char* name() const noexcept = 0;
    virtual unsigned queue_depth() const noexcept = 0;
    // Requests enqueued whose completion next_completion() has not returned yet.
    virtual unsigned in_flight() const noexcept = 0;

    // Queues a request; it starts at the latest at the next submit() or next_completion().
    // Returns false, queuing nothing, when queue_depth() requests are in flight already.
    [[nodiscard]] virtual bool enqueue(const Request& request) = 0;
    // Starts every queued request, with one system call where the engine can.
    virtual void submit() = 0;

    // Readable when completions may be ready; for an epoll loop (level-triggered).
    virtual int completion_fd() const noexcept = 0;
    // The next finished request, or nullopt when none is ready. Before answering nullopt it
    // starts whatever is still queued and clears completion_fd(), so a caller that then waits
    // for completion_fd() wakes for the next completion and never misses one.
    virtual std::optional<Completion> next_completion() = 0;
};

// Requests in flight allowed per engine: the largest virtqueue.
inline constexpr unsigned kMaxQueueDepth = 32768;

struct EngineSelection {
    std::unique_ptr<IoEngine> engine;
    // Why io_uring is not used (for the log and `status`); empty when it is.
    std::string fallback_reason;
};

// The io_uring engine over `fd`, or the synchronous one when this kernel or its sandbox does not
// offer io_uring with the operations needed. `fd` must outlive the engine. Throws
// std::invalid_argument for a queue depth outside 1..kMaxQueueDepth.
EngineSelection make_engine(int fd, unsigned queue_depth);

}  // namespace vim::vmm::virtio::block
