/*
 * Supplier callbacks end to end, once per protocol (gateway, rewards) with
 * the same code: perkhubd places a recharge at supsim (which keeps it
 * processing for 3 s), then the simulator sends perkhubd notifies about it —
 * forged, tampered, stale (refused 401, nothing changes), legit while the
 * supplier still says processing (acknowledged; the confirming query keeps
 * the order processing), 10 concurrent legit copies after completion (all
 * acknowledged, one order.succeeded), a replay after the final state (200,
 * nothing changes) — plus callbacks that are verified but not ours (400
 * callback_mismatch) and callbacks to a supplier that does not exist (404).
 * And replays (issue 10, defect 10): one legit notify and 500 replays of it
 * while the supplier still says processing bring one order query in all, and
 * the breaker does not move.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

static h_daemon D;
static h_sim S;

static void teardown(void)
{
    h_leftover(&D);
    if (S.pid > 0)
        h_sim_stop(&S);
}

TestSuite(callbacks, .fini = teardown);

/* What differs between the two protocols. */
typedef struct proto {
    const char *name;     /* supsim's "protocol" and our supplier id */
    const char *sku;      /* our product offered only by that supplier */
    const char *other;    /* the other supplier's id */
    const char *ack_body; /* what the supplier expects back, "" for any */
} proto;

static const proto GATEWAY = {"gateway", "gw.topup", "rewards", "success"};
static const proto REWARDS = {"rewards", "rw.topup", "gateway", ""};

#define ACCOUNT "13900000001" /* supsim completes it succeeded */

/* ---- setup ------------------------------------------------------------------ */

static char BODY[4096]; /* the config body: h_setup_custom borrows it */

/* Both suppliers at the same simulator (recharges stay processing there for
 * complete_ms), each with the supplier lines `fields`; one recharge product per
 * supplier. */
static void start_with(const char *complete_ms, const char *fields)
{
    const char *args[] = {"--complete-ms", complete_ms, NULL};
    cr_assert(h_sim_start(&S, args) == 0, "supsim did not start (log %s)", S.log);
    char gw[1024], rw[1024];
    h_sim_supplier_yaml(&S, "gateway", "gateway", fields, "      callback_stale_s: 600\n", gw,
                        sizeof gw);
    h_sim_supplier_yaml(&S, "rewards", "rewards", fields,
                        "      auth: bearer\n      webhook_tolerance_s: 300\n", rw, sizeof rw);
    snprintf(
        BODY, sizeof BODY,
        "suppliers:\n%s%s"
        "products:\n"
        "  - sku: gw.topup\n    name: Top-up via gateway\n    brand: telco\n    category: telecom\n"
        "    delivery: recharge\n    face_value: \"50.00\"\n"
        "    offers:\n      - {supplier: gateway, supplier_sku: \"20001\", cost: \"49.00\"}\n"
        "  - sku: rw.topup\n    name: Top-up via rewards\n    brand: telco\n    category: telecom\n"
        "    delivery: recharge\n    face_value: \"50.00\"\n"
        "    offers:\n      - {supplier: rewards, supplier_sku: U20001, cost: \"49.00\"}\n",
        gw, rw);
    h_setup_custom(&D, BODY, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
}

/* query_max_delay_ms 1000 keeps the polling between callbacks short. */
static void start_both(void)
{
    start_with("3000",
               "    priority: 10\n    query_max_delay_ms: 1000\n    breaker_failures: 1000\n");
}

static void stop_both(void)
{
    h_ledger_matches_sim(&D, &S);
    h_stop_clean(&D); /* a clean exit is part of every test */
    h_cleanup(&D);
    h_sim_stop(&S);
}

/* ---- perkhub side -------------------------------------------------------------- */

static h_resp ops_view(long long id)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/orders/%lld", id);
    h_resp r = h_get(&D, path, "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    return r;
}

/* The ops view without what order queries touch while nothing moves (an
 * attempt's checks count, its next_check_at and updated_at, the order's
 * next_check_at): equal before and after a callback that must change nothing.
 * Caller json_decref's. */
static json_t *stable_view(long long id)
{
    h_resp r = ops_view(id);
    json_t *o = json_deep_copy(h_order_of(&r));
    h_resp_free(&r);
    json_object_del(o, "next_check_at");
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(o, "attempts"), i, a)
    {
        json_object_del(a, "checks");
        json_object_del(a, "next_check_at");
        json_object_del(a, "updated_at");
    }
    return o;
}

