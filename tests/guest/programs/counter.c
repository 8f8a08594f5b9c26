// Prints "count N" every 100 ms, N = 0, 1, 2, ... with no gaps in the
// numbering, so a test can tell from the console whether a guest kept
// running (across pause, snapshot or migration) and for how long it stopped.
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_NS 100000000L
#define NS_PER_SECOND 1000000000L

static void advance(struct timespec *time) {
    time->tv_nsec += PERIOD_NS;
    if (time->tv_nsec >= NS_PER_SECOND) {
        time->tv_nsec -= NS_PER_SECOND;
        time->tv_sec += 1;
    }
}

static int before(const struct timespec *a, const struct timespec *b) {
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

int main(void) {
    // Absolute deadlines keep the period exact however long printing takes.
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (unsigned long long count = 0;; ++count) {
        // One write() per line: lines never interleave with other console output.
        dprintf(STDOUT_FILENO, "count %llu\n", count);
        advance(&next);
        // After a stall (the VM was paused or migrated) start again from now
        // instead of printing the missed lines in a burst, which would hide
        // the stall from a test that watches the timing of the lines.
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (before(&next, &now)) {
            next = now;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {
        }
    }
}
