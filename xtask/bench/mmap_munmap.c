/* The mapping loop of `cargo xtask bench`: each line on stdin is a round of N
 * mmap+munmap pairs of 4 anonymous pages; the answer on stdout is ns per pair.
 * EOF ends it. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define LENGTH (4 * 4096)

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static __attribute__((noinline)) int mmap_munmap(void) {
    void *p = mmap(NULL, LENGTH, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return -1;
    return munmap(p, LENGTH);
}

int main(void) {
    char line[64];
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof line, stdin)) {
        long n = atol(line);
        if (n <= 0) return 2;
        long long start = now_ns();
        for (long i = 0; i < n; i++) {
            if (mmap_munmap() < 0) {
                perror("mmap_munmap");
                return 1;
            }
        }
        printf("%.1f\n", (double)(now_ns() - start) / n);
    }
    return 0;
}
