/*
 * Rule 1 under concurrency: no code is lost or issued twice, and the same
 * client order id never fulfils twice, when many clients order at once.
 *
 * Worker threads never assert (Criterion's asserts belong to the test's own
 * thread): they record what they saw, and the test thread checks it after
 * joining them.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* A daemon a failed assertion left running is killed after the test (its
 * directory stays, for a look at the log and data). */
static h_daemon *live;

static void kill_leftover(void)
{
    h_leftover(live);
    live = NULL;
}

/* ---- small helpers ---------------------------------------------------------- */

typedef struct strvec {
    char **v;
    size_t n, cap;
} strvec;

static int strvec_push(strvec *s, const char *str)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        char **g = realloc(s->v, cap * sizeof *g);
        if (!g)
            return -1;
        s->v = g;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(str)))
        return -1;
    s->n++;
    return 0;
}

static void strvec_free(strvec *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static json_t *order_of(const h_resp *r)
{
    return json_object_get(r->json, "order");
}

static const char *error_of(const h_resp *r)
{
    const char *e = json_string_value(json_object_get(r->json, "error"));
    return e ? e : "";
}

/* The codes of an order response, joined with ',' into buf (for comparisons). */
static size_t codes_joined(json_t *order, char *buf, size_t len)
{
    json_t *codes = json_object_get(order, "codes"), *c;
    size_t i, off = 0;
    buf[0] = 0;
    json_array_foreach(codes, i, c)
    {
        const char *s = json_string_value(json_object_get(c, "code"));
        off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s%s", i ? "," : "",
                                s ? s : "?");
    }
    return json_array_size(codes);
}

static json_int_t jint(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_integer(v), "no integer '%s'", key);
    return json_integer_value(v);
}

/* Sorts all and asserts every code is there once and exactly the expected set
 * "<prefix>-%07d" for 0..n-1 (zero padding keeps the sorted orders equal). */
static void assert_exact_codes(strvec *all, const char *prefix, int n)
{
    qsort(all->v, all->n, sizeof *all->v, cmp_str);
    for (size_t i = 1; i < all->n; i++)
        cr_assert_str_neq(all->v[i - 1], all->v[i], "code %s was issued twice", all->v[i]);
    cr_assert_eq(all->n, (size_t)n, "%zu codes issued, %d imported", all->n, n);
    char want[64];
    for (int i = 0; i < n; i++) {
        snprintf(want, sizeof want, "%s-%07d", prefix, i);
        cr_assert_str_eq(all->v[i], want, "issued set differs from imported set at %s", want);
    }
}

static void stop_and_check_store(h_daemon *d)
{
    cr_assert_eq(h_stop(d, SIGTERM), 0, "perkhubd did not stop cleanly");
    char *out;
    int rc = h_check_store(d, &out);
    cr_assert_eq(rc, 0, "--check-store failed: %s", out);
    free(out);
}

/* ---- 1. 32 clients drain 10,000 codes one at a time ------------------------- */

#define DRAIN_THREADS 32
#define DRAIN_CODES   10000

typedef struct drainer {
    h_conn *conn;
    int idx;
    pthread_barrier_t *go;
    int created, out_of_stock, other, transport;
    strvec codes;
    char first_bad[512];
} drainer;

static void *drain_main(void *arg)
{
    drainer *w = arg;
    pthread_barrier_wait(w->go);
    for (int n = 0;; n++) {
        char coid[64];
        snprintf(coid, sizeof coid, "D%02d-%06d", w->idx, n);
        h_resp r;
        if (h_conn_order(w->conn, "mall-token", coid, "test.card", 1, &r)) {
            w->transport++;
            h_resp_free(&r);
            break;
        }
        int stop = 0;
        json_t *codes = json_object_get(order_of(&r), "codes");
        if (r.status == 201 && json_array_size(codes) == 1) {
            w->created++;
            if (strvec_push(&w->codes,
                            json_string_value(json_object_get(json_array_get(codes, 0), "code"))))
                w->other++, stop = 1;
        } else if (r.status == 409 && strcmp(error_of(&r), "out_of_stock") == 0) {
            w->out_of_stock++;
            stop = 1;
        } else {
            if (!w->other++)
                snprintf(w->first_bad, sizeof w->first_bad, "%s: %ld %s", coid, r.status, r.body);
            stop = 1;
        }
        h_resp_free(&r);
        if (stop)
            break;
    }
    return NULL;
}

