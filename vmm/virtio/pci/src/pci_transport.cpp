#include "vmm/virtio/pci_transport.h"

#include <cstring>
#include <stdexcept>

#include "vmm/sys/hex.h"

namespace vim::vmm::virtio {
namespace {

constexpr std::uint16_t kVirtioVendorId = 0x1af4;
constexpr std::uint16_t kModernDeviceIdBase = 0x1040;  // + device type (spec 4.1.2.1)
constexpr std::uint8_t kModernRevision = 1;
constexpr std::uint16_t kSubsystemId = 0x1100;

// virtio_pci_cap cfg_type values (spec 4.1.4).
constexpr std::uint8_t kCapCommonConfig = 1;
constexpr std::uint8_t kCapNotifyConfig = 2;
constexpr std::uint8_t kCapIsrConfig = 3;
constexpr std::uint8_t kCapDeviceConfig = 4;

// Common configuration fields (struct virtio_pci_common_cfg).
constexpr std::uint64_t kDeviceFeatureSelect = 0x00;
constexpr std::uint64_t kDeviceFeature = 0x04;
constexpr std::uint64_t kDriverFeatureSelect = 0x08;
constexpr std::uint64_t kDriverFeature = 0x0c;
constexpr std::uint64_t kConfigMsixVector = 0x10;
constexpr std::uint64_t kNumQueues = 0x12;
constexpr std::uint64_t kDeviceStatus = 0x14;
constexpr std::uint64_t kConfigGeneration = 0x15;
constexpr std::uint64_t kQueueSelect = 0x16;
constexpr std::uint64_t kQueueSize = 0x18;
constexpr std::uint64_t kQueueMsixVector = 0x1a;
constexpr std::uint64_t kQueueEnable = 0x1c;
constexpr std::uint64_t kQueueNotifyOff = 0x1e;
constexpr std::uint64_t kQueueDesc = 0x20;
constexpr std::uint64_t kQueueDriver = 0x28;
constexpr std::uint64_t kQueueDevice = 0x30;

struct Field {
    std::uint64_t offset;
    std::size_t size;
};
constexpr Field kFields[] = {
    {kDeviceFeatureSelect, 4}, {kDeviceFeature, 4}, {kDriverFeatureSelect, 4}, {kDriverFeature, 4},
    {kConfigMsixVector, 2},    {kNumQueues, 2},     {kDeviceStatus, 1},        {kConfigGeneration, 1},
    {kQueueSelect, 2},         {kQueueSize, 2},     {kQueueMsixVector, 2},     {kQueueEnable, 2},
    {kQueueNotifyOff, 2},      {kQueueDesc, 8},     {kQueueDriver, 8},         {kQueueDevice, 8},
};

// The field an access falls in, if it lies wholly inside one; 64-bit fields
// are also reached a dword at a time (as drivers write them).
const Field* field_of(std::uint64_t offset, std::size_t size) {
    for (const Field& field : kFields) {
        if (offset >= field.offset && offset + size <= field.offset + field.size) {
            return &field;
        }
    }
    return nullptr;
}

std::uint64_t load(std::span<const std::uint8_t> data) {
    std::uint64_t value = 0;
    std::memcpy(&value, data.data(), std::min(data.size(), sizeof value));
    return value;
}

void store(std::span<std::uint8_t> data, std::uint64_t value) {
    std::memcpy(data.data(), &value, std::min(data.size(), sizeof value));
}

std::uint8_t class_code_of(std::uint32_t device_type) {
    // Mass storage for disks, as QEMU presents them; "other" for the rest.
    return device_type == kDeviceTypeBlock ? 0x01 : 0xff;
}

std::vector<std::uint8_t> virtio_capability(std::uint8_t type, std::uint32_t offset, std::uint32_t length,
                                            std::optional<std::uint32_t> notify_multiplier = {}) {
    // struct virtio_pci_cap without its first two bytes (ID and next), which
    // ConfigSpace::add_capability writes.
    const std::uint8_t cap_length = notify_multiplier ? 20 : 16;
    std::vector<std::uint8_t> body{cap_length, type, /*bar*/ 0, /*id*/ 0, 0, 0};
    for (std::uint32_t word : {offset, length}) {
        for (int shift = 0; shift < 32; shift += 8) {
            body.push_back(static_cast<std::uint8_t>(word >> shift));
        }
    }
    if (notify_multiplier) {
        for (int shift = 0; shift < 32; shift += 8) {
            body.push_back(static_cast<std::uint8_t>(*notify_multiplier >> shift));
        }
    }
    return body;
}

pci::DeviceIdentity identity_of(const VirtioDevice& device) {
    pci::DeviceIdentity identity;
    identity.vendor_id = kVirtioVendorId;
    identity.device_id = static_cast<std::uint16_t>(kModernDeviceIdBase + device.device_type());
    identity.revision = kModernRevision;
    identity.class_code = class_code_of(device.device_type());
    identity.subsystem_vendor_id = kVirtioVendorId;
    identity.subsystem_id = kSubsystemId;
    return identity;
}

}  // namespace

PciTransport::PciTransport(std::string name, std::shared_ptr<VirtioDevice> device,
                           memory::GuestMemory& memory, sys::EventLoop& loop, kvm::Vm& vm,
                           std::unique_ptr<devices::MsiVectors> vectors, devices::InterruptLine& intx_line)
    : name_(std::move(name)),
      device_(std::move(device)),
      memory_(memory),
      loop_(loop),
      vm_(vm),
      vectors_(std::move(vectors)),
      offered_features_(device_->device_features() | feature_bit(kFeatureVersion1)),
      config_(identity_of(*device_)),
      intx_(config_, intx_line),
      msix_(*vectors_) {
    const auto sizes = device_->queue_max_sizes();
    if (vectors_->size() != vector_count(sizes.size())) {
        throw std::invalid_argument(name_ + ": " + std::to_string(vectors_->size()) + " MSI vectors for " +
                                    std::to_string(sizes.size()) + " queues");
    }
    if (kNotifyOffset + sizes.size() * kNotifyOffsetMultiplier > kMsixTableOffset ||
        kMsixTableOffset + msix_.table_size() > kMsixPbaOffset ||
        kMsixPbaOffset + msix_.pba_size() > kBarSize) {
        throw std::invalid_argument(name_ + ": " + std::to_string(sizes.size()) +
                                    " queues do not fit in the BAR");
    }
    for (std::size_t index = 0; index < sizes.size(); ++index) {
        queues_.emplace_back(name_ + " queue " + std::to_string(index), sizes[index]);
        queue_vectors_.push_back(kNoVector);
        notifications_.push_back(std::make_unique<sys::EventFd>("virtio queue notification"));
        notification_fds_.push_back(notifications_.back()->get());
    }
    config_.add_bar(0, pci::MemoryBar{kBarSize, false, false});
    config_.add_capability(pci::kCapabilityVendorSpecific,
                           virtio_capability(kCapCommonConfig, kCommonConfigOffset, kCommonConfigSize));
    config_.add_capability(pci::kCapabilityVendorSpecific, virtio_capability(kCapIsrConfig, kIsrOffset, 4));
    config_.add_capability(pci::kCapabilityVendorSpecific,
                           virtio_capability(kCapDeviceConfig, kDeviceConfigOffset, kDeviceConfigSize));
    config_.add_capability(
        pci::kCapabilityVendorSpecific,
        virtio_capability(kCapNotifyConfig, kNotifyOffset,
                          static_cast<std::uint32_t>(sizes.size() * kNotifyOffsetMultiplier),
                          kNotifyOffsetMultiplier));
    msix_.add_capability(config_, {0, kMsixTableOffset}, {0, kMsixPbaOffset});
}

PciTransport::~PciTransport() {
    std::lock_guard lock(mutex_);
    unregister_notifications();
}

std::uint32_t PciTransport::read_config(std::size_t index) {
    std::lock_guard lock(mutex_);
    return config_.read(index);
}

void PciTransport::write_config(std::size_t index, std::size_t offset, std::span<const std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    config_.write(index, offset, data);
    intx_.sync(config_);
    msix_.sync(config_);
}

void PciTransport::read_bar(std::size_t bar, std::uint64_t offset, std::span<std::uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);
    if (bar != 0 || msix_.read(bar, offset, data)) {
        return;
    }
    if (offset >= kDeviceConfigOffset && offset < kDeviceConfigOffset + kDeviceConfigSize) {
        device_->read_config(offset - kDeviceConfigOffset, data);
        return;
    }
    std::lock_guard lock(mutex_);
    if (offset < kCommonConfigOffset + kCommonConfigSize) {
        store(data, read_common(offset - kCommonConfigOffset, data.size()));
    } else if (offset == kIsrOffset) {
        // Reading the ISR acknowledges the interrupt (spec 4.1.4.5).
        data[0] = isr_;
        isr_ = 0;
        intx_.set_pending(config_, false);
    }
}

