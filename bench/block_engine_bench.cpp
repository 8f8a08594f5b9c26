// Our disk engines driven the way the virtio-blk device drives them (enqueue on every
// completion, one submit per batch, sleep on the completion eventfd), on real files:
// 4 KiB random reads at queue depth 1 and 32, 128 KiB sequential reads and writes at depth 8.
// bench/block_compare.py runs fio's equivalent jobs on the same files beside it.
//
// Flags, before Google Benchmark's own:
//   --file=[LABEL=]PATH   a disk image to run on (repeatable; also VIM_BLOCK_BENCH_FILES, the
//                         same forms separated by ':'); by default tmpfs=/dev/shm/vim-block-bench.img
//                         and disk=/var/tmp/vim-block-bench.img, created when missing
//   --file-size=MIB       the size of a file this bench creates (default 512)
//   --direct=auto|on|off  O_DIRECT: where the filesystem allows it (default), always, never
//   --engines=LIST        io_uring,sync (default both)
// Counters: IOPS and MB/s (10^6 bytes), over wall-clock time.

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "vmm/sys/error.h"
#include "vmm/sys/fd.h"
#include "vmm/sys/mapping.h"
#include "vmm/virtio/block/disk_image.h"
#include "vmm/virtio/block/io_engine.h"
#include "vmm/virtio/block/io_uring_engine.h"
#include "vmm/virtio/block/sync_engine.h"

namespace {

namespace block = vim::vmm::virtio::block;

struct Job {
    const char* name;
    block::Operation operation;
    bool random;
    std::uint32_t block_size;
    unsigned queue_depth;
};

// bench/block_compare.py gives fio the same jobs, by these names.
constexpr Job kJobs[] = {
    {"randread_4k_qd1", block::Operation::Read, true, 4096, 1},
    {"randread_4k_qd32", block::Operation::Read, true, 4096, 32},
    {"seqread_128k_qd8", block::Operation::Read, false, 128 << 10, 8},
    {"seqwrite_128k_qd8", block::Operation::Write, false, 128 << 10, 8},
};

struct BenchFile {
    std::string label;
    std::string path;
};

enum class Direct { Auto, On, Off };

struct Settings {
    std::vector<BenchFile> files;
    std::uint64_t file_size = 512ull << 20;
    Direct direct = Direct::Auto;
    std::vector<std::string> engines{"io_uring", "sync"};
};

// splitmix64: cheap, and good enough to spread offsets over the file.
class Random {
public:
    std::uint64_t next() noexcept {
        std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }

private:
    std::uint64_t state_ = 42;
};

std::string filesystem_label(const std::string& path) {
    struct statfs info {};
    const std::string directory = path.substr(0, path.rfind('/') + 1);
    if (::statfs(directory.c_str(), &info) != 0) {
        return "file";
    }
    return info.f_type == 0x01021994 /* TMPFS_MAGIC */ ? "tmpfs" : "disk";
}

// Creates `path` with `size` bytes of data (not holes: reading holes costs the disk nothing).
void create_file(const std::string& path, std::uint64_t size) {
    vim::vmm::sys::Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) {
        vim::vmm::sys::throw_errno("create " + path);
    }
    std::vector<std::uint64_t> chunk((1 << 20) / sizeof(std::uint64_t));
    Random random;
    for (std::uint64_t offset = 0; offset < size; offset += chunk.size() * sizeof(std::uint64_t)) {
        for (auto& word : chunk) {
            word = random.next();
        }
        const std::size_t length =
            std::min<std::uint64_t>(chunk.size() * sizeof(std::uint64_t), size - offset);
        const ssize_t written = ::pwrite(fd.get(), chunk.data(), length, static_cast<off_t>(offset));
        if (written != static_cast<ssize_t>(length)) {
            vim::vmm::sys::throw_errno("write " + path);
        }
    }
    if (::fsync(fd.get()) != 0) {
        vim::vmm::sys::throw_errno("fsync " + path);
    }
}

block::DiskImage open_image(const std::string& path, Direct direct) {
    if (direct == Direct::Auto) {
        try {
            return block::DiskImage::open(path, {.direct = true});
        } catch (const block::DiskError&) {
            return block::DiskImage::open(path, {.direct = false});
        }
    }
    return block::DiskImage::open(path, {.direct = direct == Direct::On});
}

