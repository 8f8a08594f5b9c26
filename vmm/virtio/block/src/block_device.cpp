#include "vmm/virtio/block/block_device.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "vmm/sys/error.h"
#include "vmm/virtio/split_ring.h"

namespace vim::vmm::virtio::block {
namespace {

std::array<std::uint8_t, kIdBytes> id_from_serial(const std::string& serial) {
    std::array<std::uint8_t, kIdBytes> id{};  // zero-padded: the spec's NUL for shorter serials
    std::memcpy(id.data(), serial.data(), std::min(serial.size(), kIdBytes));
    return id;
}

Config config_for(const DiskImage& disk, unsigned queue_count) {
    Config config{};
    config.capacity = disk.size() / kSectorSize;
    config.seg_max = BlockDevice::kMaxDataSegments;
    config.blk_size = disk.logical_block_size();
    // Writes wait in the host's page cache (or the disk's) until a FLUSH. The
    // field only counts with CONFIG_WCE, and then says the same.
    config.writeback = 1;
    config.num_queues = static_cast<std::uint16_t>(queue_count);
    config.max_discard_sectors = BlockDevice::kMaxRangeSectors;
    config.max_discard_seg = BlockDevice::kMaxRangeSegments;
    config.discard_sector_alignment = disk.logical_block_size() / static_cast<std::uint32_t>(kSectorSize);
    config.max_write_zeroes_sectors = BlockDevice::kMaxRangeSectors;
    config.max_write_zeroes_seg = BlockDevice::kMaxRangeSegments;
    // With the unmap flag a range is zeroed by punching a hole where the filesystem can.
    config.write_zeroes_may_unmap = 1;
    return config;
}

// What the used entry of a request reports as written: the data and the
// status byte for IN (the whole data area, even after an error: the kernel
// may have written any of it, and add_used() marks it dirty for migration)
// and GET_ID, the status byte alone otherwise.
std::uint32_t written_for(const BlockRequest& request) {
    const bool data_written = request.type == RequestType::In || request.type == RequestType::GetId;
    // A chain holds at most 4 GiB, its 16-byte header included: this fits.
    return static_cast<std::uint32_t>((data_written ? request.data_length : 0) + 1);
}

unsigned checked_queue_count(unsigned queue_count) {
    if (queue_count == 0 || queue_count > BlockDevice::kMaxQueues) {
        throw std::invalid_argument("virtio-blk: " + std::to_string(queue_count) + " queues; it takes 1 to " +
                                    std::to_string(BlockDevice::kMaxQueues));
    }
    return queue_count;
}

}  // namespace

BlockDevice::BlockDevice(DiskImage disk, std::string serial, unsigned queue_count,
                         EngineFactory engine_factory)
    : disk_(std::move(disk)),
      id_(id_from_serial(serial)),
      queue_count_(checked_queue_count(queue_count)),
      engine_factory_(std::move(engine_factory)),
      config_(config_for(disk_, queue_count_)) {}

std::string BlockDevice::serial_from_path(const std::string& path) {
    return std::filesystem::path(path).filename().string().substr(0, kIdBytes);
}

std::uint64_t BlockDevice::device_features() const {
    std::uint64_t features = feature_bit(kFeatureSegMax) | feature_bit(kFeatureBlockSize) |
                             feature_bit(kFeatureFlush) | feature_bit(kFeatureDiscard) |
                             feature_bit(kFeatureWriteZeroes) | feature_bit(kFeatureRingIndirectDesc) |
                             feature_bit(kFeatureRingEventIdx);
    if (disk_.read_only()) {
        features |= feature_bit(kFeatureReadOnly);
    }
    if (queue_count_ > 1) {
        features |= feature_bit(kFeatureMultiQueue);
    }
    return features;
}

std::vector<std::uint16_t> BlockDevice::queue_max_sizes() const {
    return std::vector<std::uint16_t>(queue_count_, kQueueSize);
}

void BlockDevice::read_config(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);
    if (offset >= sizeof(Config)) {
        return;
    }
    const std::size_t length = std::min<std::uint64_t>(data.size(), sizeof(Config) - offset);
    std::memcpy(data.data(), reinterpret_cast<const std::uint8_t*>(&config_) + offset, length);
}

