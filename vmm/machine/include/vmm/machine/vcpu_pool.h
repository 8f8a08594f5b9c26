#pragma once

#include <pthread.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "vmm/kvm/vcpu.h"

namespace vim::vmm::machine {

// Exits each vCPU took, by kind (indexed by kvm::VcpuExit).
struct ExitCounts {
    static constexpr std::size_t kKinds = static_cast<std::size_t>(kvm::VcpuExit::Interrupted) + 1;
    std::array<std::uint64_t, kKinds> by_kind{};
    std::uint64_t total() const;
};

// One thread per vCPU, and the means to get every vCPU out of the guest and
// parked (pause), back in (resume), or gone (stop).
//
// Kicking a vCPU: set its immediate_exit flag, then signal its thread. The
// signal interrupts KVM_RUN if the thread is inside it; the flag catches the
// thread that was about to enter it. Both are needed for a race-free kick.
class VcpuPool {
public:
    // Called on the vCPU's thread for every exit other than port I/O, MMIO
    // and kicks; returns false when that vCPU should stop running.
    using ExitPolicy = std::function<bool(std::uint32_t vcpu, kvm::VcpuExit exit)>;
    // Called on the vCPU's thread when run() throws; the thread then stops.
    using ErrorHandler = std::function<void(std::uint32_t vcpu, const std::exception& error)>;

    VcpuPool(std::vector<kvm::Vcpu> vcpus, kvm::ExitHandler& handler, ExitPolicy policy,
             ErrorHandler on_error);
    VcpuPool(const VcpuPool&) = delete;
    VcpuPool& operator=(const VcpuPool&) = delete;
    ~VcpuPool();  // stops and joins

    std::size_t size() const noexcept { return slots_.size(); }
    // vCPU `index`, to save or restore its state: only before start() or
    // while paused, when no thread runs it.
    kvm::Vcpu& vcpu(std::size_t index) { return slots_.at(index)->vcpu; }

    void start();
    // Returns once every vCPU is parked outside the guest (or has ended).
    void pause();
    void resume();
    bool paused() const;
    // Ends every vCPU thread; safe from any thread, including a vCPU's own.
    void request_stop();
    // Joins the threads; call from outside the pool.
    void join();

    std::vector<ExitCounts> exit_counts() const;

private:
    struct Slot {
        explicit Slot(kvm::Vcpu vcpu) : vcpu(std::move(vcpu)) {}
        kvm::Vcpu vcpu;
        std::thread thread;
        std::atomic<pthread_t> native{};
        std::array<std::atomic<std::uint64_t>, ExitCounts::kKinds> exits{};
    };

    void run(Slot& slot);
    void kick_all();
    bool park_if_asked(Slot& slot);

    kvm::ExitHandler& handler_;
    ExitPolicy policy_;
    ErrorHandler on_error_;
    std::vector<std::unique_ptr<Slot>> slots_;

    mutable std::mutex mutex_;
    std::condition_variable changed_;
    bool pause_requested_ = false;
    bool stop_requested_ = false;
    std::size_t parked_ = 0;
    std::size_t ended_ = 0;
    std::atomic<bool> attention_ = false;  // pause or stop asked; read on the hot path
};

}  // namespace vim::vmm::machine
