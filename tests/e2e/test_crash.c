/*
 * Rule 1 across crashes: kill -9 perkhubd at random moments while clients
 * order (and sometimes import), restart it on the same data directory, and
 * check after every restart that
 *   - `perkhubd --check-store` passes (each code in exactly one state, the
 *     indexes whole, imported = sum over states, ...);
 *   - GET /v1/stats agrees: imported = available + issued, and with what the
 *     clients were told: every acknowledged import and order is there, and
 *     nothing else is;
 *   - every order acknowledged before the crash is still there with exactly
 *     the same codes, and re-sending it returns that order (200,
 *     Idempotent-Replay) — never a second fulfilment.
 * Requests in flight when the daemon died have no known outcome; after the
 * restart they are re-sent, as a client would, and must resolve to either
 * "it was done" (replay) or "it was not" (done now), never half of it.
 *
 * Recharges run beside them (rule 2), through a gateway supplier played by the
 * simulator (tools/supsim): one more worker orders a few per cycle as client
 * othermall, one in five to an account the supplier fails. After every restart
 * the simulator's truth must show no reference created twice (a recharge request
 * sent again) and at most one upstream order per perkhub order; at the end every
 * recharge order must settle, succeeded exactly when the supplier performed it.
 *
 * PH_CRASH_CYCLES (default 50) sets the number of kills, PH_CRASH_SEED
 * repeats a run (the seed is printed). tests/crash_long.sh runs many cycles.
 * The kill delay is random on purpose (it is what is under test), and so are
 * the pauses that spread the recharges over a cycle; everything else waits on
 * conditions.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define ORDER_THREADS 4
#define FIRST_STOCK   20000 /* imported once at the start */
#define TOPUP_BELOW   4000  /* below this many available codes, import TOPUP more */
#define TOPUP         10000
#define SIDE_CODES    1500 /* at most this many codes imported per cycle while orders run */
#define MAX_QTY       3
#define SAMPLE        60 /* older orders re-checked after each restart */
#define RC_PER_CYCLE  3  /* recharges ordered per cycle at most (the truth is read whole) */
#define RC_OK_ACCOUNT "13800000001" /* supsim performs it */
#define RC_NO_ACCOUNT "13900000002" /* supsim fails it, performing nothing */
#define RC_SETTLE_MS  60000         /* the end: every recharge settled within this */

typedef struct known_order {
    char coid[32];
    json_int_t id;
    int qty;
    int cycle;   /* acknowledged in (or resolved after) this cycle */
    char *codes; /* joined with ',' */
} known_order;

typedef struct pending_order {
    char coid[32];
    int qty;
} pending_order;

/* A recharge order: acknowledged (id > 0) or in flight at a kill (id 0). */
typedef struct recharge {
    char coid[32];
    json_int_t id;
    int refused_account; /* ordered to RC_NO_ACCOUNT: must end failed */
} recharge;

typedef struct pending_import {
    char *csv;
    int count;
} pending_import;

typedef struct crash_run {
    h_daemon d;
    unsigned seed;
    int cycle;
    pthread_mutex_t mu;
    known_order *known;
    size_t nknown, kcap;
    pending_order *pend;
    size_t npend, pcap;
    pending_import *pimp;
    size_t npimp, icap;
    recharge *rc; /* acknowledged recharges */
    size_t nrc, rccap;
    recharge *prc; /* recharges in flight at the kill */
    size_t nprc, prccap;
    h_sim sim;
    char body[4096];    /* the config body (h_setup_custom borrows it) */
    long long imported; /* codes of every acknowledged import */
    long long issued;   /* codes of every known order */
    int import_serial;
    atomic_long next_coid;
    atomic_int stop;
    atomic_int failures;
    char first_failure[700];
    /* statistics for the report lines (tests/crash_long.sh prints the figures) */
    long acked, replays_ok, resolved_done, resolved_new, resolved_dropped, imports_in_flight;
    long imports_acked, imports_were_stored, imports_stored_on_resend, topups;
    long restarts, store_checks, orders_verified;
    long rc_in_flight, rc_succeeded, rc_failed, rc_performed;
} crash_run;

static crash_run R;

/* A daemon a failed assertion left running is killed after the test (its
 * directory stays, for a look at the log and data). */
static h_daemon *live;

static void kill_leftover(void)
{
    h_leftover(live);
    live = NULL;
    if (R.sim.pid > 0)
        h_sim_stop(&R.sim);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    if (atomic_fetch_add(&R.failures, 1) == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(R.first_failure, sizeof R.first_failure, fmt, ap);
        va_end(ap);
    }
}

static const char *error_of(const h_resp *r)
{
    const char *e = json_string_value(json_object_get(r->json, "error"));
    return e ? e : "";
}

