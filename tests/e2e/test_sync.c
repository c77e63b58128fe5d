/*
 * test_sync.c — catalog, price and stock sync against the simulator (issue 12
 * items 2 and 3, per offer).
 *
 * Supplier gwa (gateway protocol, priority 20) offers sy.card (10001, max_cost
 * 30.00), sy.solo (10001, its only offer) and sy.topup (20001, its only
 * offer); rwb (rewards, priority 10) offers sy.card too (U10001). Both sync on
 * demand only (POST /v1/suppliers/{id}/sync): each run is waited for through
 * the supplier's `sync` in GET /v1/suppliers.
 *
 *   catalog_changes_mid_run: the simulator's catalog changes between syncs —
 *     price up, over max cost, out of stock, back, delisted, relisted — and each
 *     sync writes its events; routing follows (over max: the order goes to
 *     rwb); a product with no usable offer and no local stock is delisted and
 *     its orders refused naming the SKU, then relisted when the offer returns.
 *   stock_sync: a stock check per offer; the product view shows the stock, its
 *     age, and stock.suppliers (null while an offer's stock is unknown).
 *   catalog_of_10000_pages: a 10,003-item catalog arrives in 21 pages of 500.
 *   failed_sync_changes_nothing: a sync whose page fails changes no offer, no
 *     product, no event; the supplier's sync says it failed and why.
 *   pin: ops pin a product delisted and listed (audited), overriding sync.
 *   check_config_refusals: sync on a plugin without the capability, a
 *     negative period and max_cost 0 are refused with file:line:column.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define WAIT_MS 20000
#define OPS     "ops-token"
#define MALL    "mall-token"

static h_daemon D;
static h_sim S;
static char BODY[8192];

static void teardown(void)
{
    h_leftover(&D);
    if (S.pid > 0)
        h_sim_stop(&S);
}

TestSuite(sync, .fini = teardown, .timeout = 240);

/* ---- helpers ------------------------------------------------------------------ */