void PciTransport::write_bar(std::size_t bar, std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (bar != 0 || msix_.write(bar, offset, data)) {
        return;
    }
    if (offset >= kDeviceConfigOffset && offset < kDeviceConfigOffset + kDeviceConfigSize) {
        device_->write_config(offset - kDeviceConfigOffset, data);
        return;
    }
    if (offset >= kNotifyOffset && offset < kNotifyOffset + notifications_.size() * kNotifyOffsetMultiplier) {
        // A notification KVM did not catch (an access of another length, or
        // the BAR is not where the ioeventfds are): signal the queue here.
        notifications_[(offset - kNotifyOffset) / kNotifyOffsetMultiplier]->signal();
        return;
    }
    std::lock_guard lock(mutex_);
    if (offset < kCommonConfigOffset + kCommonConfigSize) {
        write_common(offset - kCommonConfigOffset, data.size(), load(data));
    }
}

std::uint64_t PciTransport::read_common(std::uint64_t offset, std::size_t size) {
    const Field* field = field_of(offset, size);
    if (!field) {
        return 0;
    }
    const unsigned shift = static_cast<unsigned>(offset - field->offset) * 8;
    const std::uint64_t mask = size == 8 ? ~std::uint64_t{0} : (std::uint64_t{1} << (size * 8)) - 1;
    const Queue* queue = queue_select_ < queues_.size() ? &queues_[queue_select_] : nullptr;
    std::uint64_t value = 0;
    switch (field->offset) {
    case kDeviceFeatureSelect:
        value = device_feature_select_;
        break;
    case kDeviceFeature:
        value = device_feature_select_ < 2 ? (offered_features_ >> (32 * device_feature_select_)) & 0xffffffff
                                           : 0;
        break;
    case kDriverFeatureSelect:
        value = driver_feature_select_;
        break;
    case kDriverFeature:
        value =
            driver_feature_select_ < 2 ? (driver_features_ >> (32 * driver_feature_select_)) & 0xffffffff : 0;
        break;
    case kConfigMsixVector:
        value = config_vector_;
        break;
    case kNumQueues:
        value = queues_.size();
        break;
    case kDeviceStatus:
        value = status_;
        break;
    case kConfigGeneration:
        value = config_generation_;
        break;
    case kQueueSelect:
        value = queue_select_;
        break;
    // A queue past num_queues reads size 0: it does not exist (spec 4.1.4.3.2).
    case kQueueSize:
        value = queue ? queue->state().size : 0;
        break;
    case kQueueMsixVector:
        value = queue ? queue_vectors_[queue_select_] : kNoVector;
        break;
    case kQueueEnable:
        value = queue && queue->ready() ? 1 : 0;
        break;
    case kQueueNotifyOff:
        value = queue_select_;
        break;
    case kQueueDesc:
        value = queue ? queue->state().descriptor_table : 0;
        break;
    case kQueueDriver:
        value = queue ? queue->state().avail_ring : 0;
        break;
    case kQueueDevice:
        value = queue ? queue->state().used_ring : 0;
        break;
    }
    return (value >> shift) & mask;
}

