/* netblast: moves bytes over TCP and checks that they arrived intact; the
 * same program runs in the guest and on the host, so a network test or
 * benchmark has one tool on both ends.
 *
 *   netblast serve PORT              answer clients, one at a time, for ever
 *   netblast send HOST PORT BYTES    send BYTES to the server
 *   netblast recv HOST PORT BYTES    have the server send BYTES
 *
 * A client opens with one command byte ('R': the server receives, 'S': it
 * sends) and the length (8 bytes, little-endian). The data is a fixed
 * pseudo-random stream; whoever sent it follows with its checksum (the
 * server, when receiving, answers with the checksum of what it got), and the
 * client compares. The client prints
 *   netblast: sent|received BYTES bytes in SECONDS s, MBPS Mbit/s, checksum HEX ok|MISMATCH
 * and exits 0 only when the checksums match. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { kChunk = 256 * 1024 };

static unsigned char buffer[kChunk];

static void die(const char* what) {
    fprintf(stderr, "netblast: %s: %s\n", what, strerror(errno));
    exit(2);
}

struct stream {
    uint64_t state;     /* xorshift64 */
    uint64_t checksum;  /* FNV-1a 64 */
};

static void stream_start(struct stream* stream) {
    stream->state = 0x9e3779b97f4a7c15ull;
    stream->checksum = 0xcbf29ce484222325ull;
}

static void stream_fill(struct stream* stream, unsigned char* bytes, size_t length) {
    for (size_t index = 0; index < length; index += 8) {
        stream->state ^= stream->state << 13;
        stream->state ^= stream->state >> 7;
        stream->state ^= stream->state << 17;
        size_t piece = length - index < 8 ? length - index : 8;
        memcpy(bytes + index, &stream->state, piece);
    }
}

/* FNV-1a over 8-byte words (the last one zero-padded), so that the check
 * costs less than the network it checks. Both ends cut the stream into the
 * same pieces. */
static void stream_sum(struct stream* stream, const unsigned char* bytes, size_t length) {
    for (size_t index = 0; index < length; index += 8) {
        uint64_t word = 0;
        memcpy(&word, bytes + index, length - index < 8 ? length - index : 8);
        stream->checksum = (stream->checksum ^ word) * 0x100000001b3ull;
    }
}

static void write_all(int fd, const void* data, size_t length) {
    const unsigned char* bytes = data;
    while (length > 0) {
        ssize_t done = write(fd, bytes, length);
        if (done < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("write");
        }
        bytes += done;
        length -= (size_t)done;
    }
}

/* Reads exactly `length` bytes; 0 when the peer closed first. */
static int read_all(int fd, void* data, size_t length) {
    unsigned char* bytes = data;
    while (length > 0) {
        ssize_t done = read(fd, bytes, length);
        if (done < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("read");
        }
        if (done == 0) {
            return 0;
        }
        bytes += done;
        length -= (size_t)done;
    }
    return 1;
}

static uint64_t send_stream(int fd, uint64_t length) {
    struct stream stream;
    stream_start(&stream);
    while (length > 0) {
        size_t piece = length < kChunk ? (size_t)length : kChunk;
        stream_fill(&stream, buffer, piece);
        stream_sum(&stream, buffer, piece);
        write_all(fd, buffer, piece);
        length -= piece;
    }
    return stream.checksum;
}

/* The checksum of what arrived; exits when the peer closed early. */
static uint64_t receive_stream(int fd, uint64_t length) {
    struct stream stream;
    stream_start(&stream);
    while (length > 0) {
        size_t piece = length < kChunk ? (size_t)length : kChunk;
        if (!read_all(fd, buffer, piece)) {
            fprintf(stderr, "netblast: the peer closed with %llu bytes to go\n", (unsigned long long)length);
            exit(1);
        }
        stream_sum(&stream, buffer, piece);
        length -= piece;
    }
    return stream.checksum;
}

static double now_seconds(void) {
    struct timespec time;
    clock_gettime(CLOCK_MONOTONIC, &time);
    return (double)time.tv_sec + (double)time.tv_nsec / 1e9;
}

static uint16_t parse_port(const char* text) {
    char* end;
    long port = strtol(text, &end, 10);
    if (*end != '\0' || port <= 0 || port > 65535) {
        fprintf(stderr, "netblast: bad port %s\n", text);
        exit(2);
    }
    return (uint16_t)port;
}

static _Noreturn void serve(uint16_t port) {
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0) {
        die("socket");
    }
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(listener, (struct sockaddr*)&address, sizeof address) < 0) {
        die("bind");
    }
    if (listen(listener, 8) < 0) {
        die("listen");
    }
    printf("netblast: serving on port %u\n", port);
    fflush(stdout);
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            die("accept");
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        unsigned char header[9];
        if (read_all(fd, header, sizeof header)) {
            uint64_t length;
            memcpy(&length, header + 1, sizeof length);
            uint64_t checksum = 0;
            if (header[0] == 'R') {
                checksum = receive_stream(fd, length);
                write_all(fd, &checksum, sizeof checksum);
            } else if (header[0] == 'S') {
                checksum = send_stream(fd, length);
                write_all(fd, &checksum, sizeof checksum);
            }
            printf("netblast: served '%c' %llu bytes, checksum %016llx\n", header[0], (unsigned long long)length,
                   (unsigned long long)checksum);
            fflush(stdout);
        }
        close(fd);
    }
}

static int client(int sending, const char* host, uint16_t port, const char* bytes_text) {
    char* end;
    unsigned long long length = strtoull(bytes_text, &end, 10);
    if (*end != '\0') {
        fprintf(stderr, "netblast: bad byte count %s\n", bytes_text);
        return 2;
    }
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &address.sin_addr) != 1) {
        fprintf(stderr, "netblast: bad IPv4 address %s\n", host);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        die("socket");
    }
    if (connect(fd, (struct sockaddr*)&address, sizeof address) < 0) {
        die("connect");
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    unsigned char header[9] = {sending ? 'R' : 'S'};
    uint64_t length64 = length;
    memcpy(header + 1, &length64, sizeof length64);
    double start = now_seconds();
    write_all(fd, header, sizeof header);
    uint64_t ours = sending ? send_stream(fd, length) : receive_stream(fd, length);
    uint64_t theirs;
    if (!read_all(fd, &theirs, sizeof theirs)) {
        fprintf(stderr, "netblast: the server closed before its checksum\n");
        return 1;
    }
    double seconds = now_seconds() - start;
    close(fd);
    printf("netblast: %s %llu bytes in %.3f s, %.1f Mbit/s, checksum %016llx %s\n", sending ? "sent" : "received",
           length, seconds, (double)length * 8 / seconds / 1e6, (unsigned long long)ours,
           ours == theirs ? "ok" : "MISMATCH");
    return ours == theirs ? 0 : 1;
}

int main(int argc, char** argv) {
    if (argc == 3 && strcmp(argv[1], "serve") == 0) {
        serve(parse_port(argv[2]));
    }
    if (argc == 5 && (strcmp(argv[1], "send") == 0 || strcmp(argv[1], "recv") == 0)) {
        return client(strcmp(argv[1], "send") == 0, argv[2], parse_port(argv[3]), argv[4]);
    }
    fprintf(stderr, "usage: netblast serve PORT | send HOST PORT BYTES | recv HOST PORT BYTES\n");
    return 2;
}