Test(concurrency, drain_10000_codes_with_32_clients, .fini = kill_leftover)
{
    static h_daemon d;
    h_setup(&d, NULL);
    live = &d;
    cr_assert_eq(h_start(&d), 0);
    char *csv = h_codes_csv("CONC", DRAIN_CODES);
    h_resp r = h_import(&d, "test.card", csv, 201);
    h_resp_free(&r);
    free(csv);

    static drainer w[DRAIN_THREADS];
    pthread_t th[DRAIN_THREADS];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, DRAIN_THREADS);
    for (int i = 0; i < DRAIN_THREADS; i++) {
        w[i] = (drainer){.conn = h_conn_new(&d), .idx = i, .go = &go};
    }
    int64_t t0 = h_now_ms();
    for (int i = 0; i < DRAIN_THREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, drain_main, &w[i]), 0);
    for (int i = 0; i < DRAIN_THREADS; i++)
        pthread_join(th[i], NULL);
    int64_t took = h_now_ms() - t0;
    pthread_barrier_destroy(&go);

    strvec all = {0};
    int created = 0;
    for (int i = 0; i < DRAIN_THREADS; i++) {
        cr_assert_eq(w[i].transport, 0, "thread %d lost its connection", i);
        cr_assert_eq(w[i].other, 0, "thread %d got an unexpected answer: %s", i, w[i].first_bad);
        cr_assert_eq(w[i].out_of_stock, 1, "thread %d did not end on out_of_stock", i);
        created += w[i].created;
        for (size_t k = 0; k < w[i].codes.n; k++)
            cr_assert_eq(strvec_push(&all, w[i].codes.v[k]), 0);
        strvec_free(&w[i].codes);
        h_conn_free(w[i].conn);
    }
    fprintf(stderr, "concurrency: %d orders by %d clients in %lld ms (%.0f orders/s)\n", created,
            DRAIN_THREADS, (long long)took, took ? created * 1000.0 / (double)took : 0.0);
    cr_assert_eq(created, DRAIN_CODES, "%d orders succeeded, expected %d", created, DRAIN_CODES);
    assert_exact_codes(&all, "CONC", DRAIN_CODES);
    strvec_free(&all);

    r = h_get(&d, "/v1/stats", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *row = h_stats_sku(r.json, "test.card");
    cr_assert(row, "stats: no test.card row: %s", r.body);
    cr_assert_eq(jint(row, "imported"), DRAIN_CODES);
    cr_assert_eq(jint(row, "available"), 0, "%s", r.body);
    cr_assert_eq(jint(row, "issued"), DRAIN_CODES, "%s", r.body);
    cr_assert_eq(jint(r.json, "orders"), DRAIN_CODES, "%s", r.body);
    h_resp_free(&r);

    r = h_get(&d, "/v1/products/test.card", "mall-token");
    cr_assert_eq(json_integer_value(json_object_get(
                     json_object_get(json_object_get(r.json, "product"), "stock"), "available")),
                 0, "%s", r.body);
    h_resp_free(&r);

    stop_and_check_store(&d);
    h_cleanup(&d);
}

/* ---- 2. the same client order id, 16 times at once --------------------------- */

#define SAME_THREADS 16
#define SAME_ROUNDS  20
#define SAME_QTY     3

typedef struct samer {
    h_conn *conn;
    pthread_barrier_t *go;
    const char *coid;
    int ok;
    long status;
    int replay_header;
    json_int_t order_id;
    char codes[512];
    size_t ncodes;
    char body[512];
} samer;

static void *same_main(void *arg)
{
    samer *w = arg;
    pthread_barrier_wait(w->go);
    h_resp r;
    w->ok = h_conn_order(w->conn, "mall-token", w->coid, "test.card", SAME_QTY, &r) == 0;
    w->status = r.status;
    char hv[32];
    const char *h = h_header(&r, "Idempotent-Replay", hv, sizeof hv);
    w->replay_header = h && strcmp(h, "true") == 0;
    json_t *o = order_of(&r);
    w->order_id = json_integer_value(json_object_get(o, "id"));
    w->ncodes = codes_joined(o, w->codes, sizeof w->codes);
    snprintf(w->body, sizeof w->body, "%s", r.body);
    h_resp_free(&r);
    return NULL;
}

