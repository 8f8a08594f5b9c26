#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "vmm/virtio/block/disk_image.h"
#include "vmm/virtio/block/io_engine.h"
#include "vmm/virtio/block/protocol.h"
#include "vmm/virtio/block/request.h"
#include "vmm/virtio/device.h"

namespace vim::vmm::virtio::block {

// The block device (spec 5.2) over a raw disk image: request queues whose
// requests go to one IoEngine asynchronously, straight between the disk and
// guest memory (no bounce buffers), many in flight at once.
//
// Several queues (VIRTIO_BLK_F_MQ), one per vCPU: Linux gives each queue its
// own MSI-X vector with the affinity of the vCPUs that submit on it, so a
// completion interrupts the vCPU that waits for it instead of sending it an
// IPI from another vCPU; that is what a depth-1 reader's latency is made of.
// The queues share the loop and the engine: the host-side work per request is
// small next to the guest's.
//
// On the event loop: a notification pops every available chain, decodes it
// (decode_request()), enqueues its I/O and submits the batch with one call;
// completions are reaped from the engine's completion fd, each answered with
// its status byte and a used entry, and one interrupt per batch when the
// driver wants it. When the engine is full the device stops popping (with
// notifications still off) and goes on once completions have made room. A
// guest cannot keep the loop to itself: one turn pops at most kQueueSize
// chains before the device lets the loop's other sources run.
//
// Every request is answered: a short transfer or a host error (EIO, ENOSPC)
// is IOERR, a chain without a status byte is completed with 0 bytes.
// DISCARD and WRITE_ZEROES run their ranges one after the other, so a request
// holds at most one engine slot and in-flight requests never exceed the
// engine's depth.
//
// Destroy it after reset() or once its loop no longer runs: while active, the
// loop holds handlers that point to it.
class BlockDevice final : public VirtioDevice {
public:
    using EngineFactory = std::function<EngineSelection(int fd, unsigned queue_depth)>;

    // Linux uses min(queues, its CPUs); beyond 16 the rings and vectors cost
    // more than the spread they buy.
    static constexpr unsigned kMaxQueues = 16;
    // Linux keeps a request in flight per descriptor chain: 256 requests keep
    // any single disk's queue full (NVMe saturates well below), and with
    // indirect descriptors each request still carries up to seg_max = 254
    // data buffers. The rings take under 7 KiB of guest RAM.
    static constexpr std::uint16_t kQueueSize = 256;
    // A request's header and status byte take two entries of an indirect
    // table, which the queue limits to the queue size.
    static constexpr std::uint32_t kMaxDataSegments = kQueueSize - 2;
    // 1 GiB per range bounds what one request asks of an io-wq worker (or of
    // the loop itself, with the synchronous engine, where a filesystem
    // without fallocate makes write zeroes real writes); Linux splits larger
    // ranges into several requests.
    static constexpr std::uint32_t kMaxRangeSectors = (1u << 30) / kSectorSize;
    // Linux merges up to this many ranges into one DISCARD.
    static constexpr std::uint32_t kMaxRangeSegments = 32;

    // `serial` is what GET_ID answers, cut to kIdBytes (serial_from_path()
    // makes the usual one). `queue_count` request queues, 1 to kMaxQueues
    // (the machine gives one per vCPU). `engine_factory` makes the engine at
    // each activation, deep enough for every queue; tests choose an engine
    // with it.
    BlockDevice(DiskImage disk, std::string serial, unsigned queue_count,
                EngineFactory engine_factory = make_engine);
    BlockDevice(const BlockDevice&) = delete;
    BlockDevice& operator=(const BlockDevice&) = delete;

    // A disk's serial: the image file's name without its directory, cut to
    // kIdBytes ("/img/debian.raw" -> "debian.raw").
    static std::string serial_from_path(const std::string& path);

    const DiskImage& disk() const noexcept { return disk_; }

    std::uint32_t device_type() const override { return kDeviceTypeBlock; }
    // SEG_MAX, BLK_SIZE, FLUSH, DISCARD, WRITE_ZEROES, MQ with more than one
    // queue, RO for a read-only disk, and the ring's INDIRECT_DESC and EVENT_IDX.
    std::uint64_t device_features() const override;
    std::vector<std::uint16_t> queue_max_sizes() const override;

