#include "migration/stream.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstring>

#include "migration/pages.h"
#include "vmm/sys/error.h"

namespace vim::migration {
namespace sys = vmm::sys;

namespace {

// Drops the first `done` bytes of `parts`, after a short vectored write or read.
void consume(std::span<iovec>& parts, std::size_t done) {
    while (!parts.empty() && done >= parts.front().iov_len) {
        done -= parts.front().iov_len;
        parts = parts.subspan(1);
    }
    if (done > 0) {
        parts.front().iov_base = static_cast<std::uint8_t*>(parts.front().iov_base) + done;
        parts.front().iov_len -= done;
    }
}

// The stream's integers are little-endian; so is every host this runs on.
static_assert(std::endian::native == std::endian::little);

constexpr char kMagic[8] = {'V', 'I', 'M', 'M', 'I', 'G', 'R', 'T'};
constexpr std::uint32_t kControlMagic = 0x434d4956;  // "VIMC"

template <typename T>
void put(std::uint8_t* out, T value) {
    std::memcpy(out, &value, sizeof(T));
}

template <typename T>
T get(const std::uint8_t* in) {
    T value;
    std::memcpy(&value, in, sizeof(T));
    return value;
}

std::uint64_t max_payload(SectionType type) {
    switch (type) {
    case SectionType::Config:
    case SectionType::MemoryLayout:
    case SectionType::State:
        return kMaxMetadataSection;
    case SectionType::Pages:
        return kMaxPagesPayload;
    case SectionType::End:
    case SectionType::Sync:
        return 0;
    }
    return 0;
}

bool known_type(std::uint32_t type) {
    return type >= static_cast<std::uint32_t>(SectionType::Config) &&
           type <= static_cast<std::uint32_t>(SectionType::Sync);
}

// Reads `length` bytes before `deadline`; false if the peer closed first.
bool read_before(int socket, std::uint8_t* out, std::size_t length,
                 std::chrono::steady_clock::time_point deadline) {
    while (length > 0) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        pollfd readable{.fd = socket, .events = POLLIN, .revents = 0};
        const int ready = ::poll(&readable, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready < 0) {
            sys::throw_errno("migration control: poll");
        }
        if (ready == 0) {
            throw StreamError("migration control: no message within the time limit");
        }
        const ssize_t got = ::recv(socket, out, length, 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            sys::throw_errno("migration control: receive");
        }
        if (got == 0) {
            return false;
        }
        out += got;
        length -= static_cast<std::size_t>(got);
    }
    return true;
}

}  // namespace

std::string_view section_name(SectionType type) {
    switch (type) {
    case SectionType::Config:
        return "config";
    case SectionType::MemoryLayout:
        return "memory layout";
    case SectionType::Pages:
        return "pages";
    case SectionType::State:
        return "state";
    case SectionType::End:
        return "end";
    case SectionType::Sync:
        return "sync";
    }
    return "unknown";
}

std::uint64_t checksum(std::span<const std::uint8_t> bytes) { return XXH64(bytes.data(), bytes.size(), 0); }

StreamWriter::StreamWriter(int fd) : fd_(fd) {
    struct stat status {};
    if (::fstat(fd, &status) != 0) {
        sys::throw_errno("migration stream: stat the output");
    }
    socket_ = S_ISSOCK(status.st_mode);
}

void StreamWriter::write_header() {
    std::array<std::uint8_t, kStreamHeaderSize> header{};
    std::memcpy(header.data(), kMagic, sizeof kMagic);
    put<std::uint32_t>(header.data() + 8, kStreamVersion);
    put<std::uint32_t>(header.data() + 12, 0);
    iovec part{header.data(), header.size()};
    write_all({&part, 1});
}

void StreamWriter::write_section(SectionType type, std::span<const std::uint8_t> payload) {
    const iovec part{const_cast<std::uint8_t*>(payload.data()), payload.size()};
    write_section(type, checksum(payload), {&part, 1});
}