Test(concurrency, same_client_order_id_16_at_once, .fini = kill_leftover)
{
    static h_daemon d;
    h_setup(&d, NULL);
    live = &d;
    cr_assert_eq(h_start(&d), 0);
    char *csv = h_codes_csv("SAME", 100);
    h_resp r = h_import(&d, "test.card", csv, 201);
    h_resp_free(&r);
    free(csv);

    samer w[SAME_THREADS];
    h_conn *conns[SAME_THREADS];
    for (int i = 0; i < SAME_THREADS; i++)
        conns[i] = h_conn_new(&d);
    strvec seen = {0};
    for (int round = 0; round < SAME_ROUNDS; round++) {
        char coid[32];
        snprintf(coid, sizeof coid, "SAME-%02d", round);
        pthread_t th[SAME_THREADS];
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, SAME_THREADS);
        for (int i = 0; i < SAME_THREADS; i++) {
            w[i] = (samer){.conn = conns[i], .go = &go, .coid = coid};
            cr_assert_eq(pthread_create(&th[i], NULL, same_main, &w[i]), 0);
        }
        for (int i = 0; i < SAME_THREADS; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);

        int created = 0, replayed = 0;
        for (int i = 0; i < SAME_THREADS; i++) {
            cr_assert(w[i].ok, "round %d thread %d: no response", round, i);
            if (w[i].status == 201) {
                created++;
                cr_assert(!w[i].replay_header, "a 201 carries Idempotent-Replay");
            } else {
                cr_assert_eq(w[i].status, 200, "round %d thread %d: %ld %s", round, i, w[i].status,
                             w[i].body);
                cr_assert(w[i].replay_header, "a replay lacks Idempotent-Replay: true");
                replayed++;
            }
            cr_assert_eq(w[i].ncodes, SAME_QTY, "round %d: %s", round, w[i].body);
            cr_assert_eq(w[i].order_id, w[0].order_id, "round %d: two order ids (%lld, %lld)",
                         round, (long long)w[i].order_id, (long long)w[0].order_id);
            cr_assert_str_eq(w[i].codes, w[0].codes, "round %d: different codes", round);
        }
        cr_assert_eq(created, 1, "round %d: %d fulfilments of one client order id", round, created);
        cr_assert_eq(replayed, SAME_THREADS - 1);
        cr_assert_eq(strvec_push(&seen, w[0].codes), 0);

        /* the same id with another quantity is a conflict and changes nothing */
        r = h_order(&d, "mall-token", coid, "test.card", SAME_QTY + 1);
        cr_assert_eq(r.status, 409, "%s", r.body);
        cr_assert_str_eq(error_of(&r), "conflict");
        h_resp_free(&r);
        char path[96];
        snprintf(path, sizeof path, "/v1/orders?client_order_id=%s", coid);
        r = h_get(&d, path, "mall-token");
        cr_assert_eq(r.status, 200, "%s", r.body);
        char codes[512];
        codes_joined(order_of(&r), codes, sizeof codes);
        cr_assert_eq(json_integer_value(json_object_get(order_of(&r), "id")), w[0].order_id);
        cr_assert_str_eq(codes, w[0].codes);
        h_resp_free(&r);
    }
    for (int i = 0; i < SAME_THREADS; i++)
        h_conn_free(conns[i]);
    /* no two rounds share a code */
    qsort(seen.v, seen.n, sizeof *seen.v, cmp_str);
    for (size_t i = 1; i < seen.n; i++)
        cr_assert_str_neq(seen.v[i - 1], seen.v[i]);
    strvec_free(&seen);

    r = h_get(&d, "/v1/orders?limit=1000", "mall-token");
    cr_assert_eq(json_array_size(json_object_get(r.json, "orders")), SAME_ROUNDS, "%s", r.body);
    h_resp_free(&r);
    r = h_get(&d, "/v1/stats", "ops-token");
    json_t *row = h_stats_sku(r.json, "test.card");
    cr_assert(row);
    cr_assert_eq(jint(row, "issued"), SAME_ROUNDS * SAME_QTY, "%s", r.body);
    cr_assert_eq(jint(row, "available"), 100 - SAME_ROUNDS * SAME_QTY, "%s", r.body);
    cr_assert_eq(jint(r.json, "orders"), SAME_ROUNDS, "%s", r.body);
    h_resp_free(&r);

    stop_and_check_store(&d);
    h_cleanup(&d);
}