static void start(const char *sim_extra)
{
    const char *args[] = {sim_extra, NULL};
    cr_assert(h_sim_start(&S, sim_extra ? args : NULL) == 0, "supsim did not start");
    char a[1024], b[1024];
    h_sim_supplier_yaml(&S, "gwa", "gateway", "    priority: 20\n    timeout_ms: 5000\n", NULL, a,
                        sizeof a);
    h_sim_supplier_yaml(&S, "rwb", "rewards", "    priority: 10\n    timeout_ms: 5000\n", NULL, b,
                        sizeof b);
    snprintf(
        BODY, sizeof BODY,
        "suppliers:\n%s%s"
        "products:\n"
        "  - sku: sy.card\n    name: Sync card\n    brand: sim\n    category: video\n"
        "    delivery: card_code\n    face_value: \"30.00\"\n    offers:\n"
        "      - {supplier: gwa, supplier_sku: \"10001\", cost: \"28.50\", max_cost: \"30.00\"}\n"
        "      - {supplier: rwb, supplier_sku: \"U10001\", cost: \"28.50\"}\n"
        "  - sku: sy.solo\n    name: Sync solo\n    brand: sim\n    category: video\n"
        "    delivery: card_code\n    face_value: \"30.00\"\n    offers:\n"
        "      - {supplier: gwa, supplier_sku: \"10001\", cost: \"28.50\"}\n"
        "  - sku: sy.topup\n    name: Sync top-up\n    brand: sim\n    category: telecom\n"
        "    delivery: recharge\n    face_value: \"50.00\"\n    offers:\n"
        "      - {supplier: gwa, supplier_sku: \"20001\", cost: \"49.00\"}\n",
        a, b);
    h_setup_custom(&D, BODY, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
}

static void stop(void)
{
    h_ledger_matches_sim(&D, &S);
    h_stop_clean(&D);
    h_cleanup(&D);
    h_sim_stop(&S);
}

static void sim_catalog(const char *json)
{
    h_resp r = h_sim_req(&S, "POST", "/_sim/catalog", json);
    cr_assert_eq(r.status, 200, "POST /_sim/catalog %s: %ld %s", json, r.status, r.body);
    h_resp_free(&r);
}

/* suppliers[id].sync.<what> of GET /v1/suppliers (a new reference). */
static json_t *sync_of(const char *id, const char *what)
{
    h_resp r = h_get(&D, "/v1/suppliers", OPS);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *out = NULL, *s;
    size_t i;
    json_array_foreach(json_object_get(r.json, "suppliers"), i, s)
    {
        if (!strcmp(h_str(s, "id"), id))
            out = json_incref(json_object_get(json_object_get(s, "sync"), what));
    }
    h_resp_free(&r);
    cr_assert(out, "supplier %s has no sync.%s", id, what);
    return out;
}

typedef struct sync_wait {
    const char *id, *what;
    char before[64];
    json_t *done;
} sync_wait;

static int sync_finished(void *arg)
{
    sync_wait *w = arg;
    json_t *v = sync_of(w->id, w->what);
    const char *at = json_string_value(json_object_get(v, "last_at"));
    if (at && strcmp(at, w->before) && !json_is_true(json_object_get(v, "running"))) {
        w->done = v;
        return 1;
    }
    json_decref(v);
    return 0;
}

/* Runs supplier id's sync of `what` now and waits for its end: the job view
 * after it (caller json_decref's). Asserts 202. */
static json_t *sync_run(const char *id, const char *what)
{
    sync_wait w = {id, what, "", NULL};
    json_t *v = sync_of(id, what);
    const char *at = json_string_value(json_object_get(v, "last_at"));
    snprintf(w.before, sizeof w.before, "%s", at ? at : "");
    json_decref(v);
    char path[128], body[64];
    snprintf(path, sizeof path, "/v1/suppliers/%s/sync", id);
    snprintf(body, sizeof body, "{\"what\":\"%s\"}", what);
    h_resp r = h_post_json(&D, path, OPS, body);
    cr_assert_eq(r.status, 202, "%s", r.body);
    h_resp_free(&r);
    cr_assert(h_wait_for(sync_finished, &w, WAIT_MS) == 0, "sync %s/%s did not finish", id, what);
    return w.done;
}

/* Syncs and asserts the run succeeded. */
static void sync_ok(const char *id, const char *what)
{
    json_t *v = sync_run(id, what);
    char buf[512];
    cr_assert(json_is_true(json_object_get(v, "last_ok")), "sync %s/%s failed: %s", id, what,
              h_dump(v, buf, sizeof buf));
    json_decref(v);
}

/* GET /v1/products/{sku} as token (a new reference). */
static json_t *product(const char *sku, const char *token)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/products/%s", sku);
    h_resp r = h_get(&D, path, token);
    cr_assert_eq(r.status, 200, "%s: %s", path, r.body);
    json_t *p = json_incref(json_object_get(r.json, "product"));
    h_resp_free(&r);
    cr_assert(p, "%s: no product", path);
    return p;
}

/* The offer of supplier sup in product view p (borrowed). */
static json_t *offer_of(json_t *p, const char *sup)
{
    json_t *o;
    size_t i;
    json_array_foreach(json_object_get(p, "offers"), i, o)
    {
        if (!strcmp(h_str(o, "supplier"), sup))
            return o;
    }
    cr_assert_fail("no offer of %s", sup);
    return NULL;
}

/* Events after seq `after` of type `type` whose sku (and supplier, when
 * given) match; the first into *first (a new reference, may be NULL). */
static int events(long long after, const char *type, const char *sku, const char *sup,
                  json_t **first)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/events?after=%lld&limit=1000", after);
    h_resp r = h_get(&D, path, OPS);
    cr_assert_eq(r.status, 200, "%s", r.body);
    int n = 0;
    json_t *e;
    size_t i;
    if (first)
        *first = NULL;
    json_array_foreach(json_object_get(r.json, "events"), i, e)
    {
        const char *t = json_string_value(json_object_get(e, "type"));
        const char *s = json_string_value(json_object_get(e, "sku"));
        const char *p = json_string_value(json_object_get(e, "supplier"));
        if (!t || strcmp(t, type) || !s || strcmp(s, sku) || (sup && (!p || strcmp(p, sup))))
            continue;
        if (first && !*first)
            *first = json_incref(e);
        n++;
    }
    h_resp_free(&r);
    return n;
}