    // The configuration space never changes (the disk is not resized), so
    // vCPUs read it without a lock. Writes are ignored: the writeback field is
    // writable only with CONFIG_WCE, which is not offered.
    void read_config(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    void activate(const Activation& activation) override;
    // Unregisters from the loop, destroys the engine (which cancels what is in
    // flight and waits until the kernel has let go of guest memory), then
    // forgets the chains: nothing of theirs is ever completed.
    void reset() override;

    // requests: per type, the requests decoded and carried out (or tried);
    // bytes_read, bytes_written: data of successful reads and writes;
    // errors: IOERR answers; unsupported: UNSUPP answers; bad_chains: chains
    // completed with 0 bytes (refused by the queue, or no status byte);
    // in_flight: requests at the engine; queues: the request queues offered;
    // engine, engine_fallback_reason: the
    // engine of the latest activation ("none" before one) and why it is not
    // io_uring; engine_error: why none could be made, when so.
    nlohmann::json stats() const override;

    // Waits, on the loop's thread, until every request at the engine has
    // completed and is on its used ring (the driver interrupted as usual).
    // Chains still in the available ring stay there for the next look.
    void quiesce() override;
    // Nothing travels but the queues (the transport's): throws
    // std::logic_error if a request is in flight, which quiesce() prevents.
    state::State save_device() const override;

private:
    struct InFlightRequest {
        std::size_t queue;
        DescriptorChain chain;
        BlockRequest request;
        std::size_t next_range = 0;             // Discard, WriteZeroes: the range at the engine
        Operation operation = Operation::Read;  // what the engine is doing for it
    };

    // What the loop keeps per request queue.
    struct QueueService {
        bool broken = false;
        // Stopped popping because the engine was full; reap_completions() resumes it.
        bool waiting_for_engine_room = false;
        // Has used entries this turn that may be worth an interrupt.
        bool used_added = false;
    };

    // Runs on the loop for queue `queue`'s notification fd.
    void serve_notification(std::size_t queue);
    // Pops and starts requests until the queue is empty, the engine full or
    // the turn's budget spent.
    void serve_queue(std::size_t queue);
    // Pops one chain and starts or answers it; false when there was none.
    bool serve_next_chain(std::size_t queue);
    void start(std::size_t queue, DescriptorChain chain, BlockRequest request);
    // Enqueues the engine operation the request needs next; false when the
    // engine refused it.
    bool enqueue_next(std::uint64_t id, InFlightRequest& in_flight);
    // Runs on the loop for the engine's completion fd.
    void reap_completions();
    void finish_operation(const Completion& completion);
    // Writes the status byte and returns the chain with `written` bytes.
    void answer(std::size_t queue, const DescriptorChain& chain, Status status, std::uint32_t written);
    // Submits what this turn enqueued and interrupts the driver for each queue
    // it answered on, where it wants.
    void finish_turn();
    void break_queue(std::size_t queue);
    void count_request(RequestType type);

    DiskImage disk_;
    const std::array<std::uint8_t, kIdBytes> id_;
    const unsigned queue_count_;
    const EngineFactory engine_factory_;
    const Config config_;

    // Set while active; everything below belongs to the loop's thread.
    std::optional<Activation> active_;
    DiskLimits limits_;
    std::unique_ptr<IoEngine> engine_;
    std::unordered_map<std::uint64_t, InFlightRequest> in_flight_;
    std::uint64_t next_request_id_ = 0;
    std::vector<QueueService> queue_service_;
    // The filesystem refused to punch holes: WRITE_ZEROES with unmap zeroes without.
    bool punch_hole_refused_ = false;

    // Read by stats() from whichever thread asks.
    struct Counters {
        std::atomic<std::uint64_t> reads = 0;
        std::atomic<std::uint64_t> writes = 0;
        std::atomic<std::uint64_t> flushes = 0;
        std::atomic<std::uint64_t> get_ids = 0;
        std::atomic<std::uint64_t> discards = 0;
        std::atomic<std::uint64_t> write_zeroes = 0;
        std::atomic<std::uint64_t> bytes_read = 0;
        std::atomic<std::uint64_t> bytes_written = 0;
        std::atomic<std::uint64_t> errors = 0;
        std::atomic<std::uint64_t> unsupported = 0;
        std::atomic<std::uint64_t> bad_chains = 0;
        std::atomic<std::uint64_t> in_flight = 0;
    } counters_;
    mutable std::mutex engine_info_mutex_;
    std::string engine_name_ = "none";
    std::string engine_fallback_reason_;
    std::string engine_error_;
};

}  // namespace vim::vmm::virtio::block
