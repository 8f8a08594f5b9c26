// Guest-side disk throughput and IOPS, for comparing virtio-blk devices
// (bench/vm_compare.py disk):
//
//   blkbench [--device PATH] [--seconds S] [--ops N] [--handshake] JOB...
//
// JOB is PATTERN-SIZE-qdDEPTH: PATTERN randread, randwrite, seqread or
// seqwrite; SIZE in bytes with a k or m suffix (4k, 128k); DEPTH the number
// of requests kept in flight, e.g. randread-4k-qd32 or seqwrite-128k-qd8.
// Each job runs until S seconds (default 5) or N operations, whichever comes
// first, and prints one line:
//
//   blkbench job=randread-4k-qd32 ops=N seconds=S iops=X MBps=Y
//
// The job "none" does no I/O at all: with --handshake it shows what the
// handshake itself costs, which the host subtracts from the other jobs.
//
// MBps counts 10^6 bytes. The device (default /dev/vda) is opened O_DIRECT,
// so every operation reaches the device instead of the guest's page cache.
// Writes overwrite the device: give it a scratch disk.
//
// Requests go through Linux AIO by its raw system calls (the initramfs has
// no libaio): io_submit keeps DEPTH requests in flight from one thread, as
// fio's libaio engine does.
//
// --handshake lets the host read counters around exactly the job: before
// each job blkbench prints "blkbench ready job=NAME" and waits for one byte
// on standard input, after it prints "blkbench done" and waits for another
// byte before printing the result. A terminal on standard input is switched
// to raw input without echo meanwhile, so the host's bytes cause no console
// output inside the measured window, and the done line is the same for
// every job, so that its cost is the same as the "none" job's.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/aio_abi.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEPTH 256
#define MAX_BLOCK_BYTES (16u << 20)
#define SECTOR_BYTES 512u

struct job {
    const char *name;
    int write;
    int random;
    size_t block_bytes;
    unsigned depth;
};

struct limits {
    double seconds;
    uint64_t ops;  // 0: no limit
};

struct result {
    uint64_t ops;
    double seconds;
};

static void die(const char *format, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    fputs("blkbench: ", stderr);
    vfprintf(stderr, format, arguments);
    fputc('\n', stderr);
    va_end(arguments);
    exit(1);
}

static double now_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

// xorshift64*: the same offsets in every run and in every VMM, which a
// comparison needs more than it needs good randomness.
static uint64_t next_random(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545F4914F6CDD1DULL;
}

static void parse_job(const char *name, struct job *job) {
    if (strcmp(name, "none") == 0) {
        *job = (struct job){.name = name};
        return;
    }
    char pattern[16], unit = 0;
    unsigned size = 0, depth = 0;
    int consumed = -1;
    if (sscanf(name, "%15[a-z]-%u%c-qd%u%n", pattern, &size, &unit, &depth, &consumed) != 4 ||
        consumed != (int)strlen(name)) {
        die("job '%s': expected PATTERN-SIZE-qdDEPTH, e.g. randread-4k-qd32", name);
    }
    job->name = name;
    if (strcmp(pattern, "randread") == 0 || strcmp(pattern, "seqread") == 0) {
        job->write = 0;
    } else if (strcmp(pattern, "randwrite") == 0 || strcmp(pattern, "seqwrite") == 0) {
        job->write = 1;
    } else {
        die("job '%s': pattern '%s' is not randread, randwrite, seqread or seqwrite", name, pattern);
    }
    job->random = strncmp(pattern, "rand", 4) == 0;
    uint64_t bytes = size;
    if (unit == 'k') {
        bytes <<= 10;
    } else if (unit == 'm') {
        bytes <<= 20;
    } else {
        die("job '%s': size unit '%c' is not k or m", name, unit);
    }
    if (bytes == 0 || bytes % SECTOR_BYTES != 0 || bytes > MAX_BLOCK_BYTES) {
        die("job '%s': size %" PRIu64 " is not a multiple of %u up to %u", name, bytes, SECTOR_BYTES,
            MAX_BLOCK_BYTES);
    }
    if (depth == 0 || depth > MAX_DEPTH) {
        die("job '%s': depth %u is not between 1 and %d", name, depth, MAX_DEPTH);
    }
    job->block_bytes = (size_t)bytes;
    job->depth = depth;
}

