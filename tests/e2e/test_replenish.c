/*
 * test_replenish.c — auto-replenishment (issue 12, item 5), end to end with
 * the simulator.
 *
 * Supplier "rw" speaks the rewards protocol at supsim; product rp.card is its
 * card U10001 (28.50 a unit) with a rule buying up to `to` when the stock is
 * below `below`, checked every second (replenish_check_s: 1):
 *   - concurrent orders drain the stock while replenishments refill it: never
 *     two in flight for the product (each starts after the previous ended),
 *     each buys to - available, what perkhub says it bought is what supsim
 *     sold, the stock never goes above `to`, and the day's spend stays within
 *     max_per_day;
 *   - a budget that fits 3 units: one purchase of 3, then refusals, never
 *     over the budget;
 *   - kill -9 while supsim holds the purchase's answer: after the restart the
 *     purchase is queried, never sent again (supsim counts one create for its
 *     reference), its codes land in stock and are orderable;
 *   - a purchase the supplier refuses (U10002 is out of stock) ends with
 *     replenish.failed and is tried again only at the next check;
 *   - --check-config refuses a bad rule with file:line:column;
 *   - a rule added by SIGHUP runs, and the reload's audit names its product;
 *   - the journal of a run with replenishments replays to the same store.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

#define WAIT_MS 20000

static h_daemon D;
static h_sim S;
static char BODY[8192];

static void teardown(void)
{
    unsetenv("PERKHUB_JOURNAL");
    h_leftover(&D);
    if (S.pid > 0)
        h_sim_stop(&S);
}

TestSuite(replenish, .fini = teardown, .timeout = 240);

/* rule: the rp.card product's replenish block, lines indented 4. */
static void start(const char *rule)
{
    cr_assert(h_sim_start(&S, NULL) == 0, "supsim did not start");
    char rw[1024];
    h_sim_supplier_yaml(&S, "rw", "rewards", "    query_max_delay_ms: 200\n",
                        "      auth: bearer\n      webhook_tolerance_s: 300\n", rw, sizeof rw);
    snprintf(BODY, sizeof BODY,
             "suppliers:\n%s"
             "products:\n"
             "  - sku: rp.card\n    name: iQiyi Gold\n    brand: iqiyi\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n"
             "    offers:\n      - {supplier: rw, supplier_sku: U10001, cost: \"28.50\"}\n"
             "%s",
             rw, rule);
    h_setup_custom(&D, BODY, "replenish_check_s: 1\n");
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
}

static void stop(void)
{
    h_ledger_matches_sim(&D, &S);
    h_stop_clean(&D);
    char *out = NULL;
    int rc = h_check_store(&D, &out);
    cr_assert_eq(rc, 0, "--check-store: %s", out ? out : "");
    free(out);
    h_cleanup(&D);
    h_sim_stop(&S);
}

/* The codes of sku available in local stock (GET /v1/stats: the product
 * view says null while a supplier's stock is unknown). */