static json_t *full_view(long long id)
{
    h_resp r = ops_view(id);
    json_t *o = json_deep_copy(h_order_of(&r));
    h_resp_free(&r);
    return o;
}

typedef struct snapshot {
    json_t *view;
    long long last_event;
    int full; /* compare the full view (a final order: nothing moves by itself) */
} snapshot;

static snapshot snap(long long id, int full)
{
    snapshot s = {full ? full_view(id) : stable_view(id), h_last_event(&D), full};
    return s;
}

static void expect_unchanged(snapshot *s, long long id, const char *what)
{
    json_t *now = s->full ? full_view(id) : stable_view(id);
    char *a = json_dumps(s->view, JSON_SORT_KEYS), *b = json_dumps(now, JSON_SORT_KEYS);
    cr_assert(json_equal(s->view, now), "%s changed the order:\nbefore %s\nafter  %s", what, a, b);
    long long ev = h_last_event(&D);
    cr_assert_eq(ev, s->last_event, "%s appended events: last seq %lld -> %lld", what,
                 s->last_event, ev);
    free(a);
    free(b);
    json_decref(now);
    json_decref(s->view);
}

static const char *order_state(long long id)
{
    static char st[32];
    h_resp r = ops_view(id);
    snprintf(st, sizeof st, "%s", h_str(h_order_of(&r), "state"));
    h_resp_free(&r);
    return st;
}

static int count_events(long long id, const char *type)
{
    h_resp r = h_get(&D, "/v1/events?after=0&limit=1000", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    int n = h_events_count(r.json, id, type);
    h_resp_free(&r);
    return n;
}

/* The first attempt reached state *arg and carries the supplier's order id. */
static int attempt_is(json_t *o, void *arg)
{
    json_t *a = json_array_get(json_object_get(o, "attempts"), 0);
    const char *st = json_string_value(json_object_get(a, "state"));
    return st && !strcmp(st, arg) && json_is_string(json_object_get(a, "supplier_order_id"));
}

static int state_is(json_t *o, void *arg)
{
    return !strcmp(h_str(o, "state"), arg);
}

/* ---- simulator side --------------------------------------------------------------- */

/* The simulator's truth about our order id (its ref is "<uid>-<id>-<no>"):
 * the ref, the supplier's order id and the state, copied out. */
typedef struct truth {
    char ref[128];
    char supplier_order_id[64];
    char state[32];
    long long queries; /* counts.query_requests */
} truth;

static int truth_of(const char *protocol, long long id, truth *out)
{
    json_t *t = h_sim_truth(&S);
    size_t found;
    json_t *o = h_sim_truth_find(t, "orders", protocol, id, &found);
    if (o) {
        snprintf(out->ref, sizeof out->ref, "%s", h_str(o, "ref"));
        snprintf(out->supplier_order_id, sizeof out->supplier_order_id, "%s",
                 h_str(o, "supplier_order_id"));
        snprintf(out->state, sizeof out->state, "%s", h_str(o, "state"));
    }
    out->queries = h_int(json_object_get(t, "counts"), "query_requests");
    json_decref(t);
    return (int)found;
}

typedef struct truth_wait {
    const char *protocol;
    long long id;
    const char *state;
    truth t;
} truth_wait;

static int truth_is(void *arg)
{
    truth_wait *w = arg;
    return truth_of(w->protocol, w->id, &w->t) && !strcmp(w->t.state, w->state);
}

/* POST /_sim/callback; returns the receiver's statuses (and bodies) as the sim
 * reports them. Caller frees the response. */
static h_resp sim_callback(const char *ref, const char *mode, int copies, const char *url)
{
    json_t *q = json_pack("{s:s,s:s,s:i}", "ref", ref, "mode", mode, "copies", copies);
    if (url)
        json_object_set_new(q, "url", json_string(url));
    char *body = json_dumps(q, JSON_COMPACT);
    h_resp r = h_sim_req(&S, "POST", "/_sim/callback", body);
    free(body);
    json_decref(q);
    cr_assert_eq(r.status, 200, "/_sim/callback %s: %ld %s", mode, r.status, r.body);
    cr_assert_eq(json_array_size(json_object_get(r.json, "statuses")), (size_t)copies, "%s",
                 r.body);
    return r;
}

static long status_at(const h_resp *r, size_t i)
{
    return (long)json_integer_value(json_array_get(json_object_get(r->json, "statuses"), i));
}

static const char *body_at(const h_resp *r, size_t i)
{
    const char *b = json_string_value(json_array_get(json_object_get(r->json, "bodies"), i));
    return b ? b : "";
}

/* One callback of `mode` that perkhubd must refuse with `status` and `error`,
 * changing nothing. */
static void expect_refused(const proto *p, long long id, const char *ref, const char *mode,
                           long status, const char *error)
{
    snapshot s = snap(id, 0);
    h_resp r = sim_callback(ref, mode, 1, NULL);
    cr_assert_eq(status_at(&r, 0), status, "%s callback (%s): perkhub answered %ld %s", mode,
                 p->name, status_at(&r, 0), body_at(&r, 0));
    json_t *j = json_loads(body_at(&r, 0), 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(j, "error")), error, "%s: %s", mode,
                     body_at(&r, 0));
    json_decref(j);
    h_resp_free(&r);
    char what[64];
    snprintf(what, sizeof what, "a %s callback", mode);
    expect_unchanged(&s, id, what);
}

