/*
 * test_grant_return.c — a claimed recharge grant whose supplier order fails
 * for good gives the benefit back (perkhubd against the supplier simulator):
 * the supplier refuses the claim's account (supsim's 13900000002, failed and
 * refunded), the grant is active again with the same token and its history
 * (grant.claimed, the failed attempt, grant.returned — on the mall's feed
 * too), a claim again with a corrected account is a new attempt that
 * succeeds, supsim saw exactly those two orders and the ledger books one
 * charge. The state survives kill -9 right after the return; a grant whose
 * time ran out while the supplier had it expires instead. A bundle grant
 * (a card bought upstream and a top-up) both of whose orders are refused is
 * given back whole and claimed again; a claim again fails over afresh (the
 * suppliers of the first claim do not count against it); the claim's reply
 * shows the order's masked end user. Every test ends with --check-store and
 * the ledger against the simulator.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define REFUSED "13900000002" /* supsim completes it failed: account_suspended */
#define STALLED "13900000003" /* supsim keeps it processing until /_sim/complete */
#define GOOD    "13800000001" /* supsim completes it succeeded */
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

TestSuite(grant_return, .fini = teardown);

static void start(void)
{
    cr_assert(h_sim_start(&S, NULL) == 0, "supsim did not start");
    char rw[1024];
    h_sim_supplier_yaml(&S, "rwb", "rewards",
                        "    timeout_ms: 1500\n    connect_timeout_ms: 1000\n"
                        "    query_max_delay_ms: 300\n",
                        NULL, rw, sizeof rw);
    snprintf(BODY, sizeof BODY,
             "grants:\n  min_ttl_s: 1\n  expire_every_s: 1\n"
             "suppliers:\n%s"
             "products:\n"
             "  - sku: g.topup\n    name: Top-up\n    brand: sim\n    category: telecom\n"
             "    delivery: recharge\n    face_value: \"50.00\"\n    price: \"50.00\"\n"
             "    offers:\n      - {supplier: rwb, supplier_sku: \"U20001\", cost: \"49.00\"}\n"
             "  - sku: g.card\n    name: Card\n    brand: sim\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n    price: \"29.00\"\n"
             "    offers:\n      - {supplier: rwb, supplier_sku: \"U10001\", cost: \"28.50\"}\n"
             "  - sku: g.duo\n    name: Card and top-up\n    brand: pack\n    category: bundle\n"
             "    delivery: bundle\n    face_value: \"80.00\"\n    price: \"79.00\"\n"
             "    components:\n      - {sku: g.card, quantity: 1}\n"
             "      - {sku: g.topup, quantity: 1}\n",
             rw);
    h_setup_custom(&D, BODY, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
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

/* A grant of g.topup for emp-0001 living ttl_s: its id, its token into token. */
static long long grant(const char *coid, int ttl_s, char token[64])
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"client_order_id\":\"%s\",\"sku\":\"g.topup\",\"deliver\":\"grant\","
             "\"grant\":{\"ttl_s\":%d},\"end_user\":{\"id\":\"emp-0001\","
             "\"tags\":{\"dept\":\"eng\"}}}",
             coid, ttl_s);
    h_resp r = h_post_json(&D, "/v1/orders", "mall-token", body);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    json_t *g = json_object_get(r.json, "grant");
    cr_assert_str_eq(h_str(json_object_get(r.json, "order"), "state"), "granted", "%s", r.body);
    snprintf(token, 64, "%s", h_str(g, "token"));
    long long id = h_int(g, "id");
    h_resp_free(&r);
    return id;
}