static long long available(const char *sku)
{
    h_resp r = h_get(&D, "/v1/stats", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *row = h_stats_sku(r.json, sku);
    long long n = row ? h_int(row, "available") : 0;
    h_resp_free(&r);
    return n;
}

/* GET /v1/replenishments?sku=sku (every page), as ops. Caller json_decref's. */
static json_t *replenishments(const char *sku)
{
    json_t *all = json_array();
    long long after = 0;
    for (;;) {
        char path[256];
        snprintf(path, sizeof path, "/v1/replenishments?sku=%s&limit=2&after=%lld", sku, after);
        h_resp r = h_get(&D, path, "ops-token");
        cr_assert_eq(r.status, 200, "%s: %s", path, r.body);
        json_array_extend(all, json_object_get(r.json, "replenishments"));
        json_t *next = json_object_get(r.json, "next_after");
        int more = json_is_integer(next);
        after = more ? json_integer_value(next) : 0;
        h_resp_free(&r);
        if (!more)
            return all;
    }
}

static size_t count_state(json_t *list, const char *state)
{
    size_t i, n = 0;
    json_t *x;
    json_array_foreach(list, i, x) n += !strcmp(h_str(x, "state"), state);
    return n;
}

typedef struct want {
    const char *sku, *state;
    size_t n;
} want;

static int has_n(void *arg)
{
    want *w = arg;
    json_t *l = replenishments(w->sku);
    int ok = count_state(l, w->state) >= w->n;
    json_decref(l);
    return ok;
}

static void wait_n(const char *sku, const char *state, size_t n)
{
    want w = {sku, state, n};
    cr_assert(h_wait_for(has_n, &w, WAIT_MS) == 0, "%zu %s replenishments of %s", n, state, sku);
}

/* RFC 3339 with milliseconds to ms. */
static int64_t ms_of(const char *t)
{
    struct tm tm = {0};
    int ms = 0;
    cr_assert(t && sscanf(t, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                          &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) == 7,
              "not a time: %s", t ? t : "(null)");
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* The supsim order of perkhub order id (its one entry), borrowed from t. */
static json_t *sim_order(json_t *t, long long id)
{
    size_t n = 0;
    json_t *o = h_sim_truth_find(t, "orders", "rewards", id, &n);
    cr_assert_eq(n, 1, "supsim holds %zu orders for perkhub order %lld", n, id);
    return o;
}

/* Every replenishment of the list is ended, none overlaps the next (one in
 * flight at a time), and each bought what supsim sold for its order. Returns
 * the units bought. */
static long long check_history(json_t *list, long long to)
{
    json_t *t = h_sim_truth(&S);
    long long units = 0;
    int64_t prev_end = 0;
    size_t i;
    json_t *x;
    char buf[512];
    json_array_foreach(list, i, x)
    {
        const char *state = h_str(x, "state");
        cr_assert(strcmp(state, "in_flight"), "still in flight: %s", h_dump(x, buf, sizeof buf));
        int64_t started = ms_of(h_str(x, "started_at")), ended = ms_of(h_str(x, "ended_at"));
        cr_assert(started >= prev_end, "replenishment %lld started before the previous ended",
                  h_int(x, "id"));
        prev_end = ended;
        long long q = h_int(x, "quantity");
        cr_assert(q >= 1 && q <= to, "quantity %lld", q);
        json_t *so = sim_order(t, h_int(x, "order_id"));
        cr_assert_eq(json_integer_value(json_object_get(so, "quantity")), q);
        cr_assert_eq(json_integer_value(json_object_get(so, "creates")), 1,
                     "one create per purchase");
        if (!strcmp(state, "succeeded")) {
            units += q;
            cr_assert_eq(h_int(x, "cost_fen"),
                         json_integer_value(json_object_get(so, "charged_fen")));
        }
    }
    json_decref(t);
    return units;
}

/* ---- concurrent orders never over-buy, and keep the budget ------------------------ */

#define THREADS 4
#define PER     30

static void *orderer(void *arg)
{
    int k = (int)(long)arg;
    h_conn *c = h_conn_new(&D);
    for (int i = 0; i < PER; i++) {
        char coid[64];
        snprintf(coid, sizeof coid, "cc-%d-%d", k, i);
        h_resp r;
        h_conn_order(c, "mall-token", coid, "rp.card", 1, &r);
        h_resp_free(&r);
    }
    h_conn_free(c);
    return NULL;
}

Test(replenish, concurrent_orders_never_over_buy)
{
    start("    replenish: {below: 5, to: 12, suppliers: [rw], max_unit_cost: \"29.00\","
          " max_per_day: \"100000.00\"}\n");
    wait_n("rp.card", "succeeded", 1); /* the empty stock is filled first */
    cr_assert_eq(available("rp.card"), 12);
    pthread_t th[THREADS];
    for (long k = 0; k < THREADS; k++)
        pthread_create(&th[k], NULL, orderer, (void *)k);
    for (int k = 0; k < THREADS; k++)
        pthread_join(th[k], NULL);
    /* the last orders left it below 5 or not: wait until nothing is in flight
     * and the stock is at or above below */
    json_t *l = NULL;
    for (int64_t end = h_now_ms() + WAIT_MS;;) {
        json_decref(l);
        l = replenishments("rp.card");
        if (!count_state(l, "in_flight") && available("rp.card") >= 5)
            break;
        cr_assert(h_now_ms() < end, "replenishment did not settle");
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling, not an assertion */
    }
    long long bought = check_history(l, 12);
    cr_assert(json_array_size(l) >= 2, "orders of 120 units drained it more than once");
    /* orders that found the stock short went to the supplier themselves: the
     * units supsim sold for orders that are not replenishments */
    json_t *t = h_sim_truth(&S), *so;
    long long direct = 0;
    size_t i;
    json_array_foreach(json_object_get(t, "orders"), i, so)
    {
        long long id = h_ref_order(h_str(so, "ref"));
        int repl = 0;
        size_t j;
        json_t *x;
        json_array_foreach(l, j, x) repl |= h_int(x, "order_id") == id;
        if (!repl && !strcmp(h_str(so, "state"), "success"))
            direct += json_integer_value(json_object_get(so, "quantity"));
    }
    json_decref(t);
    json_decref(l);
    /* every unit bought is in stock or went to a client from stock */
    h_resp st = h_get(&D, "/v1/stats", "ops-token");
    json_t *row = h_stats_sku(st.json, "rp.card");
    cr_assert_not_null(row, "%s", st.body);
    long long stock = available("rp.card");
    cr_assert(stock <= 12, "stock %lld above to", stock);
    long long issued = h_int(row, "issued");
    h_resp_free(&st);
    cr_assert_eq(bought, stock + issued - direct,
                 "bought %lld, in stock %lld, issued %lld of which %lld by the supplier directly",
                 bought, stock, issued, direct);
    stop();
}

Test(replenish, keeps_to_the_day_budget)
{
    /* 100.00 a day fits 3 units of 28.50 (85.50), never a fourth */
    start("    replenish: {below: 5, to: 20, suppliers: [rw], max_unit_cost: \"29.00\","
          " max_per_day: \"100.00\"}\n");
    wait_n("rp.card", "succeeded", 1);
    cr_assert(h_log_wait(&D, "why=budget", 2, WAIT_MS) == 0, "the budget refuses the next ones");
    json_t *l = replenishments("rp.card");
    cr_assert_eq(json_array_size(l), 1);
    json_t *x = json_array_get(l, 0);
    cr_assert_eq(h_int(x, "quantity"), 3);
    cr_assert_eq(h_int(x, "cost_fen"), 8550);
    json_decref(l);
    cr_assert_eq(available("rp.card"), 3);
    /* perkctl shows the same */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", D.port);
    const char *argv[] = {h_bin("PH_PERKCTL"), "--url", url, "replenishments", "--sku",
                          "rp.card",           NULL};
    const char *env[] = {"PERKHUB_TOKEN=ops-token", NULL};
    char *out = NULL, *perr = NULL;
    cr_assert_eq(h_run(argv, env, NULL, 0, &out, &perr), 0, "%s", perr);
    cr_assert(strstr(out, "rp.card") && strstr(out, "28.50") && strstr(out, "succeeded"),
              "perkctl replenishments:\n%s", out);
    free(out);
    free(perr);
    /* a bad filter is a 400 naming it */
    h_resp bad = h_get(&D, "/v1/replenishments?state=done", "ops-token");
    cr_assert_eq(bad.status, 400, "%s", bad.body);
    cr_assert(strstr(bad.body, "state"), "%s", bad.body);
    h_resp_free(&bad);
    bad = h_get(&D, "/v1/replenishments", "mall-token");
    cr_assert_eq(bad.status, 403, "ops only: %s", bad.body);
    h_resp_free(&bad);
    stop();
}

/* ---- kill -9 during the purchase ---------------------------------------------------- */

static int in_flight_one(void *arg)
{
    (void)arg;
    json_t *l = replenishments("rp.card");
    int ok = count_state(l, "in_flight") == 1;
    json_decref(l);
    return ok;
}

Test(replenish, kill9_during_purchase_queries_never_resends)
{
    /* supsim takes the first order, then holds its answer */
    cr_assert(h_sim_start(&S, NULL) == 0);
    h_resp f = h_sim_req(&S, "POST", "/_sim/faults",
                         "{\"protocol\":\"rewards\",\"op\":\"order\",\"fault\":\"timeout_after\"}");
    cr_assert_eq(f.status, 201, "%s", f.body);
    h_resp_free(&f);
    char rw[1024];
    h_sim_supplier_yaml(&S, "rw", "rewards", "    query_max_delay_ms: 200\n",
                        "      auth: bearer\n      webhook_tolerance_s: 300\n", rw, sizeof rw);
    snprintf(BODY, sizeof BODY,
             "suppliers:\n%s"
             "products:\n"
             "  - sku: rp.card\n    name: iQiyi Gold\n    brand: iqiyi\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n"
             "    offers:\n      - {supplier: rw, supplier_sku: U10001, cost: \"28.50\"}\n"
             "    replenish: {below: 2, to: 6, suppliers: [rw], max_unit_cost: \"29.00\","
             " max_per_day: \"1000.00\"}\n",
             rw);
    h_setup_custom(&D, BODY, "replenish_check_s: 1\n");
    cr_assert(h_start(&D) == 0);
    cr_assert(h_wait_for(in_flight_one, NULL, WAIT_MS) == 0, "a purchase in flight");
    /* supsim took it: the order exists there, its answer held */
    json_t *l = replenishments("rp.card");
    long long oid = h_int(json_array_get(l, 0), "order_id");
    json_decref(l);
    for (int64_t end = h_now_ms() + WAIT_MS;;) {
        json_t *t = h_sim_truth(&S);
        int there = h_sim_truth_find(t, "orders", "rewards", oid, NULL) != NULL;
        json_decref(t);
        if (there)
            break;
        cr_assert(h_now_ms() < end, "supsim never got the purchase");
    }
    cr_assert_eq(h_stop(&D, SIGKILL), 128 + SIGKILL);
    cr_assert(h_start(&D) == 0, "perkhubd did not restart");
    wait_n("rp.card", "succeeded", 1);
    l = replenishments("rp.card");
    cr_assert_eq(json_array_size(l), 1, "no second purchase after the restart");
    json_t *x = json_array_get(l, 0);
    cr_assert_eq(h_int(x, "order_id"), oid);
    cr_assert_eq(h_int(x, "quantity"), 6);
    json_t *t = h_sim_truth(&S);
    json_t *so = sim_order(t, oid);
    cr_assert_eq(json_integer_value(json_object_get(so, "creates")), 1, "sent once");
    cr_assert_eq(
        json_integer_value(json_object_get(json_object_get(t, "counts"), "double_creates")), 0);
    json_decref(t);
    json_decref(l);
    /* the restart recorded it unknown (it may have left) and asked supsim */
    h_resp ev = h_get(&D, "/v1/events?limit=1000", "ops-token");
    int unknown = 0;
    size_t k;
    json_t *e;
    json_array_foreach(json_object_get(ev.json, "events"), k, e)
    {
        json_t *o = json_object_get(e, "order_id");
        if (json_is_integer(o) && json_integer_value(o) == oid &&
            !strcmp(h_str(e, "type"), "order.attempt") && !strcmp(h_str(e, "state"), "unknown"))
            unknown = !strcmp(h_str(e, "reason"), "interrupted_while_sending");
    }
    cr_assert(unknown, "no order.attempt unknown after the restart: %s", ev.body);
    h_resp_free(&ev);
    t = h_sim_truth(&S);
    cr_assert(json_integer_value(json_object_get(json_object_get(t, "counts"), "query_requests")) >=
                  1,
              "the purchase was queried");
    json_decref(t);
    /* the codes are orderable: from stock, no supplier asked */
    cr_assert_eq(available("rp.card"), 6);
    h_resp r = h_order(&D, "mall-token", "after-kill", "rp.card", 4);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(h_order_of(&r), "codes")), 4, "%s", r.body);
    h_resp_free(&r);
    stop();
}

