/*
 * test_supplier_auth.c — issue 11, found 4: a supplier that refuses our
 * credentials must not look healthy.
 *
 * Supplier A ("sa", priority 20) and supplier B ("sb", priority 10) offer the
 * same card product at one supsim, A in one protocol and B in the other. The
 * simulator's fault `unauthorized` makes A refuse every call: rewards answers
 * HTTP 401, gateway its code 1001 on HTTP 200 (the plugin's reason
 * bad_request_signature). Then:
 *   - the first order fails over and succeeds at B; A shows state auth_failed
 *     in GET /v1/suppliers with why (the HTTP status or the reason word), its
 *     breaker untouched;
 *   - the events feed holds supplier.auth_failed once, not once per order;
 *   - while the cool-down (auth_retry_ms) runs, new orders go straight to B:
 *     the simulator saw A refuse one order only;
 *   - the fault is cleared; once the cool-down is over the next order is the
 *     probe: it succeeds at A, supplier.auth_restored is stored once, A is
 *     ready again and the next orders go to A.
 * On the code before issue 11 A stays "ready" and every order tries it first.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define WAIT_MS  20000
#define COOL_MS  6000 /* auth_retry_ms: long enough to place the skipping orders in */
#define SKIPPING 3    /* orders placed during the cool-down */

static h_daemon D;
static h_sim S;
static char BODY[4096]; /* the config body: h_setup_custom borrows it */

static void teardown(void)
{
    h_leftover(&D);
    if (S.pid > 0)
        h_sim_stop(&S);
}

TestSuite(supplier_auth, .fini = teardown);

/* The card product id of each protocol at the simulator. */
static const char *card_of(const char *proto)
{
    return !strcmp(proto, "gateway") ? "10001" : "U10001";
}

static void start(const char *a_proto, const char *b_proto)
{
    cr_assert(h_sim_start(&S, NULL) == 0, "supsim did not start");
    char a[1024], b[1024], a_fields[256];
    snprintf(a_fields, sizeof a_fields,
             "    priority: 20\n    timeout_ms: 2000\n    breaker_failures: 1\n"
             "    auth_retry_ms: %d\n    auth_retry_max_ms: 60000\n",
             COOL_MS);
    h_sim_supplier_yaml(&S, "sa", a_proto, a_fields, NULL, a, sizeof a);
    h_sim_supplier_yaml(&S, "sb", b_proto, "    priority: 10\n    timeout_ms: 2000\n", NULL, b,
                        sizeof b);
    snprintf(BODY, sizeof BODY,
             "suppliers:\n%s%s"
             "products:\n"
             "  - sku: au.card\n    name: Auth card\n    brand: sim\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n    offers:\n"
             "      - {supplier: sa, supplier_sku: \"%s\", cost: \"28.50\"}\n"
             "      - {supplier: sb, supplier_sku: \"%s\", cost: \"28.50\"}\n",
             a, b, card_of(a_proto), card_of(b_proto));
    h_setup_custom(&D, BODY, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
}

/* Stops cleanly and proves the store (the notes are events like any other). */
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

/* Places a card order answered at once; asserts it succeeded and returns its
 * ops view (caller decrefs). */
static json_t *order_ok(const char *coid)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"client_order_id\":\"%s\",\"sku\":\"au.card\",\"quantity\":1,\"wait\":10}", coid);
    h_resp r = h_post_json(&D, "/v1/orders", "mall-token", body);
    cr_assert_eq(r.status, 201, "POST /v1/orders %s: %ld %s", coid, r.status, r.body);
    json_t *o = h_order_of(&r);
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "order %s: %s", coid, r.body);
    long long id = h_int(o, "id");
    h_resp_free(&r);
    return h_order_get(&D, id, "ops-token");
}

/* The suppliers of an order's attempts, as "sa:failed,sb:succeeded". */
static const char *attempts_of(json_t *o, char *buf, size_t n)
{
    size_t i, off = 0;
    json_t *a;
    buf[0] = 0;
    json_array_foreach(json_object_get(o, "attempts"), i, a)
    {
        int w = snprintf(buf + off, n - off, "%s%s:%s", i ? "," : "", h_str(a, "supplier"),
                         h_str(a, "state"));
        if (w < 0 || (size_t)w >= n - off)
            break;
        off += (size_t)w;
    }
    return buf;
}

