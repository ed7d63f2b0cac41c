/*
 * llama-drain: the preStop hook of a llama-server container. llama-server stops at SIGTERM and
 * cuts the requests in flight (tools/server/server.cpp: the handler terminates the server
 * context), so the kubelet's SIGTERM must wait until the pod has nothing left to answer:
 *
 *   1. SETTLE seconds: endpoint removal reaches every kube-proxy and load balancer, so no new
 *      connection is sent here;
 *   2. then until the server's slots and queue are empty (llamacpp:requests_processing and
 *      llamacpp:requests_deferred on /metrics, read with the pod's own key) and have stayed empty
 *      for QUIET seconds: longer than the server's keep-alive (cpp-httplib closes an idle
 *      connection after 5 s), so no request can still come over a connection opened before;
 *   3. at most MAX seconds in all after SETTLE: the longest a request may take. An answer it
 *      cannot read (a wrong key, a timeout) counts as busy; a server that does not listen has
 *      nothing left to drain.
 *
 * The key is read from KEY_FILE (its first non-empty line), never passed as an argument. Exits
 * 0 whatever it saw (the kubelet sends SIGTERM next); 2 on a usage error.
 *
 *   llama-drain PORT KEY_FILE SETTLE QUIET MAX
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define RESPONSE_MAX (1 << 20)

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_seconds(double seconds) {
    struct timespec t = {.tv_sec = (time_t)seconds,
                         .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

static int read_key(const char *path, char *key, size_t size) {
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        return -1;
    }
    int found = -1;
    while (fgets(key, (int)size, file) != NULL) {
        key[strcspn(key, "\r\n")] = '\0';
        if (key[0] != '\0') {
            found = 0;
            break;
        }
    }
    fclose(file);
    return found;
}

/* The value of the sample line `name value` in a Prometheus text exposition; -1 if absent. */
static double sample(const char *body, const char *name) {
    size_t length = strlen(name);
    for (const char *line = body; line != NULL && *line != '\0';) {
        if (strncmp(line, name, length) == 0 && line[length] == ' ') {
            return strtod(line + length + 1, NULL);
        }
        line = strchr(line, '\n');
        line = line == NULL ? NULL : line + 1;
    }
    return -1;
}

#define NOT_LISTENING (-2)
#define UNREADABLE (-1)

/* Requests processing plus deferred, from /metrics; NOT_LISTENING when nothing accepts the
 * connection, UNREADABLE for any other answer (a wrong key, a timeout): then the hook cannot
 * tell, and waits as if busy. */
static double busy(int port, const char *key) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return UNREADABLE;
    }
    struct timeval timeout = {.tv_sec = 5, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static char buffer[RESPONSE_MAX + 1];
    double result = UNREADABLE;
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        result = errno == ECONNREFUSED ? NOT_LISTENING : UNREADABLE;
    } else {
        int n = snprintf(buffer, sizeof buffer,
                         "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                         "Authorization: Bearer %s\r\nConnection: close\r\n\r\n",
                         key);
        size_t got = 0;
        if (n > 0 && send(fd, buffer, (size_t)n, 0) == n) {
            ssize_t r;
            while (got < RESPONSE_MAX && (r = recv(fd, buffer + got, RESPONSE_MAX - got, 0)) > 0) {
                got += (size_t)r;
            }
        }
        buffer[got] = '\0';
        if (strncmp(buffer, "HTTP/1.1 200", 12) == 0 || strncmp(buffer, "HTTP/1.0 200", 12) == 0) {
            double processing = sample(buffer, "llamacpp:requests_processing");
            double deferred = sample(buffer, "llamacpp:requests_deferred");
            if (processing >= 0 && deferred >= 0) {
                result = processing + deferred;
            }
        }
    }
    close(fd);
    return result;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: llama-drain PORT KEY_FILE SETTLE QUIET MAX\n");
        return 2;
    }
    int port = atoi(argv[1]);
    double settle = atof(argv[3]), quiet = atof(argv[4]), longest = atof(argv[5]);
    static char key[4096];
    if (port <= 0 || port > 65535 || settle < 0 || quiet < 0 || longest < 0) {
        fprintf(stderr, "llama-drain: bad arguments\n");
        return 2;
    }
    if (read_key(argv[2], key, sizeof key) != 0) {
        fprintf(stderr, "llama-drain: %s: no key (%s)\n", argv[2], strerror(errno));
        return 2;
    }
    sleep_seconds(settle);
    double start = now_seconds(), quiet_since = -1;
    for (;;) {
        double t = now_seconds(), in_flight = busy(port, key);
        if (in_flight == NOT_LISTENING) {
            fprintf(stderr, "llama-drain: the server does not listen: nothing to drain\n");
            return 0;
        }
        if (in_flight != 0) {
            quiet_since = -1;
        } else if (quiet_since < 0) {
            quiet_since = t;
        } else if (t - quiet_since >= quiet) {
            fprintf(stderr, "llama-drain: idle after %.0f s\n", t - start);
            return 0;
        }
        if (t - start >= longest) {
            if (in_flight < 0) {
                fprintf(stderr, "llama-drain: /metrics unreadable for %.0f s\n", longest);
            } else {
                fprintf(stderr, "llama-drain: %.0f request(s) still busy after %.0f s\n",
                        in_flight, longest);
            }
            return 0;
        }
        sleep_seconds(0.5);
    }
}