void run_job(benchmark::State& state, const BenchFile& file, const Job& job, const std::string& engine_name,
             Direct direct) {
    const block::DiskImage image = open_image(file.path, direct);
    const std::uint64_t blocks = image.size() / job.block_size;
    if (blocks < job.queue_depth) {
        state.SkipWithError((file.path + " is too small for this job").c_str());
        return;
    }
    std::unique_ptr<block::IoEngine> engine = engine_name == "io_uring"
                                                  ? block::make_io_uring_engine(image.fd(), job.queue_depth)
                                                  : block::make_sync_engine(image.fd(), job.queue_depth);
    // One page-aligned buffer per slot, faulted in now rather than during the run.
    const auto buffers =
        vim::vmm::sys::Mapping::map("bench buffers", std::size_t{job.block_size} * job.queue_depth,
                                    PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE);
    std::memset(buffers.data(), 0x6b, buffers.size());

    Random random;
    std::uint64_t next_sequential = 0;
    std::vector<iovec> segments(job.queue_depth);
    auto issue = [&](std::uint64_t slot) {
        std::uint64_t block_index = next_sequential++ % blocks;
        if (job.random) {
            block_index = random.next() % blocks;
        }
        segments[slot] = {buffers.data() + slot * job.block_size, job.block_size};
        const bool queued = engine->enqueue({.operation = job.operation,
                                             .offset = block_index * job.block_size,
                                             .iovecs = {&segments[slot], 1},
                                             .user_data = slot});
        if (!queued) {
            throw std::logic_error("enqueue refused below the queue depth");
        }
    };
    for (unsigned slot = 0; slot < job.queue_depth; ++slot) {
        issue(slot);
    }
    engine->submit();

    const auto started = std::chrono::steady_clock::now();
    for (auto _ : state) {
        std::optional<block::Completion> completion = engine->next_completion();
        while (!completion) {
            pollfd ready{.fd = engine->completion_fd(), .events = POLLIN, .revents = 0};
            ::poll(&ready, 1, -1);
            completion = engine->next_completion();
        }
        if (completion->result != job.block_size) {
            state.SkipWithError(("I/O result " + std::to_string(completion->result)).c_str());
            break;
        }
        issue(completion->user_data);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const auto operations = static_cast<double>(state.iterations());
    state.counters["IOPS"] = operations / seconds;
    state.counters["MB/s"] = operations * job.block_size / seconds / 1e6;
    state.SetLabel(image.direct() ? "direct" : "buffered");
    // Destroying the engine waits for the requests still in flight.
}

BenchFile parse_file(const std::string& text) {
    const auto equals = text.find('=');
    if (equals == std::string::npos) {
        return {filesystem_label(text), text};
    }
    return {text.substr(0, equals), text.substr(equals + 1)};
}

std::vector<std::string> split(const std::string& text, char separator) {
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (std::size_t end; (end = text.find(separator, start)) != std::string::npos; start = end + 1) {
        parts.push_back(text.substr(start, end - start));
    }
    parts.push_back(text.substr(start));
    return parts;
}

// Takes our flags out of argv (Google Benchmark rejects flags it does not know).
Settings parse_settings(int& argc, char** argv) {
    Settings settings;
    bool files_given = false;
    if (const char* environment = std::getenv("VIM_BLOCK_BENCH_FILES"); environment && *environment) {
        for (const std::string& text : split(environment, ':')) {
            settings.files.push_back(parse_file(text));
        }
        files_given = true;
    }
    int kept = 1;
    for (int index = 1; index < argc; ++index) {
        const std::string argument = argv[index];
        auto value = [&](const char* flag) -> std::optional<std::string> {
            const std::string prefix = std::string(flag) + "=";
            if (argument.rfind(prefix, 0) == 0) {
                return argument.substr(prefix.size());
            }
            return std::nullopt;
        };
        if (auto file = value("--file")) {
            if (!files_given) {
                settings.files.clear();
                files_given = true;
            }
            settings.files.push_back(parse_file(*file));
        } else if (auto size = value("--file-size")) {
            settings.file_size = std::stoull(*size) << 20;
        } else if (auto direct = value("--direct")) {
            if (*direct != "auto" && *direct != "on" && *direct != "off") {
                throw std::invalid_argument("--direct=" + *direct + ": auto, on or off");
            }
            settings.direct = *direct == "on" ? Direct::On : *direct == "off" ? Direct::Off : Direct::Auto;
        } else if (auto engines = value("--engines")) {
            settings.engines = split(*engines, ',');
        } else {
            argv[kept++] = argv[index];
        }
    }
    argc = kept;
    if (!files_given) {
        settings.files = {{"tmpfs", "/dev/shm/vim-block-bench.img"},
                          {"disk", "/var/tmp/vim-block-bench.img"}};
    }
    return settings;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        static const Settings settings = parse_settings(argc, argv);
        for (const BenchFile& file : settings.files) {
            if (::access(file.path.c_str(), F_OK) != 0) {
                std::fprintf(stderr, "creating %s (%llu MiB)\n", file.path.c_str(),
                             static_cast<unsigned long long>(settings.file_size >> 20));
                create_file(file.path, settings.file_size);
            }
        }
        for (const std::string& engine : settings.engines) {
            if (engine != "io_uring" && engine != "sync") {
                throw std::invalid_argument("--engines: unknown engine " + engine);
            }
            for (const BenchFile& file : settings.files) {
                for (const Job& job : kJobs) {
                    benchmark::RegisterBenchmark((engine + "/" + job.name + "/" + file.label).c_str(),
                                                 [&file, &job, engine](benchmark::State& state) {
                                                     run_job(state, file, job, engine, settings.direct);
                                                 })
                        ->UseRealTime();
                }
            }
        }
    } catch (const std::exception& error) {
        std::fprintf(stderr, "block_engine_bench: %s\n", error.what());
        return 2;
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 2;
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
