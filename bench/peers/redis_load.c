/*
 * redis_load.c — the Redis peer's load generator (bench/peers.sh, issue 4 point 3).
 *
 * redis-benchmark cannot give every EVALSHA its own client order id, so this small hiredis
 * client does the load: CONNS connections split over THREADS threads, each thread a poll()
 * loop, one request in flight per connection (no pipelining: like a mall's web worker that
 * waits for its code before answering). Each request is
 *     EVALSHA <sha> 2 <stock list> <orders hash> <client order id>
 * with a client order id unique in the run ("<prefix>-<conn>-<n>").
 *
 * Usage:
 *   redis_load fill SERVER LIST N
 *       RPUSH N codes "PEER-0000000001".. onto LIST (1000 per command, pipelined).
 *   redis_load load SERVER LIST HASH SHA SECONDS CONNS THREADS PREFIX CODES_OUT
 *       Runs for SECONDS, then stops sending and waits (at most 10 s) for the replies in
 *       flight, so every request sent is answered. Writes every code received, one a line,
 *       to CODES_OUT (the bench compares them with the server's hash: codes are bench
 *       fixtures, not real ones). Prints one JSON line: ok, errors, unanswered, seconds,
 *       ops_per_s, p50_ms, p99_ms, max_ms and the successful issuances of each second.
 * SERVER is a port on 127.0.0.1, or the path of a Unix socket (anything with a '/').
 * Exits non-zero on a connection failure or bad usage; error replies are counted, the
 * first one printed to stderr.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { FILL_BATCH = 1000, DRAIN_S = 10, MAX_SECONDS = 3600 };

struct conn {
    redisContext *ctx;
    unsigned id;
    uint64_t n;     /* requests sent on this connection */
    double sent_at; /* when the request in flight was sent; 0 when idle */
};

struct job {
    /* settings, shared read-only */
    const char *server;
    const char *list, *hash, *sha, *prefix;
    double start, end;
    unsigned first_conn, nconns;
    /* results, owned by the thread until joined */
    uint64_t ok, errors, unanswered;
    uint32_t *lat_us;
    size_t nlat, caplat;
    uint64_t *per_s;
    double last_reply;
    char *codes;
    size_t ncodes_bytes, capcodes;
    char first_error[128];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        fprintf(stderr, "redis_load: out of memory\n");
        exit(1);
    }
    return p;
}

static redisContext *conn_open(const char *server, int nonblocking)
{
    struct timeval tv = {5, 0};
    redisContext *c = strchr(server, '/') ? redisConnectUnixWithTimeout(server, tv)
                                          : redisConnectWithTimeout("127.0.0.1", atoi(server), tv);
    if (!c || c->err) {
        fprintf(stderr, "redis_load: connect %s: %s\n", server, c ? c->errstr : "oom");
        exit(1);
    }
    if (nonblocking) {
        /* hiredis treats EAGAIN as "no data yet" only without REDIS_BLOCK */
        c->flags &= ~REDIS_BLOCK;
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    }
    return c;
}

static int fill(const char *server, const char *list, uint64_t n)
{
    redisContext *c = conn_open(server, 0);
    const char **argv = xrealloc(NULL, (FILL_BATCH + 2) * sizeof *argv);
    char *buf = xrealloc(NULL, (size_t)FILL_BATCH * 16);
    uint64_t next = 1, cmds = 0;
    argv[0] = "RPUSH";
    argv[1] = list;
    while (next <= n) {
        int k = 0;
        for (; k < FILL_BATCH && next <= n; k++, next++) {
            snprintf(buf + (size_t)k * 16, 16, "PEER-%010llu", (unsigned long long)next);
            argv[k + 2] = buf + (size_t)k * 16;
        }
        redisAppendCommandArgv(c, k + 2, argv, NULL);
        /* the args are copied into the output buffer; reuse buf only after that */
        cmds++;
    }
    for (uint64_t i = 0; i < cmds; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "redis_load: fill failed: %s\n", r ? r->str : c->errstr);
            return 1;
        }
        freeReplyObject(r);
    }
    free(buf);
    free(argv);
    redisFree(c);
    return 0;
}