/* ---- a failed purchase ----------------------------------------------------------------- */

Test(replenish, failed_purchase_retried_at_next_check)
{
    cr_assert(h_sim_start(&S, NULL) == 0);
    char rw[1024];
    h_sim_supplier_yaml(&S, "rw", "rewards", "    query_max_delay_ms: 200\n",
                        "      auth: bearer\n      webhook_tolerance_s: 300\n", rw, sizeof rw);
    snprintf(BODY, sizeof BODY,
             "suppliers:\n%s"
             "products:\n"
             "  - sku: rp.oos\n    name: Tencent Video\n    brand: tencent\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n"
             "    offers:\n      - {supplier: rw, supplier_sku: U10002, cost: \"28.00\"}\n"
             "    replenish: {below: 1, to: 3, suppliers: [rw], max_unit_cost: \"29.00\","
             " max_per_day: \"1000.00\"}\n",
             rw);
    h_setup_custom(&D, BODY, "replenish_check_s: 1\n");
    cr_assert(h_start(&D) == 0);
    wait_n("rp.oos", "failed", 3);
    json_t *l = replenishments("rp.oos");
    int64_t prev = 0;
    size_t i;
    json_t *x;
    json_array_foreach(l, i, x)
    {
        if (!strcmp(h_str(x, "state"), "in_flight"))
            continue;
        cr_assert_str_eq(h_str(x, "state"), "failed");
        cr_assert_str_eq(h_str(x, "reason"), "out_of_stock");
        int64_t started = ms_of(h_str(x, "started_at"));
        /* the next try waits for the next check, a second after the last began */
        cr_assert(!prev || started - prev >= 900, "retried %lld ms after the previous try",
                  (long long)(started - prev));
        prev = started;
    }
    json_decref(l);
    /* each failure is an event, with its reason; the spend was given back */
    h_resp ev = h_get(&D, "/v1/events?limit=1000", "ops-token");
    cr_assert(strstr(ev.body, "\"type\":\"replenish.failed\"") &&
                  strstr(ev.body, "\"reason\":\"out_of_stock\""),
              "%s", ev.body);
    h_resp_free(&ev);
    stop();
}