static uint64_t device_bytes(int fd, const char *path) {
    struct stat status;
    if (fstat(fd, &status) != 0) {
        die("stat %s: %s", path, strerror(errno));
    }
    if (S_ISREG(status.st_mode)) {
        return (uint64_t)status.st_size;
    }
    uint64_t bytes = 0;
    if (ioctl(fd, BLKGETSIZE64, &bytes) != 0) {
        die("size of %s (BLKGETSIZE64): %s", path, strerror(errno));
    }
    return bytes;
}

// Set while --handshake holds the terminal raw, so that every way out gives
// the shell back its echo.
static struct termios saved_terminal;
static int terminal_is_raw;

static void restore_terminal(void) {
    if (terminal_is_raw) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_terminal);
    }
}

static void wait_for_host(void) {
    char byte;
    ssize_t count;
    while ((count = read(STDIN_FILENO, &byte, 1)) < 0 && errno == EINTR) {
    }
    if (count != 1) {
        die("--handshake: standard input ended before the host's go-ahead");
    }
}

// The next offset of `job`: uniform over the device's whole blocks, or the
// block after the last, wrapping at the end.
static uint64_t next_offset(const struct job *job, uint64_t blocks, uint64_t *random_state,
                            uint64_t *sequential_block) {
    uint64_t block;
    if (job->random) {
        block = next_random(random_state) % blocks;
    } else {
        block = (*sequential_block)++ % blocks;
    }
    return block * job->block_bytes;
}

static struct result run_job(int fd, const char *path, uint64_t size, const struct job *job,
                             const struct limits *limits) {
    if (job->depth == 0) {  // the job "none"
        return (struct result){0, 0.0};
    }
    const uint64_t blocks = size / job->block_bytes;
    if (blocks == 0) {
        die("job %s: %s holds %" PRIu64 " bytes, less than one block", job->name, path, size);
    }
    aio_context_t context = 0;
    if (syscall(SYS_io_setup, job->depth, &context) != 0) {
        die("job %s: io_setup(%u): %s", job->name, job->depth, strerror(errno));
    }
    static struct iocb requests[MAX_DEPTH];
    static struct iocb *to_submit[MAX_DEPTH];
    static struct io_event events[MAX_DEPTH];
    static void *buffers[MAX_DEPTH];
    uint64_t random_state = 0x9E3779B97F4A7C15ULL, sequential_block = 0;
    for (unsigned slot = 0; slot < job->depth; ++slot) {
        if (posix_memalign(&buffers[slot], 4096, job->block_bytes) != 0) {
            die("job %s: no memory for %u buffers of %zu bytes", job->name, job->depth, job->block_bytes);
        }
        // Bytes that are neither zero nor alike, for writes.
        uint64_t *words = buffers[slot];
        for (size_t i = 0; i < job->block_bytes / sizeof *words; ++i) {
            words[i] = next_random(&random_state);
        }
    }

    uint64_t issued = 0, completed = 0;
    unsigned in_flight = 0, pending = 0;
    int stopping = 0;
    const double started = now_seconds();
    double last_completion = started;
    for (unsigned slot = 0; slot < job->depth && (limits->ops == 0 || issued < limits->ops); ++slot) {
        struct iocb *request = &requests[slot];
        memset(request, 0, sizeof *request);
        request->aio_data = slot;
        request->aio_lio_opcode = job->write ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
        request->aio_fildes = (uint32_t)fd;
        request->aio_buf = (uint64_t)(uintptr_t)buffers[slot];
        request->aio_nbytes = job->block_bytes;
        request->aio_offset = (int64_t)next_offset(job, blocks, &random_state, &sequential_block);
        to_submit[pending++] = request;
        ++issued;
    }
    for (;;) {
        // io_submit may take fewer than asked; the rest go again at once.
        for (unsigned done = 0; done < pending;) {
            long count = syscall(SYS_io_submit, context, (long)(pending - done), to_submit + done);
            if (count < 0 && errno == EINTR) {
                continue;
            }
            if (count <= 0) {
                die("job %s: io_submit on %s: %s", job->name, path, count < 0 ? strerror(errno) : "none taken");
            }
            done += (unsigned)count;
            in_flight += (unsigned)count;
        }
        pending = 0;
        if (in_flight == 0) {
            break;
        }
        long count = syscall(SYS_io_getevents, context, 1L, (long)job->depth, events, NULL);
        if (count < 0 && errno == EINTR) {
            continue;
        }
        if (count < 0) {
            die("job %s: io_getevents: %s", job->name, strerror(errno));
        }
        last_completion = now_seconds();
        stopping = stopping || last_completion - started >= limits->seconds;
        for (long i = 0; i < count; ++i) {
            struct iocb *request = &requests[events[i].data];
            if (events[i].res != (int64_t)job->block_bytes) {
                die("job %s: %s of %zu bytes at offset %" PRId64 " on %s: %s", job->name,
                    job->write ? "write" : "read", job->block_bytes, (int64_t)request->aio_offset, path,
                    events[i].res < 0 ? strerror((int)-events[i].res) : "short transfer");
            }
            --in_flight;
            ++completed;
            if (!stopping && (limits->ops == 0 || issued < limits->ops)) {
                request->aio_offset = (int64_t)next_offset(job, blocks, &random_state, &sequential_block);
                to_submit[pending++] = request;
                ++issued;
            }
        }
    }
    syscall(SYS_io_destroy, context);
    for (unsigned slot = 0; slot < job->depth; ++slot) {
        free(buffers[slot]);
    }
    return (struct result){completed, last_completion - started};
}

