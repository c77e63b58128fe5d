/*
 * test_bundles_grants.c — bundles that are granted or held (issue 16, the two
 * points left of item 2 and item 3) against perkhubd and the supplier
 * simulator: a bundle grant reserves every component and answers one token;
 * its claim shows the codes and performs the recharge once; gifting, expiry
 * (every reserved code back) and a failed recharge at claim with its retry;
 * a bundle a risk rule holds takes nothing until ops release it (then it is
 * bought, or granted, as a new one would be) or block it; a welfare batch
 * with a bundle line. Every test ends with --check-store and the ledger
 * against the simulator.
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

TestSuite(bundle_grants, .fini = teardown);

/* b.pack: two card components; b.mixed: a card component and a recharge;
 * extra: more top-level config. */
static void start_with(const char *extra)
{
    cr_assert(h_sim_start(&S, NULL) == 0, "supsim did not start");
    char rw[1024];
    h_sim_supplier_yaml(&S, "rwb", "rewards",
                        "    timeout_ms: 1500\n    connect_timeout_ms: 1000\n"
                        "    query_max_delay_ms: 300\n",
                        NULL, rw, sizeof rw);
    snprintf(BODY, sizeof BODY,
             "%sgrants:\n  min_ttl_s: 1\n  expire_every_s: 1\n"
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
             "  - sku: b.mixed\n    name: Music and top-up\n    brand: pack\n"
             "    category: bundle\n    delivery: bundle\n    face_value: \"65.00\"\n"
             "    components:\n      - {sku: b.netease, quantity: 1}\n"
             "      - {sku: b.topup, quantity: 1}\n",
             extra, rw);
    h_setup_custom(&D, BODY, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
}

static void start(void)
{
    start_with("");
}

static void stop(void)
{
    h_ledger_matches_sim(&D, &S);
    h_stop_clean(&D);
    char *out = NULL;
    int st = h_check_store(&D, &out);
    cr_assert_eq(st, 0, "--check-store: %s", out);
    free(out);
    h_cleanup(&D);
    h_sim_stop(&S);
}

static void import(const char *sku, const char *prefix, int n)
{
    char *csv = h_codes_csv(prefix, n);
    h_resp r = h_import(&D, sku, csv, 201);
    h_resp_free(&r);
    free(csv);
}

/* Codes of sku in `state` (available, reserved, issued), from /v1/stats. */
static long long codes_in(const char *sku, const char *state)
{
    json_t *st = h_stats(&D);
    long long n = h_int(h_stats_sku(st, sku), state);
    json_decref(st);
    return n;
}

static long long sim_orders(void)
{
    json_t *t = h_sim_truth(&S);
    size_t n = 0;
    h_sim_truth_find(t, "orders", NULL, -1, &n);
    json_decref(t);
    return (long long)n;
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

static int events(long long id, const char *type)
{
    h_resp r = h_get(&D, "/v1/events?limit=1000", "ops-token");
    int n = h_events_count(r.json, id, type);
    h_resp_free(&r);
    return n;
}

/* A grant of bundle sku for `user` (ttl_s): its id; its token into token. */
static long long grant_bundle(const char *coid, const char *sku, const char *user, int ttl_s,
                              char token[64])
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"deliver\":\"grant\","
             "\"grant\":{\"ttl_s\":%d},\"end_user\":{\"id\":\"%s\",\"tags\":{\"dept\":\"eng\"}}}",
             coid, sku, ttl_s, user);
    h_resp r = post("/v1/orders", body);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    json_t *o = json_object_get(r.json, "order"), *g = json_object_get(r.json, "grant");
    cr_assert_str_eq(h_str(o, "state"), "granted", "%s", r.body);
    cr_assert_str_eq(h_str(o, "delivery"), "bundle", "%s", r.body);
    cr_assert(json_is_true(json_object_get(g, "token_shown")), "%s", r.body);
    /* each component reserved, none of its codes shown yet */
    for (size_t j = 0; j < 2; j++) {
        cr_assert_str_eq(h_str(component(o, j), "state"), "granted", "%s", r.body);
        cr_assert_null(json_object_get(component(o, j), "codes"), "%s", r.body);
    }
    snprintf(token, 64, "%s", h_str(g, "token"));
    long long id = h_int(g, "id");
    cr_assert_eq(id, h_int(o, "id"));
    h_resp_free(&r);
    return id;
}

