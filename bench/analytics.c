/*
 * analytics.c — issue 16 item 4: GET /v1/analytics/{top,hours,claims,co}
 * answer in under 50 ms at 10 million orders.
 *
 * 1. Starts a daemon in process on a fresh directory (K priced products, C
 *    mall clients and ops) and stops it: the store then holds the catalog.
 * 2. Opens that store alone and writes N orders' worth of aggregates with
 *    the code the writer runs for every order write (store_agg_order, as for
 *    a stock order's one write: created and succeeded, 8% failed, at once),
 *    spread evenly over D days (so every hour of every day has orders) over
 *    the C clients and the K SKUs (at most 100; skewed: low SKU numbers sell more), and G
 *    grants' transitions (store_agg_grant: granted; then 70% claimed within
 *    20 days, 20% expired after 30, 10% gifted and claimed) by U holders
 *    with two tags each (30 departments, 5 sites), in transactions of CHUNK.
 *    No order records: only what the aggregates of such orders are.
 * 3. Starts the daemon on that store again and times each endpoint over the
 *    whole range (D days, at most 366) through ph_http_serve_offline (the
 *    real handlers, authentication, JSON and all, without a socket), ROUNDS
 *    times each: prints the slowest answer of each and PASS/MISS against
 *    LIMIT_MS. Checks the answers against what it generated (top's sums over
 *    every SKU, the hours' total, the claims' totals): exit 1 when they differ.
 *
 * Usage: analytics DIR PLUGIN_DIR [--orders N] [--days D] [--clients C]
 *                  [--skus K] [--grants G] [--users U] [--rounds R] [--limit-ms MS]
 * DIR must not exist. Prints human lines, then one JSON line. Exit 0 PASS,
 * 3 MISS, 1 on a wrong answer or a failure.
 */
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "daemon/daemon.h"
#include "http/http_api.h"
#include "store/store_int.h"

#define DAY_MS 86400000LL
#define T0     1733011200000LL /* 2024-12-01T00:00:00Z */
#define CHUNK  200000
/* sha256 of "fulfill-token", "ops-token" */
#define MALL_SHA "b85d590db0211c10bdcd8c97c7a7df12c576e72c0ff76d67bb5421a078888d39"
#define OPS_SHA  "d9310c002af91822beb0b3487d8b04f85bf6bf1f8a5496bff7d35fc7c5a29def"

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "analytics: %s: %s\n", what, msg ? msg : "");
    exit(1);
}

static uint64_t rng_state = 16;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

typedef struct opts {
    const char *dir, *plugins;
    uint64_t orders, grants, users;
    unsigned days, clients, skus, rounds;
    double limit_ms;
} opts;

static char *config_text(const opts *o)
{
    size_t cap = 4096 + (size_t)(o->skus + o->clients) * 256;
    char *y = malloc(cap);
    size_t n = (size_t)snprintf(y, cap,
                                "listen:\n  address: 127.0.0.1\n  port: 0\n"
                                "data_dir: %s/data\nmap_size_mb: 256\n"
                                "master_key_file: %s/master.key\nmaster_key_create: true\n"
                                "plugin_dir: %s\nlog:\n  level: warn\nclients:\n"
                                "  - name: ops\n    token_sha256: " OPS_SHA "\n    scopes: [ops]\n",
                                o->dir, o->dir, o->plugins);
    for (unsigned c = 0; c < o->clients; c++) {
        /* c000 holds "fulfill-token"; the others' tokens are never used */
        char sha[65];
        if (c == 0)
            snprintf(sha, sizeof sha, "%s", MALL_SHA);
        else
            snprintf(sha, sizeof sha, "%064x", c);
        n += (size_t)snprintf(y + n, cap - n,
                              "  - name: c%03u\n    token_sha256: %s\n    scopes: [fulfill]\n", c,
                              sha);
    }
    n += (size_t)snprintf(y + n, cap - n, "products:\n");
    for (unsigned k = 0; k < o->skus; k++)
        n += (size_t)snprintf(y + n, cap - n,
                              "  - sku: sku%03u\n    name: Product %u\n    brand: b%u\n"
                              "    category: c\n    delivery: card_code\n"
                              "    face_value: \"30.00\"\n    price: \"%u.00\"\n",
                              k, k, k % 10, 10 + k % 50);
    return y;
}