void BlockDevice::write_config(std::uint64_t, std::span<const std::uint8_t>) {}

void BlockDevice::activate(const Activation& activation) {
    if (activation.queues.size() != queue_count_ || activation.notifications.size() != queue_count_) {
        throw std::invalid_argument("virtio-blk: activated with " + std::to_string(activation.queues.size()) +
                                    " queues and " + std::to_string(activation.notifications.size()) +
                                    " notification fds; it has " + std::to_string(queue_count_) + " queues");
    }
    active_.emplace(activation);
    // Without MQ the driver uses queue 0 alone; the others stay not ready,
    // and pop() finds nothing on them.
    queue_service_.assign(queue_count_, QueueService{});
    limits_ = DiskLimits{
        .capacity_sectors = config_.capacity,
        .read_only = disk_.read_only(),
        .discard = (activation.features & feature_bit(kFeatureDiscard)) != 0,
        .write_zeroes = (activation.features & feature_bit(kFeatureWriteZeroes)) != 0,
        .max_discard_sectors = config_.max_discard_sectors,
        .max_discard_segments = config_.max_discard_seg,
        .max_write_zeroes_sectors = config_.max_write_zeroes_sectors,
        .max_write_zeroes_segments = config_.max_write_zeroes_seg,
    };
    try {
        // The largest queues as depth: a driver's smaller queues fit, and a
        // driver re-offering chains still in flight can have no more at once.
        EngineSelection selection = engine_factory_(disk_.fd(), kQueueSize * queue_count_);
        engine_ = std::move(selection.engine);
        std::lock_guard lock(engine_info_mutex_);
        engine_name_ = engine_->name();
        engine_fallback_reason_ = std::move(selection.fallback_reason);
        engine_error_.clear();
    } catch (const std::exception& error) {
        // Out of file descriptors or memory, say: the guest learns the disk
        // is unusable from DEVICE_NEEDS_RESET, and the VM lives on.
        {
            std::lock_guard lock(engine_info_mutex_);
            engine_name_ = "none";
            engine_error_ = "disk " + disk_.path() + ": " + error.what();
        }
        active_->interrupt.needs_reset();
        return;
    }
    active_->loop.add(engine_->completion_fd(), EPOLLIN, [this](std::uint32_t) { reap_completions(); });
    // Level-triggered, so a notification that came before activation (the
    // eventfd still counts it) is served at once.
    for (std::size_t queue = 0; queue < queue_count_; ++queue) {
        active_->loop.add(active_->notifications[queue], EPOLLIN,
                          [this, queue](std::uint32_t) { serve_notification(queue); });
    }
}

void BlockDevice::reset() {
    if (!active_) {
        return;
    }
    for (std::size_t queue = 0; queue < queue_count_; ++queue) {
        if (!queue_service_[queue].broken) {  // a broken queue left the loop already
            active_->loop.remove(active_->notifications[queue]);
        }
    }
    if (engine_) {
        active_->loop.remove(engine_->completion_fd());
        // Waits for the kernel to let go of guest memory; only then may the
        // chains be forgotten and the memory given back to the driver.
        engine_.reset();
    }
    in_flight_.clear();
    counters_.in_flight = 0;
    queue_service_.clear();
    active_.reset();
}

void BlockDevice::quiesce() {
    if (!active_ || !engine_) {
        return;
    }
    while (engine_->in_flight() > 0) {
        pollfd completions{.fd = engine_->completion_fd(), .events = POLLIN, .revents = 0};
        if (::poll(&completions, 1, -1) < 0 && errno != EINTR) {
            sys::throw_errno("virtio-blk: poll for completions of disk " + disk_.path());
        }
        while (const std::optional<Completion> completion = engine_->next_completion()) {
            finish_operation(*completion);
        }
        // A discard's next range was enqueued by finish_operation().
        engine_->submit();
    }
    counters_.in_flight = in_flight_.size();
    for (std::size_t queue = 0; queue < queue_count_; ++queue) {
        if (queue_service_[queue].waiting_for_engine_room) {
            // Chains wait in the ring with notifications off: should the VM
            // go on here, the loop comes back to them.
            (void)::eventfd_write(active_->notifications[queue], 1);
        }
    }
    finish_turn();
}

