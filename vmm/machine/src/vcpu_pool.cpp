#include "vmm/machine/vcpu_pool.h"

#include <signal.h>

namespace vim::vmm::machine {
namespace {

// The kick signal. Its handler does nothing: the point is that KVM_RUN
// returns EINTR. Installed without SA_RESTART.
int kick_signal() {
    static const int signal_number = [] {
        int number = SIGRTMIN + 1;
        struct sigaction action {};
        action.sa_handler = [](int) {};
        sigemptyset(&action.sa_mask);
        sigaction(number, &action, nullptr);
        return number;
    }();
    return signal_number;
}

}  // namespace

std::uint64_t ExitCounts::total() const {
    std::uint64_t sum = 0;
    for (std::uint64_t count : by_kind) {
        sum += count;
    }
    return sum;
}

VcpuPool::VcpuPool(std::vector<kvm::Vcpu> vcpus, kvm::ExitHandler& handler, ExitPolicy policy,
                   ErrorHandler on_error)
    : handler_(handler), policy_(std::move(policy)), on_error_(std::move(on_error)) {
    kick_signal();
    for (auto& vcpu : vcpus) {
        slots_.push_back(std::make_unique<Slot>(std::move(vcpu)));
    }
}

VcpuPool::~VcpuPool() {
    request_stop();
    join();
}

void VcpuPool::start() {
    for (auto& slot : slots_) {
        slot->thread = std::thread([this, &slot = *slot] { run(slot); });
    }
}

void VcpuPool::run(Slot& slot) {
    slot.native = pthread_self();
    for (;;) {
        if (attention_.load(std::memory_order_acquire) && !park_if_asked(slot)) {
            break;
        }
        kvm::VcpuExit exit;
        try {
            exit = slot.vcpu.run(handler_);
        } catch (const std::exception& error) {
            on_error_(slot.vcpu.id(), error);
            break;
        }
        slot.exits[static_cast<std::size_t>(exit)].fetch_add(1, std::memory_order_relaxed);
        if (exit == kvm::VcpuExit::PortIo || exit == kvm::VcpuExit::Mmio ||
            exit == kvm::VcpuExit::Interrupted) {
            continue;
        }
        if (!policy_(slot.vcpu.id(), exit)) {
            break;
        }
    }
    std::lock_guard lock(mutex_);
    slot.native = pthread_t{};  // no more kicks for a thread that is gone
    ++ended_;
    changed_.notify_all();
}

// Returns false when the thread should end.
bool VcpuPool::park_if_asked(Slot& slot) {
    std::unique_lock lock(mutex_);
    if (stop_requested_) {
        return false;
    }
    if (!pause_requested_) {
        return true;
    }
    ++parked_;
    changed_.notify_all();
    changed_.wait(lock, [&] { return !pause_requested_ || stop_requested_; });
    --parked_;
    slot.vcpu.set_immediate_exit(false);
    return !stop_requested_;
}

void VcpuPool::kick_all() {
    for (auto& slot : slots_) {
        slot->vcpu.set_immediate_exit(true);
        pthread_t thread = slot->native.load();
        if (thread != pthread_t{} && !pthread_equal(thread, pthread_self())) {
            pthread_kill(thread, kick_signal());
        }
    }
}

void VcpuPool::pause() {
    std::unique_lock lock(mutex_);
    if (pause_requested_ || stop_requested_) {
        return;
    }
    pause_requested_ = true;
    attention_.store(true, std::memory_order_release);
    kick_all();
    changed_.wait(lock, [&] { return parked_ + ended_ == slots_.size(); });
}

void VcpuPool::resume() {
    std::lock_guard lock(mutex_);
    if (!pause_requested_) {
        return;
    }
    pause_requested_ = false;
    attention_.store(stop_requested_, std::memory_order_release);
    changed_.notify_all();
}

bool VcpuPool::paused() const {
    std::lock_guard lock(mutex_);
    return pause_requested_;
}

void VcpuPool::request_stop() {
    std::lock_guard lock(mutex_);
    stop_requested_ = true;
    attention_.store(true, std::memory_order_release);
    kick_all();
    changed_.notify_all();
}

void VcpuPool::join() {
    for (auto& slot : slots_) {
        if (slot->thread.joinable()) {
            slot->thread.join();
        }
    }
}

std::vector<ExitCounts> VcpuPool::exit_counts() const {
    std::vector<ExitCounts> counts(slots_.size());
    for (std::size_t i = 0; i < slots_.size(); ++i) {
        for (std::size_t kind = 0; kind < ExitCounts::kKinds; ++kind) {
            counts[i].by_kind[kind] = slots_[i]->exits[kind].load(std::memory_order_relaxed);
        }
    }
    return counts;
}

}  // namespace vim::vmm::machine