static int is_replay(const h_resp *r)
{
    char v[16];
    const char *h = h_header(r, "Idempotent-Replay", v, sizeof v);
    return h && strcmp(h, "true") == 0;
}

/* Codes of an order object joined with ','; their count in *n. Caller frees. */
static char *codes_of(json_t *order, size_t *n)
{
    json_t *codes = json_object_get(order, "codes"), *c;
    size_t i, len = 1;
    json_array_foreach(codes, i, c)
    {
        const char *s = json_string_value(json_object_get(c, "code"));
        len += (s ? strlen(s) : 1) + 1;
    }
    char *out = malloc(len), *p = out;
    if (!out)
        return NULL;
    *p = 0;
    json_array_foreach(codes, i, c)
    {
        const char *s = json_string_value(json_object_get(c, "code"));
        p += sprintf(p, "%s%s", i ? "," : "", s ? s : "?");
    }
    *n = json_array_size(codes);
    return out;
}

/* ---- bookkeeping (under R.mu) ---------------------------------------------- */

/* under_load: acknowledged to a worker (else resolved after a restart). */
static void add_known(const char *coid, json_int_t id, int qty, char *codes, int under_load)
{
    pthread_mutex_lock(&R.mu);
    if (R.nknown == R.kcap) {
        R.kcap = R.kcap ? R.kcap * 2 : 1024;
        R.known = realloc(R.known, R.kcap * sizeof *R.known);
    }
    known_order *k = &R.known[R.nknown++];
    snprintf(k->coid, sizeof k->coid, "%s", coid);
    k->id = id;
    k->qty = qty;
    k->cycle = R.cycle;
    k->codes = codes;
    R.issued += qty;
    R.acked += under_load;
    pthread_mutex_unlock(&R.mu);
}

static void add_pending(const char *coid, int qty)
{
    pthread_mutex_lock(&R.mu);
    if (R.npend == R.pcap) {
        R.pcap = R.pcap ? R.pcap * 2 : 64;
        R.pend = realloc(R.pend, R.pcap * sizeof *R.pend);
    }
    snprintf(R.pend[R.npend].coid, sizeof R.pend[0].coid, "%s", coid);
    R.pend[R.npend++].qty = qty;
    pthread_mutex_unlock(&R.mu);
}

static void drop_pending(const char *coid)
{
    pthread_mutex_lock(&R.mu);
    for (size_t i = 0; i < R.npend; i++)
        if (strcmp(R.pend[i].coid, coid) == 0) {
            R.pend[i] = R.pend[--R.npend];
            break;
        }
    pthread_mutex_unlock(&R.mu);
}

/* A random acknowledged order, copied (codes strdup'ed; caller frees), or 0. */
static int pick_known(unsigned *seed, known_order *out)
{
    pthread_mutex_lock(&R.mu);
    int ok = R.nknown > 0;
    if (ok) {
        *out = R.known[(size_t)rand_r(seed) % R.nknown];
        out->codes = strdup(out->codes);
    }
    pthread_mutex_unlock(&R.mu);
    return ok;
}

/* ---- checking one order against what the client was told -------------------- */

/* Re-reads k (as its owner) and re-sends it; both must give back the same order. */
static void verify_known(h_conn *c, const known_order *k)
{
    R.orders_verified++; /* from the main thread only */
    char path[64];
    h_resp r;
    snprintf(path, sizeof path, "/v1/orders/%lld", (long long)k->id);
    if (h_conn_http(c, "GET", path, "mall-token", NULL, NULL, 0, &r)) {
        fail("cycle %d: GET %s: no response", R.cycle, path);
    } else if (r.status != 200) {
        fail("cycle %d: acknowledged order %lld (%s, cycle %d) is gone: %ld %s", R.cycle,
             (long long)k->id, k->coid, k->cycle, r.status, r.body);
    } else {
        size_t n = 0;
        json_t *o = json_object_get(r.json, "order");
        char *codes = codes_of(o, &n);
        const char *coid = json_string_value(json_object_get(o, "client_order_id"));
        if (!codes || strcmp(codes, k->codes) || !coid || strcmp(coid, k->coid))
            fail("cycle %d: order %lld changed: acknowledged %s [%s], now %s [%s]", R.cycle,
                 (long long)k->id, k->coid, k->codes, coid ? coid : "?", codes ? codes : "?");
        free(codes);
    }
    h_resp_free(&r);

    if (h_conn_order(c, "mall-token", k->coid, "test.card", k->qty, &r)) {
        fail("cycle %d: re-sending %s: no response", R.cycle, k->coid);
    } else {
        size_t n = 0;
        json_t *o = json_object_get(r.json, "order");
        char *codes = codes_of(o, &n);
        if (r.status != 200 || !is_replay(&r) ||
            json_integer_value(json_object_get(o, "id")) != k->id || !codes ||
            strcmp(codes, k->codes))
            fail("cycle %d: re-sending acknowledged %s (order %lld [%s]) gave %ld%s %s", R.cycle,
                 k->coid, (long long)k->id, k->codes, r.status, is_replay(&r) ? " (replay)" : "",
                 r.body);
        free(codes);
    }
    h_resp_free(&r);
}

