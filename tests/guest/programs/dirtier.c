/* dirtier: a guest workload for migration and snapshot tests.
 *
 *   dirtier MIB PAGES_PER_S
 *
 * Fills MIB MiB with a pattern, then keeps rewriting PAGES_PER_S pages a
 * second (each with a new generation of the pattern) while it checks every
 * page against what it last wrote. Every 100 ms it prints
 *   "dirtier count N realtime_ms T mismatches M"
 * with N counting up without gaps, so a test sees that the guest ran on, T
 * the guest's wall clock, and M the pages found wrong so far; each wrong page
 * is also printed as "dirtier ERROR page P: ...". A page is wrong when one of
 * its words is not (page << 32 | generation): a page lost, stale or torn by
 * a migration. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE_WORDS (4096 / sizeof(uint64_t))
#define TICK_NS 10000000L /* 10 ms */
#define TICKS_PER_LINE 10
#define CHECKED_PAGES_PER_TICK 512

static uint64_t expected(size_t page, uint32_t generation) { return (uint64_t)page << 32 | generation; }

static void fill(uint64_t *page_words, size_t page, uint32_t generation) {
    uint64_t value = expected(page, generation);
    for (size_t word = 0; word < PAGE_WORDS; ++word) {
        page_words[word] = value;
    }
}

static int check(const uint64_t *page_words, size_t page, uint32_t generation) {
    uint64_t value = expected(page, generation);
    for (size_t word = 0; word < PAGE_WORDS; ++word) {
        if (page_words[word] != value) {
            dprintf(STDOUT_FILENO, "dirtier ERROR page %zu: word %zu is %#llx, expected %#llx\n", page, word,
                    (unsigned long long)page_words[word], (unsigned long long)value);
            return 0;
        }
    }
    return 1;
}

static long long milliseconds(clockid_t clock) {
    struct timespec now;
    clock_gettime(clock, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
    char *end_mib = NULL, *end_rate = NULL;
    unsigned long mib = argc == 3 ? strtoul(argv[1], &end_mib, 10) : 0;
    unsigned long rate = argc == 3 ? strtoul(argv[2], &end_rate, 10) : 0;
    if (argc != 3 || *end_mib != '\0' || *end_rate != '\0' || mib == 0) {
        fprintf(stderr, "usage: dirtier MIB PAGES_PER_S\n");
        return 2;
    }
    size_t pages = mib << 8;
    uint64_t *memory = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint32_t *generations = calloc(pages, sizeof *generations);
    if (memory == MAP_FAILED || generations == NULL) {
        perror("dirtier: allocating");
        return 1;
    }
    for (size_t page = 0; page < pages; ++page) {
        fill(memory + page * PAGE_WORDS, page, 0);
    }
    dprintf(STDOUT_FILENO, "dirtier: %lu MiB filled, rewriting %lu pages/s\n", mib, rate);

    size_t next_written = 0, next_checked = 0;
    unsigned long long count = 0, mismatches = 0;
    double owed = 0; /* pages due but not yet written, for rates under 100 pages/s */
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (unsigned long tick = 0;; ++tick) {
        for (owed += rate / 100.0; owed >= 1; owed -= 1) {
            size_t page = next_written;
            next_written = (next_written + 1) % pages;
            fill(memory + page * PAGE_WORDS, page, ++generations[page]);
        }
        for (int i = 0; i < CHECKED_PAGES_PER_TICK; ++i) {
            size_t page = next_checked;
            next_checked = (next_checked + 1) % pages;
            if (!check(memory + page * PAGE_WORDS, page, generations[page])) {
                ++mismatches;
                fill(memory + page * PAGE_WORDS, page, generations[page]); /* report each loss once */
            }
        }
        if (tick % TICKS_PER_LINE == 0) {
            dprintf(STDOUT_FILENO, "dirtier count %llu realtime_ms %lld mismatches %llu\n", count++,
                    milliseconds(CLOCK_REALTIME), mismatches);
        }
        next.tv_nsec += TICK_NS;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec += 1;
        }
        /* After a stall (paused, migrated), go on from now rather than catch up in a burst. */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (next.tv_sec < now.tv_sec || (next.tv_sec == now.tv_sec && next.tv_nsec < now.tv_nsec)) {
            next = now;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {
        }
    }
}
