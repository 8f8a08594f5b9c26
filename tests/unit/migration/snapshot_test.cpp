// Snapshots: written sparse and atomically, read back whole, mapped lazily,
// and refused with a clear error when missing, truncated or corrupt.
#include "migration/snapshot.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "vmm/memory/guest_memory.h"

namespace {

using namespace vim::migration;
using testing::HasSubstr;
using vim::vmm::memory::GuestMemory;
using vim::vmm::memory::kPageSize;
using vim::vmm::memory::RegionLayout;

constexpr std::uint64_t kMiB = 1 << 20;
const RegionLayout kLayout[] = {{0, 4 * kMiB}, {0x100000000, 2 * kMiB}};
const std::vector<std::uint8_t> kState = {1, 2, 3, 4, 5};

class Snapshots : public testing::Test {
protected:
    void SetUp() override {
        char pattern[] = "/tmp/vim-snapshot-XXXXXX";
        ASSERT_NE(::mkdtemp(pattern), nullptr);
        directory = pattern;
        for (std::uint64_t page = 0; page < 4 * kMiB / kPageSize; page += 5) {
            memory.write_object<std::uint64_t>(page * kPageSize + 8, page + 1);
        }
        memory.write_object<std::uint32_t>(0x100000000 + kMiB, 0xfeed);
        memory.discard(kMiB, kMiB);
    }
    void TearDown() override { std::filesystem::remove_all(directory); }

    std::string error_reading() {
        try {
            read_snapshot(directory / "snap");
        } catch (const std::exception& error) {
            return error.what();
        }
        return "(accepted)";
    }

    void rewrite_state(const std::function<void(std::vector<char>&)>& change) {
        const auto path = directory / "snap" / "state";
        std::ifstream in(path, std::ios::binary);
        std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        change(bytes);
        std::ofstream(path, std::ios::binary | std::ios::trunc)
            .write(bytes.data(), static_cast<long>(bytes.size()));
    }

    std::filesystem::path directory;
    GuestMemory memory = GuestMemory::allocate(kLayout);
};

bool same_memory(const GuestMemory& a, const GuestMemory& b) {
    for (std::size_t i = 0; i < a.regions().size(); ++i) {
        if (a.regions()[i].size != b.regions()[i].size ||
            std::memcmp(a.regions()[i].host, b.regions()[i].host, a.regions()[i].size) != 0) {
            return false;
        }
    }
    return true;
}

TEST_F(Snapshots, RoundTripMappedLazily) {
    const nlohmann::json config = {{"vcpus", 2}};
    write_snapshot(directory / "snap", memory, config, kState);
    EXPECT_FALSE(std::filesystem::exists(directory / "snap" / "state.tmp"));
    EXPECT_FALSE(std::filesystem::exists(directory / "snap" / "memory.tmp"));

    Snapshot snapshot = read_snapshot(directory / "snap");
    EXPECT_EQ(snapshot.config, config);
    EXPECT_EQ(snapshot.state, kState);
    ASSERT_EQ(snapshot.memory_layout.size(), 2u);
    EXPECT_EQ(snapshot.memory_layout[1].start, 0x100000000u);

    // Sparse: holes where the memory was zero or discarded.
    struct stat status {};
    ASSERT_EQ(::fstat(snapshot.memory.get(), &status), 0);
    EXPECT_EQ(static_cast<std::uint64_t>(status.st_size), 6 * kMiB);
    EXPECT_LT(static_cast<std::uint64_t>(status.st_blocks) * 512, 3 * kMiB);

    GuestMemory restored = GuestMemory::map_file(snapshot.memory_layout, snapshot.memory.get());
    EXPECT_EQ(restored.fd(), -1);
    EXPECT_TRUE(same_memory(memory, restored));

    // Writes stay in the restored VM; a snapshot of it works too.
    restored.write_object<std::uint32_t>(0, 0xabcd);
    restored.discard(2 * kMiB, kPageSize);
    EXPECT_EQ(restored.read_object<std::uint32_t>(2 * kMiB + 8), 0u);
    write_snapshot(directory / "snap", restored, config, kState);
    EXPECT_EQ(
        GuestMemory::map_file(snapshot.memory_layout, snapshot.memory.get()).read_object<std::uint32_t>(0),
        0u)
        << "the file the restored VM maps never changes";
    Snapshot again = read_snapshot(directory / "snap");
    EXPECT_TRUE(same_memory(restored, GuestMemory::map_file(again.memory_layout, again.memory.get())));
}

TEST_F(Snapshots, MissingFilesRefused) {
    EXPECT_THAT(error_reading(), HasSubstr("snap/state: snapshot: open"));
    write_snapshot(directory / "snap", memory, {}, kState);
    std::filesystem::remove(directory / "snap" / "memory");
    EXPECT_THAT(error_reading(), HasSubstr("snap/memory: open: No such file or directory"));
}

TEST_F(Snapshots, TruncatedMemoryRefused) {
    write_snapshot(directory / "snap", memory, {}, kState);
    std::filesystem::resize_file(directory / "snap" / "memory", 6 * kMiB - kPageSize);
    EXPECT_THAT(error_reading(),
                HasSubstr("snap/memory: 6287360 bytes, but its memory layout needs 6291456"));
}

TEST_F(Snapshots, CorruptOrTruncatedStateRefused) {
    write_snapshot(directory / "snap", memory, {}, kState);
    rewrite_state([](std::vector<char>& bytes) { bytes[bytes.size() - 24 - 1] ^= 1; });
    EXPECT_THAT(error_reading(),
                HasSubstr("snap/state: migration stream: section 3 (state): checksum mismatch"));

    write_snapshot(directory / "snap", memory, {}, kState);
    rewrite_state([](std::vector<char>& bytes) { bytes.resize(bytes.size() - 1); });
    EXPECT_THAT(error_reading(),
                HasSubstr("snap/state: migration stream: section 4: truncated (the stream ended)"));

    write_snapshot(directory / "snap", memory, {}, kState);
    rewrite_state([](std::vector<char>& bytes) { bytes.push_back(0); });
    EXPECT_THAT(error_reading(), HasSubstr("bytes after the end section"));

    write_snapshot(directory / "snap", memory, {}, kState);
    rewrite_state([](std::vector<char>& bytes) { bytes[0] = 'X'; });
    EXPECT_THAT(error_reading(), HasSubstr("snap/state: migration stream: header: wrong magic"));
}

TEST(GuestMemoryMapFile, FileShorterThanTheLayoutRefused) {
    GuestMemory memory = GuestMemory::allocate(kLayout);
    const RegionLayout larger[] = {{0, 8 * kMiB}};
    EXPECT_THROW(GuestMemory::map_file(larger, memory.fd()), std::invalid_argument);
}

}  // namespace
