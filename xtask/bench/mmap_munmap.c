/* The mapping loop of `cargo xtask bench`: each line on stdin is a round of N
 * mmap+munmap pairs of 4 anonymous pages; the answer on stdout is ns per pair.
 * EOF ends it. */
#include <sys/mman.h>
#include <unistd.h>

#include "rounds.h"

#define LENGTH (4 * 4096)

static __attribute__((noinline)) int mmap_munmap(void) {
    void *p = mmap(NULL, LENGTH, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return -1;
    return munmap(p, LENGTH);
}

int main(void) {
    return serve_rounds(mmap_munmap, "mmap_munmap");
}