void PciTransport::write_common(std::uint64_t offset, std::size_t size, std::uint64_t value) {
    const Field* field = field_of(offset, size);
    if (!field) {
        return;
    }
    // A partial write merges into the field (64-bit addresses come as two dwords).
    const unsigned shift = static_cast<unsigned>(offset - field->offset) * 8;
    const std::uint64_t mask =
        size == 8 ? ~std::uint64_t{0} : ((std::uint64_t{1} << (size * 8)) - 1) << shift;
    auto merged = [&](std::uint64_t old) { return (old & ~mask) | ((value << shift) & mask); };
    if (field->offset == kDeviceStatus) {
        write_status(static_cast<std::uint8_t>(value));
        return;
    }
    // Once the driver is done setting up (or a reset is under way), the
    // device owns the queues: their registers no longer change.
    const bool queues_locked = active_ || reset_pending_;
    Queue* queue = queue_select_ < queues_.size() && !queues_locked ? &queues_[queue_select_] : nullptr;
    switch (field->offset) {
    case kDeviceFeatureSelect:
        device_feature_select_ = static_cast<std::uint32_t>(merged(device_feature_select_));
        break;
    case kDriverFeatureSelect:
        driver_feature_select_ = static_cast<std::uint32_t>(merged(driver_feature_select_));
        break;
    case kDriverFeature:
        // Features are fixed once FEATURES_OK is set (spec 3.1.1).
        if (driver_feature_select_ < 2 && !(status_ & kStatusFeaturesOk)) {
            const unsigned half = 32 * driver_feature_select_;
            const std::uint64_t word = merged((driver_features_ >> half) & 0xffffffff) & 0xffffffff;
            driver_features_ = (driver_features_ & ~(std::uint64_t{0xffffffff} << half)) | (word << half);
        }
        break;
    case kConfigMsixVector:
        config_vector_ = checked_vector(merged(config_vector_));
        break;
    case kQueueSelect:
        queue_select_ = static_cast<std::uint16_t>(merged(queue_select_));
        break;
    case kQueueSize:
        if (queue) {
            queue->set_size(static_cast<std::uint16_t>(merged(queue->state().size)));
        }
        break;
    case kQueueMsixVector:
        if (queue_select_ < queues_.size()) {
            queue_vectors_[queue_select_] = checked_vector(merged(queue_vectors_[queue_select_]));
        }
        break;
    case kQueueEnable:
        if (queue && (merged(0) & 1)) {
            enable_queue(*queue);
        }
        break;
    case kQueueDesc:
        if (queue) {
            queue->set_descriptor_table(merged(queue->state().descriptor_table));
        }
        break;
    case kQueueDriver:
        if (queue) {
            queue->set_avail_ring(merged(queue->state().avail_ring));
        }
        break;
    case kQueueDevice:
        if (queue) {
            queue->set_used_ring(merged(queue->state().used_ring));
        }
        break;
    default:
        break;  // read-only
    }
}

