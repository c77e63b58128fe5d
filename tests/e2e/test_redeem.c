/*
 * test_redeem.c — redemption status end to end (issue 12 item 6): a customer-
 * service lookup of an issued code asks the code's supplier whether it was
 * redeemed, within `redemption.wait_ms`, against the simulator.
 *
 *   - codes bought from the simulator's gateway (a supplier card order), one
 *     marked redeemed at the simulator (POST /_sim/redeem): its lookup says
 *     already_redeemed, the code is stored redeemed, one code.redeemed event
 *     names batch, SKU and code id and never the code; the other code is
 *     "not_redeemed" and stays issued; a second lookup asks nothing more and
 *     changes nothing;
 *   - a simulator that never answers the question: the lookup answers within
 *     wait_ms plus a margin, redemption "unknown", and nothing changes;
 *   - a supplier whose plugin cannot tell (rewards) is never asked;
 *   - no code reaches perkhubd's log, an event or an error (canary), and
 *     --check-store is clean at the end.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define WAIT_MS   800  /* redemption.wait_ms of this test's config */
#define MARGIN_MS 1200 /* a loaded CI machine; the exchange's own timeout is 6000 */

static h_sim S;
static h_daemon D;
static char BODY[4096];

static void teardown(void)
{
    h_leftover(&D);
    if (S.pid > 0)
        h_sim_stop(&S);
}

TestSuite(redeem, .fini = teardown);

static void start(void)
{
    cr_assert(h_sim_start(&S, NULL) == 0, "supsim did not start");
    char gw[1024], rw[1024];
    const char *fields = "    priority: 10\n    timeout_ms: 6000\n    connect_timeout_ms: 1000\n";
    h_sim_supplier_yaml(&S, "gw", "gateway", fields, NULL, gw, sizeof gw);
    h_sim_supplier_yaml(&S, "rw", "rewards", fields, NULL, rw, sizeof rw);
    snprintf(BODY, sizeof BODY,
             "suppliers:\n%s%s"
             "products:\n"
             "  - sku: r.card\n    name: Redeem card\n    brand: sim\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n"
             "    offers:\n      - {supplier: gw, supplier_sku: \"10001\", cost: \"28.50\"}\n"
             "  - sku: r.card2\n    name: Rewards card\n    brand: sim\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n"
             "    offers:\n      - {supplier: rw, supplier_sku: \"U10001\", cost: \"28.50\"}\n",
             gw, rw);
    h_setup_custom(&D, BODY, "redemption:\n  wait_ms: 800\n");
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
}

/* A succeeded supplier card order of qty codes of sku; the owner's codes in
 * codes[] (each at most 63 bytes). */
static void buy(const char *coid, const char *sku, int qty, char codes[][64])
{
    char j[256];
    snprintf(j, sizeof j, "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"quantity\":%d,\"wait\":10}",
             coid, sku, qty);
    h_resp r = h_post_json(&D, "/v1/orders", "mall-token", j);
    cr_assert(r.status == 200 || r.status == 201, "order %s: %ld %s", coid, r.status, r.body);
    json_t *o = json_object_get(r.json, "order");
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", r.body);
    json_t *cs = json_object_get(o, "codes");
    cr_assert_eq(json_array_size(cs), (size_t)qty, "%s", r.body);
    for (int i = 0; i < qty; i++)
        snprintf(codes[i], 64, "%s", h_str(json_array_get(cs, (size_t)i), "code"));
    h_resp_free(&r);
}

/* POST /v1/codes/lookup {"code": code} as token: the one result (caller
 * json_decref's) and the time it took in *ms. */
static json_t *lookup(const char *token, const char *code, int64_t *ms)
{
    char j[160];
    snprintf(j, sizeof j, "{\"code\":\"%s\"}", code);
    int64_t t0 = h_now_ms();
    h_resp r = h_post_json(&D, "/v1/codes/lookup", token, j);
    if (ms)
        *ms = h_now_ms() - t0;
    cr_assert_eq(r.status, 200, "lookup: %ld %s", r.status, r.body);
    json_t *res = json_incref(json_array_get(json_object_get(r.json, "results"), 0));
    cr_assert_not_null(res, "%s", r.body);
    h_resp_free(&r);
    return res;
}