/* Events after seq about offers or products (a sync request's own
 * supplier.sync_requested not counted). */
static int changes_since(long long after)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/events?after=%lld&limit=1000", after);
    h_resp r = h_get(&D, path, OPS);
    cr_assert_eq(r.status, 200, "%s", r.body);
    int n = 0;
    json_t *e;
    size_t i;
    json_array_foreach(json_object_get(r.json, "events"), i, e)
    {
        const char *t = json_string_value(json_object_get(e, "type"));
        n += t && (!strncmp(t, "offer.", 6) || !strncmp(t, "product.", 8));
    }
    h_resp_free(&r);
    return n;
}

static h_resp order_topup(const char *coid)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"client_order_id\":\"%s\",\"sku\":\"sy.topup\",\"account\":\"13800000001\"}", coid);
    return h_post_json(&D, "/v1/orders", MALL, body);
}

/* The supplier of attempt 1 of the order answered in r (as ops sees it). */
static const char *first_supplier(const h_resp *r, char *buf, size_t n)
{
    long long id = h_int(h_order_of(r), "id");
    json_t *o = h_order_get(&D, id, OPS);
    json_t *a = json_array_get(json_object_get(o, "attempts"), 0);
    snprintf(buf, n, "%s", a ? h_str(a, "supplier") : "");
    json_decref(o);
    return buf;
}

/* ---- tests ------------------------------------------------------------------- */

