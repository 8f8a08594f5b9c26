#pragma once

// The migration stream, shared by live migration (over TCP) and snapshots (a
// file). Every integer is little-endian.
//
//   header:  "VIMMIGRT" (8 bytes), u32 version, u32 flags (0)
//   section: u32 type, u32 reserved (0), u64 payload length, u64 XXH64 of
//            the payload (seed 0), then the payload
//
// XXH64 rather than XXH3: as fast on hardware, and plain integer code, where
// XXH3's vector code costs twenty times as much under an emulated CPU (the
// nested test sandbox; QEMU's TCG).
//
// Sections in order: Config (the VM's configuration, JSON text),
// MemoryLayout (u64 start, u64 size per guest RAM region), any number of
// Pages (see pages.h) and Sync (empty: a live migration's destination answers
// it with Synced once it has taken in everything before it), State (the
// machine state, CBOR), End (empty). The
// reader rejects a wrong magic or version, an unknown type, a length over the
// type's cap, a checksum mismatch and a stream that ends mid-section, with a
// message naming the section: "migration stream: section 3 (pages): checksum
// mismatch".
//
// On a live migration the destination answers on the same socket with
// control messages (u32 magic "VIMC", u16 kind, u16 text length, text), and
// the source sends one of its own, Go; see source.h for the handshake.

#include <sys/uio.h>

#include <chrono>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/memory/guest_memory.h"

namespace vim::migration {

// A stream or control message that is malformed, truncated or unexpected.
class StreamError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

inline constexpr std::uint32_t kStreamVersion = 2;
inline constexpr std::size_t kStreamHeaderSize = 16;
inline constexpr std::size_t kSectionHeaderSize = 24;
// Config, layout and state are small; a larger length is a corrupt stream,
// not a reason to allocate.
inline constexpr std::uint64_t kMaxMetadataSection = 64ull << 20;

enum class SectionType : std::uint32_t {
    Config = 1,
    MemoryLayout = 2,
    Pages = 3,
    State = 4,
    End = 5,
    Sync = 6
};

std::string_view section_name(SectionType type);

// Writes the stream to a socket or a file. Every write goes out whole or throws.
class StreamWriter {
public:
    explicit StreamWriter(int fd);

    void write_header();
    void write_section(SectionType type, std::span<const std::uint8_t> payload);
    // A section whose payload is `parts` one after the other, `checksum` being
    // theirs: written with one vectored write, the parts not copied.
    void write_section(SectionType type, std::uint64_t checksum, std::span<const iovec> parts);

    std::uint64_t bytes_written() const noexcept { return bytes_written_; }

private:
    void write_all(std::span<iovec> parts);

    int fd_;
    bool socket_;
    std::uint64_t bytes_written_ = 0;
};

struct SectionHeader {
    SectionType type;
    std::uint64_t length;
    std::uint64_t checksum;
    std::uint32_t number;  // 1 for the first section after the header, for messages
};

class StreamReader {
public:
    explicit StreamReader(int fd) : fd_(fd) {}

    void read_header();
    // The next section's header, its type known and its length within the cap.
    SectionHeader next_section();
    // The payload of a section other than Pages, its checksum verified.
    std::vector<std::uint8_t> read_payload(const SectionHeader& section);
    // Fills `parts` from the stream, or throws naming `section`.
    void read_exact(const SectionHeader& section, std::span<iovec> parts);
    // A section of type `type`, as next_section() + read_payload(), or throws.
    std::vector<std::uint8_t> read_expected(SectionType type);

    [[noreturn]] void fail(const SectionHeader& section, const std::string& problem) const;

private:
    // Fills `parts`; `where` names the place in errors ("section 3 (pages)").
    void read_raw(std::span<iovec> parts, const std::string& where);

    int fd_;
    std::uint32_t sections_ = 0;
};

std::uint64_t checksum(std::span<const std::uint8_t> bytes);

std::vector<std::uint8_t> encode_memory_layout(const vmm::memory::GuestMemory& memory);
// Throws StreamError if the payload is not a well-formed, page-aligned,
// non-overlapping layout.
std::vector<vmm::memory::RegionLayout> decode_memory_layout(std::span<const std::uint8_t> payload);

enum class ControlKind : std::uint16_t { Ready = 1, Go = 2, Running = 3, Error = 4, Synced = 5 };

struct ControlMessage {
    ControlKind kind;
    std::string text;  // only for Error: why the destination rejects the stream
};

inline constexpr std::size_t kMaxControlText = 1024;

// Sends a control message whole; the text is cut to kMaxControlText bytes.
void send_control(int socket, ControlKind kind, std::string_view text = {});
// The next control message, or throws StreamError: none within `timeout`,
// the connection closed, or a malformed message.
ControlMessage receive_control(int socket, std::chrono::milliseconds timeout);

}  // namespace vim::migration
