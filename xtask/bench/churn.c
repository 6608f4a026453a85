/* The recording benchmark of `cargo xtask bench`: `churn PROCESSES RATE
 * HOLD_MS` acquires RATE fds a second in all, from PROCESSES forked copies,
 * and holds each for HOLD_MS before closing it: each copy keeps a ring of
 * RATE/PROCESSES*HOLD_MS/1000 fds and, at a steady pace (a batch every
 * millisecond, on an absolute schedule so the pace does not drift), opens
 * /dev/null into the oldest slot after closing what it held. What is held
 * at any moment is then RATE*HOLD_MS/1000 fds, spread over the copies so
 * that none needs more than RLIMIT_NOFILE allows (its soft limit is raised
 * to the hard one).
 *
 * It prints "ready"; the first line on stdin forks the copies, which start
 * at once; every later line prints "count N", the acquisitions the copies
 * have made so far (counters in shared memory). On EOF it kills and reaps
 * the copies and exits. The copies get SIGKILL if it dies
 * (PR_SET_PDEATHSIG). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCESSES 64
#define BATCHES_PER_SECOND 1000

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void add_ns(struct timespec *t, long long ns) {
    t->tv_sec += (time_t)(ns / 1000000000LL);
    t->tv_nsec += (long)(ns % 1000000000LL);
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

static __attribute__((noipa)) int acquire(void) {
    int fd = open("/dev/null", O_RDONLY);
    if (fd < 0) die("open /dev/null");
    return fd;
}

/* One copy: `per_second` acquisitions a second, each held for `ring` of
 * them. Runs until killed. */
static __attribute__((noreturn)) void churn(long per_second, long ring_size, atomic_long *count) {
    int *ring = malloc((size_t)ring_size * sizeof *ring);
    if (!ring) die("malloc");
    for (long i = 0; i < ring_size; i++) ring[i] = -1;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long next = 0;
    for (long long batch = 1;; batch++) {
        /* Acquisitions due by the end of this batch, so rates that are not
         * a multiple of BATCHES_PER_SECOND still come out exact. */
        long long due = batch * per_second / BATCHES_PER_SECOND;
        long long done = atomic_load_explicit(count, memory_order_relaxed);
        for (; done < due; done++) {
            if (ring[next] >= 0) close(ring[next]);
            ring[next] = acquire();
            next = (next + 1) % ring_size;
        }
        atomic_store_explicit(count, done, memory_order_relaxed);
        struct timespec until = start;
        add_ns(&until, batch * 1000000000LL / BATCHES_PER_SECOND);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR) {
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: churn PROCESSES RATE HOLD_MS\n");
        return 2;
    }
    long processes = strtol(argv[1], NULL, 10);
    long rate = strtol(argv[2], NULL, 10);
    long hold_ms = strtol(argv[3], NULL, 10);
    if (processes < 1 || processes > MAX_PROCESSES || rate < processes || hold_ms < 1) {
        fprintf(stderr, "churn: PROCESSES must be 1 to %d, RATE at least PROCESSES, HOLD_MS at least 1\n",
                MAX_PROCESSES);
        return 2;
    }
    long per_second = rate / processes;
    long ring_size = per_second * hold_ms / 1000;
    if (ring_size < 1) ring_size = 1;
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) die("getrlimit");
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) die("setrlimit");
    if ((rlim_t)ring_size + 16 > limit.rlim_cur) {
        fprintf(stderr, "churn: each copy would hold %ld fds, over RLIMIT_NOFILE (%llu): use more processes\n",
                ring_size, (unsigned long long)limit.rlim_cur);
        return 2;
    }
    atomic_long *counts =
        mmap(NULL, MAX_PROCESSES * sizeof *counts, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (counts == MAP_FAILED) die("mmap");

    char line[64];
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    if (!fgets(line, sizeof line, stdin)) return 0;
    pid_t parent = getpid();
    pid_t copies[MAX_PROCESSES];
    for (long i = 0; i < processes; i++) {
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) die("prctl");
            if (getppid() != parent) _exit(1);
            churn(per_second, ring_size, &counts[i]);
        }
        copies[i] = pid;
    }
    while (fgets(line, sizeof line, stdin)) {
        long total = 0;
        for (long i = 0; i < processes; i++) total += atomic_load(&counts[i]);
        printf("count %ld\n", total);
    }
    for (long i = 0; i < processes; i++) kill(copies[i], SIGKILL);
    for (long i = 0; i < processes; i++) {
        while (waitpid(copies[i], NULL, 0) < 0 && errno == EINTR) {
        }
    }
    return 0;
}
