/* memtouch: makes guest memory resident, for the balloon tests.
 *
 *   memtouch MIB         touch MIB MiB, then exit (the guest frees them)
 *   memtouch MIB hold    touch MIB MiB and keep them until killed
 *
 * Every 4 KiB page gets a non-zero byte, so the host must back it; the line
 * "memtouch: touched MIB MiB" follows once all are. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char** argv) {
    char* end = NULL;
    unsigned long mib = argc >= 2 ? strtoul(argv[1], &end, 10) : 0;
    int hold = argc == 3 && strcmp(argv[2], "hold") == 0;
    if (argc < 2 || argc > 3 || *end != '\0' || mib == 0 || (argc == 3 && !hold)) {
        fprintf(stderr, "usage: memtouch MIB [hold]\n");
        return 2;
    }
    size_t length = mib << 20;
    unsigned char* memory = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
        perror("memtouch: mmap");
        return 1;
    }
    for (size_t offset = 0; offset < length; offset += 4096) {
        memory[offset] = 1;
    }
    printf("memtouch: touched %lu MiB\n", mib);
    fflush(stdout);
    while (hold) {
        pause();
    }
    return 0;
}
