/*
 * test_bundles.c — bundles (issue 16, item 2) end to end against perkhubd and
 * the supplier simulator (rewards protocol): card-code components from stock
 * in one transaction, all or none; a stock + recharge bundle whose recharge
 * fails (partial) and its retry, which buys only the failed component again;
 * kill -9 while the recharges of a bundle and of a claimed bundle grant are
 * with the supplier (restart: no component bought twice). Every test ends with --check-store (the
 * parent's state agrees with its components) and the ledger against the simulator.
 */
#include <criterion/criterion.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define ACCOUNT "13800000001" /* supsim completes it succeeded */
#define WAIT_MS 20000

static h_daemon D;
static h_sim S;
static char BODY[4096];

static void teardown(void)
{
    h_leftover(&D);
    if (S.pid > 0)
        h_sim_stop(&S);
}

TestSuite(bundles, .fini = teardown);

static void start(void)
{
    cr_assert(h_sim_start(&S, NULL) == 0, "supsim did not start");
    char rw[1024];
    h_sim_supplier_yaml(&S, "rwb", "rewards",
                        "    timeout_ms: 1500\n    connect_timeout_ms: 1000\n"
                        "    query_max_delay_ms: 300\n",
                        NULL, rw, sizeof rw);
    snprintf(BODY, sizeof BODY,
             "suppliers:\n  - id: acme\n    plugin: example\n%s"
             "products:\n"
             "  - sku: b.iqiyi\n    name: iQiyi month\n    brand: iqiyi\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n    price: \"29.00\"\n"
             "  - sku: b.netease\n    name: NetEase month\n    brand: netease\n"
             "    category: music\n    delivery: card_code\n    face_value: \"15.00\"\n"
             "    price: \"14.00\"\n"
             "  - sku: b.topup\n    name: Top-up\n    brand: sim\n    category: telecom\n"
             "    delivery: recharge\n    face_value: \"50.00\"\n    price: \"50.00\"\n"
             "    offers:\n      - {supplier: rwb, supplier_sku: \"U20001\", cost: \"49.00\"}\n"
             "  - sku: b.pack\n    name: Programmer pack\n    brand: pack\n    category: bundle\n"
             "    delivery: bundle\n    face_value: \"45.00\"\n    price: \"40.00\"\n"
             "    components:\n      - {sku: b.iqiyi, quantity: 1}\n"
             "      - {sku: b.netease, quantity: 1}\n"
             "  - sku: b.video\n    name: Video month\n    brand: sim\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n    price: \"30.00\"\n"
             "    offers:\n      - {supplier: rwb, supplier_sku: \"U10001\", cost: \"28.50\"}\n"
             "  - sku: b.upstream\n    name: Video and music\n    brand: pack\n"
             "    category: bundle\n    delivery: bundle\n    face_value: \"45.00\"\n"
             "    components:\n      - {sku: b.video, quantity: 2}\n"
             "      - {sku: b.netease, quantity: 1}\n"
             "  - sku: b.mixed\n    name: Music and top-up\n    brand: pack\n"
             "    category: bundle\n    delivery: bundle\n    face_value: \"65.00\"\n"
             "    components:\n      - {sku: b.netease, quantity: 1}\n"
             "      - {sku: b.topup, quantity: 1}\n",
             rw);
    h_setup_custom(&D, BODY, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
}

static void check_store_ok(void)
{
    char *out = NULL;
    int st = h_check_store(&D, &out);
    cr_assert_eq(st, 0, "--check-store: %s", out);
    free(out);
}

static void stop(void)
{
    h_ledger_matches_sim(&D, &S);
    h_stop_clean(&D);
    check_store_ok();
    h_cleanup(&D);
    h_sim_stop(&S);
}

/* Local stock of sku (GET /v1/products/{sku}). */
static long long stock_of(const char *sku)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/products/%s", sku);
    h_resp r = h_get(&D, path, "mall-token");
    cr_assert_eq(r.status, 200, "%s: %ld %s", path, r.status, r.body);
    json_t *p = json_object_get(r.json, "product");
    json_t *st = json_object_get(p ? p : r.json, "stock");
    json_t *v = json_is_object(st) ? json_object_get(st, "available") : st;
    cr_assert(json_is_integer(v), "%s: no stock count: %s", path, r.body);
    long long n = json_integer_value(v);
    h_resp_free(&r);
    return n;
}

