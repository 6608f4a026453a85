/* The open+close loop of `cargo xtask bench`: one long-lived process, so a
 * tracer can attach to it between rounds. Each line on stdin is a round of N
 * open("/dev/null")+close pairs; the answer on stdout is ns per pair. EOF ends
 * it. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static __attribute__((noinline)) int open_close_pair(void) {
    int fd = open("/dev/null", O_RDONLY);
    if (fd < 0) return -1;
    return close(fd);
}

int main(void) {
    char line[64];
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof line, stdin)) {
        long n = atol(line);
        if (n <= 0) return 2;
        long long start = now_ns();
        for (long i = 0; i < n; i++) {
            if (open_close_pair() < 0) {
                perror("open_close");
                return 1;
            }
        }
        printf("%.1f\n", (double)(now_ns() - start) / n);
    }
    return 0;
}