std::uint16_t PciTransport::checked_vector(std::uint64_t vector) const {
    // A vector past the table reads back as NO_VECTOR, which tells the driver
    // the mapping failed (spec 4.1.5.1.2).
    return vector < msix_.vector_count() ? static_cast<std::uint16_t>(vector) : kNoVector;
}

void PciTransport::enable_queue(Queue& queue) {
    try {
        queue.enable(memory_);
    } catch (const QueueBrokenError&) {
        // The driver set the queue up wrongly; it learns from the status.
        status_ |= kStatusNeedsReset;
    }
}

void PciTransport::write_status(std::uint8_t status) {
    if (reset_pending_) {
        return;  // the driver waits for 0 before it writes again
    }
    if (status == 0) {
        if (!active_) {
            finish_reset();
            return;
        }
        reset_pending_ = true;
        loop_.post([this] {
            {
                std::lock_guard lock(mutex_);
                if (!reset_pending_) {
                    return;  // quiesce() finished it
                }
            }
            device_->reset();
            std::lock_guard lock(mutex_);
            finish_reset();
        });
        return;
    }
    // The driver only adds bits (spec 3.1.1); FEATURES_OK holds only for
    // features we offered, VERSION_1 among them, and the driver reads it back.
    std::uint8_t added = static_cast<std::uint8_t>(status & ~status_);
    if ((added & kStatusFeaturesOk) && ((driver_features_ & ~offered_features_) != 0 ||
                                        !(driver_features_ & feature_bit(kFeatureVersion1)))) {
        added = static_cast<std::uint8_t>(added & ~kStatusFeaturesOk);
    }
    status_ = static_cast<std::uint8_t>(status_ | added);
    if (added & kStatusFeaturesOk) {
        for (Queue& queue : queues_) {
            queue.set_event_idx((driver_features_ & feature_bit(kFeatureRingEventIdx)) != 0);
        }
    }
    if ((added & kStatusDriverOk) && (status_ & kStatusFeaturesOk) && !(status_ & kStatusNeedsReset) &&
        !active_) {
        activate();
    }
}

void PciTransport::activate() {
    active_ = true;
    const std::uint64_t features = driver_features_;
    loop_.post([this, features] {
        device_->activate(Activation{memory_, loop_, features, queues_, notification_fds_, *this});
    });
}

void PciTransport::finish_reset() {
    for (Queue& queue : queues_) {
        queue.reset();
    }
    for (auto& notification : notifications_) {
        notification->drain();
    }
    std::fill(queue_vectors_.begin(), queue_vectors_.end(), kNoVector);
    config_vector_ = kNoVector;
    device_feature_select_ = driver_feature_select_ = 0;
    driver_features_ = 0;
    queue_select_ = 0;
    isr_ = 0;
    intx_.set_pending(config_, false);
    status_ = 0;
    active_ = false;
    reset_pending_ = false;
    ++resets_;
}