static h_resp post(const char *path, const char *body)
{
    return h_post_json(&D, path, "mall-token", body);
}

static json_t *component(json_t *order, size_t j)
{
    char b[4096];
    json_t *c = json_array_get(json_object_get(order, "components"), j);
    cr_assert(json_is_object(c), "no components[%zu]: %s", j, h_dump(order, b, sizeof b));
    return c;
}

static int settled(json_t *o, void *arg)
{
    (void)arg;
    const char *s = h_str(o, "state");
    return !strcmp(s, "succeeded") || !strcmp(s, "failed") || !strcmp(s, "partial");
}

/* The entries of order id in the ledger, as words. */
static const char *ledger(long long id, char *buf, size_t n)
{
    return h_ledger_words(&D, id, buf, n);
}

Test(bundles, stock_components_all_or_none)
{
    start();
    h_resp r;
    char *csv = h_codes_csv("BIQ", 3);
    r = h_import(&D, "b.iqiyi", csv, 201);
    h_resp_free(&r);
    free(csv);
    csv = h_codes_csv("BNE", 1);
    r = h_import(&D, "b.netease", csv, 201);
    h_resp_free(&r);
    free(csv);

    /* one bundle: both components from stock, in the parent's transaction */
    const char *body = "{\"client_order_id\":\"pack-1\",\"sku\":\"b.pack\"}";
    r = post("/v1/orders", body);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    json_t *o = json_incref(h_order_of(&r));
    h_resp_free(&r);
    char b[4096];
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", h_dump(o, b, sizeof b));
    cr_assert_str_eq(h_str(o, "delivery"), "bundle");
    cr_assert_eq(json_array_size(json_object_get(o, "components")), 2);
    for (size_t j = 0; j < 2; j++) {
        json_t *c = component(o, j);
        cr_assert_str_eq(h_str(c, "state"), "succeeded");
        cr_assert_eq(json_array_size(json_object_get(c, "codes")), 1, "%s", h_dump(c, b, sizeof b));
    }
    long long id = h_int(o, "id"), c0 = h_int(component(o, 0), "id");
    cr_assert_eq(stock_of("b.iqiyi"), 2);
    cr_assert_eq(stock_of("b.netease"), 0);

    /* the same request again: the same bundle and codes, nothing taken */
    r = post("/v1/orders", body);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(json_equal(json_object_get(component(h_order_of(&r), 0), "codes"),
                         json_object_get(component(o, 0), "codes")));
    h_resp_free(&r);

    /* a second bundle: NetEase is out and has no supplier -> nothing taken,
     * not even the iQiyi code that was there */
    r = post("/v1/orders", "{\"client_order_id\":\"pack-2\",\"sku\":\"b.pack\"}");
    cr_assert_eq(r.status, 409, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "components[1]"), "the error names the component: %s", r.body);
    h_resp_free(&r);
    cr_assert_eq(stock_of("b.iqiyi"), 2, "all or none: the iQiyi code stays available");
    r = h_get(&D, "/v1/orders?client_order_id=pack-2", "mall-token");
    cr_assert_eq(r.status, 404, "no order was stored: %ld %s", r.status, r.body);
    h_resp_free(&r);

    /* lists show the bundle, its components only when asked */
    r = h_get(&D, "/v1/orders", "mall-token");
    cr_assert_eq(json_array_size(json_object_get(r.json, "orders")), 1, "%s", r.body);
    h_resp_free(&r);
    r = h_get(&D, "/v1/orders?components=true", "mall-token");
    cr_assert_eq(json_array_size(json_object_get(r.json, "orders")), 3, "%s", r.body);
    h_resp_free(&r);

    /* customer service: the bundle names its components, a component its bundle */
    char lk[96];
    snprintf(lk, sizeof lk, "{\"order_id\":%lld}", id);
    r = post("/v1/codes/lookup", lk);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    json_t *res = json_array_get(json_object_get(r.json, "results"), 0);
    cr_assert_str_eq(h_str(res, "diagnosis"), "bundle_succeeded", "%s", r.body);
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(res, "components"), 0)), c0);
    h_resp_free(&r);
    snprintf(lk, sizeof lk, "{\"order_id\":%lld}", c0);
    r = post("/v1/codes/lookup", lk);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    res = json_array_get(json_object_get(r.json, "results"), 0);
    cr_assert_eq(h_int(res, "parent"), id, "%s", r.body);
    h_resp_free(&r);

    /* money: the components are booked at their own prices, the parent not at all */
    char w[256];
    cr_assert_str_eq(ledger(id, w, sizeof w), "", "the bundle carries no money");
    cr_assert(strstr(ledger(c0, w, sizeof w), "sale:2900"), "component sale: %s", w);

    /* the events: the bundle's own, and its components' name it */
    r = h_get(&D, "/v1/events?limit=1000", "mall-token");
    cr_assert_eq(h_events_count(r.json, id, "order.accepted"), 1, "%s", r.body);
    cr_assert_eq(h_events_count(r.json, id, "order.succeeded"), 1, "%s", r.body);
    json_t *ev;
    size_t i, parents = 0;
    json_array_foreach(json_object_get(r.json, "events"), i, ev)
    {
        if (json_integer_value(json_object_get(ev, "order_id")) == c0)
            parents += json_integer_value(json_object_get(ev, "parent")) == id;
    }
    cr_assert(parents >= 1, "a component's event names its bundle: %s", r.body);
    h_resp_free(&r);
    json_decref(o);
    stop();
}