/* ---- 3. multi-code orders from two clients on two SKUs, with lookups ------- */

#define MIX_ORDERERS 8
#define MIX_LOOKERS  4
#define MIX_CODES    1500 /* per SKU */

typedef struct mix_order {
    json_int_t id;
    int client; /* 0 mall, 1 othermall */
    int sku;    /* 0 test.card (MIXA), 1 test.card2 (MIXB) */
    int qty;
    char *codes; /* joined with ',' */
    char first_code[64];
} mix_order;

typedef struct mix_shared {
    pthread_mutex_t mu;
    mix_order *orders;
    size_t n, cap;
    atomic_int done;
    atomic_int failures;
    char first_failure[600];
} mix_shared;

static const char *const mix_tokens[2] = {"mall-token", "other-token"};
static const char *const mix_skus[2] = {"test.card", "test.card2"};
static const char *const mix_prefix[2] = {"MIXA", "MIXB"};

static void mix_fail(mix_shared *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mix_fail(mix_shared *s, const char *fmt, ...)
{
    if (atomic_fetch_add(&s->failures, 1) == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->first_failure, sizeof s->first_failure, fmt, ap);
        va_end(ap);
    }
}

typedef struct mixer {
    mix_shared *s;
    h_conn *conn;
    int idx;
    int orders, codes, retries_ok;
    unsigned seed;
    int64_t last_avail[2];
    long lookups;
} mixer;

static void *mix_order_main(void *arg)
{
    mixer *w = arg;
    mix_shared *s = w->s;
    int client = w->idx % 2, sku = (w->idx / 2) % 2;
    for (int n = 0;; n++) {
        char coid[64];
        snprintf(coid, sizeof coid, "M%02d-%05d", w->idx, n);
        int qty = (n * 7 + w->idx) % 5 + 1;
        h_resp r;
        if (h_conn_order(w->conn, mix_tokens[client], coid, mix_skus[sku], qty, &r)) {
            mix_fail(s, "%s: no response", coid);
            h_resp_free(&r);
            break;
        }
        if (r.status == 409 && strcmp(error_of(&r), "out_of_stock") == 0 && qty > 1) {
            /* nothing was stored: the same id may be retried, here for one code */
            h_resp_free(&r);
            qty = 1;
            if (h_conn_order(w->conn, mix_tokens[client], coid, mix_skus[sku], qty, &r)) {
                mix_fail(s, "%s: no response", coid);
                h_resp_free(&r);
                break;
            }
            if (r.status == 201)
                w->retries_ok++;
        }
        if (r.status == 409 && strcmp(error_of(&r), "out_of_stock") == 0) {
            h_resp_free(&r);
            break;
        }
        json_t *o = order_of(&r);
        char joined[1024];
        size_t nc = codes_joined(o, joined, sizeof joined);
        if (r.status != 201 || nc != (size_t)qty) {
            mix_fail(s, "%s q=%d: %ld %s", coid, qty, r.status, r.body);
            h_resp_free(&r);
            break;
        }
        mix_order mo = {.id = json_integer_value(json_object_get(o, "id")),
                        .client = client,
                        .sku = sku,
                        .qty = qty,
                        .codes = strdup(joined)};
        snprintf(mo.first_code, sizeof mo.first_code, "%s",
                 json_string_value(
                     json_object_get(json_array_get(json_object_get(o, "codes"), 0), "code")));
        h_resp_free(&r);
        pthread_mutex_lock(&s->mu);
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 256;
            mix_order *g = realloc(s->orders, cap * sizeof *g);
            if (g) {
                s->orders = g;
                s->cap = cap;
            }
        }
        if (s->n < s->cap)
            s->orders[s->n++] = mo;
        else
            free(mo.codes);
        pthread_mutex_unlock(&s->mu);
        w->orders++;
        w->codes += qty;
    }
    return NULL;
}

