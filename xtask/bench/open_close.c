/* The open+close loop of `cargo xtask bench`: one long-lived process, so a
 * tracer can attach to it between rounds. Each line on stdin is a round of N
 * open("/dev/null")+close pairs; the answer on stdout is ns per pair. EOF ends
 * it. */
#include <fcntl.h>
#include <unistd.h>

#include "rounds.h"

static __attribute__((noinline)) int open_close_pair(void) {
    int fd = open("/dev/null", O_RDONLY);
    if (fd < 0) return -1;
    return close(fd);
}

int main(void) {
    return serve_rounds(open_close_pair, "open_close_pair");
}
