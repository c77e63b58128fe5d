/*
 * lookup_timing.c — does the time of POST /v1/codes/lookup say whether a code
 * exists? (issue 10, defect 3; run by bench/lookup_timing.sh.)
 *
 *   lookup_timing PORT TOKEN ROUNDS < codes
 *
 * stdin: one "CLASS CODE" per line, CLASS 0 (never imported), 1 (in stock) or
 * 2 (issued to another client): codes the caller (TOKEN) may not see, so every
 * answer must be the same 200 `not_found` body. ROUNDS times, every code is
 * looked up once, all classes interleaved in a new random order each round, on
 * one keep-alive connection (raw socket: no client library in the timed path).
 * Each request is timed from the first byte written to the last byte of the
 * body read. Prints the median per class and the differences between classes;
 * the verdict is PASS when every difference of medians is below LIMIT_NS
 * (env, 1000), else MISS. Exits 1 when a body differs from the first one (the
 * answers themselves would tell) or on a transport error; 0 otherwise, PASS or
 * MISS (a target missed is a figure, not a failure).
 *
 * Build: gcc -O2 -std=c11 -D_GNU_SOURCE -o lookup_timing bench/lookup_timing.c
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NCLASS 3
static const char *const class_name[NCLASS] = {"absent", "in stock", "issued to another client"};

typedef struct probe {
    int cls;
    char code[96];
} probe;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one response: status into *status, body into body (NUL-terminated,
 * cap bytes at most). 0, or -1 on a transport or framing error. */
static int read_response(int fd, long *status, char *body, size_t cap)
{
    static char buf[65536];
    size_t have = 0;
    char *end = NULL;
    while (!end) {
        if (have == sizeof buf - 1)
            return -1;
        ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
        if (r <= 0)
            return -1;
        have += (size_t)r;
        buf[have] = 0;
        end = strstr(buf, "\r\n\r\n");
    }
    *status = strtol(buf + 9, NULL, 10);
    long len = -1;
    for (char *l = strstr(buf, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n"))
        if (strncasecmp(l + 2, "Content-Length:", 15) == 0)
            len = strtol(l + 17, NULL, 10);
    if (len < 0 || (size_t)len >= cap)
        return -1;
    size_t got = have - (size_t)(end + 4 - buf);
    memcpy(body, end + 4, got);
    while (got < (size_t)len) {
        ssize_t r = read(fd, body + got, (size_t)len - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    if (got != (size_t)len)
        return -1; /* pipelining is not used: nothing may follow */
    body[len] = 0;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: lookup_timing PORT TOKEN ROUNDS < codes\n");
        return 2;
    }
    int port = atoi(argv[1]), rounds = atoi(argv[3]);
    const char *token = argv[2];
    const char *lim = getenv("LIMIT_NS");
    int64_t limit = lim ? atoll(lim) : 1000;
    size_t n = 0, cap = 1024;
    probe *pr = malloc(cap * sizeof *pr);
    char line[256];
    while (pr && fgets(line, sizeof line, stdin)) {
        if (n == cap && !(pr = realloc(pr, (cap *= 2) * sizeof *pr)))
            break;
        if (sscanf(line, "%d %95s", &pr[n].cls, pr[n].code) == 2 && pr[n].cls >= 0 &&
            pr[n].cls < NCLASS)
            n++;
    }
    if (!pr || !n || rounds < 1) {
        fprintf(stderr, "lookup_timing: no codes on stdin\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        perror("lookup_timing: connect");
        return 1;
    }
    int64_t *t[NCLASS];
    size_t cnt[NCLASS] = {0};
    for (int c = 0; c < NCLASS; c++)
        t[c] = malloc(n * (size_t)rounds * sizeof **t);
    static char first[8192], body[8192];
    char req[1024];
    srand(12345);
    for (int round = 0; round < rounds; round++) {
        for (size_t i = n - 1; i > 0; i--) { /* Fisher-Yates: a new order every round */
            size_t j = (size_t)rand() % (i + 1);
            probe tmp = pr[i];
            pr[i] = pr[j];
            pr[j] = tmp;
        }
        for (size_t i = 0; i < n; i++) {
            char json[160];
            int jl = snprintf(json, sizeof json, "{\"code\":\"%s\"}", pr[i].code);
            int rl = snprintf(req, sizeof req,
                              "POST /v1/codes/lookup HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                              "Content-Length: %d\r\n\r\n%s",
                              token, jl, json);
            long status = 0;
            int64_t t0 = now_ns();
            if (write_all(fd, req, (size_t)rl) || read_response(fd, &status, body, sizeof body)) {
                fprintf(stderr, "lookup_timing: transport error at request %zu\n", i);
                return 1;
            }
            int64_t dt = now_ns() - t0;
            if (status != 200) {
                fprintf(stderr, "lookup_timing: status %ld: %s\n", status, body);
                return 1;
            }
            if (!first[0])
                memcpy(first, body, sizeof first);
            else if (strcmp(first, body) != 0) {
                fprintf(stderr,
                        "lookup_timing: the answer for a code %s differs from the first:\n%s\n%s\n",
                        class_name[pr[i].cls], first, body);
                return 1;
            }
            t[pr[i].cls][cnt[pr[i].cls]++] = dt;
        }
    }
    close(fd);
    int64_t med[NCLASS];
    for (int c = 0; c < NCLASS; c++) {
        if (!cnt[c]) {
            fprintf(stderr, "lookup_timing: no code of class %d\n", c);
            return 2;
        }
        qsort(t[c], cnt[c], sizeof **t, cmp_i64);
        med[c] = t[c][cnt[c] / 2];
        printf("  median %-26s %8.2f us  (%zu lookups, p10 %.2f, p90 %.2f)\n", class_name[c],
               med[c] / 1000.0, cnt[c], t[c][cnt[c] / 10] / 1000.0, t[c][cnt[c] * 9 / 10] / 1000.0);
    }
    int64_t worst = 0;
    for (int a = 0; a < NCLASS; a++)
        for (int b = a + 1; b < NCLASS; b++) {
            int64_t d = med[b] - med[a];
            printf("  %s - %s: %+.2f us\n", class_name[b], class_name[a], d / 1000.0);
            if (llabs(d) > worst)
                worst = llabs(d);
        }
    printf("lookup timing: largest median difference %.2f us (target < %.2f us): %s\n",
           worst / 1000.0, limit / 1000.0, worst < limit ? "PASS" : "MISS");
    for (int c = 0; c < NCLASS; c++)
        free(t[c]);
    free(pr);
    return 0;
}