state::State BlockDevice::save_device() const {
    if (!in_flight_.empty()) {
        throw std::logic_error("virtio-blk: disk " + disk_.path() + ": saved with " +
                               std::to_string(in_flight_.size()) + " requests in flight (not quiesced)");
    }
    return state::State::object();
}

void BlockDevice::serve_notification(std::size_t queue) {
    eventfd_t count;
    // Fails only on a counter already drained (the fd is non-blocking); either
    // way it is now 0 and the queue is served below.
    (void)::eventfd_read(active_->notifications[queue], &count);
    serve_queue(queue);
    finish_turn();
}

void BlockDevice::serve_queue(std::size_t queue) {
    QueueService& service = queue_service_[queue];
    if (service.broken) {
        return;
    }
    Queue& ring = active_->queues[queue];
    memory::GuestMemory& memory = active_->memory;
    service.waiting_for_engine_room = false;
    std::size_t budget = kQueueSize;
    try {
        ring.disable_notification(memory);
        do {
            for (;;) {
                if (engine_->in_flight() >= engine_->queue_depth()) {
                    // Notifications stay off; reap_completions() comes back
                    // here once a completion has made room.
                    service.waiting_for_engine_room = true;
                    return;
                }
                if (budget == 0) {
                    // Chains may be left: come back once the loop's other
                    // sources have had their turn, through our own
                    // level-triggered notification.
                    (void)::eventfd_write(active_->notifications[queue], 1);
                    return;
                }
                --budget;
                if (!serve_next_chain(queue)) {
                    break;
                }
            }
        } while (ring.enable_notification(memory));
    } catch (const QueueBrokenError&) {
        break_queue(queue);
    }
}

bool BlockDevice::serve_next_chain(std::size_t queue) {
    Queue& ring = active_->queues[queue];
    memory::GuestMemory& memory = active_->memory;
    std::optional<DescriptorChain> chain;
    try {
        chain = ring.pop(memory);
    } catch (const InvalidChainError& error) {
        // pop() cannot say where the status byte would be: 0 bytes, and the queue goes on.
        ++counters_.bad_chains;
        ring.add_used(memory, error.head(), 0);
        queue_service_[queue].used_added = true;
        return true;
    }
    if (!chain) {
        return false;
    }
    DecodedRequest decoded = decode_request(*chain, memory, limits_);
    if (auto* request = std::get_if<BlockRequest>(&decoded)) {
        start(queue, std::move(*chain), std::move(*request));
    } else if (const auto* refused = std::get_if<RefusedRequest>(&decoded)) {
        answer(queue, *chain, refused->status, 1);
    } else {
        ++counters_.bad_chains;
        ring.add_used(memory, chain->head, 0);
        queue_service_[queue].used_added = true;
    }
    return true;
}

void BlockDevice::start(std::size_t queue, DescriptorChain chain, BlockRequest request) {
    count_request(request.type);
    if (request.type == RequestType::GetId) {
        std::size_t done = 0;
        for (const GuestBuffer& piece : request.data) {
            active_->memory.write(piece.address, std::span(id_).subspan(done, piece.length));
            done += piece.length;
        }
        answer(queue, chain, Status::Ok, written_for(request));
        return;
    }
    if ((request.type == RequestType::Discard || request.type == RequestType::WriteZeroes) &&
        request.ranges.empty()) {
        answer(queue, chain, Status::Ok, written_for(request));  // only empty segments: nothing to do
        return;
    }
    const std::uint64_t id = next_request_id_++;
    const auto entry =
        in_flight_.emplace(id, InFlightRequest{queue, std::move(chain), std::move(request)}).first;
    if (!enqueue_next(id, entry->second)) {
        answer(queue, entry->second.chain, Status::IoError, written_for(entry->second.request));
        in_flight_.erase(entry);
    }
    counters_.in_flight = in_flight_.size();
}