void StreamWriter::write_section(SectionType type, std::uint64_t payload_checksum,
                                 std::span<const iovec> parts) {
    std::array<std::uint8_t, kSectionHeaderSize> header{};
    std::uint64_t length = 0;
    for (const iovec& part : parts) {
        length += part.iov_len;
    }
    put<std::uint32_t>(header.data(), static_cast<std::uint32_t>(type));
    put<std::uint32_t>(header.data() + 4, 0);
    put<std::uint64_t>(header.data() + 8, length);
    put<std::uint64_t>(header.data() + 16, payload_checksum);
    std::vector<iovec> all;
    all.reserve(parts.size() + 1);
    all.push_back({header.data(), header.size()});
    all.insert(all.end(), parts.begin(), parts.end());
    write_all(all);
}

void StreamWriter::write_all(std::span<iovec> parts) {
    while (!parts.empty()) {
        const int count = static_cast<int>(std::min<std::size_t>(parts.size(), IOV_MAX));
        ssize_t written;
        if (socket_) {
            // MSG_NOSIGNAL: a destination that went away is an error to
            // report, not a SIGPIPE that kills the source VM.
            msghdr message{};
            message.msg_iov = parts.data();
            message.msg_iovlen = static_cast<std::size_t>(count);
            written = ::sendmsg(fd_, &message, MSG_NOSIGNAL);
        } else {
            written = ::writev(fd_, parts.data(), count);
        }
        if (written < 0 && errno == EINTR) {
            continue;
        }
        if (written < 0) {
            sys::throw_errno("migration stream: write");
        }
        bytes_written_ += static_cast<std::uint64_t>(written);
        consume(parts, static_cast<std::size_t>(written));
    }
}

void StreamReader::read_header() {
    std::array<std::uint8_t, kStreamHeaderSize> header{};
    iovec part{header.data(), header.size()};
    read_raw({&part, 1}, "header");
    if (std::memcmp(header.data(), kMagic, sizeof kMagic) != 0) {
        throw StreamError("migration stream: header: wrong magic (not a migration stream)");
    }
    const auto version = get<std::uint32_t>(header.data() + 8);
    if (version != kStreamVersion) {
        throw StreamError("migration stream: header: version " + std::to_string(version) +
                          " is not supported (this side reads version " + std::to_string(kStreamVersion) +
                          ")");
    }
    if (get<std::uint32_t>(header.data() + 12) != 0) {
        throw StreamError("migration stream: header: unknown flags");
    }
}

SectionHeader StreamReader::next_section() {
    std::array<std::uint8_t, kSectionHeaderSize> header{};
    iovec part{header.data(), header.size()};
    SectionHeader section{.type = SectionType::Config, .length = 0, .checksum = 0, .number = ++sections_};
    read_raw({&part, 1}, "section " + std::to_string(section.number));
    const auto type = get<std::uint32_t>(header.data());
    if (!known_type(type)) {
        throw StreamError("migration stream: section " + std::to_string(section.number) + ": unknown type " +
                          std::to_string(type));
    }
    section.type = static_cast<SectionType>(type);
    section.length = get<std::uint64_t>(header.data() + 8);
    section.checksum = get<std::uint64_t>(header.data() + 16);
    if (get<std::uint32_t>(header.data() + 4) != 0) {
        fail(section, "reserved field is not zero");
    }
    if (section.length > max_payload(section.type)) {
        fail(section, "length " + std::to_string(section.length) + " is over the limit of " +
                          std::to_string(max_payload(section.type)));
    }
    return section;
}

std::vector<std::uint8_t> StreamReader::read_payload(const SectionHeader& section) {
    std::vector<std::uint8_t> payload(section.length);
    iovec part{payload.data(), payload.size()};
    read_exact(section, {&part, 1});
    if (checksum(payload) != section.checksum) {
        fail(section, "checksum mismatch");
    }
    return payload;
}

std::vector<std::uint8_t> StreamReader::read_expected(SectionType type) {
    const SectionHeader section = next_section();
    if (section.type != type) {
        fail(section, "expected a " + std::string(section_name(type)) + " section");
    }
    return read_payload(section);
}

void StreamReader::read_exact(const SectionHeader& section, std::span<iovec> parts) {
    read_raw(parts, "section " + std::to_string(section.number) + " (" +
                        std::string(section_name(section.type)) + ")");
}