void PciTransport::raise(std::uint16_t vector, std::uint8_t isr_bit) {
    ++interrupts_;
    if (msix_.notify(vector) != pci::Msix::Delivery::kDisabled) {
        return;
    }
    std::lock_guard lock(mutex_);
    isr_ |= isr_bit;
    intx_.set_pending(config_, true);
}

void PciTransport::used_buffers(std::size_t queue) {
    std::uint16_t vector;
    {
        std::lock_guard lock(mutex_);
        vector = queue < queue_vectors_.size() ? queue_vectors_[queue] : kNoVector;
    }
    raise(vector, 1);
}

void PciTransport::config_changed() {
    std::uint16_t vector;
    {
        std::lock_guard lock(mutex_);
        ++config_generation_;
        vector = config_vector_;
    }
    raise(vector, 2);
}

void PciTransport::needs_reset() {
    {
        std::lock_guard lock(mutex_);
        status_ |= kStatusNeedsReset;
    }
    config_changed();
}

void PciTransport::register_notifications(std::uint64_t bar_address) {
    for (std::size_t index = 0; index < notifications_.size(); ++index) {
        vm_.register_ioevent({kvm::IoEvent::Space::Mmio,
                              bar_address + kNotifyOffset + index * kNotifyOffsetMultiplier,
                              /*length=*/2, notifications_[index]->get()});
    }
    notify_base_ = bar_address;
}

void PciTransport::unregister_notifications() {
    if (!notify_base_) {
        return;
    }
    for (std::size_t index = 0; index < notifications_.size(); ++index) {
        vm_.unregister_ioevent({kvm::IoEvent::Space::Mmio,
                                *notify_base_ + kNotifyOffset + index * kNotifyOffsetMultiplier, 2,
                                notifications_[index]->get()});
    }
    notify_base_.reset();
}

void PciTransport::bar_moved(std::size_t bar, std::optional<std::uint64_t>, std::optional<std::uint64_t> to) {
    if (bar != 0) {
        return;
    }
    std::lock_guard lock(mutex_);
    unregister_notifications();
    if (to) {
        register_notifications(*to);
    }
}

void PciTransport::quiesce() {
    bool reset_pending;
    {
        std::lock_guard lock(mutex_);
        reset_pending = reset_pending_;
    }
    if (reset_pending) {
        // The state saved is the one after the reset the driver waits for.
        device_->reset();
        std::lock_guard lock(mutex_);
        finish_reset();
    }
    device_->quiesce();
}

state::State PciTransport::save() const {
    std::lock_guard lock(mutex_);
    state::State queues = state::State::array();
    for (std::size_t index = 0; index < queues_.size(); ++index) {
        const QueueState& queue = queues_[index].state();
        queues.push_back({
            {"vector", queue_vectors_[index]},
            {"size", queue.size},
            {"ready", queue.ready},
            {"descriptor_table", queue.descriptor_table},
            {"avail_ring", queue.avail_ring},
            {"used_ring", queue.used_ring},
            {"next_avail", queue.next_avail},
            {"next_used", queue.next_used},
            {"event_idx", queue.event_idx},
            {"next_used_at_last_check", queue.next_used_at_last_check},
        });
    }
    return {
        {"config_space", config_.save()},
        {"msix", msix_.save()},
        {"device_feature_select", device_feature_select_},
        {"driver_feature_select", driver_feature_select_},
        {"driver_features", driver_features_},
        {"status", status_},
        {"config_generation", config_generation_},
        {"config_vector", config_vector_},
        {"queue_select", queue_select_},
        {"isr", isr_},
        {"queues", std::move(queues)},
        {"device", device_->save_device()},
    };
}