/* ---- bad rules --------------------------------------------------------------------------- */

static int check(char **err)
{
    const char *argv[] = {h_bin("PH_PERKHUBD"), "--check-config", D.config, NULL};
    char *out = NULL;
    int rc = h_run(argv, NULL, NULL, 0, &out, err);
    free(out);
    return rc;
}

typedef struct bad_rule {
    const char *product; /* the product block, with its rule */
    const char *where, *says;
} bad_rule;

#define CARD_HEAD                                                                                  \
    "  - sku: rp.card\n    name: Card\n    brand: b\n    category: c\n    delivery: card_code\n"   \
    "    face_value: \"30.00\"\n"
#define OFFERS                                                                                     \
    "    offers:\n      - {supplier: sbx, supplier_sku: sandbox.card, cost: \"10.00\"}\n"          \
    "      - {supplier: ex, supplier_sku: x1, cost: \"10.00\"}\n"

static const bad_rule bad_rules[] = {
    {CARD_HEAD OFFERS "    replenish: {below: 5, to: 5, suppliers: [sbx], max_unit_cost: \"10.00\","
                      " max_per_day: \"100.00\"}\n",
     "products[0].replenish.to", "expected a number above below (5), got 5"},
    {CARD_HEAD OFFERS "    replenish: {below: 5, to: 9, suppliers: [nosuch], max_unit_cost: "
                      "\"10.00\", max_per_day: \"100.00\"}\n",
     "products[0].replenish.suppliers[0]", "\"nosuch\" is not a configured supplier"},
    {CARD_HEAD "    offers:\n      - {supplier: sbx, supplier_sku: sandbox.card, cost: \"1\"}\n"
               "    replenish: {below: 5, to: 9, suppliers: [sbx, ex], max_unit_cost: \"10.00\","
               " max_per_day: \"100.00\"}\n",
     "products[0].replenish.suppliers[1]", "\"ex\" has no offer of this product"},
    {"  - sku: rp.top\n    name: Top\n    brand: b\n    category: c\n    delivery: recharge\n"
     "    face_value: \"30.00\"\n"
     "    offers:\n      - {supplier: sbx, supplier_sku: sandbox.recharge, cost: \"1\"}\n"
     "    replenish: {below: 5, to: 9, suppliers: [sbx], max_unit_cost: \"10.00\","
     " max_per_day: \"100.00\"}\n",
     "products[0].replenish", "product rp.top is delivered by recharge"},
    {CARD_HEAD OFFERS "    replenish: {below: 5, to: 9, suppliers: [sbx, ex], max_unit_cost: "
                      "\"10.00\", max_per_day: \"100.00\"}\n",
     "products[0].replenish.suppliers[1]", "its plugin manual has no card orders"},
};