/* A stock + recharge bundle: the recharge is refused upstream once (partial);
 * the retry buys only the top-up again and the bundle succeeds. */
Test(bundles, partial_then_retry_without_rebuying)
{
    start();
    char *csv = h_codes_csv("MNE", 2);
    h_resp r = h_import(&D, "b.netease", csv, 201);
    h_resp_free(&r);
    free(csv);
    r = h_sim_req(&S, "POST", "/_sim/faults",
                  "{\"protocol\":\"rewards\",\"op\":\"order\",\"fault\":\"echo_account\","
                  "\"count\":1}");
    cr_assert(r.status < 300, "%s", r.body);
    h_resp_free(&r);

    r = post("/v1/orders",
             "{\"client_order_id\":\"mix-1\",\"sku\":\"b.mixed\",\"account\":\"" ACCOUNT
             "\",\"wait\":10}");
    cr_assert(r.status == 201 || r.status == 202, "%ld %s", r.status, r.body);
    long long id = h_int(h_order_of(&r), "id");
    h_resp_free(&r);
    char b[4096];
    json_t *o = h_order_poll(&D, id, "mall-token", settled, NULL, WAIT_MS, "bundle settled");
    cr_assert_str_eq(h_str(o, "state"), "partial", "%s", h_dump(o, b, sizeof b));
    cr_assert_str_eq(h_str(component(o, 0), "state"), "succeeded");
    cr_assert_str_eq(h_str(component(o, 1), "state"), "failed");
    json_t *codes = json_incref(json_object_get(component(o, 0), "codes"));
    long long netease_order = h_int(component(o, 0), "id");
    json_decref(o);
    cr_assert_eq(stock_of("b.netease"), 1);

    /* another's retry and a retry number out of order change nothing */
    char path[64];
    snprintf(path, sizeof path, "/v1/orders/%lld/retry", id);
    r = h_post_json(&D, path, "other-token", "{\"retry\":1}");
    cr_assert_eq(r.status, 404, "%ld %s", r.status, r.body);
    h_resp_free(&r);
    r = post(path, "{\"retry\":2}");
    cr_assert_eq(r.status, 409, "%ld %s", r.status, r.body);
    h_resp_free(&r);

    r = post(path, "{\"retry\":1,\"wait\":10}");
    cr_assert(r.status == 201 || r.status == 202, "%ld %s", r.status, r.body);
    h_resp_free(&r);
    o = h_order_poll(&D, id, "mall-token", settled, NULL, WAIT_MS, "retry settled");
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", h_dump(o, b, sizeof b));
    /* the delivered component was not bought again: same order, same code */
    cr_assert_eq(h_int(component(o, 0), "id"), netease_order);
    cr_assert_eq(json_array_size(json_object_get(component(o, 0), "orders")), 1);
    cr_assert(json_equal(json_object_get(component(o, 0), "codes"), codes));
    cr_assert_eq(json_array_size(json_object_get(component(o, 1), "orders")), 2, "%s",
                 h_dump(o, b, sizeof b));
    cr_assert_eq(h_int(o, "retries"), 1);
    cr_assert_eq(stock_of("b.netease"), 1, "no code taken by the retry");
    json_decref(codes);
    json_decref(o);

    /* the same retry again: the bundle as it is; another one: not partial */
    r = post(path, "{\"retry\":1}");
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    h_resp_free(&r);
    r = post(path, "{\"retry\":2}");
    cr_assert_eq(r.status, 409, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "not partial"), "%s", r.body);
    h_resp_free(&r);

    /* the simulator took two top-ups (one refused, one done) and nothing else */
    json_t *t = h_sim_truth(&S);
    size_t n = 0;
    h_sim_truth_find(t, "orders", NULL, -1, &n);
    cr_assert_eq(n, 2, "supplier orders: %s", h_dump(t, b, sizeof b));
    json_decref(t);

    r = h_get(&D, "/v1/events?limit=1000", "mall-token");
    cr_assert_eq(h_events_count(r.json, id, "order.partial"), 1, "%s", r.body);
    cr_assert_eq(h_events_count(r.json, id, "order.retried"), 1, "%s", r.body);
    cr_assert_eq(h_events_count(r.json, id, "order.succeeded"), 1, "%s", r.body);
    h_resp_free(&r);
    stop();
}

