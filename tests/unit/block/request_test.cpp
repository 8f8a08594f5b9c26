// decode_request() on chains laid out by hand: where it finds the header, the
// data and the status byte, and every check a guest's request must pass.
#include "vmm/virtio/block/request.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <span>
#include <string_view>
#include <vector>

#include "request_bytes.h"
#include "vim/testing/guest_ram.h"

namespace vim::vmm::virtio::block {
namespace {

using ::testing::ElementsAre;
using testing::header_bytes;
using testing::segment_bytes;
using Bytes = std::vector<std::uint8_t>;

constexpr std::uint32_t kUnmap = kSegmentUnmap;

class DecodeRequestTest : public ::testing::Test {
protected:
    static constexpr memory::GuestAddress kRam = 0x10000;
    static constexpr std::uint64_t kCapacity = 1000;

    // A buffer holding `bytes`, after a gap from the last one.
    GuestBuffer place(std::span<const std::uint8_t> bytes) {
        const GuestBuffer buffer{next_free_, static_cast<std::uint32_t>(bytes.size())};
        ram_.memory().write(buffer.address, bytes);
        next_free_ += bytes.size() + 64;
        return buffer;
    }

    GuestBuffer room(std::uint32_t length) {
        const GuestBuffer buffer{next_free_, length};
        next_free_ += length + 64;
        return buffer;
    }

    // `bytes` in buffers of the given lengths, one after the other.
    std::vector<GuestBuffer> place_split(const Bytes& bytes, std::initializer_list<std::size_t> lengths) {
        std::vector<GuestBuffer> buffers;
        std::size_t done = 0;
        for (std::size_t length : lengths) {
            buffers.push_back(place(std::span(bytes).subspan(done, length)));
            done += length;
        }
        EXPECT_EQ(done, bytes.size());
        return buffers;
    }

    // header + payload in one readable buffer, then writable buffers of `writable` lengths.
    DescriptorChain chain(const Bytes& readable, std::initializer_list<std::uint32_t> writable = {1}) {
        DescriptorChain result;
        if (!readable.empty()) {
            result.readable.push_back(place(readable));
        }
        for (std::uint32_t length : writable) {
            result.writable.push_back(room(length));
        }
        return result;
    }

    DecodedRequest decode(const DescriptorChain& chain) const {
        return decode_request(chain, ram_.memory(), limits);
    }

    static Bytes joined(Bytes first, const Bytes& second) {
        first.insert(first.end(), second.begin(), second.end());
        return first;
    }