bool BlockDevice::enqueue_next(std::uint64_t id, InFlightRequest& in_flight) {
    const BlockRequest& request = in_flight.request;
    memory::GuestMemory& memory = active_->memory;
    Request engine_request{.operation = Operation::Flush, .user_data = id};
    // The engine copies the array; the guest memory it points to stays valid
    // until the completion or the engine's destruction in reset().
    std::vector<iovec> iovecs;
    iovecs.reserve(request.data.size());
    switch (request.type) {
    case RequestType::In:
        for (const GuestBuffer& piece : request.data) {
            // write_span() marks the pages dirty; add_used() marks them again
            // once the kernel has written them.
            const std::span<std::uint8_t> bytes = memory.write_span(piece.address, piece.length);
            iovecs.push_back({bytes.data(), bytes.size()});
        }
        engine_request.operation = Operation::Read;
        engine_request.offset = request.sector * kSectorSize;
        engine_request.iovecs = iovecs;
        break;
    case RequestType::Out:
        for (const GuestBuffer& piece : request.data) {
            const std::span<const std::uint8_t> bytes = memory.read_span(piece.address, piece.length);
            iovecs.push_back({const_cast<std::uint8_t*>(bytes.data()), bytes.size()});  // only read
        }
        engine_request.operation = Operation::Write;
        engine_request.offset = request.sector * kSectorSize;
        engine_request.iovecs = iovecs;
        break;
    case RequestType::Flush:
        engine_request.operation = Operation::Flush;
        break;
    case RequestType::Discard:
    case RequestType::WriteZeroes: {
        const SectorRange& range = request.ranges[in_flight.next_range];
        // A punched hole reads back as zeroes (on a block device the kernel
        // zeroes with unmap), so it serves a write zeroes that may unmap.
        const bool punch_hole = request.type == RequestType::Discard || (range.unmap && !punch_hole_refused_);
        engine_request.operation = punch_hole ? Operation::Discard : Operation::WriteZeroes;
        engine_request.offset = range.sector * kSectorSize;
        engine_request.length = std::uint64_t{range.sectors} * kSectorSize;
        break;
    }
    case RequestType::GetId:
        throw std::logic_error("virtio-blk: GET_ID needs no I/O");
    }
    in_flight.operation = engine_request.operation;
    return engine_->enqueue(engine_request);
}

void BlockDevice::reap_completions() {
    while (const std::optional<Completion> completion = engine_->next_completion()) {
        finish_operation(*completion);
    }
    counters_.in_flight = in_flight_.size();
    for (std::size_t queue = 0; queue < queue_count_; ++queue) {
        if (queue_service_[queue].waiting_for_engine_room) {
            serve_queue(queue);
        }
    }
    finish_turn();
}