static h_resp claim(const char *token, const char *request_id, const char *account)
{
    char body[256], rid[96] = "", acc[64] = "";
    if (request_id)
        snprintf(rid, sizeof rid, ",\"request_id\":\"%s\"", request_id);
    if (account)
        snprintf(acc, sizeof acc, ",\"account\":\"%s\"", account);
    snprintf(body, sizeof body, "{\"token\":\"%s\"%s%s}", token, rid, acc);
    return post("/v1/grants/claim", body);
}

static json_t *grant_view(long long id)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/grants/%lld", id);
    h_resp r = h_get(&D, path, "mall-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *g = json_incref(json_object_get(r.json, "grant"));
    h_resp_free(&r);
    return g;
}

/* A bundle grant (a card code and a recharge): reserved at once, one token;
 * the claim shows the code and performs the recharge once, a replay of the
 * claim is the same answer with no second top-up, another claimer is refused. */
Test(bundle_grants, a_bundle_grant_reserves_then_one_claim_delivers_all)
{
    start();
    import("b.netease", "GNE", 2);
    char tok[64];
    long long id = grant_bundle("G-1", "b.mixed", "emp-0001", 3600, tok);
    cr_assert_eq(codes_in("b.netease", "available"), 1, "the card component is reserved");
    cr_assert_eq(codes_in("b.netease", "reserved"), 1);
    cr_assert_eq(sim_orders(), 0, "nothing bought before the claim");
    json_t *g = grant_view(id);
    char b[4096];
    cr_assert_str_eq(h_str(g, "state"), "active");
    json_t *comps = json_object_get(g, "components");
    cr_assert_eq(json_array_size(comps), 2, "%s", h_dump(g, b, sizeof b));
    cr_assert_str_eq(h_str(json_array_get(comps, 1), "sku"), "b.topup");
    cr_assert_str_eq(h_str(json_array_get(comps, 1), "state"), "granted");
    json_decref(g);

    /* a claim without the account the recharge needs changes nothing */
    h_resp r = claim(tok, "c-1", NULL);
    cr_assert_eq(r.status, 400, "%s", r.body);
    cr_assert(strstr(r.body, "account"), "%s", r.body);
    h_resp_free(&r);

    r = claim(tok, "c-1", ACCOUNT);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = json_object_get(r.json, "order");
    cr_assert_str_eq(h_str(json_object_get(r.json, "grant"), "state"), "claimed");
    cr_assert_str_eq(h_str(component(o, 0), "state"), "succeeded", "%s", r.body);
    json_t *codes = json_incref(json_object_get(component(o, 0), "codes"));
    cr_assert_eq(json_array_size(codes), 1, "the code is shown: %s", r.body);
    h_resp_free(&r);
    o = h_order_poll(&D, id, "mall-token", settled, NULL, WAIT_MS, "bundle grant settled");
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", h_dump(o, b, sizeof b));
    cr_assert_str_eq(h_str(component(o, 1), "state"), "succeeded");
    json_decref(o);
    cr_assert_eq(sim_orders(), 1, "one top-up");

    /* the same claim again: the same codes, no second top-up */
    r = claim(tok, "c-1", ACCOUNT);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char hv[16];
    cr_assert_str_eq(h_header(&r, "Idempotent-Replay", hv, sizeof hv), "true");
    cr_assert(
        json_equal(json_object_get(component(json_object_get(r.json, "order"), 0), "codes"), codes),
        "%s", r.body);
    h_resp_free(&r);
    r = claim(tok, "c-2", ACCOUNT);
    cr_assert_eq(r.status, 409, "%s", r.body);
    cr_assert_str_eq(h_str(r.json, "error"), "already_claimed");
    h_resp_free(&r);
    cr_assert_eq(sim_orders(), 1, "still one top-up");
    cr_assert_eq(codes_in("b.netease", "issued"), 1);
    cr_assert_eq(codes_in("b.netease", "reserved"), 0);
    json_decref(codes);

    /* the bundle's own events once; analytics count the grant once */
    cr_assert_eq(events(id, "order.granted"), 1);
    cr_assert_eq(events(id, "grant.claimed"), 1);
    cr_assert_eq(events(id, "order.succeeded"), 1);
    r = h_get(&D, "/v1/analytics/claims?by=tag", "mall-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *row = json_array_get(json_object_get(r.json, "rows"), 0);
    cr_assert_eq(h_int(row, "granted"), 1, "%s", r.body);
    cr_assert_eq(h_int(row, "claimed"), 1, "%s", r.body);
    h_resp_free(&r);
    stop();
}

typedef struct grant_wait {
    long long id;
} grant_wait;

static int grant_expired(void *arg)
{
    grant_wait *w = arg;
    char path[64];
    snprintf(path, sizeof path, "/v1/grants/%lld", w->id);
    h_resp r = h_get(&D, path, "mall-token");
    int done =
        r.status == 200 && !strcmp(h_str(json_object_get(r.json, "grant"), "state"), "expired");
    h_resp_free(&r);
    return done;
}

/* A bundle grant gifted on: the old token dead, the new holder claims every
 * code; another expires and every reserved code goes back to stock. */
Test(bundle_grants, gifted_then_claimed_and_another_expires_back_to_stock)
{
    start();
    import("b.iqiyi", "XIQ", 2);
    import("b.netease", "XNE", 2);
    char t1[64], t2[64], te[64];
    long long id = grant_bundle("X-1", "b.pack", "emp-0001", 3600, t1);
    long long ex = grant_bundle("X-2", "b.pack", "emp-0002", 2, te);
    cr_assert_eq(codes_in("b.iqiyi", "reserved"), 2);
    cr_assert_eq(codes_in("b.netease", "reserved"), 2);
    cr_assert_eq(codes_in("b.iqiyi", "available"), 0);

    char path[64];
    snprintf(path, sizeof path, "/v1/grants/%lld/gift", id);
    char body[256];
    snprintf(body, sizeof body, "{\"token\":\"%s\",\"to\":{\"id\":\"friend-0002\"}}", t1);
    h_resp r = post(path, body);
    cr_assert_eq(r.status, 200, "%s", r.body);
    snprintf(t2, sizeof t2, "%s", h_str(r.json, "token"));
    h_resp_free(&r);
    r = claim(t1, NULL, NULL);
    cr_assert_eq(r.status, 404, "the gifted-away token claims nothing: %s", r.body);
    h_resp_free(&r);
    r = claim(t2, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = json_object_get(r.json, "order");
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", r.body);
    for (size_t j = 0; j < 2; j++)
        cr_assert_eq(json_array_size(json_object_get(component(o, j), "codes")), 1, "%s", r.body);
    h_resp_free(&r);

    /* the other expires: both its reserved codes available again */
    grant_wait w = {ex};
    cr_assert_eq(h_wait_for(grant_expired, &w, 15000), 0, "grant %lld never expired", ex);
    cr_assert_eq(codes_in("b.iqiyi", "available"), 1);
    cr_assert_eq(codes_in("b.netease", "available"), 1);
    cr_assert_eq(codes_in("b.iqiyi", "reserved"), 0);
    cr_assert_eq(codes_in("b.netease", "reserved"), 0);
    o = h_order_get(&D, ex, "mall-token");
    char b[4096];
    cr_assert_str_eq(h_str(o, "state"), "failed", "%s", h_dump(o, b, sizeof b));
    cr_assert_str_eq(h_str(o, "reason"), "grant_expired", "%s", h_dump(o, b, sizeof b));
    cr_assert_str_eq(h_str(component(o, 0), "reason"), "grant_expired");
    json_decref(o);
    r = claim(te, NULL, NULL);
    cr_assert_eq(r.status, 410, "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(events(ex, "grant.expired"), 1);
    cr_assert_eq(events(ex, "order.failed"), 1);
    cr_assert_eq(events(id, "grant.gifted"), 1);
    /* the returned codes serve a new bundle */
    r = post("/v1/orders", "{\"client_order_id\":\"X-3\",\"sku\":\"b.pack\"}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    stop();
}

/* The recharge of a bundle grant fails at its claim: the bundle is partial
 * (the code delivered), and a retry buys only the top-up again. */
Test(bundle_grants, a_failed_recharge_at_claim_is_retried_alone)
{
    start();
    import("b.netease", "FNE", 1);
    char tok[64];
    long long id = grant_bundle("F-1", "b.mixed", "emp-0001", 3600, tok);
    h_resp r = h_sim_req(&S, "POST", "/_sim/faults",
                         "{\"protocol\":\"rewards\",\"op\":\"order\",\"fault\":\"echo_account\","
                         "\"count\":1}");
    cr_assert(r.status < 300, "%s", r.body);
    h_resp_free(&r);
    r = claim(tok, "fc-1", ACCOUNT);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    char b[4096];
    json_t *o = h_order_poll(&D, id, "mall-token", settled, NULL, WAIT_MS, "claim settled");
    cr_assert_str_eq(h_str(o, "state"), "partial", "%s", h_dump(o, b, sizeof b));
    cr_assert_str_eq(h_str(component(o, 0), "state"), "succeeded");
    cr_assert_str_eq(h_str(component(o, 1), "state"), "failed");
    long long card = h_int(component(o, 0), "id");
    json_decref(o);
    cr_assert_eq(sim_orders(), 1);

    char path[64];
    snprintf(path, sizeof path, "/v1/orders/%lld/retry", id);
    r = post(path, "{\"retry\":1,\"wait\":10}");
    cr_assert(r.status == 201 || r.status == 202, "%ld %s", r.status, r.body);
    h_resp_free(&r);
    o = h_order_poll(&D, id, "mall-token", settled, NULL, WAIT_MS, "retry settled");
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", h_dump(o, b, sizeof b));
    cr_assert_eq(h_int(component(o, 0), "id"), card, "the code was not bought again");
    cr_assert_eq(json_array_size(json_object_get(component(o, 1), "orders")), 2);
    json_decref(o);
    cr_assert_eq(sim_orders(), 2, "the refused top-up and the retried one");
    cr_assert_eq(codes_in("b.netease", "issued"), 1);
    stop();
}

static void review_rule(void)
{
    h_resp r = h_post_json(&D, "/v1/risk/rules", "ops-token",
                           "{\"id\":\"look-first\",\"variable\":\"user\",\"measure\":\"orders\","
                           "\"limit\":0,\"window_s\":3600,\"action\":\"review\"}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
}

static h_resp review(long long id, const char *what)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/reviews/%lld/%s", id, what);
    return h_post_json(&D, path, "ops-token", "{}");
}

/* A held bundle takes nothing and calls no supplier; released it is bought
 * as a new bundle would be; another blocked is failed with nothing taken. */
Test(bundle_grants, a_held_bundle_is_bought_on_release_and_nothing_on_block)
{
    start();
    import("b.iqiyi", "HIQ", 2);
    import("b.netease", "HNE", 2);
    review_rule();
    h_resp r =
        post("/v1/orders", "{\"client_order_id\":\"H-1\",\"sku\":\"b.mixed\",\"account\":\"" ACCOUNT
                           "\",\"end_user\":{\"id\":\"held-user\"}}");
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    json_t *o = json_object_get(r.json, "order");
    cr_assert_str_eq(h_str(o, "state"), "held", "%s", r.body);
    cr_assert_str_eq(h_str(component(o, 1), "state"), "held", "%s", r.body);
    long long a = h_int(o, "id");
    h_resp_free(&r);
    r = post("/v1/orders", "{\"client_order_id\":\"H-2\",\"sku\":\"b.pack\","
                           "\"end_user\":{\"id\":\"held-user\"}}");
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    long long bl = h_int(json_object_get(r.json, "order"), "id");
    h_resp_free(&r);
    cr_assert_eq(codes_in("b.iqiyi", "available"), 2, "a held bundle takes nothing");
    cr_assert_eq(codes_in("b.netease", "available"), 2);
    cr_assert_eq(sim_orders(), 0, "a held bundle buys nothing");
    r = h_get(&D, "/v1/reviews", "ops-token");
    cr_assert_eq(json_array_size(json_object_get(r.json, "reviews")), 2, "only the bundles: %s",
                 r.body);
    h_resp_free(&r);

    r = review(bl, "block");
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    char b[4096];
    o = h_order_get(&D, bl, "mall-token");
    cr_assert_str_eq(h_str(o, "state"), "failed", "%s", h_dump(o, b, sizeof b));
    cr_assert_str_eq(h_str(o, "reason"), "blocked_by_review", "%s", h_dump(o, b, sizeof b));
    cr_assert_str_eq(h_str(component(o, 0), "state"), "failed");
    json_decref(o);
    cr_assert_eq(codes_in("b.iqiyi", "available"), 2, "blocked: nothing taken");

    r = review(a, "release");
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    o = h_order_poll(&D, a, "mall-token", settled, NULL, WAIT_MS, "released bundle settled");
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", h_dump(o, b, sizeof b));
    cr_assert_eq(json_array_size(json_object_get(component(o, 0), "codes")), 1);
    json_decref(o);
    cr_assert_eq(codes_in("b.netease", "available"), 1);
    cr_assert_eq(sim_orders(), 1, "the released bundle's top-up, once");
    cr_assert_eq(events(a, "order.held"), 1);
    cr_assert_eq(events(a, "order.released"), 1);
    cr_assert_eq(events(a, "order.succeeded"), 1);
    cr_assert_eq(events(bl, "order.blocked"), 1);
    cr_assert_eq(events(bl, "order.failed"), 1);
    /* a replay of the held-then-released bundle is that bundle */
    r = post("/v1/orders", "{\"client_order_id\":\"H-1\",\"sku\":\"b.mixed\",\"account\":\"" ACCOUNT
                           "\",\"end_user\":{\"id\":\"held-user\"}}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(h_str(json_object_get(r.json, "order"), "state"), "succeeded");
    h_resp_free(&r);
    stop();
}

/* A held bundle grant: its token answered at once, nothing reserved; the
 * release reserves every component (granted), and the claim delivers. */
Test(bundle_grants, a_held_bundle_grant_is_granted_on_release)
{
    start();
    import("b.iqiyi", "QIQ", 1);
    import("b.netease", "QNE", 1);
    review_rule();
    h_resp r = post("/v1/orders", "{\"client_order_id\":\"HG-1\",\"sku\":\"b.pack\",\"deliver\":"
                                  "\"grant\",\"grant\":{\"ttl_s\":3600},\"end_user\":{\"id\":"
                                  "\"held-user\"}}");
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    cr_assert_str_eq(h_str(json_object_get(r.json, "order"), "state"), "held", "%s", r.body);
    char tok[64];
    snprintf(tok, sizeof tok, "%s", h_str(json_object_get(r.json, "grant"), "token"));
    long long id = h_int(json_object_get(r.json, "order"), "id");
    h_resp_free(&r);
    cr_assert_eq(codes_in("b.iqiyi", "reserved"), 0, "a held grant reserves nothing");
    cr_assert_eq(codes_in("b.iqiyi", "available"), 1);
    r = claim(tok, NULL, NULL);
    cr_assert_eq(r.status, 409, "%s", r.body);
    cr_assert_str_eq(h_str(r.json, "error"), "grant_held");
    h_resp_free(&r);

    r = review(id, "release");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(h_str(json_object_get(r.json, "order"), "state"), "granted", "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(codes_in("b.iqiyi", "reserved"), 1);
    cr_assert_eq(codes_in("b.netease", "reserved"), 1);
    r = claim(tok, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = json_object_get(r.json, "order");
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(component(o, 1), "codes")), 1, "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(codes_in("b.iqiyi", "issued"), 1);
    cr_assert_eq(codes_in("b.netease", "issued"), 1);
    cr_assert_eq(events(id, "order.granted"), 1);

    /* another held bundle grant, blocked: its grant expires, nothing was reserved */
    import("b.iqiyi", "QIB", 1);
    r = post("/v1/orders", "{\"client_order_id\":\"HG-2\",\"sku\":\"b.pack\",\"deliver\":"
                           "\"grant\",\"grant\":{\"ttl_s\":3600},\"end_user\":{\"id\":"
                           "\"held-user\"}}");
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    snprintf(tok, sizeof tok, "%s", h_str(json_object_get(r.json, "grant"), "token"));
    long long bl = h_int(json_object_get(r.json, "order"), "id");
    h_resp_free(&r);
    r = review(bl, "block");
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    json_t *g = grant_view(bl);
    cr_assert_str_eq(h_str(g, "state"), "expired");
    json_decref(g);
    r = claim(tok, NULL, NULL);
    cr_assert_eq(r.status, 410, "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(codes_in("b.iqiyi", "available"), 1, "nothing was reserved");
    cr_assert_eq(codes_in("b.iqiyi", "reserved"), 0);
    stop();
}

/* Sets byte 1 (the state) of order id's record in the stopped daemon's store. */
static void order_state_set(const char *dir, uint64_t id, int state)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 64);
    cr_assert_eq(mdb_env_open(env, dir, 0, 0600), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "orders", MDB_INTEGERKEY, &dbi), 0);
    MDB_val k = {8, &id}, v;
    cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0);
    uint8_t *copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[1] = (uint8_t)state;
    v.mv_data = copy;
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    free(copy);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* --check-store (invariant 33): a granted component under a bundle that is
 * held is named. */
Test(bundle_grants, check_store_finds_a_component_out_of_step_with_its_bundle)
{
    start();
    review_rule();
    h_resp r =
        post("/v1/orders", "{\"client_order_id\":\"C-1\",\"sku\":\"b.mixed\",\"account\":\"" ACCOUNT
                           "\",\"end_user\":{\"id\":\"held-user\"}}");
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    json_t *o = json_object_get(r.json, "order");
    cr_assert_str_eq(h_str(o, "state"), "held", "%s", r.body);
    long long topup = h_int(component(o, 1), "id");
    h_resp_free(&r);
    h_stop_clean(&D);
    char *out = NULL;
    cr_assert_eq(h_check_store(&D, &out), 0, "%s", out);
    free(out);
    order_state_set(D.data, (uint64_t)topup, 7 /* granted */);
    cr_assert_neq(h_check_store(&D, &out), 0, "a granted component under a held bundle");
    cr_assert(strstr(out, "is granted but the bundle is held"), "%s", out);
    free(out);
    order_state_set(D.data, (uint64_t)topup, 6 /* held again */);
    cr_assert_eq(h_check_store(&D, &out), 0, "%s", out);
    free(out);
    h_cleanup(&D);
    h_sim_stop(&S);
}

static int bundle_succeeded(void *arg)
{
    json_t *o = h_order_get(&D, *(long long *)arg, "mall-token");
    int done = !strcmp(h_str(o, "state"), "succeeded");
    json_decref(o);
    return done;
}

/* A held bundle nobody reviews is released by the risk.reviews job (the
 * configured default) as ops' release would: bought, its top-up once. */
Test(bundle_grants, a_held_bundle_times_out_to_its_release)
{
    start_with("risk:\n  review_timeout_s: 1\n  review_default: release\n  review_check_s: 1\n");
    import("b.netease", "TNE", 1);
    review_rule();
    h_resp r =
        post("/v1/orders", "{\"client_order_id\":\"T-1\",\"sku\":\"b.mixed\",\"account\":\"" ACCOUNT
                           "\",\"end_user\":{\"id\":\"held-user\"}}");
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    cr_assert_str_eq(h_str(json_object_get(r.json, "order"), "state"), "held", "%s", r.body);
    long long id = h_int(json_object_get(r.json, "order"), "id");
    h_resp_free(&r);
    cr_assert_eq(h_wait_for(bundle_succeeded, &id, 15000), 0, "the timeout did not release it");
    cr_assert_eq(sim_orders(), 1);
    cr_assert_eq(codes_in("b.netease", "issued"), 1);
    cr_assert_eq(events(id, "order.released"), 1);
    stop();
}

/* A welfare batch with a bundle line: its grant reserves every component, and
 * its token claims them all. */
Test(bundle_grants, a_welfare_batch_takes_a_bundle_line)
{
    start();
    import("b.iqiyi", "WIQ", 1);
    import("b.netease", "WNE", 2);
    const char *csv = "user_id,department,sku\n"
                      "emp-0001,eng,b.pack\n"
                      "emp-0002,ops,b.netease\n";
    h_resp r;
    cr_assert_eq(h_http(&D, "POST", "/v1/batches/grants?batch_id=HR-B&ttl_s=3600", "mall-token",
                        "text/csv", csv, strlen(csv), &r),
                 0);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    const char *p = strstr(r.body, "\n2,");
    cr_assert(p, "%s", r.body);
    p = strchr(strchr(p + 1, ',') + 1, ',') + 1; /* past user_id */
    long long gid = atoll(p);
    p = strchr(p, ',') + 1;
    char tok[64];
    snprintf(tok, sizeof tok, "%.*s", (int)strcspn(p, "\n"), p);
    h_resp_free(&r);
    cr_assert_eq(codes_in("b.iqiyi", "reserved"), 1);
    cr_assert_eq(codes_in("b.netease", "reserved"), 2);
    json_t *g = grant_view(gid);
    cr_assert_str_eq(h_str(g, "sku"), "b.pack");
    cr_assert_eq(json_array_size(json_object_get(g, "components")), 2);
    json_decref(g);
    r = claim(tok, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = json_object_get(r.json, "order");
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(component(o, 0), "codes")), 1, "%s", r.body);
    h_resp_free(&r);
    /* the batch's export counts the bundle line as one claimed grant */
    r = h_get(&D, "/v1/batches/grants/HR-B.csv", "mall-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "b.pack,claimed"), "%s", r.body);
    h_resp_free(&r);
    stop();
}

/* Analytics and the order stats count a bundle once, under its own sku: at
 * its catalog price (b.pack, 40.00) or, without one, at its components'
 * prices summed (b.mixed: 14.00 + 50.00); its component orders not at all. */
Test(bundle_grants, analytics_and_stats_count_a_bundle_once_at_its_price)
{
    start();
    import("b.iqiyi", "AIQ", 1);
    import("b.netease", "ANE", 2);
    h_resp r = post("/v1/orders", "{\"client_order_id\":\"A-1\",\"sku\":\"b.pack\"}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    r = post("/v1/orders", "{\"client_order_id\":\"A-2\",\"sku\":\"b.mixed\",\"account\":\"" ACCOUNT
                           "\",\"wait\":10}");
    cr_assert(r.status == 201 || r.status == 202, "%ld %s", r.status, r.body);
    long long mixed = h_int(h_order_of(&r), "id");
    h_resp_free(&r);
    json_t *o = h_order_poll(&D, mixed, "mall-token", settled, NULL, WAIT_MS, "bundle settled");
    cr_assert_str_eq(h_str(o, "state"), "succeeded");
    json_decref(o);

    char path[160], from[40], to[40];
    h_rfc3339(h_wall_ms() - 86400000LL, from, sizeof from);
    h_rfc3339(h_wall_ms() + 86400000LL, to, sizeof to);
    snprintf(path, sizeof path, "/v1/analytics/top?by=value&period=range&from=%.10s&to=%.10s", from,
             to);
    r = h_get(&D, path, "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *top = json_object_get(json_array_get(json_object_get(r.json, "periods"), 0), "top");
    cr_assert_eq(json_array_size(top), 2, "the two bundles, no component: %s", r.body);
    cr_assert_str_eq(h_str(json_array_get(top, 0), "sku"), "b.mixed", "%s", r.body);
    cr_assert_eq(h_int(json_array_get(top, 0), "value_fen"), 6400, "%s", r.body);
    cr_assert_eq(h_int(json_array_get(top, 0), "unpriced"), 0, "%s", r.body);
    cr_assert_str_eq(h_str(json_array_get(top, 1), "sku"), "b.pack", "%s", r.body);
    cr_assert_eq(h_int(json_array_get(top, 1), "value_fen"), 4000, "%s", r.body);
    h_resp_free(&r);

    snprintf(path, sizeof path, "/v1/stats/orders?since=%s", from);
    r = h_get(&D, path, "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(h_int(r.json, "orders"), 2, "the mall's two orders: %s", r.body);
    cr_assert_eq(h_int(r.json, "skus"), 2, "%s", r.body);
    cr_assert_eq(h_int(json_object_get(r.json, "by_state"), "succeeded"), 2, "%s", r.body);
    h_resp_free(&r);
    stop();
}

/* Nothing is reserved while held: when the stock ran out meanwhile, the
 * release does what a new order would (refused: the bundle fails whole,
 * out_of_stock, nothing taken); a held bundle grant's grant expires so. */
Test(bundle_grants, a_held_bundle_whose_stock_ran_out_fails_whole_on_release)
{
    start();
    import("b.iqiyi", "SIQ", 2);
    import("b.netease", "SNE", 2);
    review_rule();
    h_resp r = post("/v1/orders", "{\"client_order_id\":\"S-1\",\"sku\":\"b.pack\","
                                  "\"end_user\":{\"id\":\"held-user\"}}");
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    long long a = h_int(json_object_get(r.json, "order"), "id");
    h_resp_free(&r);
    r = post("/v1/orders", "{\"client_order_id\":\"S-2\",\"sku\":\"b.pack\",\"deliver\":\"grant\","
                           "\"grant\":{\"ttl_s\":3600},\"end_user\":{\"id\":\"held-user\"}}");
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    long long g = h_int(json_object_get(r.json, "order"), "id");
    h_resp_free(&r);
    /* orders without an end user are not reviewed: they take the NetEase codes */
    r = post("/v1/orders", "{\"client_order_id\":\"S-3\",\"sku\":\"b.netease\",\"quantity\":2}");
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    h_resp_free(&r);

    long long ids[2] = {a, g};
    for (int i = 0; i < 2; i++) {
        r = review(ids[i], "release");
        cr_assert_eq(r.status, 200, "%s", r.body);
        h_resp_free(&r);
        char b[4096];
        json_t *o = h_order_get(&D, ids[i], "mall-token");
        cr_assert_str_eq(h_str(o, "state"), "failed", "%s", h_dump(o, b, sizeof b));
        cr_assert_str_eq(h_str(o, "reason"), "out_of_stock", "%s", h_dump(o, b, sizeof b));
        cr_assert_str_eq(h_str(component(o, 0), "state"), "failed", "%s", h_dump(o, b, sizeof b));
        json_decref(o);
    }
    cr_assert_eq(codes_in("b.iqiyi", "available"), 2, "all or none: no iQiyi code taken");
    cr_assert_eq(codes_in("b.iqiyi", "reserved"), 0);
    json_t *gv = grant_view(g);
    cr_assert_str_eq(h_str(gv, "state"), "expired");
    json_decref(gv);
    cr_assert_eq(events(g, "grant.expired"), 1);
    stop();
}
