/*
 * smtp-pingpong: latency of an SMTP request/response exchange (issue 6, scripts/bench.sh).
 *
 *   smtp-pingpong HOST PORT COUNT [SECONDS]
 *
 * Connects to an SMTP server (smtp-sink in the bench lab), reads the greeting, then sends
 * "NOOP\r\n" and waits for the whole reply COUNT times (or until SECONDS have passed), one
 * exchange at a time (light load), with TCP_NODELAY. The first 100 exchanges are a warm-up
 * and not counted. Prints one line:
 *   n=N p50_us=X p90_us=X p99_us=X max_us=X mean_us=X
 * NOOP is allowed by every profile and its reply is left alone, so the exchange crosses the
 * filter under off, pix51 and strict alike. Exit status 1 on any error.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 100

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Reads until a reply's last line ("ddd " ... "\n") is complete. 0 on success. */
static int read_reply(int fd) {
    char buf[4096];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r <= 0) return -1;
        len += (size_t)r;
        buf[len] = 0;
        /* Find the start of the last complete line. */
        if (len >= 2 && buf[len - 1] == '\n') {
            size_t end = len - 1, start = end;
            while (start > 0 && buf[start - 1] != '\n') start--;
            if (end - start >= 4 && buf[start + 3] != '-') return 0;
            if (end - start < 4) return 0;
        }
        if (len >= sizeof buf - 1) len = 0; /* long multi-line reply: keep reading */
    }
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, long n, double p) {
    long i = (long)(p / 100.0 * (double)(n - 1) + 0.5);
    if (i < 0) i = 0;
    if (i >= n) i = n - 1;
    return v[i];
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s HOST PORT COUNT [SECONDS]\n", argv[0]);
        return 2;
    }
    long count = atol(argv[3]);
    double limit_us = argc > 4 ? atof(argv[4]) * 1e6 : 1e12;
    if (count < 1) count = 1;
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", argv[1]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("connect");
        return 1;
    }
    if (read_reply(fd) != 0) {
        fprintf(stderr, "no greeting\n");
        return 1;
    }
    double *rtt = malloc(sizeof(double) * (size_t)count);
    if (!rtt) return 1;
    long n = 0;
    double start = now_us();
    static const char noop[] = "NOOP\r\n";
    for (long i = 0; i < count + WARMUP; i++) {
        double t0 = now_us();
        if (t0 - start > limit_us) break;
        if (write(fd, noop, sizeof noop - 1) != (ssize_t)(sizeof noop - 1) || read_reply(fd) != 0) {
            fprintf(stderr, "exchange %ld failed\n", i);
            return 1;
        }
        double t1 = now_us();
        if (i >= WARMUP) rtt[n++] = t1 - t0;
    }
    (void)!write(fd, "QUIT\r\n", 6);
    close(fd);
    if (n == 0) {
        fprintf(stderr, "no exchange measured\n");
        return 1;
    }
    double sum = 0;
    for (long i = 0; i < n; i++) sum += rtt[i];
    qsort(rtt, (size_t)n, sizeof(double), cmp);
    printf("n=%ld p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f mean_us=%.1f\n", n,
           pct(rtt, n, 50), pct(rtt, n, 90), pct(rtt, n, 99), rtt[n - 1], sum / (double)n);
    free(rtt);
    return 0;
}
