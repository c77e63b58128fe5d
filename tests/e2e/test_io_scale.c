/*
 * test_io_scale.c — docs/design.md rule 5 at scale: 2,000 recharges in flight at once
 * on perkhubd's single supplier I/O thread.
 *
 * supsim answers every order late (fault latency, count -1: 200 ms, and in a
 * second run 10 s, longer than submitting the batch takes); the supplier allows
 * 4096 exchanges in flight. Eight client threads submit 2,000 recharges over
 * keep-alive connections (wait 0: each answered 202 at once), then the test
 * polls the order list until every one is final. Done one after the other the
 * batch would take 2000 x 200 ms = 400 s; it must finish in under 60 s, all
 * succeeded, with the simulator counting exactly 2,000 recharges and no
 * reference created twice; with 10 s answers at least half of them must have
 * been in flight together. The elapsed time, the largest in_flight seen in
 * GET /v1/suppliers and the daemon's VmRSS/VmHWM (at that moment and at the end)
 * go to stderr.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "harness.h"

#define ORDERS    2000
#define THREADS   8
#define BUDGET_MS 60000

static h_daemon D;
static h_sim S;
static char BODY[2048];

static void teardown(void)
{
    h_leftover(&D);
    if (S.pid > 0)
        h_sim_stop(&S);
}

TestSuite(io_scale, .fini = teardown);

/* One submitting thread: orders first..first+count-1 on its own connection.
 * No assertions off the test's thread: failures are counted and the first kept. */
typedef struct submitter {
    h_conn *conn;
    int first, count;
    int accepted; /* 201 or 202 */
    long bad_status;
    char bad_body[256];
} submitter;

static void *submit_main(void *arg)
{
    submitter *s = arg;
    for (int i = s->first; i < s->first + s->count; i++) {
        char body[160];
        int n = snprintf(body, sizeof body,
                         "{\"client_order_id\":\"io-%05d\",\"sku\":\"io.topup\","
                         "\"account\":\"138%08d\",\"wait\":0}",
                         i, i);
        h_resp r;
        int rc = h_conn_http(s->conn, "POST", "/v1/orders", "mall-token", "application/json", body,
                             (size_t)n, &r);
        if (rc == 0 && (r.status == 202 || r.status == 201))
            s->accepted++;
        else if (!s->bad_status) {
            s->bad_status = rc ? -1 : r.status;
            snprintf(s->bad_body, sizeof s->bad_body, "%s", r.body);
        }
        h_resp_free(&r);
    }
    return NULL;
}

/* VmRSS and VmHWM of pid in kB (0 when unreadable). */
static void mem_of(pid_t pid, long *rss, long *hwm)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    *rss = *hwm = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        sscanf(line, "VmRSS: %ld", rss);
        sscanf(line, "VmHWM: %ld", hwm);
    }
    fclose(f);
}

/* Orders by state over every page of GET /v1/orders (ops). */
typedef struct tally {
    int succeeded, failed, other, total;
} tally;

static tally count_orders(void)
{
    tally t = {0};
    long long after = 0;
    for (;;) {
        char path[96];
        snprintf(path, sizeof path, "/v1/orders?after=%lld&limit=1000", after);
        h_resp r = h_get(&D, path, "ops-token");
        cr_assert_eq(r.status, 200, "GET %s: %ld %s", path, r.status, r.body);
        size_t i;
        json_t *o;
        json_array_foreach(json_object_get(r.json, "orders"), i, o)
        {
            const char *st = h_str(o, "state");
            t.succeeded += !strcmp(st, "succeeded");
            t.failed += !strcmp(st, "failed");
            t.total++;
        }
        json_t *next = json_object_get(r.json, "next_after");
        int more = json_is_integer(next) && json_array_size(json_object_get(r.json, "orders"));
        if (more)
            after = json_integer_value(next);
        h_resp_free(&r);
        if (!more)
            break;
    }
    t.other = t.total - t.succeeded - t.failed;
    return t;
}

/* in_flight + queued of supplier "rw" in GET /v1/suppliers. */
static long long supplier_load(long long *queued)
{
    h_resp r = h_get(&D, "/v1/suppliers", "ops-token");
    cr_assert_eq(r.status, 200, "GET /v1/suppliers: %ld %s", r.status, r.body);
    json_t *h = json_object_get(json_array_get(json_object_get(r.json, "suppliers"), 0), "health");
    long long n = h_int(h, "in_flight");
    *queued = h_int(h, "queued");
    h_resp_free(&r);
    return n;
}

/* Runs the batch against a supplier answering after latency ms; returns the
 * largest in_flight seen. */
