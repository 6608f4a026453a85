/* The loopback connection loop of `cargo xtask bench`: a thread accepts and
 * closes, the main thread runs rounds of socket+connect+close. Each line on
 * stdin is a round of N connections; the answer on stdout is ns per
 * connection. EOF ends it. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rounds.h"

static int listen_fd;
static struct sockaddr_in server;

static void *accept_and_close(void *arg) {
    (void)arg;
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            perror("accept");
            exit(1);
        }
        close(fd);
    }
    return NULL;
}

static __attribute__((noinline)) int connect_close(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&server, sizeof server) < 0) {
        close(fd);
        return -1;
    }
    return close(fd);
}

int main(void) {
    socklen_t len = sizeof server;
    pthread_t thread;

    server.sin_family = AF_INET;
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&server, sizeof server) < 0 ||
        listen(listen_fd, 4096) < 0 || getsockname(listen_fd, (struct sockaddr *)&server, &len) < 0) {
        perror("listen");
        return 1;
    }
    if (pthread_create(&thread, NULL, accept_and_close, NULL) != 0) {
        perror("pthread_create");
        return 1;
    }
    return serve_rounds(connect_close, "connect_close");
}