/* Reads while the orders are being placed: owner and non-owner views of random
 * orders, code lookups both ways, and stock that only goes down. */
static void *mix_lookup_main(void *arg)
{
    mixer *w = arg;
    mix_shared *s = w->s;
    w->last_avail[0] = w->last_avail[1] = INT64_MAX;
    while (!atomic_load(&s->done)) {
        mix_order o = {0};
        char codes[1024];
        pthread_mutex_lock(&s->mu);
        if (s->n) {
            o = s->orders[(size_t)rand_r(&w->seed) % s->n];
            snprintf(codes, sizeof codes, "%s", o.codes);
        }
        pthread_mutex_unlock(&s->mu);

        h_resp r;
        char path[128];
        snprintf(path, sizeof path, "/v1/products/%s", mix_skus[w->lookups % 2]);
        if (h_conn_http(w->conn, "GET", path, "mall-token", NULL, NULL, 0, &r) == 0) {
            json_int_t av = json_integer_value(json_object_get(
                json_object_get(json_object_get(r.json, "product"), "stock"), "available"));
            if (r.status != 200 || av > w->last_avail[w->lookups % 2])
                mix_fail(s, "stock of %s went from %lld to %lld (%ld)", mix_skus[w->lookups % 2],
                         (long long)w->last_avail[w->lookups % 2], (long long)av, r.status);
            w->last_avail[w->lookups % 2] = av;
        } else {
            mix_fail(s, "GET %s: no response", path);
        }
        h_resp_free(&r);
        w->lookups++;
        if (!o.id)
            continue;

        snprintf(path, sizeof path, "/v1/orders/%lld", (long long)o.id);
        if (h_conn_http(w->conn, "GET", path, mix_tokens[o.client], NULL, NULL, 0, &r) == 0) {
            char got[1024];
            codes_joined(order_of(&r), got, sizeof got);
            if (r.status != 200 || strcmp(got, codes) != 0)
                mix_fail(s, "owner GET order %lld: %ld %s (recorded %s)", (long long)o.id, r.status,
                         r.body, codes);
        }
        h_resp_free(&r);
        if (h_conn_http(w->conn, "GET", path, mix_tokens[!o.client], NULL, NULL, 0, &r) == 0 &&
            (r.status != 404 || h_mem_count(r.body, r.len, o.first_code)))
            mix_fail(s, "non-owner GET order %lld: %ld %s", (long long)o.id, r.status, r.body);
        h_resp_free(&r);

        char body[160];
        int bl = snprintf(body, sizeof body, "{\"code\":\"%s\"}", o.first_code);
        if (h_conn_http(w->conn, "POST", "/v1/codes/lookup", mix_tokens[o.client], NULL, body,
                        (size_t)bl, &r) == 0) {
            json_t *res = json_array_get(json_object_get(r.json, "results"), 0);
            const char *diag = json_string_value(json_object_get(res, "diagnosis"));
            if (r.status != 200 || !diag || strcmp(diag, "issued") ||
                json_integer_value(json_object_get(res, "order_id")) != o.id)
                mix_fail(s, "owner lookup of a code of order %lld: %ld %s", (long long)o.id,
                         r.status, r.body);
        }
        h_resp_free(&r);
        if (h_conn_http(w->conn, "POST", "/v1/codes/lookup", mix_tokens[!o.client], NULL, body,
                        (size_t)bl, &r) == 0) {
            json_t *res = json_array_get(json_object_get(r.json, "results"), 0);
            const char *diag = json_string_value(json_object_get(res, "diagnosis"));
            if (r.status != 200 || !diag || strcmp(diag, "not_found") ||
                json_object_get(res, "order_id"))
                mix_fail(s, "non-owner lookup of a code of order %lld: %ld %s", (long long)o.id,
                         r.status, r.body);
        }
        h_resp_free(&r);
    }
    return NULL;
}