static int sim_has_orders(void *arg)
{
    json_t *t = h_sim_truth(&S);
    size_t n = 0;
    h_sim_truth_find(t, "orders", NULL, -1, &n);
    json_decref(t);
    return (long long)n >= *(long long *)arg;
}

/* kill -9 while the recharges of a bundle order and of a claimed bundle
 * grant are on the wire (the supplier took them and answers late): after the
 * restart each attempt is queried, never sent again, and each bundle
 * succeeds with every component bought once. */
Test(bundles, kill9_mid_bundle)
{
    start();
    char *csv = h_codes_csv("KNE", 2);
    h_resp r = h_import(&D, "b.netease", csv, 201);
    h_resp_free(&r);
    free(csv);
    /* the grant first: its recharge goes on the wire with its claim */
    r = post("/v1/orders", "{\"client_order_id\":\"kill-g\",\"sku\":\"b.mixed\",\"deliver\":"
                           "\"grant\",\"grant\":{\"ttl_s\":3600},\"end_user\":{\"id\":"
                           "\"emp-0001\"}}");
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    long long gid = h_int(h_order_of(&r), "id");
    char tok[64], claim[160];
    snprintf(tok, sizeof tok, "%s", h_str(json_object_get(r.json, "grant"), "token"));
    h_resp_free(&r);
    r = h_sim_req(&S, "POST", "/_sim/faults",
                  "{\"protocol\":\"rewards\",\"op\":\"order\",\"fault\":\"latency\","
                  "\"latency_ms\":4000,\"count\":2}");
    cr_assert(r.status < 300, "%s", r.body);
    h_resp_free(&r);
    r = post("/v1/orders",
             "{\"client_order_id\":\"kill-1\",\"sku\":\"b.mixed\",\"account\":\"" ACCOUNT "\"}");
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    long long id = h_int(h_order_of(&r), "id");
    h_resp_free(&r);
    snprintf(claim, sizeof claim, "{\"token\":\"%s\",\"account\":\"" ACCOUNT "\"}", tok);
    r = post("/v1/grants/claim", claim);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    h_resp_free(&r);
    long long want = 2;
    cr_assert(h_wait_for(sim_has_orders, &want, 5000) == 0, "the supplier never got both");
    kill(D.pid, SIGKILL);
    h_stop(&D, 0);
    cr_assert(h_start(&D) == 0, "perkhubd did not restart");

    char b[4096];
    long long ids[2] = {id, gid};
    for (int i = 0; i < 2; i++) {
        json_t *o =
            h_order_poll(&D, ids[i], "mall-token", settled, NULL, WAIT_MS, "bundle settled");
        cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", h_dump(o, b, sizeof b));
        cr_assert_eq(json_array_size(json_object_get(component(o, 1), "orders")), 1);
        json_decref(o);
    }
    cr_assert_eq(stock_of("b.netease"), 0);
    json_t *t = h_sim_truth(&S);
    size_t n = 0;
    h_sim_truth_find(t, "orders", NULL, -1, &n);
    cr_assert_eq(n, 2, "each recharge was sent once: %s", h_dump(t, b, sizeof b));
    json_decref(t);
    stop();
}