Test(replenish, check_config_refuses_bad_rules)
{
    for (size_t i = 0; i < sizeof bad_rules / sizeof bad_rules[0]; i++) {
        const bad_rule *b = &bad_rules[i];
        snprintf(BODY, sizeof BODY,
                 "suppliers:\n  - id: sbx\n    plugin: sandbox\n"
                 "  - id: ex\n    plugin: manual\n"
                 "products:\n%s",
                 b->product);
        h_setup_custom(&D, BODY, NULL);
        char *err = NULL;
        cr_assert_eq(check(&err), 1, "case %zu: exit status; stderr:\n%s", i, err);
        char prefix[512];
        snprintf(prefix, sizeof prefix, "%s:", D.config);
        const char *at = strstr(err, b->where);
        cr_assert(at && strstr(err, prefix) && strstr(err, b->says), "case %zu:\n%s", i, err);
        const char *line = strstr(err, prefix);
        unsigned ln = 0, col = 0;
        cr_assert(sscanf(line + strlen(prefix), "%u:%u:", &ln, &col) == 2 && ln > 1 && col > 0,
                  "case %zu: file:line:column: %s", i, err);
        free(err);
        /* and a start refuses the same file, but for the plugin check, which
         * only --check-config makes (the rule then never finds that supplier
         * usable) */
        h_cleanup(&D);
    }
    /* a good rule passes */
    snprintf(BODY, sizeof BODY,
             "suppliers:\n  - id: sbx\n    plugin: sandbox\n"
             "products:\n" CARD_HEAD
             "    offers:\n      - {supplier: sbx, supplier_sku: sandbox.card, cost: \"10.00\"}\n"
             "    replenish: {below: 5, to: 9, suppliers: [sbx], max_unit_cost: \"10.00\","
             " max_per_day: \"100.00\"}\n");
    h_setup_custom(&D, BODY, NULL);
    char *err = NULL;
    cr_assert_eq(check(&err), 0, "stderr:\n%s", err);
    free(err);
    h_cleanup(&D);
}