/* ---- callbacks crafted here: verified, but not about our order ------------------------ */

/* Runs argv with `in` on stdin; the last whitespace-separated word of its
 * output (the digest of `openssl dgst`) into out. */
static void digest(const char *const *argv, const char *in, char *out, size_t n)
{
    char *so = NULL, *se = NULL;
    int st = h_run(argv, NULL, in, strlen(in), &so, &se);
    cr_assert_eq(st, 0, "%s failed: %s", argv[0], se);
    size_t len = strlen(so);
    while (len && (so[len - 1] == '\n' || so[len - 1] == ' '))
        so[--len] = 0;
    const char *w = strrchr(so, ' ');
    snprintf(out, n, "%s", w ? w + 1 : so);
    free(so);
    free(se);
}

/* A gateway notify signed with the right secret (docs/protocols/gateway.md). */
static char *gw_notify(const char *ref, const char *supplier_order_id)
{
    char ts[32], signed_text[1024], sign[80];
    time_t t = time(NULL) + 8 * 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
    /* sorted keys: buy_num customer_order_no order_id order_price order_state product_id timestamp
     */
    snprintf(signed_text, sizeof signed_text,
             "buy_num=1&customer_order_no=%s&order_id=%s&order_price=49.00&order_state=success"
             "&product_id=20001&timestamp=%sgw-secret",
             ref, supplier_order_id, ts);
    const char *argv[] = {"/usr/bin/openssl", "dgst", "-md5", NULL};
    digest(argv, signed_text, sign, sizeof sign);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "order_id", supplier_order_id,
                          "customer_order_no", ref, "order_state", "success", "product_id", "20001",
                          "buy_num", "1", "order_price", "49.00", "timestamp", ts, "sign", sign);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

