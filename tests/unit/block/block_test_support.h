#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "vim/testing/temp_dir.h"
#include "vmm/sys/fd.h"
#include "vmm/virtio/block/io_engine.h"

namespace vim::vmm::virtio::block::testing {

using vim::testing::TempDir;

// A filesystem mounted on a fresh directory for one test (the tests run as root), unmounted at
// the end. nullopt, with the reason in `why_not`, where mount(2) is refused.
class ScratchMount {
public:
    static std::optional<ScratchMount> mount(const std::string& type, const std::string& options,
                                             std::string& why_not);
    ScratchMount(ScratchMount&& other) noexcept;
    ScratchMount& operator=(ScratchMount&&) = delete;
    ~ScratchMount();

    std::string path(const std::string& name) const { return directory_->path(name); }

private:
    ScratchMount() = default;
    std::unique_ptr<TempDir> directory_;
    bool mounted_ = false;
};

// A loop block device over a file, with the given logical block size; detached at the end.
class LoopDevice {
public:
    static std::optional<LoopDevice> attach(const std::string& file, unsigned block_size,
                                            std::string& why_not);

    const std::string& path() const noexcept { return path_; }

private:
    LoopDevice(std::string path, sys::Fd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
    std::string path_;
    sys::Fd fd_;  // LO_FLAGS_AUTOCLEAR: the device is detached once nothing holds it open
};

// Bytes that differ at every offset (within 2^32), so a read from the wrong place shows.
std::vector<std::uint8_t> pattern(std::size_t size, std::uint64_t start_offset = 0);
void write_file(const std::string& path, const std::vector<std::uint8_t>& bytes);
std::vector<std::uint8_t> read_file(const std::string& path);

// Why io_uring cannot be used here (a container's seccomp profile, say), or nullopt when it can.
std::optional<std::string> io_uring_unavailable();

// The next completion, waiting on completion_fd() as an event loop would; fails the test
// (throws) when none arrives within 10 s, so a lost completion cannot hang the run.
Completion wait_for_completion(IoEngine& engine);
// Enqueues one request, submits it and waits for its completion.
Completion run_one(IoEngine& engine, const Request& request);

}  // namespace vim::vmm::virtio::block::testing