/* ---- a rule comes with a reload --------------------------------------------------- */

Test(replenish, a_rule_added_by_sighup_runs)
{
    start("");
    json_t *l = replenishments("rp.card");
    cr_assert_eq(json_array_size(l), 0, "no rule, no purchase");
    json_decref(l);
    char *text = h_config_text(&D, "replenish_check_s: 1\n");
    char *neu = h_replace(text, "cost: \"28.50\"}\n",
                          "cost: \"28.50\"}\n    replenish: {below: 1, to: 4, suppliers: [rw],"
                          " max_unit_cost: \"29.00\", max_per_day: \"1000.00\"}\n");
    h_write_config_text(&D, neu);
    free(text);
    free(neu);
    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    wait_n("rp.card", "succeeded", 1);
    cr_assert_eq(available("rp.card"), 4);
    /* the reload's audit record names the product whose rule changed */
    h_resp a = h_get(&D, "/v1/audit?action=config.reload", "ops-token");
    cr_assert_eq(a.status, 200, "%s", a.body);
    json_t *what = json_object_get(json_array_get(json_object_get(a.json, "audit"), 0), "what");
    json_t *changed = json_object_get(json_object_get(what, "products"), "changed");
    cr_assert_str_eq(json_string_value(json_array_get(changed, 0)), "rp.card", "%s", a.body);
    h_resp_free(&a);
    stop();
}