/* A rewards webhook and its X-Rewards-Signature header line. */
static char *rw_notify(const char *ref, const char *supplier_order_id, char *header, size_t hn)
{
    json_t *j = json_pack("{s:s,s:{s:s,s:s,s:s,s:i,s:s,s:n,s:i,s:s}}", "event", "order.completed",
                          "order", "order_id", supplier_order_id, "external_ref_id", ref, "utid",
                          "U20001", "quantity", 1, "status", "completed", "reason",
                          "amount_charged", 4900, "created_at", "2026-01-01T00:00:00Z");
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    long long t = (long long)time(NULL);
    size_t n = strlen(body) + 32;
    char *signed_text = malloc(n), mac[160];
    snprintf(signed_text, n, "%lld.%s", t, body);
    const char *argv[] = {"/usr/bin/openssl", "dgst", "-sha256", "-hmac", "rw-whsec", NULL};
    digest(argv, signed_text, mac, sizeof mac);
    free(signed_text);
    snprintf(header, hn, "X-Rewards-Signature: t=%lld,v1=%s", t, mac);
    return body;
}

/* POST body to perkhubd's callback endpoint of supplier, with one extra
 * header line (or NULL). */
static h_resp post_callback(const char *supplier, const char *body, const char *header)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/callbacks/%s", supplier);
    h_resp r;
    cr_assert(
        h_http_hdr(&D, "POST", path, NULL, "application/json", header, body, strlen(body), &r) == 0,
        "POST %s: no response", path);
    return r;
}

/* A correctly signed "succeeded" callback naming ref / supplier_order_id. */
static h_resp crafted(const proto *p, const char *ref, const char *supplier_order_id)
{
    char header[256];
    int gw = !strcmp(p->name, "gateway");
    char *body = gw ? gw_notify(ref, supplier_order_id)
                    : rw_notify(ref, supplier_order_id, header, sizeof header);
    h_resp r = post_callback(p->name, body, gw ? NULL : header);
    free(body);
    return r;
}

static void expect_mismatch(const proto *p, long long id, const char *ref,
                            const char *supplier_order_id, const char *what)
{
    snapshot s = snap(id, 1);
    h_resp r = crafted(p, ref, supplier_order_id);
    cr_assert_eq(r.status, 400, "%s (%s): %ld %s", what, p->name, r.status, r.body);
    cr_assert_str_eq(h_str(r.json, "error"), "callback_mismatch", "%s: %s", what, r.body);
    h_resp_free(&r);
    expect_unchanged(&s, id, what);
}

/* ---- the scenario ---------------------------------------------------------------------- */

/* Places the recharge and waits until the supplier has accepted it
 * (attempt processing, supplier order id known); returns the order id. */
static long long place_processing(const proto *p, truth *t)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"client_order_id\":\"cb-%s\",\"sku\":\"%s\",\"quantity\":1,\"account\":\"%s\"}",
             p->name, p->sku, ACCOUNT);
    h_resp r = h_post_json(&D, "/v1/orders", "mall-token", body);
    cr_assert_eq(r.status, 202, "%s", r.body);
    long long id = h_int(h_order_of(&r), "id");
    h_resp_free(&r);
    char what[96];
    snprintf(what, sizeof what, "the %s attempt becoming processing", p->name);
    json_decref(h_order_poll(&D, id, "ops-token", attempt_is, "processing", 10000, what));
    cr_assert_eq(truth_of(p->name, id, t), 1, "the simulator has no %s order for %lld", p->name,
                 id);
    cr_assert_str_eq(t->state, "processing", "the simulator's order is %s already", t->state);
    return id;
}

/* A legit notify while the supplier still says processing: acknowledged, and
 * the confirming query keeps the order processing. */