/* ---- the load while the kill comes ------------------------------------------ */

typedef struct worker {
    h_conn *conn;
    unsigned seed;
    int importer;
    long replays;
} worker;

static void *order_main(void *arg)
{
    worker *w = arg;
    while (!atomic_load(&R.stop)) {
        if (rand_r(&w->seed) % 10 == 0) {
            /* a retry of an acknowledged order, racing the kill too */
            known_order k;
            if (!pick_known(&w->seed, &k))
                continue;
            h_resp r;
            int rc = h_conn_order(w->conn, "mall-token", k.coid, "test.card", k.qty, &r);
            size_t n = 0;
            char *codes = rc ? NULL : codes_of(json_object_get(r.json, "order"), &n);
            if (!rc && (r.status != 200 || !is_replay(&r) || !codes || strcmp(codes, k.codes)))
                fail("cycle %d: retry of acknowledged %s [%s] gave %ld %s", R.cycle, k.coid,
                     k.codes, r.status, r.body);
            else if (!rc)
                w->replays++;
            free(codes);
            free(k.codes);
            h_resp_free(&r);
            if (rc)
                break;
            continue;
        }
        char coid[32];
        snprintf(coid, sizeof coid, "K%07ld", atomic_fetch_add(&R.next_coid, 1));
        int qty = 1 + (int)(rand_r(&w->seed) % MAX_QTY);
        add_pending(coid, qty); /* outcome unknown until an answer arrives */
        h_resp r;
        if (h_conn_order(w->conn, "mall-token", coid, "test.card", qty, &r)) {
            h_resp_free(&r);
            break; /* killed: stays pending, resolved after the restart */
        }
        if (r.status == 201) {
            size_t n = 0;
            json_t *o = json_object_get(r.json, "order");
            char *codes = codes_of(o, &n);
            if (n != (size_t)qty || !codes)
                fail("cycle %d: %s: %zu codes for quantity %d: %s", R.cycle, coid, n, qty, r.body);
            add_known(coid, json_integer_value(json_object_get(o, "id")), qty, codes, 1);
        } else if (!(r.status == 409 && strcmp(error_of(&r), "out_of_stock") == 0)) {
            fail("cycle %d: new order %s: %ld %s", R.cycle, coid, r.status, r.body);
        }
        drop_pending(coid);
        h_resp_free(&r);
    }
    return NULL;
}

/* Imports batches of random size while the orders run, so that some kills land
 * inside an import. */
static void *import_main(void *arg)
{
    worker *w = arg;
    for (int total = 0; total < SIDE_CODES && !atomic_load(&R.stop);) {
        int count = 50 + (int)(rand_r(&w->seed) % 950);
        total += count;
        pthread_mutex_lock(&R.mu);
        int serial = R.import_serial++;
        pthread_mutex_unlock(&R.mu);
        char prefix[32];
        snprintf(prefix, sizeof prefix, "SIDE%05d", serial);
        char *csv = h_codes_csv(prefix, count);
        h_resp r;
        int rc = h_conn_http(w->conn, "POST",
                             "/v1/batches?supplier=acme&sku=test.card&unit_cost=19.80&note=side",
                             "ops-token", "text/csv", csv, strlen(csv), &r);
        pthread_mutex_lock(&R.mu);
        if (rc) {
            if (R.npimp == R.icap) {
                R.icap = R.icap ? R.icap * 2 : 8;
                R.pimp = realloc(R.pimp, R.icap * sizeof *R.pimp);
            }
            R.pimp[R.npimp++] = (pending_import){.csv = csv, .count = count};
            csv = NULL;
            R.imports_in_flight++;
        } else if (r.status == 201) {
            R.imported += count;
            R.imports_acked++;
        } else {
            fail("cycle %d: side import: %ld %s", R.cycle, r.status, r.body);
        }
        pthread_mutex_unlock(&R.mu);
        free(csv);
        h_resp_free(&r);
        if (rc)
            break;
    }
    return NULL;
}

/* Appends *r to the array at *v (n items, cap); under R.mu. */
static void rc_push(recharge **v, size_t *n, size_t *cap, const recharge *r)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *v = realloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = *r;
}

/* POST /v1/orders for recharge r as othermall: 0 with the answer in *out, or -1
 * when the daemon did not answer. */