/* ---- the journal replays replenishments ------------------------------------------------- */

Test(replenish, the_journal_replays_to_the_same_store)
{
    char journal[300], target[300], keys[320];
    cr_assert(h_sim_start(&S, NULL) == 0);
    char rw[1024];
    h_sim_supplier_yaml(&S, "rw", "rewards", "    query_max_delay_ms: 200\n",
                        "      auth: bearer\n      webhook_tolerance_s: 300\n", rw, sizeof rw);
    snprintf(BODY, sizeof BODY,
             "suppliers:\n%s"
             "products:\n"
             "  - sku: rp.card\n    name: iQiyi Gold\n    brand: iqiyi\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n    price: \"35.00\"\n"
             "    offers:\n      - {supplier: rw, supplier_sku: U10001, cost: \"28.50\"}\n"
             "    replenish: {below: 2, to: 5, suppliers: [rw], max_unit_cost: \"29.00\","
             " max_per_day: \"1000.00\"}\n"
             "  - sku: rp.oos\n    name: Tencent Video\n    brand: tencent\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n"
             "    offers:\n      - {supplier: rw, supplier_sku: U10002, cost: \"28.00\"}\n"
             "    replenish: {below: 1, to: 3, suppliers: [rw], max_unit_cost: \"29.00\","
             " max_per_day: \"1000.00\"}\n",
             rw);
    h_setup_custom(&D, BODY, "replenish_check_s: 1\n");
    snprintf(journal, sizeof journal, "%s/journal", D.dir);
    snprintf(target, sizeof target, "%s/replayed", D.dir);
    snprintf(keys, sizeof keys, "%s/master.key", D.dir);
    cr_assert_eq(setenv("PERKHUB_JOURNAL", journal, 1), 0);
    cr_assert(h_start(&D) == 0);
    wait_n("rp.card", "succeeded", 1);
    wait_n("rp.oos", "failed", 1);
    /* sold from the replenished stock: a second purchase follows */
    h_resp r = h_order(&D, "mall-token", "j-1", "rp.card", 4);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    wait_n("rp.card", "succeeded", 2);
    h_stop_clean(&D);
    unsetenv("PERKHUB_JOURNAL");
    const char *argv[] = {h_bin("PH_PERKHUBD"),
                          "--replay-journal",
                          journal,
                          "--data",
                          target,
                          "--key-file",
                          keys,
                          NULL};
    char *out = NULL, *err = NULL;
    cr_assert_eq(h_run(argv, NULL, NULL, 0, &out, &err), 0, "replay: %s%s", out, err);
    free(out);
    free(err);
    char *a = h_mdb_dump(D.data), *b = h_mdb_dump(target);
    cr_assert(strstr(a, "database=replenish\n") && strstr(a, "database=replenish_day\n"), "%.300s",
              a);
    if (strcmp(a, b)) {
        size_t line = 1, i = 0;
        for (; a[i] && a[i] == b[i]; i++)
            line += a[i] == '\n';
        cr_assert_fail("the replayed store differs at dump line %zu", line);
    }
    free(a);
    free(b);
    h_daemon rd = D;
    snprintf(rd.data, sizeof rd.data, "%s", target);
    cr_assert_eq(h_check_store(&rd, &out), 0, "%s", out);
    free(out);
    cr_assert(h_start(&D) == 0);
    stop();
}
