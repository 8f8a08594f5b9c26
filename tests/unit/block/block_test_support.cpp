#include "block_test_support.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "vmm/sys/error.h"
#include "vmm/virtio/block/io_uring_engine.h"

namespace vim::vmm::virtio::block::testing {

std::optional<ScratchMount> ScratchMount::mount(const std::string& type, const std::string& options,
                                                std::string& why_not) {
    ScratchMount scratch;
    scratch.directory_ = std::make_unique<TempDir>();
    if (::mount(type.c_str(), scratch.directory_->path().c_str(), type.c_str(), 0, options.c_str()) != 0) {
        why_not = "mount -t " + type + " -o " + options + ": " + std::strerror(errno);
        return std::nullopt;
    }
    scratch.mounted_ = true;
    return scratch;
}

ScratchMount::ScratchMount(ScratchMount&& other) noexcept
    : directory_(std::move(other.directory_)), mounted_(std::exchange(other.mounted_, false)) {}

ScratchMount::~ScratchMount() {
    if (mounted_) {
        ::umount2(directory_->path().c_str(), MNT_DETACH);
    }
}

std::optional<LoopDevice> LoopDevice::attach(const std::string& file, unsigned block_size,
                                             std::string& why_not) {
    sys::Fd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
    sys::Fd backing(::open(file.c_str(), O_RDWR | O_CLOEXEC));
    if (!control || !backing) {
        why_not = std::string("open /dev/loop-control or ") + file + ": " + std::strerror(errno);
        return std::nullopt;
    }
    // Another process may take the free device between the two ioctls: try a few.
    for (int attempt = 0; attempt < 10; ++attempt) {
        const int number = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
        if (number < 0) {
            why_not = std::string("LOOP_CTL_GET_FREE: ") + std::strerror(errno);
            return std::nullopt;
        }
        std::string path = "/dev/loop" + std::to_string(number);
        sys::Fd device(::open(path.c_str(), O_RDWR | O_CLOEXEC));
        if (!device) {
            why_not = "open " + path + ": " + std::strerror(errno);
            return std::nullopt;
        }
        loop_config config{};
        config.fd = static_cast<std::uint32_t>(backing.get());
        config.block_size = block_size;
        config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        if (::ioctl(device.get(), LOOP_CONFIGURE, &config) == 0) {
            return LoopDevice(std::move(path), std::move(device));
        }
        if (errno != EBUSY) {
            why_not = "LOOP_CONFIGURE " + path + ": " + std::strerror(errno);
            return std::nullopt;
        }
    }
    why_not = "every free loop device was taken by someone else";
    return std::nullopt;
}

std::vector<std::uint8_t> pattern(std::size_t size, std::uint64_t start_offset) {
    std::vector<std::uint8_t> bytes(size);
    for (std::size_t index = 0; index < size; ++index) {
        const std::uint64_t offset = start_offset + index;
        bytes[index] =
            static_cast<std::uint8_t>((offset >> 24) ^ (offset >> 16) ^ (offset >> 8) ^ offset ^ 0x5a);
    }
    return bytes;
}

void write_file(const std::string& path, const std::vector<std::uint8_t>& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
        throw std::runtime_error("write " + path);
    }
}

std::vector<std::uint8_t> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw std::runtime_error("read " + path);
    }
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::optional<std::string> io_uring_unavailable() {
    try {
        make_io_uring_engine(-1, 1);
        return std::nullopt;
    } catch (const IoUringUnavailable& error) {
        return error.what();
    }
}

Completion wait_for_completion(IoEngine& engine) {
    using std::chrono::steady_clock;
    const auto deadline = steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
        if (const std::optional<Completion> completion = engine.next_completion()) {
            return *completion;
        }
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady_clock::now());
        if (left.count() <= 0) {
            throw std::runtime_error(std::string(engine.name()) + " engine: no completion within 10 s");
        }
        // The whole time left, not short naps: a completion whose signal got lost fails the test.
        pollfd ready{.fd = engine.completion_fd(), .events = POLLIN, .revents = 0};
        if (::poll(&ready, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) {
            sys::throw_errno("poll completion_fd");
        }
    }
}

Completion run_one(IoEngine& engine, const Request& request) {
    if (!engine.enqueue(request)) {
        throw std::runtime_error(std::string(engine.name()) + " engine: enqueue refused");
    }
    engine.submit();
    return wait_for_completion(engine);
}

}  // namespace vim::vmm::virtio::block::testing