/* Supplier id's entry of GET /v1/suppliers (caller decrefs). */
static json_t *supplier(const char *id)
{
    h_resp r = h_get(&D, "/v1/suppliers", "ops-token");
    cr_assert_eq(r.status, 200, "GET /v1/suppliers: %ld %s", r.status, r.body);
    size_t i;
    json_t *s, *found = NULL;
    json_array_foreach(json_object_get(r.json, "suppliers"), i, s) if (!strcmp(h_str(s, "id"), id))
        found = json_incref(s);
    cr_assert(found, "supplier %s not listed: %s", id, r.body);
    h_resp_free(&r);
    return found;
}

/* The events of the feed with type `type` about supplier `id`; the last one
 * into *last (borrowed from *feed, which the caller decrefs) when wanted. */
static int supplier_events(const char *type, const char *id, json_t **feed, json_t **last)
{
    h_resp r = h_get(&D, "/v1/events?after=0&limit=1000", "ops-token");
    cr_assert_eq(r.status, 200, "GET /v1/events: %ld %s", r.status, r.body);
    *feed = json_incref(r.json);
    h_resp_free(&r);
    size_t i;
    json_t *e;
    int n = 0;
    json_array_foreach(json_object_get(*feed, "events"), i, e)
    {
        if (!strcmp(h_str(e, "type"), type) && !strcmp(h_str(e, "supplier"), id)) {
            n++;
            if (last)
                *last = e;
        }
    }
    return n;
}

/* Refused order creations the simulator saw from protocol proto. */
static size_t refused_at_sim(const char *proto)
{
    json_t *t = h_sim_truth(&S);
    size_t n;
    h_sim_truth_find(t, "refs_without_order", proto, -1, &n);
    json_decref(t);
    return n;
}

static int restored(void *arg)
{
    (void)arg;
    json_t *feed;
    int n = supplier_events("supplier.auth_restored", "sa", &feed, NULL);
    json_decref(feed);
    return n > 0;
}

