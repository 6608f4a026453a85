/* The round protocol the loop benchmarks share: each line on stdin is a
 * round of N calls of one pair (acquire and release); the answer on stdout
 * is ns per pair. EOF ends it; a failed pair ends it with status 1. The pair
 * stays a direct call: `serve_rounds` is static and called once, so gcc -O2
 * inlines it with its argument. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int serve_rounds(int (*pair)(void), const char *what) {
    char line[64];
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof line, stdin)) {
        long n = atol(line);
        if (n <= 0) return 2;
        long long start = now_ns();
        for (long i = 0; i < n; i++) {
            if (pair() < 0) {
                perror(what);
                return 1;
            }
        }
        printf("%.1f\n", (double)(now_ns() - start) / n);
    }
    return 0;
}
