/* The steady-state soak of `cargo xtask bench`: two threads open and close
 * /dev/null as fast as they can; every 1000th fd is kept in a ring of 256
 * shared by both threads, which closes the oldest when full, so what is
 * outstanding stays bounded while acquisitions never stop.
 *
 * It prints "ready", starts on the first line on stdin, stops on the second,
 * prints "rate <acquisitions/s> <acquisitions>" and holds the ring's fds
 * until stdin is closed. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define THREADS 2
#define KEEP_EVERY 1000
#define RING 256

static atomic_int stop;
static atomic_long acquisitions;
static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static int ring[RING];
static int ring_next, ring_used;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static __attribute__((noinline)) void keep(int fd) {
    pthread_mutex_lock(&ring_lock);
    if (ring_used == RING) close(ring[ring_next]);
    else ring_used++;
    ring[ring_next] = fd;
    ring_next = (ring_next + 1) % RING;
    pthread_mutex_unlock(&ring_lock);
}

static void *churn(void *arg) {
    (void)arg;
    long n = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0) {
            perror("open /dev/null");
            exit(1);
        }
        if (++n % KEEP_EVERY == 0) keep(fd);
        else close(fd);
    }
    atomic_fetch_add(&acquisitions, n);
    return NULL;
}

int main(void) {
    pthread_t threads[THREADS];
    char line[64];

    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    if (!fgets(line, sizeof line, stdin)) return 0;
    long long start = now_ns();
    for (int i = 0; i < THREADS; i++) {
        if (pthread_create(&threads[i], NULL, churn, NULL) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    if (!fgets(line, sizeof line, stdin)) return 0;
    atomic_store(&stop, 1);
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    double seconds = (double)(now_ns() - start) / 1e9;
    long total = atomic_load(&acquisitions);
    printf("rate %.0f %ld\n", (double)total / seconds, total);
    while (fgets(line, sizeof line, stdin)) {
    }
    return 0;
}
