/*
 * Enabling and disabling a supplier without a restart: two suppliers at the
 * same simulator (gateway, priority 20; rewards, priority 10) offer the same
 * recharge. Orders go to gateway; with several of them still processing
 * there, the config disables gateway and SIGHUP reloads it: new orders go to
 * rewards, the in-flight gateway orders still complete (their order queries
 * keep going to the instance they started with) with one attempt each and no
 * second recharge, GET /v1/suppliers shows gateway disabled; enabling it again
 * sends new orders to gateway.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static h_daemon D;
static h_sim S;

static void teardown(void)
{
    h_leftover(&D);
    if (S.pid > 0)
        h_sim_stop(&S);
}

TestSuite(supplier_reload, .fini = teardown);

#define ACCOUNT    "13900000001" /* supsim completes it succeeded */
#define GW_ENABLED "  - id: gateway\n    plugin: gateway\n    enabled: true\n"
#define GW_OFF     "  - id: gateway\n    plugin: gateway\n    enabled: false\n"
#define IN_FLIGHT  4

/* Both suppliers at the simulator; gateway first by priority, although its
 * offer is listed second with the same cost. Caller frees. */
static char *suppliers_body(void)
{
    char gw[1024], rw[1024], *s = NULL;
    h_sim_supplier_yaml(&S, "gateway", "gateway",
                        "    enabled: true\n    priority: 20\n    query_max_delay_ms: 500\n", NULL,
                        gw, sizeof gw);
    h_sim_supplier_yaml(&S, "rewards", "rewards",
                        "    enabled: true\n    priority: 10\n    query_max_delay_ms: 500\n", NULL,
                        rw, sizeof rw);
    int n = asprintf(&s,
                     "suppliers:\n%s%s"
                     "products:\n"
                     "  - sku: topup\n    name: Mobile top-up\n    brand: telco\n"
                     "    category: telecom\n    delivery: recharge\n    face_value: \"50.00\"\n"
                     "    offers:\n"
                     "      - {supplier: rewards, supplier_sku: U20001, cost: \"49.00\"}\n"
                     "      - {supplier: gateway, supplier_sku: \"20001\", cost: \"49.00\"}\n",
                     gw, rw);
    cr_assert(n > 0);
    return s;
}

/* ---- requests -------------------------------------------------------------------- */

static long long place(const char *coid)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"client_order_id\":\"%s\",\"sku\":\"topup\",\"quantity\":1,\"account\":\"%s\"}",
             coid, ACCOUNT);
    h_resp r = h_post_json(&D, "/v1/orders", "mall-token", body);
    cr_assert(r.status == 202 || r.status == 201, "%s: %ld %s", coid, r.status, r.body);
    long long id = h_int(h_order_of(&r), "id");
    h_resp_free(&r);
    return id;
}

static h_resp ops_view(long long id)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/orders/%lld", id);
    h_resp r = h_get(&D, path, "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    return r;
}

static json_t *attempts_of(const h_resp *r)
{
    json_t *a = json_object_get(h_order_of(r), "attempts");
    cr_assert(json_is_array(a) && json_array_size(a) >= 1, "no attempts: %s", r->body);
    return a;
}

/* The order went to `supplier` only: one attempt, at it. */
static void expect_routed(long long id, const char *supplier)
{
    h_resp r = ops_view(id);
    json_t *a = attempts_of(&r);
    cr_assert_eq(json_array_size(a), 1, "order %lld: %s", id, r.body);
    cr_assert_str_eq(h_str(json_array_get(a, 0), "supplier"), supplier, "order %lld: %s", id,
                     r.body);
    h_resp_free(&r);
}

typedef struct states {
    const char *order_state, *attempt_state;
} states;

static int states_are(json_t *o, void *arg)
{
    states *w = arg;
    json_t *a = json_array_get(json_object_get(o, "attempts"), 0);
    const char *os = json_string_value(json_object_get(o, "state"));
    const char *as = json_string_value(json_object_get(a, "state"));
    return os && as && !strcmp(os, w->order_state) && !strcmp(as, w->attempt_state);
}

static void wait_order(long long id, const char *order_state, const char *attempt_state,
                       int timeout_ms)
{
    states w = {order_state, attempt_state};
    char what[96];
    snprintf(what, sizeof what, "becoming %s/%s", order_state, attempt_state);
    json_decref(h_order_poll(&D, id, "ops-token", states_are, &w, timeout_ms, what));
}

/* ---- suppliers and reloads ------------------------------------------------------- */

static json_t *supplier_entry(h_resp *r, const char *id)
{
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(r->json, "suppliers"), i, s)
    {
        if (!strcmp(h_str(s, "id"), id))
            return s;
    }
    cr_assert_fail("no supplier %s in %s", id, r->body);
    return NULL;
}