void BlockDevice::finish_operation(const Completion& completion) {
    const auto found = in_flight_.find(completion.user_data);
    if (found == in_flight_.end()) {
        return;
    }
    InFlightRequest& in_flight = found->second;
    if (queue_service_[in_flight.queue].broken) {
        in_flight_.erase(found);  // the queue is not to be touched until the driver resets the device
        return;
    }
    const BlockRequest& request = in_flight.request;
    Status status = Status::Ok;
    switch (request.type) {
    case RequestType::In:
    case RequestType::Out:
        // A completion covers the whole transfer unless the file ended early
        // (truncated behind our back) or the host failed: both IOERR.
        if (completion.result != static_cast<std::int64_t>(request.data_length)) {
            status = Status::IoError;
        } else {
            (request.type == RequestType::In ? counters_.bytes_read : counters_.bytes_written) +=
                request.data_length;
        }
        break;
    case RequestType::Flush:
        status = completion.result == 0 ? Status::Ok : Status::IoError;
        break;
    case RequestType::Discard:
    case RequestType::WriteZeroes:
        if (completion.result == -EOPNOTSUPP && in_flight.operation == Operation::Discard) {
            if (request.type == RequestType::WriteZeroes) {
                // No holes here: zero this range and the later ones without.
                punch_hole_refused_ = true;
                if (enqueue_next(completion.user_data, in_flight)) {
                    return;
                }
                status = Status::IoError;
                break;
            }
            // A discard may deallocate (spec 5.2.6.2); deallocating nothing is fine.
        } else if (completion.result != 0) {
            status = Status::IoError;
            break;
        }
        if (++in_flight.next_range < request.ranges.size()) {
            // The completion freed the slot the next range takes.
            if (enqueue_next(completion.user_data, in_flight)) {
                return;
            }
            status = Status::IoError;
        }
        break;
    case RequestType::GetId:
        break;
    }
    answer(in_flight.queue, in_flight.chain, status, written_for(request));
    in_flight_.erase(found);
}

void BlockDevice::answer(std::size_t queue, const DescriptorChain& chain, Status status,
                         std::uint32_t written) {
    memory::GuestMemory& memory = active_->memory;
    const auto status_byte = static_cast<std::uint8_t>(status);
    chain.write(memory, chain.writable_length() - 1, {&status_byte, 1});
    if (status == Status::IoError) {
        ++counters_.errors;
    } else if (status == Status::Unsupported) {
        ++counters_.unsupported;
    }
    active_->queues[queue].add_used(memory, chain, written);
    queue_service_[queue].used_added = true;
}

void BlockDevice::finish_turn() {
    // One system call for everything this turn enqueued.
    engine_->submit();
    for (std::size_t queue = 0; queue < queue_count_; ++queue) {
        QueueService& service = queue_service_[queue];
        if (!service.used_added || service.broken) {
            continue;
        }
        service.used_added = false;
        if (active_->queues[queue].needs_notification(active_->memory)) {
            active_->interrupt.used_buffers(queue);
        }
    }
}

void BlockDevice::break_queue(std::size_t queue) {
    // No chain of this queue can be trusted any more: stop popping until the
    // driver resets the device. Requests in flight finish at the engine (the
    // memory stays the guest's until reset) and are dropped.
    queue_service_[queue].broken = true;
    active_->loop.remove(active_->notifications[queue]);
    active_->interrupt.needs_reset();
}

void BlockDevice::count_request(RequestType type) {
    switch (type) {
    case RequestType::In:
        ++counters_.reads;
        break;
    case RequestType::Out:
        ++counters_.writes;
        break;
    case RequestType::Flush:
        ++counters_.flushes;
        break;
    case RequestType::GetId:
        ++counters_.get_ids;
        break;
    case RequestType::Discard:
        ++counters_.discards;
        break;
    case RequestType::WriteZeroes:
        ++counters_.write_zeroes;
        break;
    }
}

nlohmann::json BlockDevice::stats() const {
    nlohmann::json stats = {
        {"requests",
         {{"read", counters_.reads.load()},
          {"write", counters_.writes.load()},
          {"flush", counters_.flushes.load()},
          {"get_id", counters_.get_ids.load()},
          {"discard", counters_.discards.load()},
          {"write_zeroes", counters_.write_zeroes.load()}}},
        {"bytes_read", counters_.bytes_read.load()},
        {"bytes_written", counters_.bytes_written.load()},
        {"errors", counters_.errors.load()},
        {"unsupported", counters_.unsupported.load()},
        {"bad_chains", counters_.bad_chains.load()},
        {"in_flight", counters_.in_flight.load()},
        {"queues", queue_count_},
    };
    std::lock_guard lock(engine_info_mutex_);
    stats["engine"] = engine_name_;
    stats["engine_fallback_reason"] = engine_fallback_reason_;
    if (!engine_error_.empty()) {
        stats["engine_error"] = engine_error_;
    }
    return stats;
}

}  // namespace vim::vmm::virtio::block