static long long sim_count(const char *name)
{
    json_t *t = h_sim_truth(&S);
    long long n = h_int(json_object_get(t, "counts"), name);
    json_decref(t);
    return n;
}

/* The events of type `type` (caller json_decref's), after asserting that no
 * event anywhere holds any of the codes. */
static json_t *events_of(const char *type, char codes[][64], int ncodes)
{
    h_resp r = h_get(&D, "/v1/events?after=0&limit=1000", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    for (int i = 0; i < ncodes; i++)
        cr_assert(!strstr(r.body, codes[i]), "an event holds the code %s", codes[i]);
    json_t *out = json_array(), *e;
    size_t i;
    json_array_foreach(json_object_get(r.json, "events"), i, e) if (!strcmp(h_str(e, "type"), type))
        json_array_append(out, e);
    h_resp_free(&r);
    return out;
}

Test(redeem, supplier_says_redeemed)
{
    start();
    char codes[2][64];
    buy("R-1", "r.card", 2, codes);
    char j[128];
    snprintf(j, sizeof j, "{\"code\":\"%s\"}", codes[0]);
    h_resp m = h_sim_req(&S, "POST", "/_sim/redeem", j);
    cr_assert_eq(m.status, 200, "%s", m.body);
    h_resp_free(&m);
    long long asked0 = sim_count("redeem_requests");

    /* the redeemed one: diagnosis, stored state, the answer */
    json_t *res = lookup("mall-token", codes[0], NULL);
    cr_assert_str_eq(h_str(res, "diagnosis"), "already_redeemed");
    cr_assert_str_eq(h_str(res, "state"), "redeemed");
    cr_assert_str_eq(h_str(res, "redemption"), "redeemed");
    cr_assert_null(json_object_get(res, "code"), "a lookup by code never echoes it");
    long long batch = h_int(res, "batch_id");
    json_decref(res);
    cr_assert_eq(sim_count("redeem_requests"), asked0 + 1, "asked once");

    /* the other one: asked, not redeemed, still issued */
    res = lookup("mall-token", codes[1], NULL);
    cr_assert_str_eq(h_str(res, "diagnosis"), "issued");
    cr_assert_str_eq(h_str(res, "state"), "issued");
    cr_assert_str_eq(h_str(res, "redemption"), "not_redeemed");
    json_decref(res);

    /* one event, without the code */
    json_t *ev = events_of("code.redeemed", codes, 2);
    cr_assert_eq(json_array_size(ev), 1, "one code.redeemed event");
    json_t *e = json_array_get(ev, 0);
    cr_assert_eq(h_int(e, "batch_id"), batch);
    cr_assert_str_eq(h_str(e, "sku"), "r.card");
    cr_assert_gt(h_int(e, "code_id"), 0);
    json_decref(ev);

    /* the order view and the stats say so too */
    h_resp o = h_get(&D, "/v1/orders?client_order_id=R-1", "mall-token");
    cr_assert(strstr(o.body, "\"state\":\"redeemed\""), "%s", o.body);
    h_resp_free(&o);
    json_t *st = h_stats(&D);
    json_t *row = h_stats_sku(st, "r.card");
    cr_assert_not_null(row);
    cr_assert_eq(h_int(row, "redeemed"), 1);
    cr_assert_eq(h_int(row, "issued"), 1);
    json_decref(st);

    /* again: redeemed stays redeemed, nothing asked, nothing written */
    long long last = h_last_event(&D), asked1 = sim_count("redeem_requests");
    res = lookup("ops-token", codes[0], NULL);
    cr_assert_str_eq(h_str(res, "diagnosis"), "already_redeemed");
    cr_assert_null(json_object_get(res, "redemption"), "a redeemed code is not asked about");
    json_decref(res);
    cr_assert_eq(sim_count("redeem_requests"), asked1);
    cr_assert_eq(h_last_event(&D), last, "a second lookup wrote nothing");

    /* another client's lookup of it is not_found, and asks nothing */
    res = lookup("other-token", codes[1], NULL);
    cr_assert_str_eq(h_str(res, "diagnosis"), "not_found");
    json_decref(res);
    cr_assert_eq(sim_count("redeem_requests"), asked1);

    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(h_file_count(D.log, codes[i]), 0, "the code %s reached the log", codes[i]);
    char *out = NULL;
    cr_assert_eq(h_check_store(&D, &out), 0, "%s", out);
    free(out);
    h_cleanup(&D);
}

/* Supplier gw has no exchange in flight and has had an ambiguous one. */
static int exchange_over(void *arg)
{
    (void)arg;
    h_resp r = h_get(&D, "/v1/suppliers", "ops-token");
    json_t *s;
    size_t i;
    int over = 0;
    json_array_foreach(json_object_get(r.json, "suppliers"), i, s)
    {
        json_t *h = json_object_get(s, "health");
        if (!strcmp(h_str(s, "id"), "gw"))
            over = json_integer_value(json_object_get(h, "in_flight")) == 0 &&
                   json_integer_value(
                       json_object_get(json_object_get(h, "exchanges"), "ambiguous")) >= 1;
    }
    h_resp_free(&r);
    return over;
}

Test(redeem, supplier_hangs)
{
    start();
    char codes[1][64];
    buy("H-1", "r.card", 1, codes);
    h_resp f = h_sim_req(&S, "POST", "/_sim/faults",
                         "{\"protocol\":\"gateway\",\"op\":\"redeem\",\"fault\":\"timeout_after\","
                         "\"count\":-1}");
    cr_assert_eq(f.status, 201, "%s", f.body);
    h_resp_free(&f);
    long long last = h_last_event(&D);
    json_t *before = h_stats(&D);
    int64_t ms = 0;
    json_t *res = lookup("mall-token", codes[0], &ms);
    cr_assert_geq(ms, WAIT_MS - 50, "answered before the wait: %lld ms", (long long)ms);
    cr_assert_lt(ms, WAIT_MS + MARGIN_MS, "the wait is bounded: %lld ms", (long long)ms);
    cr_assert_str_eq(h_str(res, "redemption"), "unknown");
    cr_assert_str_eq(h_str(res, "diagnosis"), "issued");
    cr_assert_str_eq(h_str(res, "state"), "issued");
    json_decref(res);
    cr_assert_geq(sim_count("redeem_requests"), 1, "the supplier was asked");
    cr_assert_eq(h_last_event(&D), last, "nothing written");
    json_t *after = h_stats(&D);
    cr_assert(json_equal(before, after), "nothing changed");
    json_decref(before);
    json_decref(after);
    cr_assert_eq(h_log_wait(&D, "why=\"timeout after 800 ms\"", 1, 5000), 0,
                 "the log says why the answer is unknown");
    /* the exchange itself ends later (the supplier's timeout): still nothing */
    cr_assert_eq(h_wait_for(exchange_over, NULL, 15000), 0, "the exchange never ended");
    cr_assert_eq(h_last_event(&D), last, "a lost answer changes nothing");
    h_resp c = h_sim_req(&S, "DELETE", "/_sim/faults", NULL);
    h_resp_free(&c);
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    cr_assert_eq(h_file_count(D.log, codes[0]), 0, "the code reached the log");
    h_cleanup(&D);
}

Test(redeem, supplier_without_the_capability_is_never_asked)
{
    start();
    char codes[1][64];
    buy("N-1", "r.card2", 1, codes);
    char j[128];
    snprintf(j, sizeof j, "{\"code\":\"%s\",\"protocol\":\"rewards\"}", codes[0]);
    h_resp m = h_sim_req(&S, "POST", "/_sim/redeem", j);
    cr_assert_eq(m.status, 200, "%s", m.body);
    h_resp_free(&m);
    int64_t ms = 0;
    json_t *res = lookup("mall-token", codes[0], &ms);
    cr_assert_str_eq(h_str(res, "diagnosis"), "issued", "the rewards plugin cannot tell");
    cr_assert_null(json_object_get(res, "redemption"), "nobody was asked");
    json_decref(res);
    cr_assert_eq(sim_count("redeem_requests"), 0);
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    cr_assert_eq(h_file_count(D.log, "redeem.answer"), 0, "no question was asked");
    h_cleanup(&D);
}

/* r.card counts one redeemed code (GET /v1/stats: asks nothing). */
static int stored_redeemed(void *arg)
{
    (void)arg;
    json_t *st = h_stats(&D);
    json_t *row = h_stats_sku(st, "r.card");
    int yes = row && json_integer_value(json_object_get(row, "redeemed")) == 1;
    json_decref(st);
    return yes;
}

/* An answer that comes after the wait is still the supplier's truth: the
 * lookup said "unknown", and the code becomes redeemed when the answer lands
 * (docs/design.md rule 7), with its one event. */
Test(redeem, late_answer_is_kept)
{
    start();
    char codes[1][64];
    buy("L-1", "r.card", 1, codes);
    char j[128];
    snprintf(j, sizeof j, "{\"code\":\"%s\"}", codes[0]);
    h_resp m = h_sim_req(&S, "POST", "/_sim/redeem", j);
    cr_assert_eq(m.status, 200, "%s", m.body);
    h_resp_free(&m);
    h_resp f = h_sim_req(&S, "POST", "/_sim/faults",
                         "{\"protocol\":\"gateway\",\"op\":\"redeem\",\"fault\":\"latency\","
                         "\"latency_ms\":2000,\"count\":1}");
    cr_assert_eq(f.status, 201, "%s", f.body);
    h_resp_free(&f);
    int64_t ms = 0;
    json_t *res = lookup("mall-token", codes[0], &ms);
    cr_assert_lt(ms, WAIT_MS + MARGIN_MS, "the wait is bounded: %lld ms", (long long)ms);
    cr_assert_str_eq(h_str(res, "redemption"), "unknown");
    cr_assert_str_eq(h_str(res, "state"), "issued");
    json_decref(res);
    cr_assert_eq(h_wait_for(stored_redeemed, NULL, 10000), 0, "the late answer was dropped");
    json_t *ev = events_of("code.redeemed", codes, 1);
    cr_assert_eq(json_array_size(ev), 1);
    json_decref(ev);
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    cr_assert_eq(h_file_count(D.log, codes[0]), 0, "the code reached the log");
    h_cleanup(&D);
}

/* A lookup by order asks about each of its issued codes at once: the one the
 * simulator says was redeemed is stored so, the others are not_redeemed. */
Test(redeem, lookup_by_order_asks_each_code)
{
    start();
    char codes[3][64];
    buy("O-1", "r.card", 3, codes);
    char j[128];
    snprintf(j, sizeof j, "{\"code\":\"%s\"}", codes[1]);
    h_resp m = h_sim_req(&S, "POST", "/_sim/redeem", j);
    cr_assert_eq(m.status, 200, "%s", m.body);
    h_resp_free(&m);
    int64_t t0 = h_now_ms();
    h_resp r = h_post_json(&D, "/v1/codes/lookup", "mall-token", "{\"client_order_id\":\"O-1\"}");
    cr_assert_lt(h_now_ms() - t0, WAIT_MS + MARGIN_MS, "one wait for all the codes");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *res = json_object_get(r.json, "results"), *e;
    cr_assert_eq(json_array_size(res), 3, "%s", r.body);
    size_t i;
    json_array_foreach(res, i, e)
    {
        int redeemed = !strcmp(h_str(e, "code"), codes[1]);
        cr_assert_str_eq(h_str(e, "redemption"), redeemed ? "redeemed" : "not_redeemed", "%s",
                         r.body);
        cr_assert_str_eq(h_str(e, "diagnosis"), redeemed ? "already_redeemed" : "issued");
        cr_assert_str_eq(h_str(e, "state"), redeemed ? "redeemed" : "issued");
    }
    h_resp_free(&r);
    cr_assert_eq(sim_count("redeem_requests"), 3);
    json_t *ev = events_of("code.redeemed", codes, 3);
    cr_assert_eq(json_array_size(ev), 1);
    json_decref(ev);
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    for (int k = 0; k < 3; k++)
        cr_assert_eq(h_file_count(D.log, codes[k]), 0, "the code reached the log");
    char *out = NULL;
    cr_assert_eq(h_check_store(&D, &out), 0, "%s", out);
    free(out);
    h_cleanup(&D);
}

/* POST /v1/codes/lookup by client order id coid, as the owner, with `extra`
 * (",\"after\":8", or ""); asserts 200 and returns the answer. */
static h_resp lookup_page(const char *coid, const char *extra)
{
    char j[160];
    snprintf(j, sizeof j, "{\"client_order_id\":\"%s\"%s}", coid, extra);
    int64_t t0 = h_now_ms();
    h_resp r = h_post_json(&D, "/v1/codes/lookup", "mall-token", j);
    cr_assert_lt(h_now_ms() - t0, WAIT_MS + MARGIN_MS, "one wait for the page: %s", j);
    cr_assert_eq(r.status, 200, "%s: %s", j, r.body);
    return r;
}

/* An order of more codes than a lookup used to ask about (16): every code of
 * it is answered with its supplier's word, the one redeemed past the 16th
 * too; and walked page by page (`limit`, `next_after`), every code comes
 * once, in the order's order, each page asked about at once. */
#define MANY 20
Test(redeem, lookup_by_order_asks_every_code_of_a_large_order)
{
    start();
    char codes[MANY][64];
    buy("M-1", "r.card", MANY, codes);
    char j[128];
    snprintf(j, sizeof j, "{\"code\":\"%s\"}", codes[18]);
    h_resp m = h_sim_req(&S, "POST", "/_sim/redeem", j);
    cr_assert_eq(m.status, 200, "%s", m.body);
    h_resp_free(&m);
    long long asked0 = sim_count("redeem_requests");

    h_resp r = lookup_page("M-1", "");
    json_t *res = json_object_get(r.json, "results"), *e;
    cr_assert_eq(json_array_size(res), MANY, "%s", r.body);
    size_t i;
    json_array_foreach(res, i, e)
    {
        cr_assert_str_eq(h_str(e, "code"), codes[i], "the order's order: %s", r.body);
        cr_assert_str_eq(h_str(e, "redemption"), i == 18 ? "redeemed" : "not_redeemed",
                         "code %zu: %s", i + 1, r.body);
        cr_assert_str_eq(h_str(e, "state"), i == 18 ? "redeemed" : "issued");
    }
    cr_assert(json_is_null(json_object_get(r.json, "next_after")), "one page: %s", r.body);
    h_resp_free(&r);
    cr_assert_eq(sim_count("redeem_requests"), asked0 + MANY, "every code asked once");

    /* page by page: 8, 8, 4; the redeemed one is shown, not asked again */
    long long asked1 = sim_count("redeem_requests");
    const char *pages[] = {",\"limit\":8", ",\"limit\":8,\"after\":8", ",\"after\":16,\"limit\":8"};
    const long long next[] = {8, 16, -1};
    size_t seen = 0;
    for (size_t p = 0; p < 3; p++) {
        r = lookup_page("M-1", pages[p]);
        res = json_object_get(r.json, "results");
        cr_assert_eq(json_array_size(res), p < 2 ? 8u : 4u, "page %zu: %s", p + 1, r.body);
        json_t *na = json_object_get(r.json, "next_after");
        if (next[p] < 0)
            cr_assert(json_is_null(na), "the last page: %s", r.body);
        else
            cr_assert_eq(json_integer_value(na), next[p], "page %zu: %s", p + 1, r.body);
        json_array_foreach(res, i, e)
        {
            cr_assert_str_eq(h_str(e, "code"), codes[seen], "page %zu: %s", p + 1, r.body);
            if (seen == 18)
                cr_assert_null(json_object_get(e, "redemption"), "a redeemed code is not asked");
            else
                cr_assert_str_eq(h_str(e, "redemption"), "not_redeemed", "%s", r.body);
            seen++;
        }
        h_resp_free(&r);
    }
    cr_assert_eq(seen, MANY);
    cr_assert_eq(sim_count("redeem_requests"), asked1 + MANY - 1);
    json_t *ev = events_of("code.redeemed", codes, MANY);
    cr_assert_eq(json_array_size(ev), 1);
    json_decref(ev);
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    for (int k = 0; k < MANY; k++)
        cr_assert_eq(h_file_count(D.log, codes[k]), 0, "the code reached the log");
    char *out = NULL;
    cr_assert_eq(h_check_store(&D, &out), 0, "%s", out);
    free(out);
    h_cleanup(&D);
}