static int rc_order(h_conn *c, const recharge *r, h_resp *out)
{
    char body[160];
    snprintf(body, sizeof body,
             "{\"client_order_id\":\"%s\",\"sku\":\"crash.topup\",\"account\":\"%s\"}", r->coid,
             r->refused_account ? RC_NO_ACCOUNT : RC_OK_ACCOUNT);
    return h_conn_http(c, "POST", "/v1/orders", "other-token", "application/json", body,
                       strlen(body), out);
}

/* Orders a few recharges while the kill comes. */
static void *recharge_main(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < RC_PER_CYCLE && !atomic_load(&R.stop); i++) {
        /* spread over the cycle, so that some recharges meet the kill in flight (the
         * random moment under test, like the kill's own delay) */
        usleep((useconds_t)(rand_r(&w->seed) % 100) * 1000);
        recharge r = {.refused_account = rand_r(&w->seed) % 5 == 0};
        snprintf(r.coid, sizeof r.coid, "Q%07ld", atomic_fetch_add(&R.next_coid, 1));
        h_resp resp;
        if (rc_order(w->conn, &r, &resp)) {
            h_resp_free(&resp);
            pthread_mutex_lock(&R.mu);
            rc_push(&R.prc, &R.nprc, &R.prccap, &r); /* resolved after the restart */
            R.rc_in_flight++;
            pthread_mutex_unlock(&R.mu);
            break;
        }
        if (resp.status == 201 || resp.status == 202) {
            r.id = json_integer_value(json_object_get(json_object_get(resp.json, "order"), "id"));
            pthread_mutex_lock(&R.mu);
            rc_push(&R.rc, &R.nrc, &R.rccap, &r);
            pthread_mutex_unlock(&R.mu);
        } else {
            fail("cycle %d: recharge %s: %ld %s", R.cycle, r.coid, resp.status, resp.body);
        }
        h_resp_free(&resp);
    }
    return NULL;
}

/* ---- after each restart ------------------------------------------------------ */

static void check_store_or_die(const char *when)
{
    char *out;
    int rc = h_check_store(&R.d, &out);
    R.store_checks++;
    cr_assert_eq(rc, 0, "cycle %d (seed %u), %s: --check-store failed: %s", R.cycle, R.seed, when,
                 out);
    free(out);
}