    DiskLimits limits{
        .capacity_sectors = kCapacity,
        .read_only = false,
        .discard = true,
        .write_zeroes = true,
        .max_discard_sectors = 64,
        .max_discard_segments = 3,
        .max_write_zeroes_sectors = 128,
        .max_write_zeroes_segments = 2,
    };

private:
    vim::testing::GuestRam ram_{kRam, 0x40000};
    memory::GuestAddress next_free_ = kRam;
};

BlockRequest accepted(const DecodedRequest& decoded) {
    if (const auto* refused = std::get_if<RefusedRequest>(&decoded)) {
        throw std::runtime_error("refused: " + std::string(refused->reason));
    }
    return std::get<BlockRequest>(decoded);
}

void expect_refused(const DecodedRequest& decoded, Status status, std::string_view reason) {
    const auto* refused = std::get_if<RefusedRequest>(&decoded);
    ASSERT_NE(refused, nullptr) << "the request was not refused";
    EXPECT_EQ(refused->status, status);
    EXPECT_EQ(refused->reason, reason);
}

TEST_F(DecodeRequestTest, ReadsAHeaderSplitAcrossBuffersAndTheDataBeforeTheStatusByte) {
    DescriptorChain read;
    read.readable = place_split(header_bytes(RequestType::In, 7), {3, 12, 1});
    read.writable = {room(512), room(1024), room(1)};
    const BlockRequest request = accepted(decode(read));
    EXPECT_EQ(request.type, RequestType::In);
    EXPECT_EQ(request.sector, 7u);
    EXPECT_EQ(request.data_length, 1536u);
    EXPECT_THAT(request.data, ElementsAre(read.writable[0], read.writable[1]));
}

TEST_F(DecodeRequestTest, LeavesTheStatusByteOutOfTheLastDataBuffer) {
    const DescriptorChain read = chain(header_bytes(RequestType::In, 1), {1024, 513});
    const BlockRequest request = accepted(decode(read));
    EXPECT_EQ(request.data_length, 1536u);
    EXPECT_THAT(request.data, ElementsAre(read.writable[0], GuestBuffer{read.writable[1].address, 512}));
}

TEST_F(DecodeRequestTest, TakesWriteDataFromAfterTheHeaderWhereverTheBuffersSplit) {
    // The header ends 6 bytes into the second buffer, which goes on with data.
    DescriptorChain write;
    write.readable =
        place_split(joined(header_bytes(RequestType::Out, 9), Bytes(1024, 0xab)), {10, 518, 512});
    write.writable = {room(1)};
    const BlockRequest request = accepted(decode(write));
    EXPECT_EQ(request.type, RequestType::Out);
    EXPECT_EQ(request.sector, 9u);
    EXPECT_EQ(request.data_length, 1024u);
    EXPECT_THAT(request.data,
                ElementsAre(GuestBuffer{write.readable[1].address + 6, 512}, write.readable[2]));
}

TEST_F(DecodeRequestTest, AcceptsAnEmptyTransfer) {
    const BlockRequest request = accepted(decode(chain(header_bytes(RequestType::In, kCapacity))));
    EXPECT_EQ(request.data_length, 0u);
    EXPECT_TRUE(request.data.empty());
}

TEST_F(DecodeRequestTest, AChainWithoutAWritableByteCannotBeAnswered) {
    EXPECT_TRUE(std::holds_alternative<UnanswerableChain>(
        decode(chain(joined(header_bytes(RequestType::Out), Bytes(512)), {}))));
    EXPECT_TRUE(std::holds_alternative<UnanswerableChain>(decode(chain({}, {}))));
}

TEST_F(DecodeRequestTest, RefusesAShortHeader) {
    expect_refused(decode(chain(Bytes(15))), Status::IoError, "request header shorter than 16 bytes");
    expect_refused(decode(chain({}, {600})), Status::IoError, "request header shorter than 16 bytes");
}

TEST_F(DecodeRequestTest, RefusesDataInTheWrongDirection) {
    expect_refused(decode(chain(joined(header_bytes(RequestType::In), Bytes(512)), {513})), Status::IoError,
                   "a read with device-readable data");
    expect_refused(decode(chain(joined(header_bytes(RequestType::Out), Bytes(512)), {512, 1})),
                   Status::IoError, "a write with device-writable data");
}

TEST_F(DecodeRequestTest, RefusesALengthThatIsNotWholeSectors) {
    expect_refused(decode(chain(header_bytes(RequestType::In), {100, 1})), Status::IoError,
                   "data length not a multiple of 512");
    expect_refused(decode(chain(joined(header_bytes(RequestType::Out), Bytes(513)))), Status::IoError,
                   "data length not a multiple of 512");
}

TEST_F(DecodeRequestTest, RefusesSectorsPastTheEndOfTheDiskWithoutOverflowing) {
    EXPECT_NO_THROW(accepted(decode(chain(header_bytes(RequestType::In, kCapacity - 2), {1024, 1}))));
    for (const std::uint64_t sector : {kCapacity - 1, kCapacity, kCapacity + 1, std::uint64_t{1} << 55,
                                       std::numeric_limits<std::uint64_t>::max()}) {
        SCOPED_TRACE(sector);
        expect_refused(decode(chain(header_bytes(RequestType::In, sector), {1024, 1})), Status::IoError,
                       "sectors past the end of the disk");
        expect_refused(decode(chain(joined(header_bytes(RequestType::Out, sector), Bytes(1024)))),
                       Status::IoError, "sectors past the end of the disk");
    }
}

TEST_F(DecodeRequestTest, AReadOnlyDiskRefusesEveryWriteButServesReads) {
    limits.read_only = true;
    expect_refused(decode(chain(joined(header_bytes(RequestType::Out), Bytes(512)))), Status::IoError,
                   "a write to a read-only disk");
    expect_refused(decode(chain(joined(header_bytes(RequestType::Discard), segment_bytes({{0, 8, 0}})))),
                   Status::IoError, "a discard or write zeroes on a read-only disk");
    expect_refused(decode(chain(joined(header_bytes(RequestType::WriteZeroes), segment_bytes({{0, 8, 0}})))),
                   Status::IoError, "a discard or write zeroes on a read-only disk");
    EXPECT_NO_THROW(accepted(decode(chain(header_bytes(RequestType::In), {512, 1}))));
    EXPECT_NO_THROW(accepted(decode(chain(header_bytes(RequestType::Flush)))));
    EXPECT_NO_THROW(accepted(decode(chain(header_bytes(RequestType::GetId), {20, 1}))));
}

TEST_F(DecodeRequestTest, AnswersUnknownTypesUnsupported) {
    for (const std::uint32_t type :
         {2u, 3u, 10u /* GET_LIFETIME */, 14u /* SECURE_ERASE */, 0x80000000u, 0xffffffffu}) {
        SCOPED_TRACE(type);
        expect_refused(decode(chain(header_bytes(type), {512, 1})), Status::Unsupported,
                       "unknown request type");
    }
}

TEST_F(DecodeRequestTest, AFlushIgnoresBuffersItDoesNotNeed) {
    const BlockRequest request =
        accepted(decode(chain(joined(header_bytes(RequestType::Flush, 5), Bytes(8)), {16, 1})));
    EXPECT_EQ(request.type, RequestType::Flush);
    EXPECT_TRUE(request.data.empty());
}

TEST_F(DecodeRequestTest, GetIdWritesAtMostTwentyBytesBeforeTheStatus) {
    const DescriptorChain roomy = chain(header_bytes(RequestType::GetId), {64, 1});
    const BlockRequest request = accepted(decode(roomy));
    EXPECT_EQ(request.data_length, kIdBytes);
    EXPECT_THAT(request.data, ElementsAre(GuestBuffer{roomy.writable[0].address, 20}));

    const DescriptorChain tight = chain(header_bytes(RequestType::GetId), {4, 4});
    EXPECT_EQ(accepted(decode(tight)).data_length, 7u);
    expect_refused(decode(chain(header_bytes(RequestType::GetId))), Status::IoError,
                   "GET_ID without room for the ID");
}

TEST_F(DecodeRequestTest, ReadsDiscardSegmentsSplitAcrossBuffersAndDropsEmptyOnes) {
    DescriptorChain discard;
    const Bytes bytes = joined(header_bytes(RequestType::Discard),
                               segment_bytes({{100, 64, 0}, {0, 0, 0}, {kCapacity - 8, 8, 0}}));
    discard.readable = place_split(bytes, {20, 7, 37});
    discard.writable = {room(1)};
    const BlockRequest request = accepted(decode(discard));
    EXPECT_EQ(request.type, RequestType::Discard);
    EXPECT_THAT(request.ranges,
                ElementsAre(SectorRange{100, 64, false}, SectorRange{kCapacity - 8, 8, false}));
}

TEST_F(DecodeRequestTest, WriteZeroesKeepsTheUnmapFlag) {
    const BlockRequest request = accepted(decode(
        chain(joined(header_bytes(RequestType::WriteZeroes), segment_bytes({{0, 128, kUnmap}, {8, 1, 0}})))));
    EXPECT_THAT(request.ranges, ElementsAre(SectorRange{0, 128, true}, SectorRange{8, 1, false}));
}

TEST_F(DecodeRequestTest, RefusesRangesThatBreakTheRulesOrTheAdvertisedLimits) {
    const auto discard = [&](const Bytes& table) {
        return decode(chain(joined(header_bytes(RequestType::Discard), table)));
    };
    const auto write_zeroes = [&](const Bytes& table) {
        return decode(chain(joined(header_bytes(RequestType::WriteZeroes), table)));
    };
    expect_refused(discard({}), Status::IoError, "range table not a whole number of segments");
    expect_refused(discard(Bytes(24)), Status::IoError, "range table not a whole number of segments");
    expect_refused(discard(segment_bytes({{0, 1, 0}, {1, 1, 0}, {2, 1, 0}, {3, 1, 0}})), Status::IoError,
                   "more segments than advertised");
    expect_refused(write_zeroes(segment_bytes({{0, 1, 0}, {1, 1, 0}, {2, 1, 0}})), Status::IoError,
                   "more segments than advertised");
    expect_refused(discard(segment_bytes({{0, 65, 0}})), Status::IoError, "a segment longer than advertised");
    expect_refused(write_zeroes(segment_bytes({{0, 129, 0}})), Status::IoError,
                   "a segment longer than advertised");
    expect_refused(discard(segment_bytes({{0, 8, 0}, {kCapacity - 7, 8, 0}})), Status::IoError,
                   "sectors past the end of the disk");
    expect_refused(write_zeroes(segment_bytes({{std::numeric_limits<std::uint64_t>::max(), 8, 0}})),
                   Status::IoError, "sectors past the end of the disk");
    expect_refused(discard(segment_bytes({{0, 8, kUnmap}})), Status::Unsupported,
                   "the unmap flag on a discard");
    expect_refused(discard(segment_bytes({{0, 8, 2}})), Status::Unsupported, "unknown segment flags");
    expect_refused(write_zeroes(segment_bytes({{0, 8, kUnmap | 0x80000000u}})), Status::Unsupported,
                   "unknown segment flags");
}

TEST_F(DecodeRequestTest, DiscardAndWriteZeroesNeedTheirFeatures) {
    limits.discard = false;
    limits.write_zeroes = false;
    expect_refused(decode(chain(joined(header_bytes(RequestType::Discard), segment_bytes({{0, 8, 0}})))),
                   Status::Unsupported, "DISCARD not negotiated");
    expect_refused(decode(chain(joined(header_bytes(RequestType::WriteZeroes), segment_bytes({{0, 8, 0}})))),
                   Status::Unsupported, "WRITE_ZEROES not negotiated");
}

}  // namespace
}  // namespace vim::vmm::virtio::block