static void daemon_up(ph_daemon *d, const opts *o)
{
    char *y = config_text(o);
    ph_config *cfg;
    ph_err err = {0};
    if (ph_config_load_string(y, strlen(y), "bench", &cfg, &err) != PH_OK)
        die("config", err.msg);
    free(y);
    memset(d, 0, sizeof *d);
    signal(PH_SIGNAL_WAKE, SIG_IGN);
    if (ph_daemon_start(d, cfg, NULL, &err) != PH_OK)
        die("daemon start", err.msg);
}

/* What the generator wrote, to check the answers against. */
typedef struct truth {
    uint64_t succeeded, orders, granted, claimed, expired, gifted;
} truth;

static void generate(const opts *o, truth *t)
{
    ph_store_opts so = {.dir = NULL, .map_size = 256ull << 20};
    char dir[512];
    snprintf(dir, sizeof dir, "%s/data", o->dir);
    so.dir = dir;
    ph_store *s;
    ph_err err = {0};
    if (ph_store_open(&so, &s, &err) != PH_OK)
        die("store open", err.msg);
    char client[64][PH_SKU_MAX + 1], sku[100][PH_SKU_MAX + 1];
    for (unsigned c = 0; c < o->clients; c++)
        snprintf(client[c], sizeof client[c], "c%03u", c);
    for (unsigned k = 0; k < o->skus; k++)
        snprintf(sku[k], sizeof sku[k], "sku%03u", k);
    double t0 = mono_s(), c0 = cpu_s();
    uint64_t span = (uint64_t)o->days * DAY_MS;
    ph_order ord;
    memset(&ord, 0, sizeof ord);
    for (uint64_t i = 0; i < o->orders;) {
        MDB_txn *txn;
        if (mdb_txn_begin(s->env, NULL, 0, &txn))
            die("txn", "begin");
        ph_wtxn w = {.s = s, .txn = txn};
        for (uint64_t end = i + CHUNK; i < o->orders && i < end; i++) {
            uint64_t r = rnd();
            unsigned k = (unsigned)(((r & 0xffff) * (r & 0xffff) >> 16) * o->skus >> 16);
            ord.id = i + 1;
            memcpy(ord.client, client[(r >> 16) % o->clients], PH_SKU_MAX + 1);
            memcpy(ord.sku, sku[k], PH_SKU_MAX + 1);
            ord.quantity = 1 + (uint32_t)((r >> 24) % 3);
            ord.created_at = T0 + (int64_t)(i * span / o->orders);
            ord.state = (r >> 32) % 100 < 92 ? PH_ORDER_SUCCEEDED : PH_ORDER_FAILED;
            t->succeeded += ord.state == PH_ORDER_SUCCEEDED;
            t->orders++;
            if (store_agg_order(&w, &ord, &err) != PH_OK)
                die("store_agg_order", err.msg);
        }
        if (mdb_txn_commit(txn))
            die("txn", "commit");
    }
    double t1 = mono_s(), c1 = cpu_s();
    printf("aggregates of %llu orders written in %.1f s (%.2f us CPU per order)\n",
           (unsigned long long)o->orders, t1 - t0, (c1 - c0) * 1e6 / (double)o->orders);
    unsigned nben = o->skus < 20 ? o->skus : 20;
    for (uint64_t j = 0; j < o->grants;) {
        MDB_txn *txn;
        if (mdb_txn_begin(s->env, NULL, 0, &txn))
            die("txn", "begin");
        ph_wtxn w = {.s = s, .txn = txn};
        for (uint64_t end = j + CHUNK / 4; j < o->grants && j < end; j++) {
            uint64_t r = rnd(), u = r % o->users;
            char dep[32], site[16];
            snprintf(dep, sizeof dep, "department=d%02u", (unsigned)(u % 30));
            snprintf(site, sizeof site, "site=s%u", (unsigned)(u % 5));
            const char *tags[2] = {dep, site};
            uint8_t key[8], key2[8];
            memcpy(key, &u, 8);
            uint64_t u2 = (u * 7 + 1) % o->users;
            memcpy(key2, &u2, 8);
            const char *cl = client[(r >> 20) % o->clients], *sk = sku[(r >> 28) % nben];
            int64_t at = T0 + (int64_t)(j * (span - 31 * DAY_MS) / o->grants);
            unsigned fate = (unsigned)((r >> 40) % 10);
            int64_t later = at + (int64_t)((r >> 48) % (20 * DAY_MS));
            int rc = store_agg_grant(&w, PH_AGG_GRANTED, cl, tags, 2, key, sk, at, &err);
            t->granted++;
            if (rc == PH_OK && fate < 7)
                rc = store_agg_grant(&w, PH_AGG_CLAIMED, cl, tags, 2, key, sk, later, &err),
                t->claimed++;
            else if (rc == PH_OK && fate < 9)
                rc = store_agg_grant(&w, PH_AGG_EXPIRED, cl, tags, 2, NULL, sk, at + 30 * DAY_MS,
                                     &err),
                t->expired++;
            else if (rc == PH_OK) {
                rc = store_agg_grant(&w, PH_AGG_GIFTED, cl, tags, 2, NULL, sk, later, &err);
                if (rc == PH_OK)
                    rc = store_agg_grant(&w, PH_AGG_CLAIMED, cl, tags, 2, key2, sk, later + DAY_MS,
                                         &err);
                t->gifted++, t->claimed++;
            }
            if (rc)
                die("store_agg_grant", err.msg);
        }
        if (mdb_txn_commit(txn))
            die("txn", "commit");
    }
    double t2 = mono_s(), c2 = cpu_s();
    if (o->grants)
        printf("aggregates of %llu grants written in %.1f s (%.2f us CPU per grant)\n",
               (unsigned long long)o->grants, t2 - t1, (c2 - c1) * 1e6 / (double)o->grants);
    ph_store_close(s);
}

