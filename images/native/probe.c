/* probe: a static native program for the tests of native containers run
 * through runc under the wasmbox runtime, and of mixed pods.
 *
 *   probe echo WORDS...    prints the words on one line, exits 0
 *   probe exit N           exits with N
 *   probe sleep            prints "probe: up", then waits for a signal;
 *                          SIGTERM and SIGINT end it with 128 + the signal,
 *                          as their default action would outside PID 1
 *   probe tty              says whether stdin is a terminal, then echoes
 *                          one line read from it as "got: LINE"
 *   probe hog              allocates and touches memory, 1 MiB at a time,
 *                          until the kernel's OOM killer ends it
 *   probe get PORT PATH    GETs http://127.0.0.1:PORT/PATH, retrying for
 *                          up to 10 s while nothing listens, and prints
 *                          the response's body
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int get(const char *port, const char *path) {
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = -1;
    for (int attempt = 0; attempt < 200; attempt++) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) { perror("socket"); return 1; }
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) break;
        close(fd);
        fd = -1;
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    if (fd < 0) { perror("connect"); return 1; }
    char request[512];
    int n = snprintf(request, sizeof request,
                     "GET /%s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, request, (size_t)n) != n) { perror("write"); return 1; }
    static char response[65536];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof response - 1 && (r = read(fd, response + got, sizeof response - 1 - got)) > 0)
        got += (size_t)r;
    response[got] = 0;
    char *body = strstr(response, "\r\n\r\n");
    printf("probe: got %s\n", body ? body + 4 : response);
    return 0;
}

static void stop(int sig) { _exit(128 + sig); }

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc < 2) { fprintf(stderr, "usage: probe echo|exit|sleep|tty|get ...\n"); return 2; }
    const char *mode = argv[1];
    if (!strcmp(mode, "echo")) {
        for (int i = 2; i < argc; i++) printf("%s%s", i > 2 ? " " : "", argv[i]);
        printf("\n");
        return 0;
    }
    if (!strcmp(mode, "exit") && argc > 2) return atoi(argv[2]);
    if (!strcmp(mode, "sleep")) {
        signal(SIGTERM, stop);
        signal(SIGINT, stop);
        printf("probe: up\n");
        for (;;) pause();
    }
    if (!strcmp(mode, "tty")) {
        printf("probe: stdin is %sa terminal\n", isatty(0) ? "" : "not ");
        char line[256];
        if (fgets(line, sizeof line, stdin)) {
            line[strcspn(line, "\r\n")] = 0;
            printf("got: %s\n", line);
        }
        return 0;
    }
    if (!strcmp(mode, "get") && argc > 3) return get(argv[2], argv[3]);
    if (!strcmp(mode, "hog")) {
        for (size_t mib = 1;; mib++) {
            char *block = malloc(1 << 20);
            if (!block) { printf("probe: malloc failed at %zu MiB\n", mib); return 1; }
            memset(block, 1, 1 << 20);
        }
    }
    fprintf(stderr, "probe: unknown mode %s\n", mode);
    return 2;
}