Test(sync, catalog_changes_mid_run)
{
    start(NULL);
    char buf[1024], sup[64];

    /* before any sync: nothing known upstream, never 0 */
    json_t *p = product("sy.solo", OPS);
    json_t *up = json_object_get(offer_of(p, "gwa"), "upstream");
    cr_assert(json_is_null(json_object_get(up, "cost")) &&
                  json_is_null(json_object_get(up, "stock")),
              "%s", h_dump(p, buf, sizeof buf));
    cr_assert(json_is_null(json_object_get(json_object_get(p, "stock"), "suppliers")));
    json_decref(p);

    /* the first sync: what the supplier says now */
    long long seq = h_last_event(&D);
    sync_ok("gwa", "catalog");
    p = product("sy.solo", OPS);
    up = json_object_get(offer_of(p, "gwa"), "upstream");
    cr_assert_str_eq(h_str(up, "cost"), "28.50", "%s", h_dump(p, buf, sizeof buf));
    cr_assert_eq(h_int(up, "stock"), 1000000);
    cr_assert(json_is_true(json_object_get(up, "on_sale")));
    cr_assert(json_is_string(json_object_get(up, "stock_at")));
    cr_assert(json_is_integer(json_object_get(up, "age_s")));
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(p, "stock"), "suppliers")),
                 1000000, "%s", h_dump(p, buf, sizeof buf));
    json_decref(p);
    /* the mall sees the supplier stock too, but not the offers */
    p = product("sy.solo", MALL);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(p, "stock"), "suppliers")),
                 1000000);
    cr_assert_null(json_object_get(p, "offers"));
    json_decref(p);
    /* sy.card has an offer at rwb that never synced: its supplier stock is unknown */
    p = product("sy.card", OPS);
    cr_assert(json_is_null(json_object_get(json_object_get(p, "stock"), "suppliers")), "%s",
              h_dump(p, buf, sizeof buf));
    json_decref(p);
    cr_assert_eq(events(seq, "offer.price_changed", "sy.solo", "gwa", NULL), 0);
    h_resp r = h_order(&D, MALL, "sy-1", "sy.card", 1);
    cr_assert_lt(r.status, 300, "%s", r.body);
    cr_assert_str_eq(first_supplier(&r, sup, sizeof sup), "gwa");
    h_resp_free(&r);

    /* price up, within sy.card's max_cost */
    seq = h_last_event(&D);
    sim_catalog("{\"product_id\":\"10001\",\"price\":2900}");
    sync_ok("gwa", "catalog");
    json_t *ev;
    cr_assert_eq(events(seq, "offer.price_changed", "sy.card", "gwa", &ev), 1);
    cr_assert_str_eq(h_str(ev, "old_cost"), "28.50");
    cr_assert_str_eq(h_str(ev, "new_cost"), "29.00");
    json_decref(ev);
    cr_assert_eq(events(seq, "offer.price_changed", "sy.solo", "gwa", NULL), 1);
    /* a second sync of the same catalog changes nothing */
    seq = h_last_event(&D);
    sync_ok("gwa", "catalog");
    cr_assert_eq(changes_since(seq), 0, "an unchanged catalog wrote events");
    /* routing prefers the cheaper rwb now (gwa's upstream 29.00 > rwb's 28.50)?
     * priority decides first: gwa still */
    r = h_order(&D, MALL, "sy-2", "sy.card", 1);
    cr_assert_lt(r.status, 300, "%s", r.body);
    cr_assert_str_eq(first_supplier(&r, sup, sizeof sup), "gwa");
    h_resp_free(&r);

    /* over max cost: sy.card's gwa offer is not routed to */
    seq = h_last_event(&D);
    sim_catalog("{\"product_id\":\"10001\",\"price\":3100}");
    sync_ok("gwa", "catalog");
    cr_assert_eq(events(seq, "offer.over_max_cost", "sy.card", "gwa", &ev), 1);
    cr_assert_str_eq(h_str(ev, "cost"), "31.00");
    cr_assert_str_eq(h_str(ev, "max_cost"), "30.00");
    json_decref(ev);
    cr_assert_eq(events(seq, "offer.over_max_cost", "sy.solo", "gwa", NULL), 0,
                 "sy.solo has no max_cost and no sale price");
    p = product("sy.card", OPS);
    cr_assert(
        json_is_true(json_object_get(json_object_get(offer_of(p, "gwa"), "upstream"), "over_max")));
    json_decref(p);
    r = h_order(&D, MALL, "sy-3", "sy.card", 1);
    cr_assert_lt(r.status, 300, "%s", r.body);
    cr_assert_str_eq(first_supplier(&r, sup, sizeof sup), "rwb");
    h_resp_free(&r);

    /* out of stock: sy.solo has no usable offer and no local stock: delisted */
    seq = h_last_event(&D);
    sim_catalog("{\"product_id\":\"10001\",\"price\":2850,\"stock\":0}");
    sync_ok("gwa", "catalog");
    cr_assert_eq(events(seq, "offer.out_of_stock", "sy.solo", "gwa", NULL), 1);
    cr_assert_eq(events(seq, "offer.out_of_stock", "sy.card", "gwa", NULL), 1);
    cr_assert_eq(events(seq, "product.delisted", "sy.solo", NULL, &ev), 1);
    cr_assert_str_eq(h_str(ev, "reason"), "upstream");
    json_decref(ev);
    cr_assert_eq(events(seq, "product.delisted", "sy.card", NULL, NULL), 0,
                 "sy.card still has rwb");
    p = product("sy.solo", OPS);
    cr_assert(json_is_false(json_object_get(p, "listed")));
    cr_assert_str_eq(h_str(p, "delisted_reason"), "upstream");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(p, "stock"), "suppliers")), 0);
    json_decref(p);
    r = h_order(&D, MALL, "sy-4", "sy.solo", 1);
    cr_assert_eq(r.status, 422, "%s", r.body);
    cr_assert(strstr(r.body, "sy.solo") && strstr(r.body, "delisted"), "%s", r.body);
    h_resp_free(&r);
    /* the mall's catalog no longer lists it */
    r = h_get(&D, "/v1/products", MALL);
    cr_assert(!strstr(r.body, "\"sy.solo\""), "%s", r.body);
    h_resp_free(&r);
    r = h_order(&D, MALL, "sy-5", "sy.card", 1);
    cr_assert_lt(r.status, 300, "%s", r.body);
    cr_assert_str_eq(first_supplier(&r, sup, sizeof sup), "rwb");
    h_resp_free(&r);

    /* back in stock: relisted */
    seq = h_last_event(&D);
    sim_catalog("{\"product_id\":\"10001\",\"stock\":50}");
    sync_ok("gwa", "catalog");
    cr_assert_eq(events(seq, "offer.back_in_stock", "sy.solo", "gwa", NULL), 1);
    cr_assert_eq(events(seq, "product.relisted", "sy.solo", NULL, &ev), 1);
    cr_assert_str_eq(h_str(ev, "reason"), "upstream");
    json_decref(ev);
    r = h_order(&D, MALL, "sy-6", "sy.solo", 1);
    cr_assert_lt(r.status, 300, "%s", r.body);
    cr_assert_str_eq(first_supplier(&r, sup, sizeof sup), "gwa");
    h_resp_free(&r);

    /* delisted upstream (gone from the catalog), then back */
    seq = h_last_event(&D);
    sim_catalog("{\"product_id\":\"20001\",\"listed\":false}");
    sync_ok("gwa", "catalog");
    cr_assert_eq(events(seq, "offer.delisted_upstream", "sy.topup", "gwa", NULL), 1);
    cr_assert_eq(events(seq, "product.delisted", "sy.topup", NULL, NULL), 1);
    r = order_topup("sy-7");
    cr_assert_eq(r.status, 422, "%s", r.body);
    cr_assert(strstr(r.body, "sy.topup") && strstr(r.body, "delisted"), "%s", r.body);
    h_resp_free(&r);
    seq = h_last_event(&D);
    sim_catalog("{\"product_id\":\"20001\",\"listed\":true}");
    sync_ok("gwa", "catalog");
    cr_assert_eq(events(seq, "offer.relisted_upstream", "sy.topup", "gwa", NULL), 1);
    cr_assert_eq(events(seq, "product.relisted", "sy.topup", NULL, NULL), 1);
    r = order_topup("sy-8");
    cr_assert_lt(r.status, 300, "%s", r.body);
    h_resp_free(&r);

    /* a reload keeps the listing sync decided */
    sim_catalog("{\"product_id\":\"20001\",\"on_sale\":false}");
    sync_ok("gwa", "catalog");
    cr_assert(kill(D.pid, SIGHUP) == 0);
    cr_assert(h_log_wait(&D, "config.reloaded", 1, WAIT_MS) == 0);
    p = product("sy.topup", OPS);
    cr_assert(json_is_false(json_object_get(p, "listed")), "%s", h_dump(p, buf, sizeof buf));
    json_decref(p);
    stop();
}