static void legit_while_processing(const proto *p, long long id, const truth *t0)
{
    h_resp r = sim_callback(t0->ref, "legit", 1, NULL);
    cr_assert_eq(status_at(&r, 0), 200, "legit (%s): %ld %s", p->name, status_at(&r, 0),
                 body_at(&r, 0));
    if (*p->ack_body)
        cr_assert_str_eq(body_at(&r, 0), p->ack_body, "the supplier's expected answer");
    h_resp_free(&r);
    /* a query follows (the callback asks for one now; polling may add more) */
    truth t;
    int64_t end = h_now_ms() + 5000;
    do
        truth_of(p->name, id, &t);
    while (t.queries <= t0->queries && h_now_ms() < end);
    cr_assert_gt(t.queries, t0->queries, "no order query after the legit callback");
    /* perkhub first, the truth second: if the truth is still processing now,
     * nothing can have told perkhub otherwise */
    char st[32];
    snprintf(st, sizeof st, "%s", order_state(id));
    truth_of(p->name, id, &t);
    cr_assert_str_eq(t.state, "processing", "the test was too slow: the simulator completed");
    cr_assert_str_eq(st, "processing",
                     "a callback moved the order to %s before the supplier "
                     "completed it",
                     st);
}

static void after_completion(const proto *p, long long id, const char *ref)
{
    truth_wait tw = {.protocol = p->name, .id = id, .state = "success"};
    cr_assert(h_wait_for(truth_is, &tw, 15000) == 0, "the simulator never completed %s", ref);
    h_resp r = sim_callback(ref, "legit", 10, NULL);
    for (size_t i = 0; i < 10; i++) {
        cr_assert_eq(status_at(&r, i), 200, "copy %zu: %ld %s", i, status_at(&r, i),
                     body_at(&r, i));
        if (*p->ack_body)
            cr_assert_str_eq(body_at(&r, i), p->ack_body, "copy %zu", i);
    }
    h_resp_free(&r);
    json_decref(h_order_poll(&D, id, "ops-token", state_is, "succeeded", 10000, "succeeding"));
    cr_assert_eq(count_events(id, "order.succeeded"), 1, "order.succeeded events for %lld", id);
    cr_assert_eq(count_events(id, "order.failed"), 0, "order.failed events for %lld", id);
    h_resp v = ops_view(id);
    json_t *a = json_object_get(h_order_of(&v), "attempts");
    cr_assert_eq(json_array_size(a), 1, "%s", v.body);
    cr_assert_str_eq(h_str(json_array_get(a, 0), "state"), "succeeded", "%s", v.body);
    h_resp_free(&v);
    truth t;
    truth_of(p->name, id, &t);
    json_t *tr = h_sim_truth(&S);
    json_t *counts = json_object_get(tr, "counts");
    char b[1024];
    cr_assert_eq(h_int(counts, "recharges_performed"), 1, "%s", h_dump(counts, b, sizeof b));
    cr_assert_eq(h_int(counts, "double_creates"), 0, "%s", h_dump(counts, b, sizeof b));
    json_decref(tr);

    /* a replay of the last legit notify after the final state */
    snapshot s = snap(id, 1);
    r = sim_callback(ref, "replay", 1, NULL);
    cr_assert_eq(status_at(&r, 0), 200, "replay: %ld %s", status_at(&r, 0), body_at(&r, 0));
    h_resp_free(&r);
    expect_unchanged(&s, id, "a replayed callback after the final state");
    cr_assert_eq(count_events(id, "order.succeeded"), 1);
}

static void not_ours(const proto *p, long long id, const truth *t)
{
    /* the crafting is right: the same signing with our true claims is accepted */
    snapshot s = snap(id, 1);
    h_resp r = crafted(p, t->ref, t->supplier_order_id);
    cr_assert_eq(r.status, 200, "a correctly signed callback of ours (%s): %ld %s", p->name,
                 r.status, r.body);
    h_resp_free(&r);
    expect_unchanged(&s, id, "a crafted callback after the final state");

    char ref[160];
    expect_mismatch(p, id, "notours-77-1", t->supplier_order_id, "a foreign order reference");
    /* our store's prefix, an order that does not exist */
    snprintf(ref, sizeof ref, "%.*s-999999-1", (int)(strchr(t->ref, '-') - t->ref), t->ref);
    expect_mismatch(p, id, ref, t->supplier_order_id, "a reference to no order");
    /* our order, another attempt */
    snprintf(ref, sizeof ref, "%.*s-%lld-2", (int)(strchr(t->ref, '-') - t->ref), t->ref, id);
    expect_mismatch(p, id, ref, t->supplier_order_id, "a reference to no attempt");
    /* our reference, another supplier order id */
    expect_mismatch(p, id, t->ref, "X99999999", "another supplier order id");
}