static json_int_t jget(json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* /v1/stats agrees with itself and with what clients were told. */
static void check_stats(h_conn *c, const char *when)
{
    h_resp r;
    cr_assert_eq(h_conn_http(c, "GET", "/v1/stats", "ops-token", NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *row = h_stats_sku(r.json, "test.card");
    cr_assert(row, "%s", r.body);
    json_int_t imported = jget(row, "imported"), available = jget(row, "available"),
               issued = jget(row, "issued");
    cr_assert_eq(
        imported,
        available + issued + jget(row, "redeemed") + jget(row, "voided") + jget(row, "expired"),
        "cycle %d (seed %u) %s: imported != sum of states: %s", R.cycle, R.seed, when, r.body);
    cr_assert_eq(imported, available + issued, "cycle %d %s: %s", R.cycle, when, r.body);
    cr_assert_eq(imported, R.imported,
                 "cycle %d (seed %u) %s: %lld codes imported, acknowledged imports hold %lld",
                 R.cycle, R.seed, when, (long long)imported, R.imported);
    cr_assert_eq(issued, R.issued,
                 "cycle %d (seed %u) %s: %lld codes issued, acknowledged orders hold %lld", R.cycle,
                 R.seed, when, (long long)issued, R.issued);
    cr_assert_eq((size_t)jget(r.json, "orders"), R.nknown + R.nrc,
                 "cycle %d (seed %u) %s: %lld orders stored, %zu acknowledged (%zu recharges)",
                 R.cycle, R.seed, when, (long long)jget(r.json, "orders"), R.nknown + R.nrc, R.nrc);
    h_resp_free(&r);
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_known_id(const void *a, const void *b)
{
    const known_order *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The stored orders, listed, are exactly the acknowledged ones (ids and client
 * order ids): all of them when full, else from a little before the first order
 * of the last two cycles (an order lost to the kill frees its id for the next
 * one, so a lost order shows as a mismatch there; stats count the rest). */
static void check_order_list(h_conn *c, int full)
{
    qsort(R.known, R.nknown, sizeof *R.known, cmp_known_id);
    size_t at = 0;
    json_int_t after = 0;
    if (!full) {
        while (at < R.nknown && R.known[at].cycle < R.cycle - 1)
            at++;
        at = at > 100 ? at - 100 : 0;
        after = at ? R.known[at - 1].id : 0;
    }
    for (;;) {
        char path[96];
        h_resp r;
        snprintf(path, sizeof path, "/v1/orders?after=%lld&limit=1000", (long long)after);
        cr_assert_eq(h_conn_http(c, "GET", path, "mall-token", NULL, NULL, 0, &r), 0);
        cr_assert_eq(r.status, 200, "%s", r.body);
        json_t *o;
        size_t i;
        json_array_foreach(json_object_get(r.json, "orders"), i, o)
        {
            json_int_t id = jget(o, "id");
            const char *coid = json_string_value(json_object_get(o, "client_order_id"));
            cr_assert(at < R.nknown, "cycle %d (seed %u): order %lld (%s) was never acknowledged",
                      R.cycle, R.seed, (long long)id, coid);
            cr_assert_eq(id, R.known[at].id,
                         "cycle %d (seed %u): expected acknowledged order %lld (%s), found %lld",
                         R.cycle, R.seed, (long long)R.known[at].id, R.known[at].coid,
                         (long long)id);
            cr_assert(coid && strcmp(coid, R.known[at].coid) == 0,
                      "cycle %d (seed %u): acknowledged order %lld (%s) is gone; its id now names "
                      "%s",
                      R.cycle, R.seed, (long long)id, R.known[at].coid, coid ? coid : "?");
            cr_assert_eq(jget(o, "quantity"), R.known[at].qty);
            at++;
        }
        json_t *next = json_object_get(r.json, "next_after");
        after = json_is_integer(next) ? json_integer_value(next) : 0;
        h_resp_free(&r);
        if (!after)
            break;
    }
    cr_assert_eq(at, R.nknown, "cycle %d (seed %u): %zu orders listed, %zu acknowledged", R.cycle,
                 R.seed, at, R.nknown);
}

/* Re-sends what was in flight at the kill: each must be all done or not at all. */
static void resolve_pending(h_conn *c)
{
    for (size_t i = 0; i < R.npimp; i++) {
        pending_import *p = &R.pimp[i];
        h_resp r;
        cr_assert_eq(
            h_conn_http(c, "POST",
                        "/v1/batches?supplier=acme&sku=test.card&unit_cost=19.80&note=side",
                        "ops-token", "text/csv", p->csv, strlen(p->csv), &r),
            0);
        if (r.status == 201) {
            R.imported += p->count; /* it had not been stored: stored now */
            R.imports_stored_on_resend++;
        } else {
            /* it had been stored: then every one of its codes, not some */
            cr_assert_eq(r.status, 422, "cycle %d: re-import: %ld %s", R.cycle, r.status, r.body);
            cr_assert_eq(jget(r.json, "error_count"), p->count,
                         "cycle %d (seed %u): an import interrupted by kill -9 is half stored: %s",
                         R.cycle, R.seed, r.body);
            json_t *l = json_array_get(json_object_get(r.json, "lines"), 0);
            cr_assert_str_eq(json_string_value(json_object_get(l, "reason")),
                             "code already imported", "%s", r.body);
            R.imported += p->count;
            R.imports_were_stored++;
        }
        h_resp_free(&r);
        free(p->csv);
    }
    R.npimp = 0;

    size_t n = R.npend;
    pending_order *copy = malloc((n + 1) * sizeof *copy);
    memcpy(copy, R.pend, n * sizeof *copy);
    R.npend = 0;
    for (size_t i = 0; i < n; i++) {
        h_resp r;
        cr_assert_eq(h_conn_order(c, "mall-token", copy[i].coid, "test.card", copy[i].qty, &r), 0);
        if (r.status == 200 || r.status == 201) {
            cr_assert_eq(is_replay(&r), r.status == 200, "%s", r.headers);
            size_t nc = 0;
            json_t *o = json_object_get(r.json, "order");
            char *codes = codes_of(o, &nc);
            cr_assert_eq(nc, (size_t)copy[i].qty, "%s", r.body);
            add_known(copy[i].coid, jget(o, "id"), copy[i].qty, codes, 0);
            if (r.status == 200)
                R.resolved_done++;
            else
                R.resolved_new++;
        } else {
            cr_assert(r.status == 409 && strcmp(error_of(&r), "out_of_stock") == 0,
                      "cycle %d: re-sending in-flight %s: %ld %s", R.cycle, copy[i].coid, r.status,
                      r.body);
            R.resolved_dropped++;
        }
        h_resp_free(&r);
    }
    free(copy);

    for (size_t i = 0; i < R.nprc; i++) {
        recharge *p = &R.prc[i];
        h_resp r;
        cr_assert_eq(rc_order(c, p, &r), 0);
        cr_assert(r.status == 200 || r.status == 201 || r.status == 202,
                  "cycle %d: re-sending in-flight recharge %s: %ld %s", R.cycle, p->coid, r.status,
                  r.body);
        cr_assert_eq(is_replay(&r), r.status == 200, "%s", r.headers);
        p->id = jget(json_object_get(r.json, "order"), "id");
        rc_push(&R.rc, &R.nrc, &R.rccap, p);
        h_resp_free(&r);
    }
    R.nprc = 0;
}

/* The simulator's truth: no reference created twice (a recharge request sent
 * again: rule 2) and no perkhub order with two upstream orders. */
static void check_recharges_upstream(const char *when)
{
    json_t *t = h_sim_truth(&R.sim);
    char b[512];
    cr_assert_eq(h_int(json_object_get(t, "counts"), "double_creates"), 0,
                 "cycle %d (seed %u) %s: a recharge request was sent twice: %s", R.cycle, R.seed,
                 when, h_dump(json_object_get(t, "counts"), b, sizeof b));
    json_t *orders = json_object_get(t, "orders"), *o;
    size_t n = json_array_size(orders), i;
    long long *ids = malloc((n + 1) * sizeof *ids);
    size_t m = 0;
    json_array_foreach(orders, i, o) ids[m++] = h_ref_order(h_str(o, "ref"));
    qsort(ids, m, sizeof *ids, cmp_ll);
    for (size_t k = 1; k < m; k++)
        cr_assert(ids[k] != ids[k - 1] || ids[k] < 0,
                  "cycle %d (seed %u) %s: order %lld has two recharges upstream", R.cycle, R.seed,
                  when, ids[k]);
    free(ids);
    json_decref(t);
}

static void after_restart(unsigned *seed)
{
    h_conn *c = h_conn_new(&R.d);
    resolve_pending(c);
    check_recharges_upstream("after restart");
    check_order_list(c, R.nknown <= 20000 || R.cycle % 10 == 0);
    check_stats(c, "after restart");
    /* the orders at risk from this kill, and a sample of older ones */
    for (size_t i = 0; i < R.nknown; i++)
        if (R.known[i].cycle >= R.cycle - 1)
            verify_known(c, &R.known[i]);
    for (int i = 0; i < SAMPLE && R.nknown; i++)
        verify_known(c, &R.known[(size_t)rand_r(seed) % R.nknown]);
    cr_assert_eq(atomic_load(&R.failures), 0, "seed %u: %d failures; first: %s", R.seed,
                 atomic_load(&R.failures), R.first_failure);
    check_stats(c, "after re-sending acknowledged orders"); /* nothing fulfilled twice */

    h_resp r;
    cr_assert_eq(h_conn_http(c, "GET", "/v1/products/test.card", "mall-token", NULL, NULL, 0, &r),
                 0);
    json_int_t available =
        jget(json_object_get(json_object_get(r.json, "product"), "stock"), "available");
    h_resp_free(&r);
    if (available < TOPUP_BELOW) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "TOP%05d", R.import_serial++);
        char *csv = h_codes_csv(prefix, TOPUP);
        r = h_import(&R.d, "test.card", csv, 201);
        h_resp_free(&r);
        free(csv);
        R.imported += TOPUP;
        R.topups++;
    }
    h_conn_free(c);
}

static int rc_final(json_t *o, void *arg)
{
    (void)arg;
    const char *st = json_string_value(json_object_get(o, "state"));
    return st && (!strcmp(st, "succeeded") || !strcmp(st, "failed"));
}

/* The end: every recharge settles, succeeded exactly when the supplier
 * performed it (a failed order with a recharge upstream would be a lost
 * recharge; a succeeded one without, a recharge never made), and none to the
 * refused account succeeds. */
static void settle_recharges(void)
{
    check_recharges_upstream("at the end");
    json_t *t = h_sim_truth(&R.sim);
    for (size_t i = 0; i < R.nrc; i++) {
        recharge *r = &R.rc[i];
        json_t *o = h_order_poll(&R.d, r->id, "other-token", rc_final, NULL, RC_SETTLE_MS,
                                 "settling the recharge");
        int ok = !strcmp(json_string_value(json_object_get(o, "state")), "succeeded");
        json_decref(o);
        json_t *up = h_sim_truth_find(t, "orders", "gateway", r->id, NULL);
        const char *ust = up ? h_str(up, "state") : "none";
        if (up && !strcmp(ust, "processing")) { /* the truth was read before it completed */
            json_decref(t);
            t = h_sim_truth(&R.sim);
            up = h_sim_truth_find(t, "orders", "gateway", r->id, NULL);
            ust = up ? h_str(up, "state") : "none";
        }
        cr_assert_eq(ok, !strcmp(ust, "success"),
                     "seed %u: recharge %s (order %lld) is %s here, '%s' at the supplier", R.seed,
                     r->coid, (long long)r->id, ok ? "succeeded" : "failed", ust);
        cr_assert(!ok || !r->refused_account, "recharge %s to the refused account succeeded",
                  r->coid);
        R.rc_succeeded += ok;
        R.rc_failed += !ok;
    }
    R.rc_performed = (long)h_int(json_object_get(t, "counts"), "recharges_performed");
    cr_assert_eq(R.rc_performed, R.rc_succeeded,
                 "seed %u: the supplier performed %ld recharges, %ld orders succeeded", R.seed,
                 R.rc_performed, R.rc_succeeded);
    json_decref(t);
}

/* ---- the test ------------------------------------------------------------------ */

static unsigned long env_num(const char *name, unsigned long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtoul(v, NULL, 10) : dflt;
}

Test(crash, kill9_during_orders_keeps_every_acknowledged_order, .fini = kill_leftover)
{
    memset(&R, 0, sizeof R);
    pthread_mutex_init(&R.mu, NULL);
    int cycles = (int)env_num("PH_CRASH_CYCLES", 50);
    R.seed = (unsigned)env_num("PH_CRASH_SEED", 0);
    if (!R.seed)
        R.seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    fprintf(stderr, "crash: seed %u, %d cycles (PH_CRASH_SEED=%u PH_CRASH_CYCLES=%d repeats it)\n",
            R.seed, cycles, R.seed, cycles);
    unsigned seed = R.seed;
    int64_t t0 = h_now_ms();

    cr_assert_eq(h_sim_start(&R.sim, NULL), 0, "supsim did not start");
    char sup[1024];
    /* a breaker that never opens: transport failures during kills are expected; a short
     * processing window: supsim acts on a request at once, so a reference it does
     * not know 3 s later was never received (a kill before sending), and the
     * attempt may fail rather than wait the gateway's 120 s */
    h_sim_supplier_yaml(&R.sim, "sup", "gateway",
                        "    priority: 10\n    timeout_ms: 2000\n    connect_timeout_ms: 1000\n"
                        "    query_max_delay_ms: 500\n    breaker_failures: 1000000\n"
                        "    processing_window_s: 3\n",
                        NULL, sup, sizeof sup);
    snprintf(R.body, sizeof R.body,
             "suppliers:\n  - id: acme\n    plugin: manual\n    priority: 10\n%s"
             "products:\n"
             "  - sku: test.card\n    name: Test card\n    brand: testbrand\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n"
             "    offers:\n      - {supplier: acme, supplier_sku: T-1, cost: \"19.80\"}\n"
             "  - sku: crash.topup\n    name: Crash top-up\n    brand: sim\n    category: telecom\n"
             "    delivery: recharge\n    face_value: \"50.00\"\n"
             "    offers:\n      - {supplier: sup, supplier_sku: \"20001\", cost: \"49.00\"}\n",
             sup);
    h_setup_custom(&R.d, R.body, NULL);
    live = &R.d;
    cr_assert_eq(h_start(&R.d), 0);
    char *csv = h_codes_csv("CRASH", FIRST_STOCK);
    h_resp r = h_import(&R.d, "test.card", csv, 201);
    h_resp_free(&r);
    free(csv);
    R.imported = FIRST_STOCK;
    long startup_kills = 0;

    for (R.cycle = 1; R.cycle <= cycles; R.cycle++) {
        int importer = R.cycle % 2 == 0;
        worker w[ORDER_THREADS + 2];
        pthread_t th[ORDER_THREADS + 2];
        int nth = ORDER_THREADS + importer + 1; /* the last one orders recharges */
        atomic_store(&R.stop, 0);
        for (int i = 0; i < nth; i++) {
            w[i] = (worker){.conn = h_conn_new(&R.d),
                            .seed = seed + (unsigned)i * 7919u,
                            .importer = importer && i == ORDER_THREADS};
            void *(*fn)(void *) = i == nth - 1    ? recharge_main
                                  : w[i].importer ? import_main
                                                  : order_main;
            cr_assert_eq(pthread_create(&th[i], NULL, fn, &w[i]), 0);
        }
        int delay_ms = (int)(rand_r(&seed) % 301);
        usleep((useconds_t)delay_ms * 1000); /* the random moment under test */
        h_stop(&R.d, SIGKILL);
        atomic_store(&R.stop, 1);
        for (int i = 0; i < nth; i++) {
            pthread_join(th[i], NULL);
            h_conn_free(w[i].conn);
            R.replays_ok += w[i].replays;
        }
        cr_assert_eq(atomic_load(&R.failures), 0, "seed %u: %d failures; first: %s", R.seed,
                     atomic_load(&R.failures), R.first_failure);
        check_store_or_die("after kill -9");

        if (R.cycle % 7 == 3) {
            /* and once in a while, kill it again while it is starting up */
            h_spawn(&R.d);
            usleep((useconds_t)(rand_r(&seed) % 40) * 1000);
            h_stop(&R.d, SIGKILL);
            startup_kills++;
            check_store_or_die("after kill -9 during startup");
        }
        cr_assert_eq(h_start(&R.d), 0, "cycle %d (seed %u): perkhubd did not restart", R.cycle,
                     R.seed);
        R.restarts++;
        after_restart(&seed);
        if (R.cycle % 50 == 0 && R.cycle < cycles)
            fprintf(stderr, "crash: %d/%d kills, %zu orders, %.1f s\n", R.cycle, cycles, R.nknown,
                    (double)(h_now_ms() - t0) / 1000.0);
    }

    /* the end: every acknowledged order, one by one, and no code in two orders */
    h_conn *c = h_conn_new(&R.d);
    check_order_list(c, 1);
    for (size_t i = 0; i < R.nknown; i++)
        verify_known(c, &R.known[i]);
    h_conn_free(c);
    cr_assert_eq(atomic_load(&R.failures), 0, "seed %u: %d failures; first: %s", R.seed,
                 atomic_load(&R.failures), R.first_failure);
    size_t ncodes = 0;
    for (size_t i = 0; i < R.nknown; i++)
        ncodes += (size_t)R.known[i].qty;
    char **all = malloc((ncodes + 1) * sizeof *all);
    size_t at = 0;
    for (size_t i = 0; i < R.nknown; i++) {
        char *save;
        for (char *t = strtok_r(R.known[i].codes, ",", &save); t; t = strtok_r(NULL, ",", &save))
            all[at++] = t;
    }
    cr_assert_eq(at, ncodes);
    qsort(all, at, sizeof *all, cmp_str);
    for (size_t i = 1; i < at; i++)
        cr_assert_str_neq(all[i - 1], all[i], "seed %u: code %s is in two orders", R.seed, all[i]);
    free(all);

    settle_recharges();
    /* every fen: kill -9 at any instant neither loses nor doubles a charge */
    h_ledger_matches_sim(&R.d, &R.sim);
    cr_assert_eq(h_stop(&R.d, SIGTERM), 0);
    check_store_or_die("after the final clean stop");
    fprintf(
        stderr,
        "crash: %d kills (+%ld during startup) in %.1f s; %zu orders (%ld acknowledged under "
        "load, %ld retries replayed under load; in flight at a kill: %ld had been done, %ld done "
        "on re-send, %ld out of stock), %lld codes issued of %lld imported, %ld imports in "
        "flight at a kill\n",
        cycles, startup_kills, (double)(h_now_ms() - t0) / 1000.0, R.nknown, R.acked, R.replays_ok,
        R.resolved_done, R.resolved_new, R.resolved_dropped, R.issued, R.imported,
        R.imports_in_flight);
    /* One line of figures for tests/crash_long.sh. A run only gets here when every
     * check passed, so the lost / doubled / partial counts are the checks' verdict. */
    fprintf(stderr,
            "crash-figures: cycles=%d startup_kills=%ld restarts=%ld seconds=%.1f orders=%zu "
            "orders_acked_under_load=%ld retries_replayed=%ld in_flight_done=%ld "
            "in_flight_new=%ld in_flight_out_of_stock=%ld orders_verified=%ld "
            "imports_acked=%ld imports_in_flight=%ld imports_were_stored=%ld "
            "imports_stored_on_resend=%ld topups=%ld codes_imported=%lld codes_issued=%lld "
            "store_checks=%ld lost_orders=0 changed_orders=0 doubled_codes=0 "
            "partial_imports=0 recharges=%zu recharges_in_flight=%ld recharges_succeeded=%ld "
            "recharges_failed=%ld recharges_performed=%ld recharges_doubled=0 "
            "recharges_lost=0 seed=%u\n",
            cycles, startup_kills, R.restarts, (double)(h_now_ms() - t0) / 1000.0, R.nknown,
            R.acked, R.replays_ok, R.resolved_done, R.resolved_new, R.resolved_dropped,
            R.orders_verified, R.imports_acked, R.imports_in_flight, R.imports_were_stored,
            R.imports_stored_on_resend, R.topups, R.imported, R.issued, R.store_checks, R.nrc,
            R.rc_in_flight, R.rc_succeeded, R.rc_failed, R.rc_performed, R.seed);
    for (size_t i = 0; i < R.nknown; i++)
        free(R.known[i].codes);
    free(R.known);
    free(R.pend);
    free(R.pimp);
    free(R.rc);
    free(R.prc);
    pthread_mutex_destroy(&R.mu);
    h_cleanup(&R.d);
    h_sim_stop(&R.sim);
}