/* Rewrites one byte of order id's record (offset 1: its state) or deletes
 * bundle id's record, in the stopped daemon's store. */
static void lmdb_damage(const char *dir, const char *db, uint64_t id, int state)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 64);
    cr_assert_eq(mdb_env_open(env, dir, 0, 0600), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, db, MDB_INTEGERKEY, &dbi), 0, "%s", db);
    MDB_val k = {8, &id}, v;
    if (state < 0) {
        cr_assert_eq(mdb_del(txn, dbi, &k, NULL), 0);
    } else {
        cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0);
        uint8_t *copy = malloc(v.mv_size);
        memcpy(copy, v.mv_data, v.mv_size);
        copy[1] = (uint8_t)state;
        v.mv_data = copy;
        cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
        free(copy);
    }
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* --check-store proves a bundle's state is its components' and that every
 * component order is listed by its one bundle. */
Test(bundles, check_store_finds_a_bundle_out_of_step)
{
    start();
    char *csv = h_codes_csv("CNE", 1);
    h_resp r = h_import(&D, "b.netease", csv, 201);
    h_resp_free(&r);
    free(csv);
    r = h_sim_req(&S, "POST", "/_sim/faults",
                  "{\"protocol\":\"rewards\",\"op\":\"order\",\"fault\":\"echo_account\","
                  "\"count\":1}");
    h_resp_free(&r);
    r = post("/v1/orders",
             "{\"client_order_id\":\"chk-1\",\"sku\":\"b.mixed\",\"account\":\"" ACCOUNT
             "\",\"wait\":10}");
    long long id = h_int(h_order_of(&r), "id");
    h_resp_free(&r);
    json_t *o = h_order_poll(&D, id, "mall-token", settled, NULL, WAIT_MS, "bundle settled");
    cr_assert_str_eq(h_str(o, "state"), "partial");
    json_decref(o);
    h_stop_clean(&D);
    check_store_ok();

    lmdb_damage(D.data, "orders", (uint64_t)id, 3 /* succeeded */);
    char *out = NULL;
    cr_assert_neq(h_check_store(&D, &out), 0, "a succeeded bundle with a failed component passed");
    cr_assert(strstr(out, "is not what its components make (partial)"), "%s", out);
    free(out);
    lmdb_damage(D.data, "orders", (uint64_t)id, 8 /* partial again */);
    check_store_ok();
    lmdb_damage(D.data, "bundles", (uint64_t)id, -1);
    cr_assert_neq(h_check_store(&D, &out), 0, "component orders without their bundle passed");
    cr_assert(strstr(out, "partial without its bundle record"), "%s", out);
    free(out);
    h_cleanup(&D);
    h_sim_stop(&S);
}

/* Risk rules see a bundle like any order: a block-list hit refuses it with
 * nothing taken or stored; an allowed one keeps its end user's record. */