static void unknown_supplier(const proto *p, long long id, const truth *t)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/callbacks/nosuch", D.port);
    snapshot s = snap(id, 1);
    h_resp r = sim_callback(t->ref, "legit", 1, url);
    cr_assert_eq(status_at(&r, 0), 404, "to an unknown supplier: %ld %s", status_at(&r, 0),
                 body_at(&r, 0));
    h_resp_free(&r);
    expect_unchanged(&s, id, "a callback to an unknown supplier");
    /* a genuine notify of this supplier sent to the other one does not verify */
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/callbacks/%s", D.port, p->other);
    s = snap(id, 1);
    r = sim_callback(t->ref, "legit", 1, url);
    cr_assert(status_at(&r, 0) == 401 || status_at(&r, 0) == 400,
              "a %s notify at the %s endpoint: %ld %s", p->name, p->other, status_at(&r, 0),
              body_at(&r, 0));
    h_resp_free(&r);
    expect_unchanged(&s, id, "a callback to the wrong supplier");
}

static void run_protocol(const proto *p)
{
    start_both();
    truth t;
    long long id = place_processing(p, &t);
    expect_refused(p, id, t.ref, "forged", 401, "bad_signature");
    expect_refused(p, id, t.ref, "tampered", 401, "bad_signature");
    expect_refused(p, id, t.ref, "stale", 401, "stale");
    cr_assert_str_eq(order_state(id), "processing");
    legit_while_processing(p, id, &t);
    after_completion(p, id, t.ref);
    not_ours(p, id, &t);
    unknown_supplier(p, id, &t);
    cr_assert_eq(count_events(id, "order.succeeded"), 1, "order.succeeded events at the end");
    stop_both();
}

Test(callbacks, gateway_notifies)
{
    run_protocol(&GATEWAY);
}

Test(callbacks, rewards_webhooks)
{
    run_protocol(&REWARDS);
}

/* ---- replays (issue 10, defect 10) ------------------------------------------------ */

/* Milliseconds since the epoch of an RFC 3339 UTC time with milliseconds, as
 * the views write them ("2026-12-06T20:40:00.123Z"); -1 when it is not one. */
static long long view_ms(const char *s)
{
    struct tm tm = {0};
    int ms = 0;
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                     &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (long long)timegm(&tm) * 1000 + ms;
}

/* The first attempt has answered *arg order queries. */
static int checks_at_least(json_t *o, void *arg)
{
    json_t *a = json_array_get(json_object_get(o, "attempts"), 0);
    return json_integer_value(json_object_get(a, "checks")) >= *(int *)arg;
}