void PciTransport::restore(const state::State& state) {
    const auto vector_field = [this](const state::State& parent, const char* name) {
        const auto vector = state::unsigned_field<std::uint16_t>(parent, name);
        if (vector != kNoVector && vector >= msix_.vector_count()) {
            throw state::StateError(std::string(name) + ": " + std::to_string(vector) + " is past the " +
                                    std::to_string(msix_.vector_count()) + " MSI-X vectors");
        }
        return vector;
    };
    std::lock_guard lock(mutex_);
    state::restoring(name_, [&] {
        if (active_ || reset_pending_) {
            throw std::logic_error(name_ + ": restore into a transport the driver has already set going");
        }
        const auto device_feature_select =
            state::unsigned_field<std::uint32_t>(state, "device_feature_select");
        const auto driver_feature_select =
            state::unsigned_field<std::uint32_t>(state, "driver_feature_select");
        const auto driver_features = state::unsigned_field<std::uint64_t>(state, "driver_features");
        const auto status = state::unsigned_field<std::uint8_t>(state, "status");
        if ((status & kStatusFeaturesOk) && ((driver_features & ~offered_features_) != 0 ||
                                             !(driver_features & feature_bit(kFeatureVersion1)))) {
            throw state::StateError("driver_features: " + sys::hex(driver_features) +
                                    " accepted (FEATURES_OK) but this device offers " +
                                    sys::hex(offered_features_));
        }
        const auto config_generation = state::unsigned_field<std::uint8_t>(state, "config_generation");
        const std::uint16_t config_vector = vector_field(state, "config_vector");
        const auto queue_select = state::unsigned_field<std::uint16_t>(state, "queue_select");
        const auto isr = state::unsigned_field<std::uint8_t>(state, "isr");
        if (isr & ~3u) {
            throw state::StateError("isr: " + std::to_string(isr) + " has bits other than 0 and 1");
        }
        const state::State& saved_queues = state::field(state, "queues");
        if (!saved_queues.is_array() || saved_queues.size() != queues_.size()) {
            throw state::StateError("queues: not an array of the device's " + std::to_string(queues_.size()) +
                                    " queues");
        }
        std::vector<Queue> queues = queues_;
        std::vector<std::uint16_t> queue_vectors(queues_.size());
        for (std::size_t index = 0; index < queues.size(); ++index) {
            state::restoring("queue " + std::to_string(index), [&] {
                const state::State& saved = saved_queues[index];
                queue_vectors[index] = vector_field(saved, "vector");
                QueueState queue;
                queue.size = state::unsigned_field<std::uint16_t>(saved, "size");
                queue.ready = state::unsigned_field<bool>(saved, "ready");
                queue.descriptor_table = state::unsigned_field<std::uint64_t>(saved, "descriptor_table");
                queue.avail_ring = state::unsigned_field<std::uint64_t>(saved, "avail_ring");
                queue.used_ring = state::unsigned_field<std::uint64_t>(saved, "used_ring");
                queue.next_avail = state::unsigned_field<std::uint16_t>(saved, "next_avail");
                queue.next_used = state::unsigned_field<std::uint16_t>(saved, "next_used");
                queue.event_idx = state::unsigned_field<bool>(saved, "event_idx");
                queue.next_used_at_last_check =
                    state::unsigned_field<std::uint16_t>(saved, "next_used_at_last_check");
                try {
                    queues[index].restore(queue, memory_);
                } catch (const QueueBrokenError& error) {
                    throw state::StateError(error.what());
                }
            });
        }
        state::restoring("config space", [&] { config_.restore(state::field(state, "config_space")); });
        const bool activate_device =
            (status & kStatusDriverOk) && (status & kStatusFeaturesOk) && !(status & kStatusNeedsReset);
        state::restoring("device", [&] {
            device_->restore_device(state::field(state, "device"), driver_features, queues);
        });
        msix_.restore(state::field(state, "msix"), config_);

        device_feature_select_ = device_feature_select;
        driver_feature_select_ = driver_feature_select;
        driver_features_ = driver_features;
        status_ = status;
        config_generation_ = config_generation;
        config_vector_ = config_vector;
        queue_select_ = queue_select;
        isr_ = isr;
        queues_ = std::move(queues);
        queue_vectors_ = std::move(queue_vectors);
        intx_.sync(config_);
        if (activate_device) {
            activate();
            // A request the driver queued after the source's device last
            // looked is served; if there was none, the device finds nothing.
            for (std::size_t index = 0; index < queues_.size(); ++index) {
                if (queues_[index].ready()) {
                    notifications_[index]->signal();
                }
            }
        }
    });
}

nlohmann::json PciTransport::stats() const {
    nlohmann::json result = device_->stats();
    std::lock_guard lock(mutex_);
    result["status"] = status_;
    result["msix_enabled"] = msix_.enabled();
    result["interrupts"] = interrupts_.load();
    result["resets"] = resets_.load();
    return result;
}

}  // namespace vim::vmm::virtio