static void usage(void) {
    die("usage: blkbench [--device PATH] [--seconds S] [--ops N] [--handshake] JOB... "
        "(JOB e.g. randread-4k-qd32, seqwrite-128k-qd8, none)");
}

int main(int argc, char **argv) {
    const char *path = "/dev/vda";
    struct limits limits = {5.0, 0};
    int handshake = 0, first_job = argc;
    for (int i = 1; i < argc; ++i) {
        char *end = NULL;
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            limits.seconds = strtod(argv[++i], &end);
            if (*end != '\0' || !(limits.seconds > 0)) {
                die("--seconds '%s' is not a positive number", argv[i]);
            }
        } else if (strcmp(argv[i], "--ops") == 0 && i + 1 < argc) {
            errno = 0;
            limits.ops = strtoull(argv[++i], &end, 10);
            if (*end != '\0' || errno != 0 || limits.ops == 0 || argv[i][0] == '-') {
                die("--ops '%s' is not a positive whole number", argv[i]);
            }
        } else if (strcmp(argv[i], "--handshake") == 0) {
            handshake = 1;
        } else if (argv[i][0] == '-') {
            usage();
        } else {
            first_job = i;
            break;
        }
    }
    if (first_job == argc) {
        usage();
    }
    // Every job is checked before the first one runs: a typo must not cost a
    // whole run.
    static struct job jobs[64];
    const int job_count = argc - first_job;
    if (job_count > (int)(sizeof jobs / sizeof jobs[0])) {
        die("at most %zu jobs at once", sizeof jobs / sizeof jobs[0]);
    }
    for (int i = 0; i < job_count; ++i) {
        parse_job(argv[first_job + i], &jobs[i]);
    }

    int any_write = 0;
    for (int i = 0; i < job_count; ++i) {
        any_write |= jobs[i].write;
    }
    const int fd = open(path, (any_write ? O_RDWR : O_RDONLY) | O_DIRECT);
    if (fd < 0) {
        die("open %s with O_DIRECT: %s", path, strerror(errno));
    }
    const uint64_t size = device_bytes(fd, path);

    if (handshake && tcgetattr(STDIN_FILENO, &saved_terminal) == 0) {
        struct termios raw = saved_terminal;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        terminal_is_raw = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
        atexit(restore_terminal);
    }
    for (int i = 0; i < job_count; ++i) {
        if (handshake) {
            dprintf(STDOUT_FILENO, "blkbench ready job=%s\n", jobs[i].name);
            wait_for_host();
        }
        const struct result result = run_job(fd, path, size, &jobs[i], &limits);
        if (handshake) {
            dprintf(STDOUT_FILENO, "blkbench done\n");
            wait_for_host();
        }
        const double seconds = result.seconds > 0 ? result.seconds : 1.0;  // "none": zeros, not NaN
        dprintf(STDOUT_FILENO, "blkbench job=%s ops=%" PRIu64 " seconds=%.3f iops=%.0f MBps=%.1f\n", jobs[i].name,
                result.ops, result.seconds, (double)result.ops / seconds,
                (double)result.ops * (double)jobs[i].block_bytes / seconds / 1e6);
    }
    close(fd);
    return 0;
}