Test(bundles, risk_rules_apply_to_a_bundle)
{
    start();
    char *csv = h_codes_csv("RIQ", 2);
    h_resp r = h_import(&D, "b.iqiyi", csv, 201);
    h_resp_free(&r);
    free(csv);
    csv = h_codes_csv("RNE", 2);
    r = h_import(&D, "b.netease", csv, 201);
    h_resp_free(&r);
    free(csv);
    r = h_post_json(&D, "/v1/risk/lists", "ops-token",
                    "{\"list\":\"block\",\"variable\":\"phone\",\"value\":\"13900139000\","
                    "\"ttl_s\":3600,\"note\":\"farm\"}");
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    h_resp_free(&r);

    const char *denied = "{\"client_order_id\":\"rk-1\",\"sku\":\"b.pack\","
                         "\"end_user\":{\"id\":\"user-0001\",\"phone\":\"13900139000\"}}";
    r = post("/v1/orders", denied);
    cr_assert_eq(r.status, 403, "%ld %s", r.status, r.body);
    cr_assert_str_eq(h_str(r.json, "error"), "denied_by_risk");
    h_resp_free(&r);
    cr_assert_eq(stock_of("b.iqiyi"), 2, "nothing taken");
    /* stored like any denied order: failed, no component; a replay is denied again */
    r = h_get(&D, "/v1/orders?client_order_id=rk-1", "mall-token");
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_str_eq(h_str(h_order_of(&r), "state"), "failed", "%s", r.body);
    cr_assert_str_eq(h_str(h_order_of(&r), "reason"), "denied_by_risk", "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(h_order_of(&r), "components")), 0, "%s", r.body);
    h_resp_free(&r);
    r = post("/v1/orders", denied);
    cr_assert_eq(r.status, 403, "%ld %s", r.status, r.body);
    h_resp_free(&r);

    r = post("/v1/orders", "{\"client_order_id\":\"rk-2\",\"sku\":\"b.pack\","
                           "\"end_user\":{\"id\":\"user-0002\"}}");
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    long long id = h_int(h_order_of(&r), "id");
    /* the reply shows the end user masked, as the order view does */
    cr_assert_str_eq(h_str(json_object_get(h_order_of(&r), "end_user"), "id"), "us****02", "%s",
                     r.body);
    cr_assert_null(strstr(r.body, "user-0002"), "%s", r.body);
    h_resp_free(&r);
    json_t *o = h_order_get(&D, id, "ops-token");
    char b[4096];
    cr_assert(json_is_object(json_object_get(o, "end_user")), "the end user, masked: %s",
              h_dump(o, b, sizeof b));
    cr_assert_str_eq(h_str(json_object_get(json_object_get(o, "risk"), "decision"), "action"),
                     "allow", "%s", h_dump(o, b, sizeof b));
    json_decref(o);
    stop();
}

/* A card component short of stock goes to a supplier through its own offer
 * (the codes bought upstream), the other comes from stock: one bundle. */
Test(bundles, a_short_card_component_is_bought_upstream)
{
    start();
    char *csv = h_codes_csv("UNE", 1);
    h_resp r = h_import(&D, "b.netease", csv, 201);
    h_resp_free(&r);
    free(csv);
    csv = h_codes_csv("UVI", 1); /* one video code: the component needs two */
    r = h_import(&D, "b.video", csv, 201);
    h_resp_free(&r);
    free(csv);
    r = post("/v1/orders", "{\"client_order_id\":\"up-1\",\"sku\":\"b.upstream\",\"wait\":10}");
    cr_assert(r.status == 201 || r.status == 202, "%ld %s", r.status, r.body);
    long long id = h_int(h_order_of(&r), "id");
    h_resp_free(&r);
    char b[4096];
    json_t *o = h_order_poll(&D, id, "mall-token", settled, NULL, WAIT_MS, "bundle settled");
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", h_dump(o, b, sizeof b));
    json_t *v = component(o, 0);
    cr_assert_str_eq(h_str(v, "source"), "supplier", "%s", h_dump(o, b, sizeof b));
    cr_assert_eq(json_array_size(json_object_get(v, "codes")), 2, "%s", h_dump(o, b, sizeof b));
    cr_assert_str_eq(h_str(component(o, 1), "source"), "stock");
    json_decref(o);
    cr_assert_eq(stock_of("b.video"), 1, "the short component took no code from stock");
    cr_assert_eq(stock_of("b.netease"), 0);
    stop();
}