Test(sync, stock_sync)
{
    start(NULL);
    char buf[1024];
    sim_catalog("{\"product_id\":\"10001\",\"stock\":7,\"price\":2870}");
    long long seq = h_last_event(&D);
    sync_ok("gwa", "stock");
    json_t *p = product("sy.solo", OPS);
    json_t *up = json_object_get(offer_of(p, "gwa"), "upstream");
    cr_assert_eq(h_int(up, "stock"), 7, "%s", h_dump(p, buf, sizeof buf));
    cr_assert_str_eq(h_str(up, "cost"), "28.70");
    cr_assert(json_is_null(json_object_get(up, "on_sale")), "a stock check does not say");
    cr_assert(json_is_integer(json_object_get(up, "age_s")));
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(p, "stock"), "suppliers")), 7);
    json_decref(p);
    /* a first reading is no change: no price event for what was unknown */
    cr_assert_eq(events(seq, "offer.price_changed", "sy.solo", "gwa", NULL), 0);
    sim_catalog("{\"product_id\":\"10001\",\"stock\":0}");
    sync_ok("gwa", "stock");
    cr_assert_eq(events(seq, "offer.out_of_stock", "sy.solo", "gwa", NULL), 1);
    cr_assert_eq(events(seq, "product.delisted", "sy.solo", NULL, NULL), 1);
    /* the recharge's unlimited stock is unknown, never 0 */
    p = product("sy.topup", OPS);
    cr_assert(json_is_null(json_object_get(json_object_get(p, "stock"), "suppliers")), "%s",
              h_dump(p, buf, sizeof buf));
    json_decref(p);
    /* rwb has no stock sync configured but its plugin can: on demand works */
    sync_ok("rwb", "stock");
    stop();
}