static void refused_then_restored(const char *a_proto, const char *b_proto, const char *why,
                                  const char *reason)
{
    start(a_proto, b_proto);
    char fault[160], b[4096];
    snprintf(fault, sizeof fault, "{\"protocol\":\"%s\",\"fault\":\"unauthorized\",\"count\":-1}",
             a_proto);
    h_resp r = h_sim_req(&S, "POST", "/_sim/faults", fault);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);

    /* the order in hand fails over as before */
    int64_t t0 = h_now_ms();
    json_t *o = order_ok("au-1");
    int64_t t1 = h_now_ms(); /* A was marked between t0 and t1 */
    cr_assert_str_eq(attempts_of(o, b, sizeof b), "sa:failed,sb:succeeded");
    json_t *att = json_array_get(json_object_get(o, "attempts"), 0);
    cr_assert_str_eq(h_str(att, "reason"), reason);
    json_decref(o);

    /* A tells the truth about itself: auth_failed and why, breaker untouched */
    json_t *s = supplier("sa");
    cr_assert_str_eq(h_str(s, "state"), "auth_failed", "%s", h_dump(s, b, sizeof b));
    cr_assert_str_eq(h_str(s, "error"), why, "%s", h_dump(s, b, sizeof b));
    json_t *health = json_object_get(s, "health");
    cr_assert_str_eq(h_str(health, "breaker"), "closed", "%s", h_dump(s, b, sizeof b));
    cr_assert_eq(h_int(health, "consecutive_failures"), 0);
    json_t *auth = json_object_get(health, "auth");
    cr_assert_str_eq(h_str(auth, "state"), "failed", "%s", h_dump(s, b, sizeof b));
    cr_assert_str_eq(h_str(auth, "why"), why);
    cr_assert(json_is_string(json_object_get(auth, "next_probe_at")), "%s", h_dump(s, b, sizeof b));
    json_decref(s);
    s = supplier("sb");
    cr_assert_str_eq(h_str(s, "state"), "ready");
    json_decref(s);
    /* the supplier's own words ("missing or wrong credentials", "bad
     * signature") appear nowhere */
    r = h_get(&D, "/v1/suppliers", "ops-token");
    cr_assert(!strstr(r.body, "wrong credentials") && !strstr(r.body, "bad signature"), "%s",
              r.body);
    h_resp_free(&r);

    /* new orders skip A while the cool-down runs */
    for (int i = 0; i < SKIPPING; i++) {
        char coid[32];
        snprintf(coid, sizeof coid, "au-skip-%d", i);
        o = order_ok(coid);
        cr_assert_str_eq(attempts_of(o, b, sizeof b), "sb:succeeded", "order %s", coid);
        json_decref(o);
    }
    cr_assert_lt(h_now_ms() - t0, COOL_MS,
                 "the machine was too slow for the cool-down: "
                 "the orders above may have probed A");
    cr_assert_eq(refused_at_sim(a_proto), 1, "A was asked again during the cool-down");

    /* one event, not one per order; its fields are ours */
    json_t *feed, *ev = NULL;
    cr_assert_eq(supplier_events("supplier.auth_failed", "sa", &feed, &ev), 1, "%s",
                 h_dump(feed, b, sizeof b));
    cr_assert_str_eq(h_str(ev, "why"), why);
    cr_assert_eq(json_object_size(ev), 5, "seq, at, type, supplier, why: %s",
                 h_dump(ev, b, sizeof b));
    char *all = json_dumps(feed, JSON_COMPACT);
    cr_assert(all && !strstr(all, "wrong credentials") && !strstr(all, "bad signature"), "%s",
              all ? all : "");
    free(all);
    json_decref(feed);

    /* the supplier fixes our key; after the cool-down the next order probes */
    r = h_sim_req(&S, "DELETE", "/_sim/faults", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    s = supplier("sa");
    cr_assert_str_eq(h_str(s, "state"), "auth_failed", "only a probe clears it");
    json_decref(s);
    /* wait out the cool-down (it ends before t1 + COOL_MS): an order placed
     * sooner would go to B and prove nothing */
    while (h_now_ms() - t1 < COOL_MS + 100)
        usleep(50 * 1000);
    o = order_ok("au-probe");
    cr_assert_str_eq(attempts_of(o, b, sizeof b), "sa:succeeded", "the probe goes to A");
    json_decref(o);
    cr_assert_eq(h_wait_for(restored, NULL, WAIT_MS), 0, "no supplier.auth_restored");
    cr_assert_eq(supplier_events("supplier.auth_restored", "sa", &feed, NULL), 1);
    json_decref(feed);
    cr_assert_eq(supplier_events("supplier.auth_failed", "sa", &feed, NULL), 1);
    json_decref(feed);
    s = supplier("sa");
    cr_assert_str_eq(h_str(s, "state"), "ready", "%s", h_dump(s, b, sizeof b));
    cr_assert(!json_is_string(json_object_get(s, "error")), "%s", h_dump(s, b, sizeof b));
    cr_assert_str_eq(h_str(json_object_get(json_object_get(s, "health"), "auth"), "state"), "ok");
    json_decref(s);

    o = order_ok("au-after");
    cr_assert_str_eq(attempts_of(o, b, sizeof b), "sa:succeeded", "orders route to A again");
    json_decref(o);

    stop();
}

/* rewards answers HTTP 401: the status is the why */
Test(supplier_auth, http_401_marks_auth_failed_and_a_probe_restores, .timeout = 120)
{
    refused_then_restored("rewards", "gateway", "http 401", "unauthorized");
}

/* gateway refuses the signature on HTTP 200: the plugin's reason word is the why */
Test(supplier_auth, refused_signature_reason_marks_auth_failed, .timeout = 120)
{
    refused_then_restored("gateway", "rewards", "bad_request_signature", "bad_request_signature");
}