static json_t *serve(ph_daemon *d, const char *url, const char *token, double *ms)
{
    char auth[96];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    const char *const headers[] = {auth, NULL};
    unsigned status = 0;
    char *out = NULL;
    size_t len = 0;
    double t0 = mono_s();
    int rc = ph_http_serve_offline(d->http, "GET", url, headers, NULL, 0, &status, &out, &len);
    *ms = (mono_s() - t0) * 1000;
    if (rc != PH_OK || status != 200)
        die(url, out ? out : ph_strerror(rc));
    json_t *j = json_loadb(out, len, 0, NULL);
    free(out);
    if (!j)
        die(url, "not JSON");
    return j;
}

static void check(int ok, const char *what)
{
    if (!ok)
        die("wrong answer", what);
}

int main(int argc, char **argv)
{
    opts o = {.orders = 10000000,
              .grants = 1000000,
              .users = 300000,
              .days = 365,
              .clients = 8,
              .skus = 100,
              .rounds = 5,
              .limit_ms = 50};
    if (argc < 3)
        die("usage", "analytics DIR PLUGIN_DIR [--orders N] ...");
    o.dir = argv[1];
    o.plugins = argv[2];
    for (int i = 3; i + 1 < argc; i += 2) {
        unsigned long long v = strtoull(argv[i + 1], NULL, 10);
        if (!strcmp(argv[i], "--orders"))
            o.orders = v;
        else if (!strcmp(argv[i], "--grants"))
            o.grants = v;
        else if (!strcmp(argv[i], "--users"))
            o.users = v ? v : 1;
        else if (!strcmp(argv[i], "--days"))
            o.days = (unsigned)(v < 32 ? 32 : v > 366 ? 366 : v);
        else if (!strcmp(argv[i], "--clients"))
            o.clients = (unsigned)(v < 1 ? 1 : v > 64 ? 64 : v);
        else if (!strcmp(argv[i], "--skus"))
            o.skus = (unsigned)(v < 2 ? 2 : v > 100 ? 100 : v); /* top n=100: all */
        else if (!strcmp(argv[i], "--rounds"))
            o.rounds = (unsigned)(v ? v : 1);
        else if (!strcmp(argv[i], "--limit-ms"))
            o.limit_ms = (double)v;
        else
            die("unknown option", argv[i]);
    }
    if (mkdir(o.dir, 0700))
        die("mkdir", o.dir);
    static ph_daemon d;
    daemon_up(&d, &o); /* the store, its keys and the catalog */
    ph_daemon_stop(&d, 5000);
    truth t = {0};
    generate(&o, &t);
    daemon_up(&d, &o);

    char from[16], to[16], q[512];
    time_t f = (time_t)(T0 / 1000), e = (time_t)((T0 + (int64_t)(o.days - 1) * DAY_MS) / 1000);
    strftime(from, sizeof from, "%Y-%m-%d", gmtime(&f));
    strftime(to, sizeof to, "%Y-%m-%d", gmtime(&e));
    struct {
        const char *name, *fmt, *token;
    } eps[] = {
        {"top by orders, days", "/v1/analytics/top?by=orders&period=day&n=10&from=%s&to=%s",
         "ops-token"},
        {"top by value, weeks", "/v1/analytics/top?by=value&period=week&n=10&from=%s&to=%s",
         "ops-token"},
        {"top, every sku, weeks", "/v1/analytics/top?by=orders&period=week&n=100&from=%s&to=%s",
         "ops-token"},
        {"top, one mall, days", "/v1/analytics/top?by=orders&period=day&n=10&from=%s&to=%s",
         "fulfill-token"},
        {"hours", "/v1/analytics/hours?from=%s&to=%s", "ops-token"},
        {"hours, one mall", "/v1/analytics/hours?from=%s&to=%s", "fulfill-token"},
        {"claims by client", "/v1/analytics/claims?by=client&from=%s&to=%s", "ops-token"},
        {"claims by tag", "/v1/analytics/claims?by=tag&from=%s&to=%s", "ops-token"},
        {"claims by tag, one mall", "/v1/analytics/claims?by=tag&from=%s&to=%s", "fulfill-token"},
        {"claims by sku", "/v1/analytics/claims?by=sku&from=%s&to=%s", "ops-token"},
        {"co-redemption", "/v1/analytics/co?a=sku000&b=sku001&within_d=30&from=%s&to=%s",
         "ops-token"},
    };
    size_t neps = sizeof eps / sizeof eps[0];
    double worst_all = 0;
    char json[4096];
    size_t jn =
        (size_t)snprintf(json, sizeof json,
                         "{\"bench\":\"analytics\",\"orders\":%llu,\"grants\":%llu,"
                         "\"days\":%u,\"clients\":%u,\"skus\":%u,\"limit_ms\":%.0f,\"ms\":{",
                         (unsigned long long)o.orders, (unsigned long long)o.grants, o.days,
                         o.clients, o.skus, o.limit_ms);
    printf("each endpoint over %s..%s, slowest of %u rounds:\n", from, to, o.rounds);
    for (size_t i = 0; i < neps; i++) {
        double worst = 0;
        snprintf(q, sizeof q, eps[i].fmt, from, to);
        for (unsigned r = 0; r < o.rounds; r++) {
            double ms;
            json_t *j = serve(&d, q, eps[i].token, &ms);
            worst = ms > worst ? ms : worst;
            if (r == 0 && i == 2) { /* every sku of every week: the sums of the orders */
                uint64_t sum = 0;
                size_t a, b;
                json_t *p, *x;
                json_array_foreach(json_object_get(j, "periods"), a, p)
                    json_array_foreach(json_object_get(p, "top"), b, x) sum +=
                    (uint64_t)json_integer_value(json_object_get(x, "orders"));
                check(sum == t.succeeded, "top: the succeeded orders");
            }
            if (r == 0 && i == 4)
                check((uint64_t)json_integer_value(json_object_get(j, "total")) == t.orders,
                      "hours: every order");
            if (r == 0 && i == 6) {
                json_t *tot = json_object_get(j, "totals");
                check((uint64_t)json_integer_value(json_object_get(tot, "granted")) == t.granted &&
                          (uint64_t)json_integer_value(json_object_get(tot, "claimed")) ==
                              t.claimed &&
                          (uint64_t)json_integer_value(json_object_get(tot, "expired")) ==
                              t.expired &&
                          (uint64_t)json_integer_value(json_object_get(tot, "gifted")) == t.gifted,
                      "claims: the transitions");
            }
            json_decref(j);
        }
        worst_all = worst > worst_all ? worst : worst_all;
        printf("  %-26s %8.2f ms  %s\n", eps[i].name, worst, worst < o.limit_ms ? "PASS" : "MISS");
        jn += (size_t)snprintf(json + jn, sizeof json - jn, "%s\"%s\":%.2f", i ? "," : "",
                               eps[i].name, worst);
    }
    ph_daemon_stop(&d, 5000);
    int pass = worst_all < o.limit_ms;
    printf("analytics: slowest endpoint %.2f ms at %llu orders and %llu grants (limit %.0f ms): "
           "%s\n",
           worst_all, (unsigned long long)o.orders, (unsigned long long)o.grants, o.limit_ms,
           pass ? "PASS" : "MISS");
    printf("%s},\"worst_ms\":%.2f,\"result\":\"%s\"}\n", json, worst_all, pass ? "PASS" : "MISS");
    return pass ? 0 : 3;
}