Test(concurrency, multi_code_orders_with_lookups, .fini = kill_leftover)
{
    static h_daemon d;
    h_setup(&d, NULL);
    live = &d;
    cr_assert_eq(h_start(&d), 0);
    for (int k = 0; k < 2; k++) {
        char *csv = h_codes_csv(mix_prefix[k], MIX_CODES);
        h_resp r = h_import(&d, mix_skus[k], csv, 201);
        h_resp_free(&r);
        free(csv);
    }
    static mix_shared s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    mixer ow[MIX_ORDERERS], lw[MIX_LOOKERS];
    pthread_t oth[MIX_ORDERERS], lth[MIX_LOOKERS];
    for (int i = 0; i < MIX_LOOKERS; i++) {
        lw[i] = (mixer){.s = &s, .conn = h_conn_new(&d), .idx = i, .seed = 77u + (unsigned)i};
        cr_assert_eq(pthread_create(&lth[i], NULL, mix_lookup_main, &lw[i]), 0);
    }
    for (int i = 0; i < MIX_ORDERERS; i++) {
        ow[i] = (mixer){.s = &s, .conn = h_conn_new(&d), .idx = i};
        cr_assert_eq(pthread_create(&oth[i], NULL, mix_order_main, &ow[i]), 0);
    }
    for (int i = 0; i < MIX_ORDERERS; i++)
        pthread_join(oth[i], NULL);
    atomic_store(&s.done, 1);
    long lookups = 0;
    for (int i = 0; i < MIX_LOOKERS; i++) {
        pthread_join(lth[i], NULL);
        lookups += lw[i].lookups;
        h_conn_free(lw[i].conn);
    }
    for (int i = 0; i < MIX_ORDERERS; i++)
        h_conn_free(ow[i].conn);
    cr_assert_eq(atomic_load(&s.failures), 0, "%d failures; first: %s", atomic_load(&s.failures),
                 s.first_failure);
    cr_assert_gt(lookups, 0);

    /* per SKU: the created orders hold exactly the imported codes, each once */
    int per_sku_codes[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        strvec all = {0};
        for (size_t i = 0; i < s.n; i++) {
            if (s.orders[i].sku != k)
                continue;
            per_sku_codes[k] += s.orders[i].qty;
            char *save, *copy = strdup(s.orders[i].codes);
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
                cr_assert_eq(strvec_push(&all, t), 0);
            free(copy);
        }
        assert_exact_codes(&all, mix_prefix[k], MIX_CODES);
        strvec_free(&all);
    }
    fprintf(stderr, "concurrency: %zu multi-code orders (%d + %d codes), %ld lookups\n", s.n,
            per_sku_codes[0], per_sku_codes[1], lookups);

    /* each client sees exactly its own orders */
    for (int c = 0; c < 2; c++) {
        size_t mine = 0, listed = 0;
        for (size_t i = 0; i < s.n; i++)
            mine += s.orders[i].client == c;
        json_int_t after = 0;
        for (;;) {
            char path[96];
            snprintf(path, sizeof path, "/v1/orders?after=%lld&limit=1000", (long long)after);
            h_resp r = h_get(&d, path, mix_tokens[c]);
            cr_assert_eq(r.status, 200, "%s", r.body);
            json_t *list = json_object_get(r.json, "orders"), *o;
            size_t i;
            json_array_foreach(list, i, o)
            {
                cr_assert_str_eq(json_string_value(json_object_get(o, "client")),
                                 c ? "othermall" : "mall");
                cr_assert_null(json_object_get(o, "codes"), "an order list carries codes");
            }
            listed += json_array_size(list);
            json_t *next = json_object_get(r.json, "next_after");
            after = json_is_integer(next) ? json_integer_value(next) : 0;
            h_resp_free(&r);
            if (!after)
                break;
        }
        cr_assert_eq(listed, mine, "client %d lists %zu orders, placed %zu", c, listed, mine);
    }

    h_resp r = h_get(&d, "/v1/stats", "ops-token");
    for (int k = 0; k < 2; k++) {
        json_t *row = h_stats_sku(r.json, mix_skus[k]);
        cr_assert(row, "%s", r.body);
        cr_assert_eq(jint(row, "available"), 0, "%s", r.body);
        cr_assert_eq(jint(row, "issued"), MIX_CODES, "%s", r.body);
    }
    cr_assert_eq(jint(r.json, "orders"), (json_int_t)s.n, "%s", r.body);
    h_resp_free(&r);

    for (size_t i = 0; i < s.n; i++)
        free(s.orders[i].codes);
    free(s.orders);
    pthread_mutex_destroy(&s.mu);
    stop_and_check_store(&d);
    h_cleanup(&d);
}
