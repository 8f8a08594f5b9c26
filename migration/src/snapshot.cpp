#include "migration/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "migration/pages.h"
#include "migration/stream.h"
#include "vmm/sys/error.h"

namespace vim::migration {
namespace {

using vmm::memory::kPageSize;

constexpr const char* kMemoryFile = "memory";
constexpr const char* kStateFile = "state";

vmm::sys::Fd open_or_throw(const std::filesystem::path& path, int flags) {
    vmm::sys::Fd fd(::open(path.c_str(), flags | O_CLOEXEC, 0600));
    if (!fd) {
        vmm::sys::throw_errno("snapshot: open " + path.string());
    }
    return fd;
}

void sync_or_throw(int fd, const std::filesystem::path& path) {
    if (::fsync(fd) != 0) {
        vmm::sys::throw_errno("snapshot: sync " + path.string());
    }
}

void write_fully(int fd, const std::uint8_t* bytes, std::uint64_t length, off_t offset,
                 const std::filesystem::path& path) {
    while (length > 0) {
        const ssize_t written = ::pwrite(fd, bytes, length, offset);
        if (written < 0 && errno == EINTR) {
            continue;
        }
        if (written <= 0) {
            vmm::sys::throw_errno("snapshot: write " + path.string());
        }
        bytes += written;
        length -= static_cast<std::uint64_t>(written);
        offset += written;
    }
}

// Guest RAM into a sparse file: ftruncate makes the holes, runs of non-zero
// pages are written with one pwrite each; holes in the memory are skipped
// without being read. The pages GuestMemory calls discarded are not trusted
// here: with no dirty log running, a guest write since the discard is not
// known, and the memfd's holes are what is really gone.
void write_memory(const std::filesystem::path& path, const vmm::memory::GuestMemory& memory) {
    vmm::sys::Fd file = open_or_throw(path, O_WRONLY | O_CREAT | O_TRUNC);
    if (::ftruncate(file.get(), static_cast<off_t>(memory.total_size())) != 0) {
        vmm::sys::throw_errno("snapshot: size " + path.string());
    }
    std::uint64_t file_offset = 0;
    for (std::size_t index = 0; index < memory.regions().size(); ++index) {
        const vmm::memory::Region& region = memory.regions()[index];
        const std::vector<std::uint64_t> holes = memory.hole_pages(index);
        auto holds_data = [&](std::uint64_t page) {
            return !is_page_set(holes, page) && !is_zero_page(region.host + page * kPageSize);
        };
        const std::uint64_t pages = region.size / kPageSize;
        for (std::uint64_t page = 0; page < pages;) {
            if (!holds_data(page)) {
                ++page;
                continue;
            }
            std::uint64_t run_end = page + 1;
            while (run_end < pages && holds_data(run_end)) {
                ++run_end;
            }
            write_fully(file.get(), region.host + page * kPageSize, (run_end - page) * kPageSize,
                        static_cast<off_t>(file_offset + page * kPageSize), path);
            page = run_end;
        }
        file_offset += region.size;
    }
    sync_or_throw(file.get(), path);
}

}  // namespace

void write_snapshot(const std::filesystem::path& directory, const vmm::memory::GuestMemory& memory,
                    const nlohmann::json& config, std::span<const std::uint8_t> state) {
    std::filesystem::create_directories(directory);
    const std::filesystem::path memory_path = directory / kMemoryFile;
    const std::filesystem::path state_path = directory / kStateFile;
    const std::filesystem::path memory_temp = directory / (std::string(kMemoryFile) + ".tmp");
    const std::filesystem::path state_temp = directory / (std::string(kStateFile) + ".tmp");

    write_memory(memory_temp, memory);
    {
        vmm::sys::Fd file = open_or_throw(state_temp, O_WRONLY | O_CREAT | O_TRUNC);
        StreamWriter writer(file.get());
        writer.write_header();
        const std::string text = config.dump();
        writer.write_section(SectionType::Config,
                             {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
        writer.write_section(SectionType::MemoryLayout, encode_memory_layout(memory));
        writer.write_section(SectionType::State, state);
        writer.write_section(SectionType::End, {});
        sync_or_throw(file.get(), state_temp);
    }
    // The old state goes first: from here until the new state is in place the
    // directory holds no snapshot, never a state beside the wrong memory.
    std::filesystem::remove(state_path);
    std::filesystem::rename(memory_temp, memory_path);
    std::filesystem::rename(state_temp, state_path);
    vmm::sys::Fd directory_fd = open_or_throw(directory, O_RDONLY | O_DIRECTORY);
    sync_or_throw(directory_fd.get(), directory);
}

Snapshot read_snapshot(const std::filesystem::path& directory) {
    const std::filesystem::path state_path = directory / kStateFile;
    const std::filesystem::path memory_path = directory / kMemoryFile;
    Snapshot snapshot;
    try {
        vmm::sys::Fd file = open_or_throw(state_path, O_RDONLY);
        StreamReader reader(file.get());
        reader.read_header();
        const std::vector<std::uint8_t> config = reader.read_expected(SectionType::Config);
        snapshot.config = nlohmann::json::parse(config.begin(), config.end(), nullptr, false);
        if (snapshot.config.is_discarded()) {
            throw StreamError("migration stream: section 1 (config): not JSON");
        }
        snapshot.memory_layout = decode_memory_layout(reader.read_expected(SectionType::MemoryLayout));
        snapshot.state = reader.read_expected(SectionType::State);
        reader.read_expected(SectionType::End);
        char extra;
        if (::read(file.get(), &extra, 1) != 0) {
            throw StreamError("migration stream: bytes after the end section");
        }
    } catch (const std::exception& error) {
        throw std::runtime_error("snapshot " + state_path.string() + ": " + error.what());
    }
    snapshot.memory = vmm::sys::Fd(::open(memory_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!snapshot.memory) {
        vmm::sys::throw_errno("snapshot " + memory_path.string() + ": open");
    }
    struct stat status {};
    if (::fstat(snapshot.memory.get(), &status) != 0) {
        vmm::sys::throw_errno("snapshot " + memory_path.string() + ": stat");
    }
    std::uint64_t needed = 0;
    for (const vmm::memory::RegionLayout& region : snapshot.memory_layout) {
        needed += region.size;
    }
    if (static_cast<std::uint64_t>(status.st_size) != needed) {
        throw std::runtime_error("snapshot " + memory_path.string() + ": " + std::to_string(status.st_size) +
                                 " bytes, but its memory layout needs " + std::to_string(needed));
    }
    return snapshot;
}

}  // namespace vim::migration
