// The migration engine alone, no KVM: guest RAM of synthetic data (some zero
// pages) migrated over loopback TCP to a destination in the same process
// while a thread dirties pages, against a plain loopback TCP transfer of the
// same size with the same 1 MiB writes, measured in the same run.
//
//   migration_bench            2 GiB
//   migration_bench --quick    256 MiB (CI smoke run)
//
// The target: the migration's stream moves at least 80% of the plain
// transfer's bytes per second.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fakes/fake_vm.h"
#include "migration/destination.h"
#include "migration/source.h"
#include "migration/transport.h"

namespace {

using namespace vim::migration;
using vim::vmm::memory::GuestMemory;
using vim::vmm::memory::kPageSize;
using vim::vmm::memory::RegionLayout;
using vim::vmm::sys::Fd;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kMiB = 1 << 20;
constexpr std::uint64_t kChunk = kMiB;         // a page batch: 256 pages
constexpr std::uint64_t kZeroPageEvery = 16;   // one page in 16 is zero
constexpr double kDirtyPagesPerSecond = 5000;  // about 20 MB/s of guest writes

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

class BenchMachine final : public SourceMachine {
public:
    explicit BenchMachine(std::uint64_t size) {
        const RegionLayout layout[] = {{0, size}};
        memory_.emplace(GuestMemory::allocate(layout));
        const auto& region = memory_->regions()[0];
        vm_.set_memory_slot({0, region.start, region.size, region.host});
        for (std::uint64_t page = 0; page < size / kPageSize; ++page) {
            if (page % kZeroPageEvery != 0) {
                std::memset(region.host + page * kPageSize, static_cast<int>(page % 251 + 1), kPageSize);
            }
        }
    }

    void start_dirtying() {
        dirtier_ = std::thread([this] {
            const std::uint64_t pages = memory_->total_size() / kPageSize;
            const auto started = Clock::now();
            std::uint64_t written = 0, next = 1;
            while (!stop_) {
                if (!paused_ && written < seconds_since(started) * kDirtyPagesPerSecond) {
                    next = next * 6364136223846793005ull + 1442695040888963407ull;
                    memory_->write_object<std::uint64_t>((next >> 20) % pages * kPageSize, next);
                    ++written;
                } else {
                    std::this_thread::sleep_for(std::chrono::microseconds(100));
                }
            }
        });
    }
    ~BenchMachine() override {
        stop_ = true;
        if (dirtier_.joinable()) {
            dirtier_.join();
        }
    }

    GuestMemory& memory() override { return *memory_; }
    vim::vmm::kvm::Vm& vm() override { return vm_; }
    nlohmann::json config() override { return {{"memory_bytes", memory_->total_size()}}; }
    // The dirtier checks the flag between writes; a write in flight is sent
    // in the final round, which collects every page the VMM marked.
    void pause() override { paused_ = true; }
    void resume() override { paused_ = false; }
    std::vector<std::uint8_t> save_state() override { return std::vector<std::uint8_t>(64 * 1024, 1); }
    void hand_over() override {}

private:
    std::optional<GuestMemory> memory_;
    vim::testing::FakeVm vm_;
    std::thread dirtier_;
    std::atomic<bool> stop_{false};
    std::atomic<bool> paused_{false};
};

// Bytes per second of a plain write/read loop over loopback TCP.
double plain_transfer(const GuestMemory& memory) {
    Fd listener = listen_tcp("tcp:127.0.0.1:0");
    const std::string uri = "tcp:127.0.0.1:" + std::to_string(local_port(listener));
    const std::uint64_t total = memory.total_size();
    std::thread receiver([&] {
        Fd socket = accept_one(listener);
        std::vector<std::uint8_t> buffer(kChunk);
        std::uint64_t received = 0;
        while (received < total) {
            const ssize_t got = ::read(socket.get(), buffer.data(), buffer.size());
            if (got <= 0) {
                throw std::runtime_error("plain transfer: receive failed");
            }
            received += static_cast<std::uint64_t>(got);
        }
    });
    Fd socket = connect_tcp(uri);
    const auto started = Clock::now();
    const std::uint8_t* data = memory.regions()[0].host;
    for (std::uint64_t offset = 0; offset < total;) {
        const ssize_t sent = ::write(socket.get(), data + offset, std::min(kChunk, total - offset));
        if (sent <= 0) {
            throw std::runtime_error("plain transfer: send failed");
        }
        offset += static_cast<std::uint64_t>(sent);
    }
    receiver.join();
    return static_cast<double>(total) / seconds_since(started);
}

}  // namespace

int main(int argc, char** argv) {
    const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
    const std::uint64_t size = (quick ? 256 : 2048) * kMiB;
    BenchMachine machine(size);

    const double plain = plain_transfer(machine.memory());

    Fd listener = listen_tcp("tcp:127.0.0.1:0");
    const std::string uri = "tcp:127.0.0.1:" + std::to_string(local_port(listener));
    std::string destination_error;
    std::thread destination_thread([&] {
        Destination destination(accept_one(listener));
        try {
            const IncomingConfig incoming = destination.receive_config();
            GuestMemory memory = GuestMemory::allocate(incoming.memory_layout);
            destination.receive_memory_and_state(memory);
            destination.ready();
            destination.running();
        } catch (const std::exception& error) {
            destination_error = error.what();
            destination.report_error(error.what());
        }
    });
    machine.start_dirtying();
    Source source(machine, connect_tcp(uri), {});
    const auto started = Clock::now();
    source.start();
    source.wait();
    const double seconds = seconds_since(started);
    destination_thread.join();
    const MigrationStatus status = source.status();
    if (status.state != MigrationState::Completed) {
        std::fprintf(stderr, "migration failed: %s %s\n", status.error.c_str(), destination_error.c_str());
        return 1;
    }
    const double migration = static_cast<double>(status.bytes) / seconds;

    std::printf("guest RAM                  %8.0f MiB (1 page in %llu zero), dirtied at %.0f pages/s\n",
                static_cast<double>(size) / kMiB, static_cast<unsigned long long>(kZeroPageEvery),
                kDirtyPagesPerSecond);
    std::printf("plain loopback TCP         %8.0f MB/s\n", plain / 1e6);
    std::printf("migration stream           %8.0f MB/s  (%llu bytes in %.3f s, %u iterations)\n",
                migration / 1e6, static_cast<unsigned long long>(status.bytes), seconds, status.iteration);
    std::printf("migration, guest RAM       %8.0f MB/s  (RAM size / total time)\n",
                static_cast<double>(size) / seconds / 1e6);
    std::printf("downtime                   %8.1f ms\n", status.downtime_ms.value_or(-1));
    std::printf("ratio stream / plain       %8.2f  (target >= 0.80)\n", migration / plain);
    return 0;
}