Test(sync, catalog_of_10000_pages)
{
    start(NULL);
    sim_catalog("{\"extra_items\":10000}");
    json_t *t0 = h_sim_truth(&S);
    long long before = h_int(json_object_get(t0, "counts"), "catalog_requests");
    json_decref(t0);
    json_t *v = sync_run("gwa", "catalog");
    char buf[512];
    cr_assert(json_is_true(json_object_get(v, "last_ok")), "%s", h_dump(v, buf, sizeof buf));
    cr_assert(strstr(h_str(v, "outcome"), "10003 items"), "%s", h_dump(v, buf, sizeof buf));
    json_decref(v);
    json_t *t = h_sim_truth(&S);
    cr_assert_eq(h_int(json_object_get(t, "counts"), "catalog_requests") - before, 21,
                 "10,003 items in pages of 500");
    json_decref(t);
    json_t *p = product("sy.solo", OPS);
    cr_assert_str_eq(h_str(json_object_get(offer_of(p, "gwa"), "upstream"), "cost"), "28.50");
    json_decref(p);
    /* ops asking the supplier's catalog directly get every page too */
    h_resp r = h_get(&D, "/v1/suppliers/gwa/catalog", OPS);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(r.json, "items")), 10003);
    h_resp_free(&r);
    stop();
}

Test(sync, failed_sync_changes_nothing)
{
    start(NULL);
    sync_ok("gwa", "catalog");
    sim_catalog("{\"product_id\":\"10001\",\"price\":2990,\"stock\":0}");
    sim_catalog("{\"extra_items\":1500}"); /* 4 pages */
    h_resp r = h_sim_req(&S, "POST", "/_sim/faults",
                         "{\"protocol\":\"gateway\",\"op\":\"catalog\",\"fault\":\"http_500\","
                         "\"count\":1}");
    cr_assert_lt(r.status, 300, "%s", r.body);
    h_resp_free(&r);
    json_t *before = product("sy.solo", OPS);
    json_object_del(json_object_get(offer_of(before, "gwa"), "upstream"), "age_s");
    long long seq = h_last_event(&D);
    json_t *v = sync_run("gwa", "catalog");
    char buf[512], buf2[2048], buf3[2048];
    cr_assert(json_is_false(json_object_get(v, "last_ok")), "%s", h_dump(v, buf, sizeof buf));
    cr_assert(strstr(h_str(v, "error"), "page 1"), "%s", h_dump(v, buf, sizeof buf));
    json_decref(v);
    cr_assert_eq(changes_since(seq), 0, "a failed sync wrote events");
    json_t *after = product("sy.solo", OPS);
    json_object_del(json_object_get(offer_of(after, "gwa"), "upstream"), "age_s");
    cr_assert(json_equal(before, after), "before %s after %s", h_dump(before, buf2, sizeof buf2),
              h_dump(after, buf3, sizeof buf3));
    json_decref(before);
    json_decref(after);
    /* the next sync goes through */
    sync_ok("gwa", "catalog");
    cr_assert_eq(events(seq, "offer.price_changed", "sy.solo", "gwa", NULL), 1);
    stop();
}