/* The supplier's health as GET /v1/suppliers shows it (caller json_decref's). */
static json_t *health_of(const char *id)
{
    h_resp r = h_get(&D, "/v1/suppliers", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *found = NULL, *s;
    size_t i;
    json_array_foreach(json_object_get(r.json, "suppliers"), i, s) if (!strcmp(h_str(s, "id"), id))
        found = json_incref(json_object_get(s, "health"));
    h_resp_free(&r);
    cr_assert_not_null(found, "no supplier %s in /v1/suppliers", id);
    return found;
}

/* 500 replays of one signed notify while the supplier still says processing
 * (the issue saw 211 extra exchanges, counted toward the breaker): the notify
 * and its replays bring one confirming order query in all, every copy is
 * acknowledged, and the breaker does not move. The attempt's own queries
 * have backed off first (four answered: the next is at least 8 s away, the
 * one after the confirming query 16 s), so only the callbacks can explain a
 * query in between; the test says so when it ran too slowly to tell. */
Test(callbacks, replayed_notifies_bring_one_query)
{
    enum { BURSTS = 10, COPIES = 50 };
    const proto *p = &GATEWAY;
    /* the recharge stays processing through the test; the attempt's own
     * queries back off up to a minute; the breaker as configured by default */
    start_with("120000", "    priority: 10\n    query_max_delay_ms: 60000\n");
    truth t0;
    long long id = place_processing(p, &t0);
    int checks = 4;
    json_t *o = h_order_poll(&D, id, "ops-token", checks_at_least, &checks, 30000,
                             "the attempt's own queries backing off");
    long long next_check = view_ms(h_str(o, "next_check_at"));
    checks = (int)h_int(json_array_get(json_object_get(o, "attempts"), 0), "checks");
    json_decref(o);
    cr_assert_gt(next_check, 0, "no next_check_at");
    json_t *h0 = health_of(p->name);
    truth t1;
    truth_of(p->name, id, &t1);

    h_resp r = sim_callback(t0.ref, "legit", 1, NULL);
    cr_assert_eq(status_at(&r, 0), 200, "legit: %ld %s", status_at(&r, 0), body_at(&r, 0));
    h_resp_free(&r);
    for (int b = 0; b < BURSTS; b++) {
        r = sim_callback(t0.ref, "replay", COPIES, NULL);
        for (size_t i = 0; i < COPIES; i++)
            cr_assert(status_at(&r, i) == 200 && !strcmp(body_at(&r, i), p->ack_body),
                      "replay %d.%zu: %ld %s", b, i, status_at(&r, i), body_at(&r, i));
        h_resp_free(&r);
    }
    /* every callback has been answered; their queries (if any) are asked for:
     * wait for the one that must come, then look at the count */
    truth t2;
    int64_t end = h_now_ms() + 5000;
    do
        truth_of(p->name, id, &t2);
    while (t2.queries <= t1.queries && h_now_ms() < end);
    cr_assert_lt(h_wall_ms(), next_check,
                 "the test was too slow: the attempt's own query was due before the replays were "
                 "over");
    json_t *h1 = health_of(p->name);
    truth_of(p->name, id, &t2);
    char a[512], b[512];
    cr_assert_eq(t2.queries - t1.queries, 1,
                 "one notify and %d replays of it brought %lld order queries (want 1)",
                 BURSTS * COPIES, t2.queries - t1.queries);
    json_t *x0 = json_object_get(h0, "exchanges"), *x1 = json_object_get(h1, "exchanges");
    cr_assert_eq(h_int(x1, "sent") - h_int(x0, "sent"), 1, "exchanges: before %s, after %s",
                 h_dump(h0, a, sizeof a), h_dump(h1, b, sizeof b));
    cr_assert_str_eq(h_str(h1, "breaker"), "closed", "%s", h_dump(h1, b, sizeof b));
    cr_assert_eq(h_int(h1, "consecutive_failures"), h_int(h0, "consecutive_failures"),
                 "the breaker moved: before %s, after %s", h_dump(h0, a, sizeof a),
                 h_dump(h1, b, sizeof b));
    cr_assert_str_eq(order_state(id), "processing", "callbacks moved the order");
    json_decref(h0);
    json_decref(h1);
    /* stopped, perkhubd has finished every exchange it started: a query some
     * late callback asked for would be counted by now, if the attempt's own
     * next query (rescheduled by the confirming one's answer) is not due yet */
    checks++;
    o = h_order_poll(&D, id, "ops-token", checks_at_least, &checks, 10000,
                     "the confirming query's answer being stored");
    next_check = view_ms(h_str(o, "next_check_at"));
    json_decref(o);
    h_stop_clean(&D);
    truth_of(p->name, id, &t2);
    cr_assert_lt(h_wall_ms(), next_check, "the test was too slow to tell");
    cr_assert_eq(t2.queries - t1.queries, 1, "order queries after the replays: %lld (want 1)",
                 t2.queries - t1.queries);
    fprintf(stderr,
            "callbacks: one notify and %d replays of it, %lld order query, breaker closed\n",
            BURSTS * COPIES, t2.queries - t1.queries);
    h_cleanup(&D);
    h_sim_stop(&S);
}