static long long run_batch(int latency)
{
    /* 2,000 connections at once: the simulator (which inherits our limits)
     * needs more descriptors than the usual 1024 */
    struct rlimit rl;
    cr_assert(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_cur < 8192 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max < 8192 ? rl.rlim_max : 8192;
        cr_assert(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    }
    cr_assert(h_sim_start(&S, NULL) == 0, "supsim did not start");
    char rw[1024];
    h_sim_supplier_yaml(&S, "rw", "rewards",
                        "    priority: 10\n    max_in_flight: 4096\n    timeout_ms: 30000\n"
                        "    query_max_delay_ms: 1000\n",
                        NULL, rw, sizeof rw);
    snprintf(BODY, sizeof BODY,
             "suppliers:\n%s"
             "products:\n"
             "  - sku: io.topup\n    name: Scale top-up\n    brand: sim\n    category: telecom\n"
             "    delivery: recharge\n    face_value: \"50.00\"\n"
             "    offers:\n      - {supplier: rw, supplier_sku: \"U20001\", cost: \"49.00\"}\n",
             rw);
    h_setup_custom(&D, BODY, "limits:\n  max_order_wait_s: 60\n");
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
    char lat[160];
    snprintf(lat, sizeof lat,
             "{\"protocol\":\"rewards\",\"op\":\"order\",\"fault\":\"latency\",\"latency_ms\":%d,"
             "\"count\":-1}",
             latency);
    h_resp r = h_sim_req(&S, "POST", "/_sim/faults", lat);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);

    submitter sub[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        sub[i] = (submitter){
            .conn = h_conn_new(&D), .first = i * (ORDERS / THREADS), .count = ORDERS / THREADS};
    }
    int64_t t0 = h_now_ms();
    for (int i = 0; i < THREADS; i++)
        cr_assert(pthread_create(&th[i], NULL, submit_main, &sub[i]) == 0);

    /* watch while they submit and while the answers come in */
    long long peak = 0, peak_q = 0;
    long peak_rss = 0, peak_hwm = 0, rss, hwm;
    int64_t submitted_ms = 0;
    tally t = {0};
    for (;;) {
        long long q, n = supplier_load(&q);
        if (n > peak) {
            peak = n;
            peak_q = q;
            mem_of(D.pid, &peak_rss, &peak_hwm);
        }
        t = count_orders();
        if (t.total == ORDERS && t.other == 0)
            break;
        cr_assert(h_now_ms() - t0 < 3 * BUDGET_MS,
                  "not done after %d ms: %d succeeded, %d failed, "
                  "%d open of %d",
                  3 * BUDGET_MS, t.succeeded, t.failed, t.other, t.total);
        if (!submitted_ms && t.total == ORDERS)
            submitted_ms = h_now_ms() - t0;
        usleep(50000);
    }
    int64_t elapsed = h_now_ms() - t0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        h_conn_free(sub[i].conn);
    }
    mem_of(D.pid, &rss, &hwm);
    fprintf(stderr,
            "io_scale: %d recharges (%d ms each at the supplier): all submitted after %lld ms, "
            "all final after %lld ms; peak in_flight %lld (queued %lld); daemon at that peak "
            "VmRSS %ld kB VmHWM %ld kB; at the end VmRSS %ld kB VmHWM %ld kB\n",
            ORDERS, latency, (long long)(submitted_ms ? submitted_ms : elapsed), (long long)elapsed,
            peak, peak_q, peak_rss, peak_hwm, rss, hwm);

    int accepted = 0;
    for (int i = 0; i < THREADS; i++) {
        cr_assert_eq(sub[i].bad_status, 0, "thread %d: POST /v1/orders answered %ld %s", i,
                     sub[i].bad_status, sub[i].bad_body);
        accepted += sub[i].accepted;
    }
    cr_assert_eq(accepted, ORDERS);
    cr_assert_eq(t.succeeded, ORDERS, "%d succeeded, %d failed", t.succeeded, t.failed);
    cr_assert(elapsed < BUDGET_MS,
              "%d orders took %lld ms: not run concurrently (one by one: %d ms)", ORDERS,
              (long long)elapsed, ORDERS * latency);
    cr_assert(peak > 1, "never more than one exchange in flight");

    json_t *truth = h_sim_truth(&S);
    json_t *counts = json_object_get(truth, "counts");
    cr_assert_eq(h_int(counts, "recharges_performed"), ORDERS);
    cr_assert_eq(h_int(counts, "double_creates"), 0);
    cr_assert_eq(json_array_size(json_object_get(truth, "orders")), ORDERS);
    json_decref(truth);
    cr_assert_eq(h_ledger_matches_sim(&D, &S), ORDERS);

    h_stop_clean(&D);
    h_cleanup(&D);
    h_sim_stop(&S);
    return peak;
}

/* Both runs in one test, one after the other, so that neither competes with
 * the other for the two cores. First the brief's figure: answers after 200 ms,
 * so the batch overlaps as fast as the API takes orders. Then answers after
 * 10 s, longer than submitting the batch takes (~1-2 s, ~4-10 s under ASan):
 * every recharge is on the wire at the same moment. */
Test(io_scale, two_thousand_recharges_in_flight)
{
    run_batch(200);
    long long peak = run_batch(10000);
    cr_assert(peak >= ORDERS / 2, "at most %lld of %d exchanges were in flight together", peak,
              ORDERS);
}
