/* The processes of the daemon benchmark of `cargo xtask bench`: `hold N`
 * starts N copies of itself, each a process of its own (fork, then exec, so
 * each has its own address space layout, as unrelated processes on a host
 * do). Each copy holds 13 fds from three call sites: 8 files from
 * open_files(), 2 pipes (4 fds) from open_pipes() and 1 socket from
 * open_socket(); every second it closes one of its files and open_files()
 * opens it again, so acquisitions never stop while what it holds stays the
 * same.
 *
 * The functions are `noipa`, so GCC keeps each a frame of its own in the
 * stacks a tracer records.
 *
 * The copies get SIGKILL when this process dies (PR_SET_PDEATHSIG, which
 * exec keeps), so none outlives a benchmark that is killed outright.
 *
 * It prints "ready N" once every copy holds its fds, then waits for EOF on
 * stdin, kills the copies, reaps them and exits. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define FILES 8
#define PIPES 2

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* Fills every slot that is -1. */
static __attribute__((noipa)) void open_files(int files[FILES]) {
    for (int i = 0; i < FILES; i++) {
        if (files[i] >= 0) continue;
        files[i] = open("/dev/null", O_RDONLY);
        if (files[i] < 0) die("open /dev/null");
    }
}

static __attribute__((noipa)) void open_pipes(int pipes[PIPES][2]) {
    for (int i = 0; i < PIPES; i++) {
        if (pipe(pipes[i]) != 0) die("pipe");
    }
}

static __attribute__((noipa)) void open_socket(void) {
    if (socket(AF_INET, SOCK_DGRAM, 0) < 0) die("socket");
}

/* One copy: its fds, a byte on `ready`, then the rotation until killed. */
static __attribute__((noreturn)) void hold(int ready) {
    int files[FILES];
    int pipes[PIPES][2];
    for (int i = 0; i < FILES; i++) files[i] = -1;
    open_files(files);
    open_pipes(pipes);
    open_socket();
    if (write(ready, "r", 1) != 1) die("write to the ready pipe");
    close(ready);
    for (unsigned next = 0;; next = (next + 1) % FILES) {
        sleep(1);
        close(files[next]);
        files[next] = -1;
        open_files(files);
    }
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--copy") == 0) hold(atoi(argv[2]));
    if (argc != 2) {
        fprintf(stderr, "usage: hold N\n");
        return 2;
    }
    long count = strtol(argv[1], NULL, 10);
    if (count <= 0 || count > 100000) {
        fprintf(stderr, "hold: N must be between 1 and 100000\n");
        return 2;
    }
    /* Exec'ing /proc/self/exe would name every copy "exe". */
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len < 0) die("readlink /proc/self/exe");
    self[len] = '\0';

    int ready[2];
    if (pipe(ready) != 0) die("pipe");
    char ready_fd[16];
    snprintf(ready_fd, sizeof ready_fd, "%d", ready[1]);
    pid_t parent = getpid();
    pid_t *copies = calloc((size_t)count, sizeof *copies);
    if (!copies) die("calloc");
    for (long i = 0; i < count; i++) {
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) die("prctl");
            if (getppid() != parent) _exit(1);
            close(ready[0]);
            execl(self, "hold", "--copy", ready_fd, (char *)NULL);
            die("exec");
        }
        copies[i] = pid;
    }
    close(ready[1]);
    long got = 0;
    char buf[256];
    while (got < count) {
        ssize_t n = read(ready[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fprintf(stderr, "hold: only %ld of %ld copies got their fds\n", got, count);
            return 1;
        }
        got += n;
    }
    close(ready[0]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready %ld\n", count);
    while (fgets(buf, sizeof buf, stdin)) {
    }
    for (long i = 0; i < count; i++) kill(copies[i], SIGKILL);
    for (long i = 0; i < count; i++) {
        while (waitpid(copies[i], NULL, 0) < 0 && errno == EINTR) {
        }
    }
    return 0;
}