void StreamReader::read_raw(std::span<iovec> parts, const std::string& where) {
    for (;;) {
        // An empty part would read as the end of the stream.
        while (!parts.empty() && parts.front().iov_len == 0) {
            parts = parts.subspan(1);
        }
        if (parts.empty()) {
            return;
        }
        const int count = static_cast<int>(std::min<std::size_t>(parts.size(), IOV_MAX));
        const ssize_t got = ::readv(fd_, parts.data(), count);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            sys::throw_errno("migration stream: " + where + ": read");
        }
        if (got == 0) {
            throw StreamError("migration stream: " + where + ": truncated (the stream ended)");
        }
        consume(parts, static_cast<std::size_t>(got));
    }
}

void StreamReader::fail(const SectionHeader& section, const std::string& problem) const {
    throw StreamError("migration stream: section " + std::to_string(section.number) + " (" +
                      std::string(section_name(section.type)) + "): " + problem);
}

std::vector<std::uint8_t> encode_memory_layout(const vmm::memory::GuestMemory& memory) {
    std::vector<std::uint8_t> payload(memory.regions().size() * 16);
    std::uint8_t* out = payload.data();
    for (const vmm::memory::Region& region : memory.regions()) {
        put<std::uint64_t>(out, region.start);
        put<std::uint64_t>(out + 8, region.size);
        out += 16;
    }
    return payload;
}

std::vector<vmm::memory::RegionLayout> decode_memory_layout(std::span<const std::uint8_t> payload) {
    if (payload.empty() || payload.size() % 16 != 0) {
        throw StreamError("migration stream: memory layout of " + std::to_string(payload.size()) +
                          " bytes is not a list of regions");
    }
    std::vector<vmm::memory::RegionLayout> layout;
    for (std::size_t offset = 0; offset < payload.size(); offset += 16) {
        const auto start = get<std::uint64_t>(payload.data() + offset);
        const auto size = get<std::uint64_t>(payload.data() + offset + 8);
        const bool after_previous = layout.empty() || start >= layout.back().start + layout.back().size;
        if (size == 0 || start % vmm::memory::kPageSize != 0 || size % vmm::memory::kPageSize != 0 ||
            start + size < start || !after_previous) {
            throw StreamError("migration stream: memory layout: region " + std::to_string(offset / 16) +
                              " is empty, not page-aligned, or overlaps or precedes another");
        }
        layout.push_back({start, size});
    }
    return layout;
}

void send_control(int socket, ControlKind kind, std::string_view text) {
    text = text.substr(0, kMaxControlText);
    std::vector<std::uint8_t> message(8 + text.size());
    put<std::uint32_t>(message.data(), kControlMagic);
    put<std::uint16_t>(message.data() + 4, static_cast<std::uint16_t>(kind));
    put<std::uint16_t>(message.data() + 6, static_cast<std::uint16_t>(text.size()));
    std::copy(text.begin(), text.end(), message.begin() + 8);
    std::size_t sent = 0;
    while (sent < message.size()) {
        const ssize_t done = ::send(socket, message.data() + sent, message.size() - sent, MSG_NOSIGNAL);
        if (done < 0 && errno == EINTR) {
            continue;
        }
        if (done < 0) {
            sys::throw_errno("migration control: send");
        }
        sent += static_cast<std::size_t>(done);
    }
}

ControlMessage receive_control(int socket, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::array<std::uint8_t, 8> header{};
    if (!read_before(socket, header.data(), header.size(), deadline)) {
        throw StreamError("migration control: the connection closed");
    }
    const auto kind = get<std::uint16_t>(header.data() + 4);
    const auto length = get<std::uint16_t>(header.data() + 6);
    if (get<std::uint32_t>(header.data()) != kControlMagic) {
        throw StreamError("migration control: wrong magic (not a control message)");
    }
    if (kind < static_cast<std::uint16_t>(ControlKind::Ready) ||
        kind > static_cast<std::uint16_t>(ControlKind::Synced)) {
        throw StreamError("migration control: unknown message kind " + std::to_string(kind));
    }
    const bool carries_text = static_cast<ControlKind>(kind) == ControlKind::Error;
    if (length > kMaxControlText || (!carries_text && length != 0)) {
        throw StreamError("migration control: text length " + std::to_string(length) + " is not allowed");
    }
    ControlMessage message{static_cast<ControlKind>(kind), std::string(length, '\0')};
    if (!read_before(socket, reinterpret_cast<std::uint8_t*>(message.text.data()), length, deadline)) {
        throw StreamError("migration control: the connection closed mid-message");
    }
    return message;
}

}  // namespace vim::migration