Test(sync, pin)
{
    start(NULL);
    sync_ok("gwa", "catalog");
    long long seq = h_last_event(&D);
    h_resp r = h_post_json(&D, "/v1/products/sy.solo/pin", OPS, "{\"pin\":\"delisted\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(json_is_false(json_object_get(r.json, "listed")), "%s", r.body);
    h_resp_free(&r);
    json_t *ev;
    cr_assert_eq(events(seq, "product.delisted", "sy.solo", NULL, &ev), 1);
    cr_assert_str_eq(h_str(ev, "reason"), "ops");
    json_decref(ev);
    r = h_order(&D, MALL, "pin-1", "sy.solo", 1);
    cr_assert_eq(r.status, 422, "%s", r.body);
    cr_assert(strstr(r.body, "sy.solo") && strstr(r.body, "by ops"), "%s", r.body);
    h_resp_free(&r);
    /* a sync does not undo a pin */
    sync_ok("gwa", "catalog");
    json_t *p = product("sy.solo", OPS);
    cr_assert(json_is_false(json_object_get(p, "listed")));
    cr_assert_str_eq(h_str(p, "pin"), "delisted");
    json_decref(p);
    /* pinned listed: out of stock upstream does not delist it */
    r = h_post_json(&D, "/v1/products/sy.solo/pin", OPS, "{\"pin\":\"listed\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(json_is_true(json_object_get(r.json, "listed")), "%s", r.body);
    h_resp_free(&r);
    sim_catalog("{\"product_id\":\"10001\",\"stock\":0}");
    seq = h_last_event(&D);
    sync_ok("gwa", "catalog");
    cr_assert_eq(events(seq, "product.delisted", "sy.solo", NULL, NULL), 0);
    /* unpinned: sync decides at once */
    r = h_post_json(&D, "/v1/products/sy.solo/pin", OPS, "{\"pin\":\"none\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(json_is_false(json_object_get(r.json, "listed")), "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(events(seq, "product.delisted", "sy.solo", NULL, NULL), 1);
    /* audited; bad input refused naming the field; a mall may not pin */
    r = h_get(&D, "/v1/audit?action=product.pin", OPS);
    cr_assert_eq(json_array_size(json_object_get(r.json, "audit")), 3, "%s", r.body);
    h_resp_free(&r);
    r = h_post_json(&D, "/v1/products/sy.solo/pin", OPS, "{\"pin\":\"maybe\"}");
    cr_assert_eq(r.status, 400, "%s", r.body);
    cr_assert(strstr(r.body, "pin:"), "%s", r.body);
    h_resp_free(&r);
    r = h_post_json(&D, "/v1/products/sy.solo/pin", MALL, "{\"pin\":\"listed\"}");
    cr_assert_eq(r.status, 403, "%s", r.body);
    h_resp_free(&r);
    r = h_post_json(&D, "/v1/products/nosuch/pin", OPS, "{\"pin\":\"listed\"}");
    cr_assert_eq(r.status, 404, "%s", r.body);
    h_resp_free(&r);
    /* sync requests are audited too, and a bad `what` refused */
    r = h_post_json(&D, "/v1/suppliers/gwa/sync", OPS, "{\"what\":\"prices\"}");
    cr_assert_eq(r.status, 400, "%s", r.body);
    h_resp_free(&r);
    r = h_get(&D, "/v1/audit?action=supplier.sync", OPS);
    cr_assert_geq(json_array_size(json_object_get(r.json, "audit")), 3, "%s", r.body);
    h_resp_free(&r);
    stop();
}

/* A period runs the sync by itself; a reload that asks a plugin without the
 * capability for a sync is refused and the running configuration stays. */
Test(sync, scheduled_and_reload_refused)
{
    cr_assert(h_sim_start(&S, NULL) == 0, "supsim did not start");
    char a[1024];
    h_sim_supplier_yaml(&S, "gwa", "gateway", "    sync:\n      catalog_every_s: 1\n", NULL, a,
                        sizeof a);
    snprintf(BODY, sizeof BODY,
             "suppliers:\n%s"
             "  - id: ex\n    plugin: manual\n"
             "products:\n"
             "  - sku: sy.solo\n    name: Sync solo\n    brand: sim\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n    offers:\n"
             "      - {supplier: gwa, supplier_sku: \"10001\", cost: \"28.50\"}\n"
             "      - {supplier: ex, supplier_sku: \"T-1\", cost: \"28.50\"}\n",
             a);
    h_setup_custom(&D, BODY, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
    /* nobody asks: the job runs on its period, and again */
    sync_wait w = {"gwa", "catalog", "", NULL};
    cr_assert(h_wait_for(sync_finished, &w, WAIT_MS) == 0, "the scheduled sync did not run");
    char buf[512];
    cr_assert(json_is_true(json_object_get(w.done, "last_ok")), "%s",
              h_dump(w.done, buf, sizeof buf));
    cr_assert_eq(json_integer_value(json_object_get(w.done, "every_s")), 1);
    snprintf(w.before, sizeof w.before, "%s", h_str(w.done, "last_at"));
    json_decref(w.done);
    w.done = NULL;
    cr_assert(h_wait_for(sync_finished, &w, WAIT_MS) == 0, "the sync did not run again");
    json_decref(w.done);
    /* ex (manual: no operations) has no sync job at all */
    json_t *v = sync_of("ex", "catalog");
    cr_assert(json_is_null(v));
    json_decref(v);
    h_resp r; /* no body: all */
    cr_assert_eq(h_http(&D, "POST", "/v1/suppliers/ex/sync", OPS, NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 422, "%s", r.body);
    h_resp_free(&r);
    /* a reload asking ex for a catalog sync is refused, naming the key */
    char *bad = h_replace(BODY, "    plugin: manual\n",
                          "    plugin: manual\n    sync:\n      catalog_every_s: 60\n");
    snprintf(BODY, sizeof BODY, "%s", bad);
    free(bad);
    h_write_config(&D, NULL);
    cr_assert(kill(D.pid, SIGHUP) == 0);
    cr_assert(h_log_wait(&D, "config.reload_failed", 1, WAIT_MS) == 0, "the reload was taken");
    cr_assert_gt(h_file_count(D.log, "suppliers[1].sync.catalog_every_s"), 0);
    v = sync_of("ex", "catalog");
    cr_assert(json_is_null(v), "the running configuration stays");
    json_decref(v);
    stop();
}

/* --check-config on a body: its exit status and output. */
static int check_config(const char *body, char **out)
{
    h_setup_custom(&D, body, NULL);
    const char *argv[] = {h_bin("PH_PERKHUBD"), "--check-config", D.config, NULL};
    char *o = NULL, *e = NULL;
    int st = h_run(argv, NULL, NULL, 0, &o, &e);
    size_t n = strlen(o ? o : "") + strlen(e ? e : "") + 2;
    *out = malloc(n);
    snprintf(*out, n, "%s\n%s", o ? o : "", e ? e : "");
    free(o);
    free(e);
    h_cleanup(&D);
    return st;
}

#define PRODUCT                                                                                    \
    "products:\n"                                                                                  \
    "  - sku: cc.card\n    name: C\n    brand: b\n    category: c\n    delivery: card_code\n"      \
    "    face_value: \"30.00\"\n    offers:\n"

Test(sync, check_config_refusals)
{
    char *out;
    /* the manual plugin has no operations: nothing to sync */
    int st = check_config(
        "suppliers:\n"
        "  - id: ex\n    plugin: manual\n    sync:\n      catalog_every_s: 60\n" PRODUCT
        "      - {supplier: ex, supplier_sku: T-1, cost: \"19.80\"}\n",
        &out);
    cr_assert_neq(st, 0, "%s", out);
    cr_assert(strstr(out, "perkhub.yaml:") && strstr(out, "suppliers[0].sync.catalog_every_s") &&
                  strstr(out, "no catalog capability"),
              "%s", out);
    free(out);
    st = check_config("suppliers:\n"
                      "  - id: ex\n    plugin: manual\n    sync:\n      stock_every_s: 60\n" PRODUCT
                      "      - {supplier: ex, supplier_sku: T-1, cost: \"19.80\"}\n",
                      &out);
    cr_assert_neq(st, 0, "%s", out);
    cr_assert(strstr(out, "suppliers[0].sync.stock_every_s") && strstr(out, "stock_check"), "%s",
              out);
    free(out);
    st = check_config(
        "suppliers:\n"
        "  - id: sbx\n    plugin: sandbox\n    sync:\n      catalog_every_s: -5\n" PRODUCT
        "      - {supplier: sbx, supplier_sku: T-1, cost: \"19.80\"}\n",
        &out);
    cr_assert_neq(st, 0, "%s", out);
    cr_assert(strstr(out, "perkhub.yaml:") && strstr(out, "catalog_every_s"), "%s", out);
    free(out);
    st = check_config(
        "suppliers:\n"
        "  - id: sbx\n    plugin: sandbox\n" PRODUCT
        "      - {supplier: sbx, supplier_sku: T-1, cost: \"19.80\", max_cost: \"0\"}\n",
        &out);
    cr_assert_neq(st, 0, "%s", out);
    cr_assert(strstr(out, "products[0].offers[0].max_cost") && strstr(out, "above 0"), "%s", out);
    free(out);
    /* and a good one passes */
    st = check_config("suppliers:\n"
                      "  - id: sbx\n    plugin: sandbox\n    sync:\n      catalog_every_s: 600\n"
                      "      stock_every_s: 60\n" PRODUCT
                      "      - {supplier: sbx, supplier_sku: T-1, cost: \"19.80\", max_cost: "
                      "\"21.00\"}\n",
                      &out);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
}