static h_resp claim(const char *token, const char *request_id, const char *account)
{
    char body[256];
    snprintf(body, sizeof body, "{\"token\":\"%s\",\"request_id\":\"%s\",\"account\":\"%s\"}",
             token, request_id, account);
    return h_post_json(&D, "/v1/grants/claim", "mall-token", body);
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

/* Events of order id of `type` on the feed of token's client. */
static int events(const char *token, long long id, const char *type)
{
    h_resp r = h_get(&D, "/v1/events?limit=1000", token);
    cr_assert_eq(r.status, 200, "%s", r.body);
    int n = h_events_count(r.json, id, type);
    h_resp_free(&r);
    return n;
}

/* The simulator's orders made for perkhub order id, and how many of them are
 * in `state` (NULL: any) with charged_fen `charged` (-1: any). */
static size_t sim_orders(long long id, const char *state, long long charged)
{
    json_t *t = h_sim_truth(&S);
    size_t i, n = 0;
    json_t *o;
    json_array_foreach(json_object_get(t, "orders"), i, o)
    {
        if (h_ref_order(h_str(o, "ref")) != id)
            continue;
        if (state && strcmp(h_str(o, "state"), state))
            continue;
        if (charged >= 0 && h_int(o, "charged_fen") != charged)
            continue;
        n++;
    }
    json_decref(t);
    return n;
}

static int is_state(json_t *o, void *arg)
{
    return !strcmp(h_str(o, "state"), (const char *)arg);
}

static int is_final(json_t *o, void *arg)
{
    (void)arg;
    return !strcmp(h_str(o, "state"), "succeeded") || !strcmp(h_str(o, "state"), "failed");
}

/* The claim refused for good: back to granted (the grant active, its return
 * recorded), never failed on the way. */
static void refused_and_back(long long id, const char *token)
{
    h_resp r = claim(token, "claim-1", REFUSED);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(h_str(json_object_get(r.json, "grant"), "state"), "claimed", "%s", r.body);
    /* the claim's order shows its masked end user, as GET /v1/orders/{id} does */
    json_t *eu = json_object_get(json_object_get(r.json, "order"), "end_user");
    cr_assert_str_eq(h_str(eu, "id"), "em****01", "%s", r.body);
    cr_assert_null(strstr(r.body, "emp-0001"), "a clear end user id: %s", r.body);
    json_t *got = h_order_get(&D, id, "mall-token");
    cr_assert(json_equal(json_object_get(got, "end_user"), eu), "%s", r.body);
    json_decref(got);
    h_resp_free(&r);
    char b[4096];
    json_t *o = h_order_poll(&D, id, "ops-token", is_state, "granted", WAIT_MS, "grant given back");
    json_t *atts = json_object_get(o, "attempts");
    cr_assert_eq(json_array_size(atts), 1, "%s", h_dump(o, b, sizeof b));
    cr_assert_str_eq(h_str(json_array_get(atts, 0), "state"), "failed", "%s",
                     h_dump(o, b, sizeof b));
    cr_assert_null(json_object_get(o, "next_check_at"), "%s", h_dump(o, b, sizeof b));
    json_decref(o);
}

Test(grant_return, a_refused_recharge_gives_the_grant_back_and_a_claim_again_succeeds)
{
    start();
    char tok[64];
    long long id = grant("R-1", 3600, tok);
    refused_and_back(id, tok);

    /* the grant is claimable again, its history told; the holder's token is the same */
    char b[4096];
    json_t *g = grant_view(id);
    cr_assert_str_eq(h_str(g, "state"), "active", "%s", h_dump(g, b, sizeof b));
    cr_assert_null(json_object_get(g, "claimed_at"), "%s", h_dump(g, b, sizeof b));
    cr_assert_eq(h_int(g, "returned"), 1, "%s", h_dump(g, b, sizeof b));
    json_t *ret = json_array_get(json_object_get(g, "returns"), 0);
    cr_assert_eq(h_int(ret, "attempt"), 1, "%s", h_dump(g, b, sizeof b));
    cr_assert(strlen(h_str(ret, "reason")) > 0, "%s", h_dump(g, b, sizeof b));
    cr_assert_not_null(json_object_get(ret, "claimed_at"), "%s", h_dump(g, b, sizeof b));
    json_decref(g);
    for (int i = 0; i < 2; i++) { /* ops' feed, and the mall's own (what its webhooks carry) */
        const char *who = i ? "mall-token" : "ops-token";
        cr_assert_eq(events(who, id, "grant.claimed"), 1, "%s", who);
        cr_assert_eq(events(who, id, "grant.returned"), 1, "%s", who);
        cr_assert_eq(events(who, id, "order.failed"), 0, "%s: the order did not end", who);
    }
    cr_assert_eq(sim_orders(id, NULL, -1), 1);
    cr_assert_eq(sim_orders(id, "failed", 0), 1, "refused and refunded");

    /* the same claim request again is its first answer's replay: no new order */
    h_resp r = claim(tok, "claim-1", GOOD);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(h_str(json_object_get(r.json, "order"), "state"), "granted", "%s", r.body);
    h_resp_free(&r);
    /* a claim again with a corrected account: attempt 2, which succeeds */
    r = claim(tok, "claim-2", GOOD);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(h_str(json_object_get(r.json, "grant"), "state"), "claimed", "%s", r.body);
    h_resp_free(&r);
    json_t *o = h_order_poll(&D, id, "ops-token", is_final, NULL, WAIT_MS, "claim again settled");
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", h_dump(o, b, sizeof b));
    cr_assert_str_eq(h_str(o, "account"), "138****0001", "%s", h_dump(o, b, sizeof b));
    json_t *atts = json_object_get(o, "attempts");
    cr_assert_eq(json_array_size(atts), 2, "%s", h_dump(o, b, sizeof b));
    cr_assert_str_eq(h_str(json_array_get(atts, 0), "state"), "failed", "the first stays failed");
    cr_assert_str_eq(h_str(json_array_get(atts, 1), "state"), "succeeded");
    json_decref(o);
    g = grant_view(id);
    cr_assert_str_eq(h_str(g, "state"), "claimed", "%s", h_dump(g, b, sizeof b));
    json_decref(g);
    cr_assert_eq(events("ops-token", id, "grant.claimed"), 2);
    cr_assert_eq(events("ops-token", id, "order.succeeded"), 1);
    cr_assert_eq(events("ops-token", id, "order.failed"), 0);

    /* exactly two supplier orders: the refused one and the one that succeeded */
    cr_assert_eq(sim_orders(id, NULL, -1), 2);
    cr_assert_eq(sim_orders(id, "failed", 0), 1);
    cr_assert_eq(sim_orders(id, "success", 4900), 1);
    /* one charge booked, one sale; the claims analytics count the grant claimed once */
    cr_assert_eq(h_ledger_matches_sim(&D, &S), 1);
    char words[256];
    h_ledger_words(&D, id, words, sizeof words);
    cr_assert_eq(h_mem_count(words, strlen(words), "supplier_cost:"), 1, "%s", words);
    cr_assert_eq(h_mem_count(words, strlen(words), "sale:"), 1, "%s", words);
    r = h_get(&D, "/v1/analytics/claims?by=client", "mall-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *row = json_array_get(json_object_get(r.json, "rows"), 0);
    cr_assert_eq(h_int(row, "granted"), 1, "%s", r.body);
    cr_assert_eq(h_int(row, "claimed"), 1, "%s", r.body);
    h_resp_free(&r);
    r = claim(tok, "claim-3", GOOD);
    cr_assert_eq(r.status, 409, "claimed for good: %s", r.body);
    h_resp_free(&r);
    stop();
}

/* kill -9 right after the return: the grant and its order come back as they
 * were committed together (granted, active, the same token claims again). */
Test(grant_return, the_return_survives_kill_9)
{
    start();
    char tok[64];
    long long id = grant("K-1", 3600, tok);
    refused_and_back(id, tok);
    h_stop(&D, SIGKILL);
    char *out = NULL;
    int st = h_check_store(&D, &out);
    cr_assert_eq(st, 0, "--check-store after kill -9: %s", out);
    free(out);
    cr_assert(h_start(&D) == 0, "perkhubd did not restart");
    json_t *g = grant_view(id);
    cr_assert_str_eq(h_str(g, "state"), "active");
    json_decref(g);
    h_resp r = claim(tok, "claim-2", GOOD);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    char b[4096];
    json_t *o = h_order_poll(&D, id, "ops-token", is_final, NULL, WAIT_MS, "claim again settled");
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", h_dump(o, b, sizeof b));
    json_decref(o);
    cr_assert_eq(sim_orders(id, NULL, -1), 2);
    stop();
}

typedef struct truth_wait {
    long long id;
    char ref[128];
} truth_wait;

/* supsim holds an order for perkhub order w->id: its ref into w->ref. */
static int sim_has(void *arg)
{
    truth_wait *w = arg;
    json_t *t = h_sim_truth(&S);
    json_t *o = h_sim_truth_find(t, "orders", "rewards", w->id, NULL);
    if (o)
        snprintf(w->ref, sizeof w->ref, "%s", h_str(o, "ref"));
    json_decref(t);
    return o != NULL;
}

/* The wall clock is past *(int64_t *)arg. */
static int wall_past(void *arg)
{
    return h_wall_ms() > *(const int64_t *)arg;
}

/* The grant's time runs out while the supplier has its claim: refused then,
 * it is not given back but expires, as the expiry job would have done. */
Test(grant_return, a_grant_whose_time_ran_out_meanwhile_expires)
{
    start();
    char tok[64];
    int64_t expires = h_wall_ms() + 2000; /* at the latest */
    long long id = grant("E-1", 2, tok);
    h_resp r = claim(tok, "claim-1", STALLED);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    truth_wait w = {.id = id};
    cr_assert_eq(h_wait_for(sim_has, &w, WAIT_MS), 0, "supsim never got the order");
    /* past its expiry and a run of the expiry job (every second), which
     * leaves a claimed grant be */
    int64_t after = expires + 1500;
    cr_assert_eq(h_wait_for(wall_past, &after, WAIT_MS), 0);
    json_t *g = grant_view(id);
    cr_assert_str_eq(h_str(g, "state"), "claimed");
    json_decref(g);
    char body[256];
    snprintf(body, sizeof body, "{\"ref\":\"%s\",\"state\":\"failed\",\"protocol\":\"rewards\"}",
             w.ref);
    r = h_sim_req(&S, "POST", "/_sim/complete", body);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    char b[4096];
    json_t *o = h_order_poll(&D, id, "ops-token", is_final, NULL, WAIT_MS, "refused after expiry");
    cr_assert_str_eq(h_str(o, "state"), "failed", "%s", h_dump(o, b, sizeof b));
    cr_assert_str_eq(h_str(o, "reason"), "grant_expired", "%s", h_dump(o, b, sizeof b));
    json_decref(o);
    g = grant_view(id);
    cr_assert_str_eq(h_str(g, "state"), "expired", "%s", h_dump(g, b, sizeof b));
    cr_assert_eq(h_int(g, "returned"), 1, "%s", h_dump(g, b, sizeof b));
    json_decref(g);
    cr_assert_eq(events("ops-token", id, "grant.returned"), 1);
    cr_assert_eq(events("ops-token", id, "grant.expired"), 1);
    cr_assert_eq(events("ops-token", id, "order.failed"), 1);
    r = claim(tok, "claim-2", GOOD);
    cr_assert_eq(r.status, 410, "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(sim_orders(id, NULL, -1), 1);
    stop();
}

/* ---- a bundle grant whose every component fails for good ------------------------- */

static void sim_fault(const char *json)
{
    h_resp r = h_sim_req(&S, "POST", "/_sim/faults", json);
    cr_assert(r.status < 300, "%s: %ld %s", json, r.status, r.body);
    h_resp_free(&r);
}

static json_t *component(json_t *order, size_t j)
{
    char b[4096];
    json_t *c = json_array_get(json_object_get(order, "components"), j);
    cr_assert(json_is_object(c), "no components[%zu]: %s", j, h_dump(order, b, sizeof b));
    return c;
}

static int bundle_settled(json_t *o, void *arg)
{
    (void)arg;
    const char *s = h_str(o, "state");
    return !strcmp(s, "succeeded") || !strcmp(s, "failed") || !strcmp(s, "partial");
}

/* g.duo (a card bought upstream: no stock; and a top-up) granted to emp-0001:
 * the supplier refuses both orders of the claim (busy), so nothing of the
 * bundle was delivered: the grant comes back active with the same token, the
 * bundle granted (never failed), each component a new granted unit after its
 * failed order; a claim again buys both and delivers them. */
Test(grant_return, a_bundle_grant_with_nothing_delivered_is_given_back_and_claimed_again)
{
    start();
    h_resp r = h_post_json(&D, "/v1/orders", "mall-token",
                           "{\"client_order_id\":\"B-1\",\"sku\":\"g.duo\",\"deliver\":\"grant\","
                           "\"grant\":{\"ttl_s\":3600},\"end_user\":{\"id\":\"emp-0001\"}}");
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    char tok[64];
    snprintf(tok, sizeof tok, "%s", h_str(json_object_get(r.json, "grant"), "token"));
    long long id = h_int(json_object_get(r.json, "order"), "id");
    h_resp_free(&r);

    sim_fault("{\"protocol\":\"rewards\",\"op\":\"order\",\"fault\":\"busy\",\"count\":2}");
    r = claim(tok, "claim-1", GOOD);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(h_str(json_object_get(r.json, "grant"), "state"), "claimed", "%s", r.body);
    cr_assert_str_eq(h_str(json_object_get(json_object_get(r.json, "order"), "end_user"), "id"),
                     "em****01", "%s", r.body);
    h_resp_free(&r);
    char b[8192];
    json_t *o =
        h_order_poll(&D, id, "mall-token", is_state, "granted", WAIT_MS, "bundle given back");
    for (size_t j = 0; j < 2; j++) {
        cr_assert_str_eq(h_str(component(o, j), "state"), "granted", "%s", h_dump(o, b, sizeof b));
        cr_assert_eq(json_array_size(json_object_get(component(o, j), "orders")), 2, "%s",
                     h_dump(o, b, sizeof b));
        cr_assert_null(json_object_get(component(o, j), "codes"), "%s", h_dump(o, b, sizeof b));
    }
    json_decref(o);
    json_t *g = grant_view(id);
    cr_assert_str_eq(h_str(g, "state"), "active", "%s", h_dump(g, b, sizeof b));
    cr_assert_eq(h_int(g, "returned"), 1, "%s", h_dump(g, b, sizeof b));
    json_t *ret = json_array_get(json_object_get(g, "returns"), 0);
    cr_assert(h_int(ret, "order_id") > id, "%s", h_dump(g, b, sizeof b));
    cr_assert_str_eq(h_str(json_array_get(json_object_get(g, "components"), 0), "state"), "granted",
                     "%s", h_dump(g, b, sizeof b));
    json_decref(g);
    for (int i = 0; i < 2; i++) {
        const char *who = i ? "mall-token" : "ops-token";
        cr_assert_eq(events(who, id, "grant.returned"), 1, "%s", who);
        cr_assert_eq(events(who, id, "order.failed"), 0, "%s: the bundle did not end", who);
    }

    /* a claim again: both units bought anew, delivered */
    r = claim(tok, "claim-2", GOOD);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    o = h_order_poll(&D, id, "mall-token", bundle_settled, NULL, WAIT_MS, "claim again settled");
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", h_dump(o, b, sizeof b));
    cr_assert_eq(json_array_size(json_object_get(component(o, 0), "codes")), 1, "%s",
                 h_dump(o, b, sizeof b));
    cr_assert_str_eq(h_str(component(o, 1), "account"), "138****0001", "%s",
                     h_dump(o, b, sizeof b));
    json_decref(o);
    g = grant_view(id);
    cr_assert_str_eq(h_str(g, "state"), "claimed", "%s", h_dump(g, b, sizeof b));
    json_decref(g);
    cr_assert_eq(events("ops-token", id, "grant.claimed"), 2);
    cr_assert_eq(events("ops-token", id, "order.succeeded"), 1);
    r = claim(tok, "claim-3", GOOD);
    cr_assert_eq(r.status, 409, "claimed for good: %s", r.body);
    h_resp_free(&r);
    r = h_get(&D, "/v1/analytics/claims?by=client", "mall-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *row = json_array_get(json_object_get(r.json, "rows"), 0);
    cr_assert_eq(h_int(row, "claimed"), 1, "a grant counts as claimed once: %s", r.body);
    h_resp_free(&r);
    stop();
}

/* ---- a claim again fails over afresh --------------------------------------------- */

/* g.topup at two suppliers: gwa (the gateway protocol, tried first) and rwb. */
static void start_two(void)
{
    cr_assert(h_sim_start(&S, NULL) == 0, "supsim did not start");
    char a[1024], rw[1024];
    h_sim_supplier_yaml(&S, "gwa", "gateway",
                        "    priority: 20\n    timeout_ms: 1500\n    connect_timeout_ms: 1000\n"
                        "    query_max_delay_ms: 300\n    breaker_failures: 20\n",
                        NULL, a, sizeof a);
    h_sim_supplier_yaml(&S, "rwb", "rewards",
                        "    priority: 10\n    timeout_ms: 1500\n    connect_timeout_ms: 1000\n"
                        "    query_max_delay_ms: 300\n    breaker_failures: 20\n",
                        NULL, rw, sizeof rw);
    snprintf(BODY, sizeof BODY,
             "grants:\n  min_ttl_s: 1\n  expire_every_s: 1\n"
             "suppliers:\n%s%s"
             "products:\n"
             "  - sku: g.topup\n    name: Top-up\n    brand: sim\n    category: telecom\n"
             "    delivery: recharge\n    face_value: \"50.00\"\n    price: \"50.00\"\n"
             "    offers:\n      - {supplier: gwa, supplier_sku: \"20001\", cost: \"49.00\"}\n"
             "      - {supplier: rwb, supplier_sku: \"U20001\", cost: \"49.00\"}\n",
             a, rw);
    h_setup_custom(&D, BODY, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
}

/* Attempt i of the ops view o is at supplier sup in state st. */
static void attempt_is(json_t *o, size_t i, const char *sup, const char *st)
{
    char b[4096];
    json_t *a = json_array_get(json_object_get(o, "attempts"), i);
    cr_assert(a && !strcmp(h_str(a, "supplier"), sup) && !strcmp(h_str(a, "state"), st),
              "attempt %zu should be %s %s: %s", i + 1, sup, st, h_dump(o, b, sizeof b));
}

/* The first claim refused at both suppliers (gwa, then rwb by fail-over) is
 * given back; the claim again refused at gwa fails over to rwb again — the
 * suppliers the first claim tried do not count against the second — and
 * succeeds there. */
Test(grant_return, a_claim_again_fails_over_afresh)
{
    start_two();
    char tok[64];
    long long id = grant("F-1", 3600, tok);
    sim_fault("{\"protocol\":\"gateway\",\"op\":\"order\",\"fault\":\"busy\",\"count\":1}");
    sim_fault("{\"protocol\":\"rewards\",\"op\":\"order\",\"fault\":\"busy\",\"count\":1}");
    h_resp r = claim(tok, "claim-1", GOOD);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    json_t *o = h_order_poll(&D, id, "ops-token", is_state, "granted", WAIT_MS, "grant given back");
    attempt_is(o, 0, "gwa", "failed");
    attempt_is(o, 1, "rwb", "failed");
    json_decref(o);

    sim_fault("{\"protocol\":\"gateway\",\"op\":\"order\",\"fault\":\"busy\",\"count\":1}");
    r = claim(tok, "claim-2", GOOD);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    char b[4096];
    o = h_order_poll(&D, id, "ops-token", is_final, NULL, WAIT_MS, "claim again settled");
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", h_dump(o, b, sizeof b));
    cr_assert_eq(json_array_size(json_object_get(o, "attempts")), 4, "%s", h_dump(o, b, sizeof b));
    attempt_is(o, 2, "gwa", "failed");
    attempt_is(o, 3, "rwb", "succeeded");
    json_decref(o);
    json_t *g = grant_view(id);
    cr_assert_str_eq(h_str(g, "state"), "claimed", "%s", h_dump(g, b, sizeof b));
    cr_assert_eq(h_int(g, "returned"), 1, "given back once: %s", h_dump(g, b, sizeof b));
    json_decref(g);
    stop();
}
