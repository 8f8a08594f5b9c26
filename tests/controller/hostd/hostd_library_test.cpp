// The parts of hostd that stand alone: disks, VM records, processes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <thread>

#include "controller/hostd/disks.h"
#include "controller/hostd/process.h"
#include "controller/hostd/vm_record.h"
#include "vim/testing/temp_dir.h"

namespace vim::controller::hostd {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

std::string read_file(const std::filesystem::path& path) {
    std::ifstream file(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

std::uint64_t allocated_bytes(const std::filesystem::path& path) {
    struct stat info {};
    EXPECT_EQ(::stat(path.c_str(), &info), 0);
    return static_cast<std::uint64_t>(info.st_blocks) * 512;
}

TEST(HostdDisksTest, ACloneHasTheImagesBytesAndItsHoles) {
    vim::testing::TempDir dir;
    const std::string content = "head" + std::string(8 << 20, '\0') + "tail";
    std::ofstream(dir.path("image"), std::ios::binary) << content;
    clone_file(dir.path("image"), dir.path("root.raw"));
    EXPECT_EQ(read_file(dir.path("root.raw")), content);
    EXPECT_LT(allocated_bytes(dir.path("root.raw")), 4u << 20) << "zero megabytes stay holes";
    EXPECT_FALSE(std::filesystem::exists(dir.path("root.raw.tmp")));
}

TEST(HostdDisksTest, ErrorsNameTheDiskAndTheImage) {
    vim::testing::TempDir dir;
    EXPECT_THAT([&] { clone_file(dir.path("missing"), dir.path("root.raw")); },
                ::testing::ThrowsMessage<std::system_error>(
                    HasSubstr("disk " + dir.path("root.raw") + ": open the image " + dir.path("missing"))));
    EXPECT_THAT([&] { create_sparse_file(dir.path("no/such/folder/data0.raw"), 1); },
                ::testing::ThrowsMessage<std::system_error>(HasSubstr("data0.raw: create")));
}

TEST(HostdDisksTest, ADataDiskTakesNoSpace) {
    vim::testing::TempDir dir;
    create_sparse_file(dir.path("data0.raw"), 64ull << 30);
    EXPECT_EQ(std::filesystem::file_size(dir.path("data0.raw")), 64ull << 30);
    EXPECT_EQ(allocated_bytes(dir.path("data0.raw")), 0u);
}

TEST(HostdRecordTest, ARecordReadsBackAsWritten) {
    vim::testing::TempDir dir;
    VmRecord record{.id = "vm-1",
                    .spec = {{"id", "vm-1"}, {"vcpus", 2}},
                    .pid = 42,
                    .start_time = 123456,
                    .api_socket = "/run/vm-1.sock",
                    .owns_disks = true,
                    .incoming_uri = "",
                    .taps = {"vt0000n0"}};
    save_record(dir.path("vm.json"), record);
    const VmRecord read = load_record(dir.path("vm.json"));
    EXPECT_EQ(read.to_json(), record.to_json());
    EXPECT_FALSE(std::filesystem::exists(dir.path("vm.json.tmp")));
}

TEST(HostdRecordTest, ABrokenRecordIsNamed) {
    vim::testing::TempDir dir;
    std::ofstream(dir.path("vm.json")) << R"({"id": "vm-1"})";
    EXPECT_THAT(
        [&] { load_record(dir.path("vm.json")); },
        ::testing::ThrowsMessage<std::runtime_error>(HasSubstr("vm record " + dir.path("vm.json") + ": ")));
    std::ofstream(dir.path("vm.json")) << "{";
    EXPECT_THAT([&] { load_record(dir.path("vm.json")); },
                ::testing::ThrowsMessage<std::runtime_error>(HasSubstr("vm record " + dir.path("vm.json"))));
}

TEST(HostdProcessTest, ASpawnedProcessRunsInItsOwnSessionWithItsOutputInFiles) {
    vim::testing::TempDir dir;
    const Process process =
        Process::spawn({"/bin/sh", "-c", "echo out; echo err >&2; ps -o sid= -p $$; sleep 30"},
                       dir.path("out"), dir.path("err"));
    EXPECT_TRUE(process.running());
    EXPECT_EQ(process.start_time(), process_start_time(process.pid()));
    for (int i = 0; i < 200 && read_file(dir.path("out")).find('\n', 4) == std::string::npos; ++i) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(::getsid(process.pid()), process.pid()) << "a session of its own outlives hostd's";
    EXPECT_THAT(read_file(dir.path("out")), ::testing::StartsWith("out\n"));
    EXPECT_EQ(read_file(dir.path("err")), "err\n");

    EXPECT_FALSE(Process::attach(process.pid(), process.start_time() + 1))
        << "another start time: another process";
    const auto attached = Process::attach(process.pid(), process.start_time());
    ASSERT_TRUE(attached);
    process.kill();
    EXPECT_TRUE(process.wait_exit(5s));
    EXPECT_FALSE(process.running());
    EXPECT_FALSE(attached->running());
    EXPECT_FALSE(process_start_time(process.pid())) << "reaped, not left a zombie";
}

TEST(HostdProcessTest, AProgramThatCannotStartIsNamed) {
    vim::testing::TempDir dir;
    EXPECT_THAT([&] { Process::spawn({"/no/such/vmm"}, dir.path("out"), dir.path("err")); },
                ::testing::ThrowsMessage<std::system_error>(HasSubstr("start /no/such/vmm")));
}

}  // namespace
}  // namespace vim::controller::hostd