static void expect_supplier(const char *id, int enabled, const char *state)
{
    h_resp r = h_get(&D, "/v1/suppliers", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *s = supplier_entry(&r, id);
    cr_assert(json_is_boolean(json_object_get(s, "enabled")), "%s", r.body);
    cr_assert_eq(json_is_true(json_object_get(s, "enabled")), enabled, "%s", r.body);
    cr_assert_str_eq(h_str(s, "state"), state, "%s", r.body);
    h_resp_free(&r);
}

/* The config body (suppliers and products) the daemon runs with; h_config_text
 * builds the whole file from it. Replaced by each reload, freed at the end. */
static char *Body;

/* Rewrites the config with `from` replaced by `to` in the body, sends SIGHUP
 * and waits for the reload (the count-th "config.reloaded" line). */
static void reload(const char *from, const char *to, long count)
{
    char *edited = h_replace(Body, from, to);
    free(Body);
    Body = edited;
    D.custom = Body;
    char *text = h_config_text(&D, NULL);
    h_write_config_text(&D, text);
    free(text);
    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    cr_assert(h_log_wait(&D, "config.reloaded", count, 10000) == 0, "no config.reloaded #%ld in %s",
              count, D.log);
}

/* How many times needle occurs in the daemon's log after the first `marker`. */
static long log_count_after(const char *marker, const char *needle)
{
    size_t n;
    char *log = h_read_file(D.log, &n);
    cr_assert(log, "cannot read %s", D.log);
    const char *at = strstr(log, marker);
    cr_assert(at, "no '%s' in %s", marker, D.log);
    long c = h_mem_count(at, n - (size_t)(at - log), needle);
    free(log);
    return c;
}

/* ---- the scenario ---------------------------------------------------------------------- */

Test(supplier_reload, disable_and_enable_gateway_with_orders_in_flight)
{
    const char *args[] = {"--complete-ms", "2000", NULL};
    cr_assert(h_sim_start(&S, args) == 0, "supsim did not start (log %s)", S.log);
    Body = suppliers_body();
    h_setup_custom(&D, Body, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
    expect_supplier("gateway", 1, "ready");
    expect_supplier("rewards", 1, "ready");

    /* gateway first by priority, although listed second with the same cost */
    long long first = place("before-0");
    expect_routed(first, "gateway");
    wait_order(first, "succeeded", "succeeded", 15000);

    long long flying[IN_FLIGHT];
    for (int i = 0; i < IN_FLIGHT; i++) {
        char coid[32];
        snprintf(coid, sizeof coid, "flying-%d", i);
        flying[i] = place(coid);
    }
    for (int i = 0; i < IN_FLIGHT; i++) {
        expect_routed(flying[i], "gateway");
        wait_order(flying[i], "processing", "processing", 10000);
    }

    reload(GW_ENABLED, GW_OFF, 1);
    expect_supplier("gateway", 0, "disabled");
    expect_supplier("rewards", 1, "ready");
    /* the reload came while they were still with the supplier */
    for (int i = 0; i < IN_FLIGHT; i++) {
        h_resp r = ops_view(flying[i]);
        const char *st = h_str(h_order_of(&r), "state");
        cr_assert_str_eq(st, "processing", "order %lld finished before the reload (too slow?): %s",
                         flying[i], r.body);
        h_resp_free(&r);
    }

    long long after_off[2] = {place("off-0"), place("off-1")};
    for (int i = 0; i < 2; i++)
        expect_routed(after_off[i], "rewards");

    for (int i = 0; i < IN_FLIGHT; i++) {
        wait_order(flying[i], "succeeded", "succeeded", 15000);
        expect_routed(flying[i], "gateway");
    }
    /* resolved by order queries to the disabled supplier's running instance */
    for (int i = 0; i < IN_FLIGHT; i++) {
        char needle[96];
        snprintf(needle, sizeof needle, "order=%lld attempt=1 supplier=gateway op=order_query",
                 flying[i]);
        cr_assert_geq(log_count_after("msg=config.reloaded", needle), 1,
                      "no gateway query for order %lld after the reload (log %s)", flying[i],
                      D.log);
    }
    for (int i = 0; i < 2; i++) {
        wait_order(after_off[i], "succeeded", "succeeded", 15000);
        expect_routed(after_off[i], "rewards");
    }
    expect_supplier("gateway", 0, "disabled");
    /* the last reference to the disabled instance went with its last order, on
     * fulfil's thread; the plugin is shut down by the main thread (the reaper,
     * woken by SIGUSR2), now and not at the next reload */
    cr_assert_eq(h_log_wait(&D, "msg=supplier.stopped supplier=gateway", 1, 15000), 0,
                 "the disabled gateway instance was not stopped (log %s)", D.log);

    reload(GW_OFF, GW_ENABLED, 2);
    expect_supplier("gateway", 1, "ready");
    long long back = place("back-0");
    expect_routed(back, "gateway");
    wait_order(back, "succeeded", "succeeded", 15000);

    /* one recharge per order at the simulator, none created twice */
    json_t *t = h_sim_truth(&S);
    json_t *c = json_object_get(t, "counts");
    char b[1024];
    cr_assert_eq(h_int(c, "recharges_performed"), 1 + IN_FLIGHT + 2 + 1, "%s",
                 h_dump(c, b, sizeof b));
    cr_assert_eq(h_int(c, "double_creates"), 0, "%s", h_dump(c, b, sizeof b));
    json_decref(t);
    h_ledger_matches_sim(&D, &S);

    h_stop_clean(&D); /* a clean exit is part of every test */
    h_cleanup(&D);
    free(Body);
    Body = NULL;
    h_sim_stop(&S);
}