static void send_one(struct job *j, struct conn *cn, double t)
{
    char id[96];
    snprintf(id, sizeof id, "%s-%u-%llu", j->prefix, cn->id, (unsigned long long)++cn->n);
    const char *argv[] = {"EVALSHA", j->sha, "2", j->list, j->hash, id};
    redisAppendCommandArgv(cn->ctx, 6, argv, NULL);
    cn->sent_at = t;
}

static void record_ok(struct job *j, const redisReply *r, double t, double sent_at)
{
    if (j->nlat == j->caplat) {
        j->caplat = j->caplat ? 2 * j->caplat : 65536;
        j->lat_us = xrealloc(j->lat_us, j->caplat * sizeof *j->lat_us);
    }
    j->lat_us[j->nlat++] = (uint32_t)((t - sent_at) * 1e6);
    if (j->ncodes_bytes + r->len + 2 > j->capcodes) {
        j->capcodes = j->capcodes ? 2 * j->capcodes : 1 << 20;
        j->codes = xrealloc(j->codes, j->capcodes);
    }
    long sec = (long)(t - j->start);
    if (sec >= 0 && sec < MAX_SECONDS)
        j->per_s[sec]++;
    memcpy(j->codes + j->ncodes_bytes, r->str, r->len);
    j->ncodes_bytes += r->len;
    j->codes[j->ncodes_bytes++] = '\n';
    j->ok++;
}

