// The migration stream: what goes in comes out, and every corruption or
// truncation is refused with a message naming the section and the problem.
#include "migration/stream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "vmm/sys/fd.h"

namespace {

using namespace vim::migration;
using testing::HasSubstr;
using vim::vmm::sys::Fd;

Fd memory_file() { return Fd(::memfd_create("stream", MFD_CLOEXEC)); }

std::vector<std::uint8_t> bytes_of(const std::string& text) { return {text.begin(), text.end()}; }

std::vector<std::uint8_t> contents(const Fd& file) {
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(::lseek(file.get(), 0, SEEK_END)));
    EXPECT_EQ(::pread(file.get(), bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    return bytes;
}

Fd file_with(const std::vector<std::uint8_t>& bytes) {
    Fd file = memory_file();
    EXPECT_EQ(::write(file.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    ::lseek(file.get(), 0, SEEK_SET);
    return file;
}

// header, Config {"a":1}, State "state!", End
std::vector<std::uint8_t> small_stream() {
    Fd file = memory_file();
    StreamWriter writer(file.get());
    writer.write_header();
    writer.write_section(SectionType::Config, bytes_of(R"({"a":1})"));
    writer.write_section(SectionType::State, bytes_of("state!"));
    writer.write_section(SectionType::End, {});
    EXPECT_EQ(writer.bytes_written(), kStreamHeaderSize + 3 * kSectionHeaderSize + 7 + 6);
    return contents(file);
}

// Reads a stream as small_stream() writes it; throws what the reader throws.
void read_small_stream(const std::vector<std::uint8_t>& bytes) {
    Fd file = file_with(bytes);
    StreamReader reader(file.get());
    reader.read_header();
    EXPECT_EQ(reader.read_expected(SectionType::Config), bytes_of(R"({"a":1})"));
    EXPECT_EQ(reader.read_expected(SectionType::State), bytes_of("state!"));
    reader.read_expected(SectionType::End);
}

std::string error_of(const std::vector<std::uint8_t>& bytes) {
    try {
        read_small_stream(bytes);
    } catch (const StreamError& error) {
        return error.what();
    }
    return "(accepted)";
}

TEST(MigrationStream, RoundTrip) { EXPECT_NO_THROW(read_small_stream(small_stream())); }

TEST(MigrationStream, HeaderIsLittleEndianMagicAndVersion) {
    const auto bytes = small_stream();
    EXPECT_EQ(std::string(bytes.begin(), bytes.begin() + 8), "VIMMIGRT");
    EXPECT_EQ(bytes[8], 2);
    EXPECT_EQ(bytes[9] | bytes[10] | bytes[11] | bytes[12] | bytes[13] | bytes[14] | bytes[15], 0);
    EXPECT_EQ(bytes[16], static_cast<std::uint8_t>(SectionType::Config));
}

TEST(MigrationStream, WrongMagicRejected) {
    auto bytes = small_stream();
    bytes[0] = 'X';
    EXPECT_EQ(error_of(bytes), "migration stream: header: wrong magic (not a migration stream)");
}

TEST(MigrationStream, WrongVersionRejected) {
    auto bytes = small_stream();
    bytes[8] = 1;  // XXH3 checksums, before XXH64
    EXPECT_EQ(error_of(bytes),
              "migration stream: header: version 1 is not supported (this side reads version 2)");
}

TEST(MigrationStream, UnknownSectionTypeRejected) {
    auto bytes = small_stream();
    bytes[16] = 77;
    EXPECT_EQ(error_of(bytes), "migration stream: section 1: unknown type 77");
}

TEST(MigrationStream, LengthOverTheCapRejected) {
    auto bytes = small_stream();
    const std::uint64_t huge = kMaxMetadataSection + 1;
    std::memcpy(bytes.data() + 16 + 8, &huge, 8);
    EXPECT_THAT(error_of(bytes),
                HasSubstr("migration stream: section 1 (config): length 67108865 is over the limit"));
}

TEST(MigrationStream, NonEmptyEndRejected) {
    auto bytes = small_stream();
    bytes[bytes.size() - kSectionHeaderSize + 8] = 1;
    EXPECT_THAT(error_of(bytes),
                HasSubstr("migration stream: section 3 (end): length 1 is over the limit of 0"));
}

TEST(MigrationStream, ReservedFieldRejected) {
    auto bytes = small_stream();
    bytes[16 + 4] = 1;
    EXPECT_EQ(error_of(bytes), "migration stream: section 1 (config): reserved field is not zero");
}

TEST(MigrationStream, EveryFlippedPayloadOrChecksumBitRejected) {
    const auto clean = small_stream();
    // The state section's checksum and payload: header + config section + state header.
    const std::size_t state_section = kStreamHeaderSize + kSectionHeaderSize + 7;
    for (std::size_t offset = state_section + 16; offset < state_section + kSectionHeaderSize + 6; ++offset) {
        for (int bit = 0; bit < 8; ++bit) {
            auto bytes = clean;
            bytes[offset] ^= static_cast<std::uint8_t>(1 << bit);
            EXPECT_EQ(error_of(bytes), "migration stream: section 2 (state): checksum mismatch")
                << "offset " << offset << " bit " << bit;
        }
    }
}

TEST(MigrationStream, TruncationAtEveryOffsetRejected) {
    const auto clean = small_stream();
    for (std::size_t length = 0; length < clean.size(); ++length) {
        const std::vector<std::uint8_t> bytes(clean.begin(), clean.begin() + static_cast<long>(length));
        EXPECT_THAT(error_of(bytes), HasSubstr("truncated (the stream ended)")) << "length " << length;
    }
}

TEST(MigrationStream, UnexpectedSectionRejected) {
    auto bytes = small_stream();
    bytes[16] = static_cast<std::uint8_t>(SectionType::State);
    EXPECT_EQ(error_of(bytes), "migration stream: section 1 (state): expected a config section");
}

TEST(MigrationStream, MemoryLayoutRoundTripAndHostileLayoutsRejected) {
    std::vector<std::uint8_t> a(8192), b(4096);
    auto memory = vim::vmm::memory::GuestMemory::over({{0x100000000, 4096, b.data()}, {0, 8192, a.data()}});
    const auto layout = decode_memory_layout(encode_memory_layout(memory));
    ASSERT_EQ(layout.size(), 2u);
    EXPECT_EQ(layout[0].start, 0u);
    EXPECT_EQ(layout[0].size, 8192u);
    EXPECT_EQ(layout[1].start, 0x100000000u);

    auto encoded = encode_memory_layout(memory);
    encoded[8] = 1;  // size 8193
    EXPECT_THROW(decode_memory_layout(encoded), StreamError);
    encoded = encode_memory_layout(memory);
    std::memset(encoded.data() + 16, 0, 8);  // second region starts at 0, inside the first
    EXPECT_THROW(decode_memory_layout(encoded), StreamError);
    EXPECT_THROW(decode_memory_layout({}), StreamError);
    EXPECT_THROW(decode_memory_layout(std::vector<std::uint8_t>(15)), StreamError);
}

class ControlMessages : public testing::Test {
protected:
    void SetUp() override {
        int pair[2];
        ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
        near.reset(pair[0]);
        far.reset(pair[1]);
    }
    std::string error_receiving(const std::vector<std::uint8_t>& raw) {
        if (far) {
            EXPECT_EQ(::write(far.get(), raw.data(), raw.size()), static_cast<ssize_t>(raw.size()));
        }
        try {
            receive_control(near.get(), std::chrono::milliseconds(100));
        } catch (const StreamError& error) {
            return error.what();
        }
        return "(accepted)";
    }
    Fd near, far;
};

TEST_F(ControlMessages, RoundTrip) {
    send_control(far.get(), ControlKind::Ready);
    send_control(far.get(), ControlKind::Error, "memory layout differs");
    EXPECT_EQ(receive_control(near.get(), std::chrono::seconds(1)).kind, ControlKind::Ready);
    const ControlMessage error = receive_control(near.get(), std::chrono::seconds(1));
    EXPECT_EQ(error.kind, ControlKind::Error);
    EXPECT_EQ(error.text, "memory layout differs");
}

TEST_F(ControlMessages, TimeoutAndCloseReported) {
    EXPECT_EQ(error_receiving({}), "migration control: no message within the time limit");
    far.reset();
    EXPECT_EQ(error_receiving({}), "migration control: the connection closed");
}

TEST_F(ControlMessages, MalformedMessagesRejected) {
    EXPECT_EQ(error_receiving({'X', 'I', 'M', 'C', 1, 0, 0, 0}),
              "migration control: wrong magic (not a control message)");
    EXPECT_EQ(error_receiving({'V', 'I', 'M', 'C', 9, 0, 0, 0}), "migration control: unknown message kind 9");
    EXPECT_EQ(error_receiving({'V', 'I', 'M', 'C', 1, 0, 1, 0}),
              "migration control: text length 1 is not allowed");
    EXPECT_EQ(error_receiving({'V', 'I', 'M', 'C', 4, 0, 0xff, 0xff}),
              "migration control: text length 65535 is not allowed");
}

TEST_F(ControlMessages, MessageCutShortRejected) {
    const std::vector<std::uint8_t> raw = {'V', 'I', 'M', 'C', 4, 0, 5, 0, 'a', 'b'};
    ASSERT_EQ(::write(far.get(), raw.data(), raw.size()), static_cast<ssize_t>(raw.size()));
    far.reset();
    EXPECT_THROW(
        {
            try {
                receive_control(near.get(), std::chrono::seconds(1));
            } catch (const StreamError& error) {
                EXPECT_STREQ(error.what(), "migration control: the connection closed mid-message");
                throw;
            }
        },
        StreamError);
}

}  // namespace
