/*
 * llama-drain: the preStop hook of a llama-server container. llama-server stops at SIGTERM and
 * cuts the requests in flight (tools/server/server.cpp: the handler terminates the server
 * context), so the kubelet's SIGTERM must wait until the pod has nothing left to answer:
 *
 *   1. SETTLE seconds: endpoint removal reaches every kube-proxy and load balancer, so no new
 *      connection is sent here;
 *   2. then until the server's slots and queue are empty (llamacpp:requests_processing and
 *      llamacpp:requests_deferred on /metrics, read with the pod's own key) and have stayed empty,
 *      with no work done in between (llamacpp:n_decode_total and llamacpp:prompt_tokens_total
 *      unchanged: a request shorter than a poll leaves its mark there), for QUIET seconds:
 *      longer than the server's keep-alive (cpp-httplib closes an idle connection after 5 s),
 *      so no request can still come over a connection opened before;
 *   3. at most MAX seconds in all after SETTLE: the longest a request may take. An answer it
 *      cannot read (a wrong key, a timeout) counts as busy; a server that does not listen, or
 *      is still loading its model (503: it serves nothing yet), has nothing left to drain.
 *
 * The keys are read from KEY_FILE (each non-empty line; the first the server accepts is used),
 * never passed as arguments; without one it waits SETTLE and MAX, as a plain sleep would. Exits
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

#define KEYS_MAX 4
#define KEY_SIZE 512

/* Up to KEYS_MAX non-empty lines of `path` into `keys`; how many. */
static int read_keys(const char *path, char keys[KEYS_MAX][KEY_SIZE]) {
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        return 0;
    }
    int count = 0;
    while (count < KEYS_MAX && fgets(keys[count], KEY_SIZE, file) != NULL) {
        keys[count][strcspn(keys[count], "\r\n")] = '\0';
        if (keys[count][0] != '\0') {
            count++;
        }
    }
    fclose(file);
    return count;
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
#define LOADING (-3)
#define UNAUTHORIZED (-4)

/* What one /metrics answer says: requests in the slots and queue, and the counters of work
 * done (decode calls, prompt tokens), which move even for a request shorter than a poll. */
struct reading {
    double in_flight; /* or NOT_LISTENING, UNREADABLE, LOADING, UNAUTHORIZED */
    double work;
};

/* One GET /metrics with `key`. NOT_LISTENING when nothing accepts the connection; LOADING for
 * a 503 (the model is loading: llama-server answers 503 on every path but /health then);
 * UNAUTHORIZED for a 401; UNREADABLE for any other answer (a timeout): then the hook cannot
 * tell, and waits as if busy. */
static struct reading read_metrics(int port, const char *key) {
    struct reading result = {.in_flight = UNREADABLE, .work = -1};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return result;
    }
    struct timeval timeout = {.tv_sec = 5, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static char buffer[RESPONSE_MAX + 1];
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        result.in_flight = errno == ECONNREFUSED ? NOT_LISTENING : UNREADABLE;
        close(fd);
        return result;
    }
    int n = snprintf(buffer, sizeof buffer,
                     "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                     "Authorization: Bearer %s\r\nConnection: close\r\n\r\n",
                     key);
    size_t got = 0;
    /* MSG_NOSIGNAL: a reset peer is an unreadable answer, not a SIGPIPE that kills the hook. */
    if (n > 0 && send(fd, buffer, (size_t)n, MSG_NOSIGNAL) == n) {
        ssize_t r;
        while (got < RESPONSE_MAX && (r = recv(fd, buffer + got, RESPONSE_MAX - got, 0)) > 0) {
            got += (size_t)r;
        }
    }
    buffer[got] = '\0';
    close(fd);
    const char *status = strncmp(buffer, "HTTP/1.", 7) == 0 ? buffer + 9 : "";
    if (strncmp(status, "503", 3) == 0) {
        result.in_flight = LOADING;
    } else if (strncmp(status, "401", 3) == 0) {
        result.in_flight = UNAUTHORIZED;
    } else if (strncmp(status, "200", 3) == 0) {
        double processing = sample(buffer, "llamacpp:requests_processing");
        double deferred = sample(buffer, "llamacpp:requests_deferred");
        double decodes = sample(buffer, "llamacpp:n_decode_total");
        double prompt = sample(buffer, "llamacpp:prompt_tokens_total");
        if (processing >= 0 && deferred >= 0 && decodes >= 0 && prompt >= 0) {
            result.in_flight = processing + deferred;
            result.work = decodes + prompt;
        }
    }
    return result;
}

/* read_metrics with the first of `keys` the server accepts (remembered in `chosen`). */
static struct reading busy(int port, char keys[KEYS_MAX][KEY_SIZE], int count, int *chosen) {
    struct reading result = read_metrics(port, keys[*chosen]);
    for (int i = 0; result.in_flight == UNAUTHORIZED && i < count; i++) {
        if (i != *chosen) {
            result = read_metrics(port, keys[i]);
            if (result.in_flight != UNAUTHORIZED) {
                *chosen = i;
            }
        }
    }
    if (result.in_flight == UNAUTHORIZED) {
        result.in_flight = UNREADABLE;
    }
    return result;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: llama-drain PORT KEY_FILE SETTLE QUIET MAX\n");
        return 2;
    }
    int port = atoi(argv[1]);
    double settle = atof(argv[3]), quiet = atof(argv[4]), longest = atof(argv[5]);
    if (port <= 0 || port > 65535 || settle < 0 || quiet < 0 || longest < 0) {
        fprintf(stderr, "llama-drain: bad arguments\n");
        return 2;
    }
    static char keys[KEYS_MAX][KEY_SIZE];
    int count = read_keys(argv[2], keys), chosen = 0;
    sleep_seconds(settle);
    if (count == 0) {
        fprintf(stderr, "llama-drain: %s: no key: waiting %.0f s\n", argv[2], longest);
        sleep_seconds(longest);
        return 0;
    }
    double start = now_seconds(), quiet_since = -1, last_work = -1;
    for (;;) {
        double t = now_seconds();
        struct reading now = busy(port, keys, count, &chosen);
        if (now.in_flight == NOT_LISTENING || now.in_flight == LOADING) {
            fprintf(stderr, "llama-drain: the server %s: nothing to drain\n",
                    now.in_flight == LOADING ? "is loading" : "does not listen");
            return 0;
        }
        int worked = now.work != last_work && last_work >= 0;
        last_work = now.work;
        if (now.in_flight != 0 || worked) {
            quiet_since = -1;
        } else if (quiet_since < 0) {
            quiet_since = t;
        } else if (t - quiet_since >= quiet) {
            fprintf(stderr, "llama-drain: idle after %.0f s\n", t - start);
            return 0;
        }
        if (t - start >= longest) {
            if (now.in_flight < 0) {
                fprintf(stderr, "llama-drain: /metrics unreadable for %.0f s\n", longest);
            } else {
                fprintf(stderr, "llama-drain: %.0f request(s) still busy after %.0f s\n",
                        now.in_flight, longest);
            }
            return 0;
        }
        sleep_seconds(0.5);
    }
}