static void take_reply(struct job *j, struct conn *cn, redisReply *r, double t)
{
    if (r->type == REDIS_REPLY_STRING) {
        record_ok(j, r, t, cn->sent_at);
    } else {
        if (!j->errors)
            snprintf(j->first_error, sizeof j->first_error, "%s",
                     r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply type");
        j->errors++;
    }
    j->last_reply = t;
    cn->sent_at = 0;
}

/* Reads what is there; returns 1 when the connection's reply arrived. */
static int conn_read(struct job *j, struct conn *cn)
{
    redisReply *r = NULL;
    if (redisBufferRead(cn->ctx) != REDIS_OK || redisGetReply(cn->ctx, (void **)&r) != REDIS_OK) {
        fprintf(stderr, "redis_load: connection %u: %s\n", cn->id, cn->ctx->errstr);
        exit(1);
    }
    if (!r)
        return 0;
    take_reply(j, cn, r, now_s());
    freeReplyObject(r);
    return 1;
}

static void conn_flush(struct conn *cn)
{
    int done = 0;
    if (redisBufferWrite(cn->ctx, &done) != REDIS_OK) {
        fprintf(stderr, "redis_load: connection %u: %s\n", cn->id, cn->ctx->errstr);
        exit(1);
    }
}

static unsigned count_busy(const struct conn *cs, unsigned n)
{
    unsigned busy = 0;
    for (unsigned i = 0; i < n; i++)
        busy += cs[i].sent_at != 0;
    return busy;
}

static void *run_thread(void *arg)
{
    struct job *j = arg;
    struct conn *cs = xrealloc(NULL, j->nconns * sizeof *cs);
    struct pollfd *pf = xrealloc(NULL, j->nconns * sizeof *pf);
    for (unsigned i = 0; i < j->nconns; i++) {
        cs[i] = (struct conn){conn_open(j->server, 1), j->first_conn + i, 0, 0};
        pf[i] = (struct pollfd){cs[i].ctx->fd, POLLIN, 0};
    }
    for (unsigned i = 0; i < j->nconns; i++) {
        send_one(j, &cs[i], now_s());
        conn_flush(&cs[i]);
    }
    for (;;) {
        double t = now_s();
        unsigned busy = count_busy(cs, j->nconns);
        if ((t >= j->end && busy == 0) || t >= j->end + DRAIN_S) {
            j->unanswered = busy;
            break;
        }
        if (poll(pf, j->nconns, 100) < 0 && errno != EINTR) {
            perror("redis_load: poll");
            exit(1);
        }
        for (unsigned i = 0; i < j->nconns; i++) {
            if (!(pf[i].revents & (POLLIN | POLLERR | POLLHUP)) || !conn_read(j, &cs[i]))
                continue;
            double tr = now_s();
            if (tr < j->end) {
                send_one(j, &cs[i], tr);
                conn_flush(&cs[i]);
            }
        }
    }
    for (unsigned i = 0; i < j->nconns; i++)
        redisFree(cs[i].ctx);
    free(cs);
    free(pf);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static double pct_ms(const uint32_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i] / 1000.0;
}

/* Merges the threads' results, writes the codes, prints the JSON line. */
static int report(struct job *js, unsigned nt, double start, unsigned seconds, const char *out)
{
    uint64_t ok = 0, errors = 0, unanswered = 0;
    size_t nlat = 0;
    double last = start;
    FILE *f = fopen(out, "w");
    if (!f) {
        perror(out);
        return 1;
    }
    for (unsigned t = 0; t < nt; t++) {
        ok += js[t].ok;
        errors += js[t].errors;
        unanswered += js[t].unanswered;
        nlat += js[t].nlat;
        if (js[t].last_reply > last)
            last = js[t].last_reply;
        if (js[t].ncodes_bytes)
            fwrite(js[t].codes, 1, js[t].ncodes_bytes, f);
        if (js[t].errors)
            fprintf(stderr, "redis_load: error reply: %s\n", js[t].first_error);
    }
    if (ferror(f) | fclose(f)) {
        perror(out);
        return 1;
    }
    uint32_t *lat = xrealloc(NULL, (nlat + 1) * sizeof *lat);
    size_t k = 0;
    for (unsigned t = 0; t < nt; t++) {
        if (js[t].nlat)
            memcpy(lat + k, js[t].lat_us, js[t].nlat * sizeof *lat);
        k += js[t].nlat;
    }
    qsort(lat, nlat, sizeof *lat, cmp_u32);
    double secs = last - start;
    printf("{\"ok\":%llu,\"errors\":%llu,\"unanswered\":%llu,\"seconds\":%.3f,"
           "\"ops_per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"per_second\":[",
           (unsigned long long)ok, (unsigned long long)errors, (unsigned long long)unanswered, secs,
           secs > 0 ? ok / secs : 0.0, pct_ms(lat, nlat, 0.50), pct_ms(lat, nlat, 0.99),
           nlat ? lat[nlat - 1] / 1000.0 : 0.0);
    for (unsigned s = 0; s < seconds; s++) {
        uint64_t c = 0;
        for (unsigned t = 0; t < nt; t++)
            c += js[t].per_s[s];
        printf("%s%llu", s ? "," : "", (unsigned long long)c);
    }
    printf("]}\n");
    free(lat);
    return 0;
}

static int load(char **a)
{
    const char *server = a[0];
    unsigned seconds = (unsigned)atoi(a[4]), conns = (unsigned)atoi(a[5]);
    unsigned nt = (unsigned)atoi(a[6]);
    if (!seconds || seconds > MAX_SECONDS - DRAIN_S - 1 || !conns || !nt || nt > conns) {
        fprintf(stderr, "redis_load: bad load arguments\n");
        return 2;
    }
    struct job *js = xrealloc(NULL, nt * sizeof *js);
    pthread_t *th = xrealloc(NULL, nt * sizeof *th);
    double start = now_s();
    for (unsigned t = 0; t < nt; t++) {
        js[t] = (struct job){.server = server,
                             .list = a[1],
                             .hash = a[2],
                             .sha = a[3],
                             .prefix = a[7],
                             .start = start,
                             .end = start + seconds,
                             .first_conn = t * (conns / nt) + (t < conns % nt ? t : conns % nt),
                             .nconns = conns / nt + (t < conns % nt)};
        js[t].per_s = xrealloc(NULL, MAX_SECONDS * sizeof *js[t].per_s);
        memset(js[t].per_s, 0, MAX_SECONDS * sizeof *js[t].per_s);
        if (pthread_create(&th[t], NULL, run_thread, &js[t])) {
            fprintf(stderr, "redis_load: pthread_create failed\n");
            return 1;
        }
    }
    for (unsigned t = 0; t < nt; t++)
        pthread_join(th[t], NULL);
    int rc = report(js, nt, start, seconds, a[8]);
    for (unsigned t = 0; t < nt; t++) {
        free(js[t].lat_us);
        free(js[t].per_s);
        free(js[t].codes);
    }
    free(js);
    free(th);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "fill"))
        return fill(argv[2], argv[3], strtoull(argv[4], NULL, 10));
    if (argc == 11 && !strcmp(argv[1], "load"))
        return load(argv + 2);
    fprintf(stderr, "usage: redis_load fill SERVER LIST N\n"
                    "       redis_load load SERVER LIST HASH SHA SECONDS CONNS THREADS PREFIX "
                    "CODES_OUT\n");
    return 2;
}
