/*
 * The sandbox supplier through perkhubd, end to end: every magic recharge
 * account (docs/sandbox.md) seen from the HTTP API — at once, refused, timed
 * out then resolved by order queries, slow — card codes delivered by the
 * supplier and shown only to their owner, a refused card order, a card order
 * that times out, idempotent replays that never make a second attempt, the
 * recharge account masked everywhere (responses, events, log), and an unknown
 * recharge that survives kill -9 and still resolves with exactly one attempt
 * (docs/design.md rule 2 across a crash).
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
}

TestSuite(sandbox, .fini = teardown);

/* settle_ms 1500: the "later" outcomes settle 1.5 s after the attempt; slow_ms
 * 800: the slow answer and the dropped connection take 0.8 s. The breaker is
 * set out of reach: timeouts are what these tests provoke on purpose. */
static const char *const SBX_BODY =
    "suppliers:\n"
    "  - id: sandbox\n    plugin: sandbox\n    priority: 10\n"
    "    query_max_delay_ms: 500\n    breaker_failures: 1000\n"
    "    config:\n      settle_ms: 1500\n      slow_ms: 800\n"
    "products:\n"
    "  - sku: sbx.topup\n    name: Sandbox top-up\n    brand: sandbox\n    category: telecom\n"
    "    delivery: recharge\n    face_value: \"50.00\"\n"
    "    offers:\n      - {supplier: sandbox, supplier_sku: sandbox.recharge, cost: \"49.00\"}\n"
    "  - sku: sbx.card\n    name: Sandbox card\n    brand: sandbox\n    category: test\n"
    "    delivery: card_code\n    face_value: \"30.00\"\n"
    "    offers:\n      - {supplier: sandbox, supplier_sku: sandbox.card, cost: \"28.00\"}\n"
    "  - sku: sbx.card.out\n    name: Sandbox card (out)\n    brand: sandbox\n    category: test\n"
    "    delivery: card_code\n    face_value: \"30.00\"\n"
    "    offers:\n      - {supplier: sandbox, supplier_sku: sandbox.card.out, cost: \"28.00\"}\n"
    "  - sku: sbx.card.timeout\n    name: Sandbox card (timeout)\n    brand: sandbox\n"
    "    category: test\n    delivery: card_code\n    face_value: \"30.00\"\n"
    "    offers:\n      - {supplier: sandbox, supplier_sku: sandbox.card.timeout, cost: "
    "\"28.00\"}\n";

static void start_daemon(void)
{
    h_setup_custom(&D, SBX_BODY, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
}

static void stop_daemon(void)
{
    h_stop_clean(&D); /* a clean exit is part of every test */
    h_cleanup(&D);
}

/* ---- requests -------------------------------------------------------------- */

/* POST /v1/orders; account NULL for cards, wait < 0 to leave it out. */
static h_resp place(const char *token, const char *coid, const char *sku, int qty,
                    const char *account, int wait)
{
    char body[512], acc[96] = "", w[32] = "";
    if (account)
        snprintf(acc, sizeof acc, ",\"account\":\"%s\"", account);
    if (wait >= 0)
        snprintf(w, sizeof w, ",\"wait\":%d", wait);
    snprintf(body, sizeof body, "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"quantity\":%d%s%s}",
             coid, sku, qty, acc, w);
    return h_post_json(&D, "/v1/orders", token, body);
}

static void expect_status(const h_resp *r, long status)
{
    cr_assert_eq(r->status, status, "expected %ld, got %ld: %s", status, r->status, r->body);
}

static long long order_id(const h_resp *r)
{
    return h_int(h_order_of(r), "id");
}

static const char *state_of(const h_resp *r)
{
    return h_str(h_order_of(r), "state");
}

static h_resp get_order(long long id, const char *token)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/orders/%lld", id);
    return h_get(&D, path, token);
}

/* ---- waiting on an order's state --------------------------------------------- */

typedef struct state_wait {
    long long id;
    const char *want;
    char last[256]; /* the last body seen, for the failure message */
} state_wait;

static int reached(void *arg)
{
    state_wait *w = arg;
    h_resp r = get_order(w->id, "mall-token");
    json_t *o = json_object_get(r.json, "order");
    const char *st = json_string_value(json_object_get(o, "state"));
    int ok = st && strcmp(st, w->want) == 0;
    snprintf(w->last, sizeof w->last, "%s", r.body);
    h_resp_free(&r);
    return ok;
}

/* Waits until order id shows state `want` to its owner; returns that view. */
static h_resp wait_state(long long id, const char *want, int timeout_ms)
{
    state_wait w = {.id = id, .want = want};
    cr_assert(h_wait_for(reached, &w, timeout_ms) == 0, "order %lld never became %s; last: %s", id,
              want, w.last);
    return get_order(id, "mall-token");
}

/* ---- the ops view and the event feed ------------------------------------------ */

static json_t *attempts_of(const h_resp *ops)
{
    json_t *a = json_object_get(h_order_of(ops), "attempts");
    cr_assert(json_is_array(a), "no attempts in the ops view: %s", ops->body);
    return a;
}

/* Exactly one attempt, to the sandbox, in state `state`. */
static void expect_one_attempt(long long id, const char *state)
{
    h_resp ops = get_order(id, "ops-token");
    expect_status(&ops, 200);
    json_t *a = attempts_of(&ops);
    cr_assert_eq(json_array_size(a), 1, "order %lld: %zu attempts: %s", id, json_array_size(a),
                 ops.body);
    json_t *first = json_array_get(a, 0);
    cr_assert_str_eq(h_str(first, "supplier"), "sandbox", "%s", ops.body);
    cr_assert_str_eq(h_str(first, "state"), state, "%s", ops.body);
    cr_assert(json_object_get(h_order_of(&ops), "codes") == NULL, "ops sees codes: %s", ops.body);
    h_resp_free(&ops);
}

/* The whole event feed (tests stay far below 1000 events). */
static h_resp events_all(void)
{
    h_resp r = h_get(&D, "/v1/events?after=0&limit=1000", "ops-token");
    expect_status(&r, 200);
    cr_assert(json_is_array(json_object_get(r.json, "events")), "%s", r.body);
    return r;
}

static void expect_masked(const h_resp *r, const char *masked)
{
    const char *acc = h_str(h_order_of(r), "account");
    cr_assert_str_eq(acc, masked, "%s", r->body);
}

/* ---- recharges ------------------------------------------------------------------ */

Test(sandbox, recharge_succeeds_at_once_and_slowly)
{
    start_daemon();
    /* 13800000001 with wait: final in the answer */
    h_resp r = place("mall-token", "ok-wait", "sbx.topup", 1, "13800000001", 5);
    expect_status(&r, 201);
    cr_assert_str_eq(state_of(&r), "succeeded", "%s", r.body);
    cr_assert_str_eq(h_str(h_order_of(&r), "source"), "supplier", "%s", r.body);
    cr_assert_str_eq(h_str(h_order_of(&r), "delivery"), "recharge", "%s", r.body);
    expect_masked(&r, "138****0001");
    cr_assert(!json_object_get(h_order_of(&r), "next_check_at"), "final with next_check_at: %s",
              r.body);
    expect_one_attempt(order_id(&r), "succeeded");
    h_resp_free(&r);

    /* without wait: 202 while with the supplier, then succeeded */
    r = place("mall-token", "ok-nowait", "sbx.topup", 1, "13800000001", -1);
    expect_status(&r, 202);
    const char *st = state_of(&r);
    cr_assert(!strcmp(st, "processing") || !strcmp(st, "unknown"), "202 with state %s", st);
    long long id = order_id(&r);
    h_resp_free(&r);
    r = wait_state(id, "succeeded", 5000);
    expect_masked(&r, "138****0001");
    h_resp_free(&r);
    expect_one_attempt(id, "succeeded");

    /* 13800000005: answered after slow_ms; wait covers it */
    int64_t t0 = h_now_ms();
    r = place("mall-token", "slow-wait", "sbx.topup", 1, "13800000005", 5);
    int64_t took = h_now_ms() - t0;
    expect_status(&r, 201);
    cr_assert_str_eq(state_of(&r), "succeeded", "%s", r.body);
    cr_assert_geq(took, 700, "a slow (800 ms) answer came back after %lld ms", (long long)took);
    expect_one_attempt(order_id(&r), "succeeded");
    h_resp_free(&r);

    /* wait 0: not waited for */
    t0 = h_now_ms();
    r = place("mall-token", "slow-nowait", "sbx.topup", 1, "13800000005", 0);
    took = h_now_ms() - t0;
    expect_status(&r, 202);
    cr_assert_str_eq(state_of(&r), "processing", "%s", r.body);
    cr_assert_lt(took, 700, "wait 0 took %lld ms: it waited for the slow answer", (long long)took);
    id = order_id(&r);
    h_resp_free(&r);
    r = wait_state(id, "succeeded", 5000);
    h_resp_free(&r);
    stop_daemon();
}

Test(sandbox, recharge_refused_fails_with_reason)
{
    start_daemon();
    h_resp r = place("mall-token", "bad-wait", "sbx.topup", 1, "13800000002", 5);
    expect_status(&r, 201);
    cr_assert_str_eq(state_of(&r), "failed", "%s", r.body);
    cr_assert_str_eq(h_str(h_order_of(&r), "reason"), "invalid_account", "%s", r.body);
    expect_masked(&r, "138****0002");
    long long id = order_id(&r);
    h_resp_free(&r);
    expect_one_attempt(id, "failed");

    r = place("mall-token", "bad-nowait", "sbx.topup", 1, "13800000002", -1);
    expect_status(&r, 202);
    id = order_id(&r);
    h_resp_free(&r);
    r = wait_state(id, "failed", 5000);
    cr_assert_str_eq(h_str(h_order_of(&r), "reason"), "invalid_account", "%s", r.body);
    h_resp_free(&r);
    h_resp ev = events_all();
    cr_assert_eq(h_events_count(ev.json, id, "order.failed"), 1, "%s", ev.body);
    cr_assert_eq(h_events_count(ev.json, id, "order.succeeded"), 0, "%s", ev.body);
    h_resp_free(&ev);
    stop_daemon();
}

/* Orders to watch until each has been seen `unknown` by its owner. The window
 * is short (the sandbox's query_delay_ms, 200 ms, before the first query says
 * processing), so every order is polled in the same loop. */
typedef struct unknown_watch {
    size_t n;
    long long id[4];
    char seen[4][2048]; /* the owner's view while unknown; "" until then */
} unknown_watch;

static int all_seen_unknown(void *arg)
{
    unknown_watch *w = arg;
    size_t done = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (w->seen[i][0]) {
            done++;
            continue;
        }
        h_resp r = get_order(w->id[i], "mall-token");
        const char *st =
            json_string_value(json_object_get(json_object_get(r.json, "order"), "state"));
        if (st && !strcmp(st, "unknown")) {
            snprintf(w->seen[i], sizeof w->seen[i], "%s", r.body);
            done++;
        }
        h_resp_free(&r);
    }
    return done == w->n;
}

/* Waits until every watched order was seen unknown, each with a reason and a
 * next_check_at (the scheduled resolution). */
static void expect_unknown_seen(unknown_watch *w)
{
    cr_assert(h_wait_for(all_seen_unknown, w, 8000) == 0,
              "an order was never seen unknown (first: %s)", w->seen[0]);
    for (size_t i = 0; i < w->n; i++) {
        json_t *j = json_loads(w->seen[i], 0, NULL);
        json_t *o = json_object_get(j, "order");
        const char *reason = json_string_value(json_object_get(o, "reason"));
        const char *next = json_string_value(json_object_get(o, "next_check_at"));
        cr_assert(reason && *reason, "unknown without a reason: %s", w->seen[i]);
        cr_assert(next && strlen(next) >= 20 && next[4] == '-' && next[10] == 'T',
                  "unknown without an RFC 3339 next_check_at: %s", w->seen[i]);
        json_decref(j);
    }
}

/* Every body the test saw, the event feed and the daemon log: the account in
 * full never appears. */
static void expect_account_hidden(const char *account, const char *masked,
                                  const char *const *bodies, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cr_assert(!strstr(bodies[i], account), "a response carries %s: %s", account, bodies[i]);
    h_resp ev = events_all();
    cr_assert(!strstr(ev.body, account), "the event feed carries %s", account);
    cr_assert(!strstr(ev.body, masked), "the event feed carries the masked account %s", masked);
    h_resp_free(&ev);
    long hits = h_file_count(D.log, account);
    cr_assert_eq(hits, 0, "the daemon log (%s) carries %s %ld times", D.log, account, hits);
}

Test(sandbox, recharge_unknown_resolved_by_queries_and_account_never_shown)
{
    start_daemon();
    h_resp ok = place("mall-token", "hang-ok", "sbx.topup", 1, "13800000003", -1);
    h_resp bad = place("mall-token", "hang-fail", "sbx.topup", 1, "13800000004", -1);
    expect_status(&ok, 202);
    expect_status(&bad, 202);
    long long ok_id = order_id(&ok), bad_id = order_id(&bad);
    expect_masked(&ok, "138****0003");

    unknown_watch w = {.n = 2, .id = {ok_id, bad_id}};
    expect_unknown_seen(&w);

    h_resp done_ok = wait_state(ok_id, "succeeded", 10000);
    h_resp done_bad = wait_state(bad_id, "failed", 10000);
    expect_masked(&done_ok, "138****0003");
    expect_masked(&done_bad, "138****0004");
    cr_assert_str_eq(h_str(h_order_of(&done_bad), "reason"), "order_failed", "%s", done_bad.body);
    cr_assert(!json_object_get(h_order_of(&done_ok), "reason"), "%s", done_ok.body);
    expect_one_attempt(ok_id, "succeeded");
    expect_one_attempt(bad_id, "failed");

    h_resp ev = events_all();
    cr_assert_eq(h_events_count(ev.json, ok_id, "order.unknown"), 1, "%s", ev.body);
    cr_assert_eq(h_events_count(ev.json, ok_id, "order.succeeded"), 1, "%s", ev.body);
    cr_assert_eq(h_events_count(ev.json, bad_id, "order.unknown"), 1, "%s", ev.body);
    cr_assert_eq(h_events_count(ev.json, bad_id, "order.failed"), 1, "%s", ev.body);
    h_resp_free(&ev);

    /* reads of every kind, then the secrecy check over all of it */
    h_resp ops = get_order(ok_id, "ops-token");
    h_resp list = h_get(&D, "/v1/orders?limit=100", "mall-token");
    h_resp ops_list = h_get(&D, "/v1/orders?limit=100", "ops-token");
    h_resp by_coid = h_get(&D, "/v1/orders?client_order_id=hang-ok", "mall-token");
    expect_status(&by_coid, 200);
    expect_masked(&by_coid, "138****0003");
    h_resp replay = place("mall-token", "hang-ok", "sbx.topup", 1, "13800000003", -1);
    expect_status(&replay, 200);
    const char *bodies[] = {ok.body,   w.seen[0],     done_ok.body, ops.body,
                            list.body, ops_list.body, by_coid.body, replay.body};
    expect_account_hidden("13800000003", "138****0003", bodies, sizeof bodies / sizeof *bodies);
    const char *bodies4[] = {bad.body, w.seen[1], done_bad.body};
    expect_account_hidden("13800000004", "138****0004", bodies4, 3);

    h_resp *all[] = {&ok, &bad, &done_ok, &done_bad, &ops, &list, &ops_list, &by_coid, &replay};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        h_resp_free(all[i]);
    stop_daemon();
}

/* ---- card codes ------------------------------------------------------------------ */

static json_t *lookup(const char *token, const char *code, h_resp *out)
{
    json_t *q = json_pack("{s:s}", "code", code);
    char *body = json_dumps(q, JSON_COMPACT);
    *out = h_post_json(&D, "/v1/codes/lookup", token, body);
    free(body);
    json_decref(q);
    expect_status(out, 200);
    json_t *res = json_array_get(json_object_get(out->json, "results"), 0);
    cr_assert(json_is_object(res), "lookup: no result in %s", out->body);
    return res;
}

Test(sandbox, card_codes_from_the_supplier_belong_to_their_owner)
{
    start_daemon();
    h_resp r = place("mall-token", "cards-3", "sbx.card", 3, NULL, 5);
    expect_status(&r, 201);
    cr_assert_str_eq(state_of(&r), "succeeded", "%s", r.body);
    cr_assert_str_eq(h_str(h_order_of(&r), "source"), "supplier", "%s", r.body);
    long long id = order_id(&r);
    json_t *codes = json_object_get(h_order_of(&r), "codes");
    cr_assert_eq(json_array_size(codes), 3, "%s", r.body);
    char code[3][64];
    for (size_t i = 0; i < 3; i++) {
        json_t *c = json_array_get(codes, i);
        snprintf(code[i], sizeof code[i], "%s", h_str(c, "code"));
        cr_assert(!strncmp(code[i], "SBX-", 4) && strlen(code[i]) == 20, "code %zu: %s", i,
                  code[i]);
        cr_assert_str_eq(h_str(c, "state"), "issued", "%s", r.body);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(code[i], code[j], "code %zu repeats code %zu", i, j);
    }
    h_resp_free(&r);
    expect_one_attempt(id, "succeeded");

    /* the owner's GET shows the same codes */
    h_resp own = get_order(id, "mall-token");
    expect_status(&own, 200);
    for (size_t i = 0; i < 3; i++)
        cr_assert(strstr(own.body, code[i]), "GET by the owner lacks code %zu", i);
    h_resp_free(&own);

    for (size_t i = 0; i < 3; i++) {
        h_resp lr;
        json_t *res = lookup("mall-token", code[i], &lr);
        cr_assert_str_eq(h_str(res, "diagnosis"), "issued", "%s", lr.body);
        cr_assert_eq(h_int(res, "order_id"), id, "%s", lr.body);
        cr_assert_str_eq(h_str(res, "client_order_id"), "cards-3", "%s", lr.body);
        h_resp_free(&lr);
        /* another client's support lookup learns nothing */
        json_t *other = lookup("other-token", code[i], &lr);
        cr_assert_str_eq(h_str(other, "diagnosis"), "not_found", "%s", lr.body);
        cr_assert(!strstr(lr.body, "cards-3"), "%s", lr.body);
        h_resp_free(&lr);
    }

    h_resp other = get_order(id, "other-token");
    expect_status(&other, 404);
    for (size_t i = 0; i < 3; i++)
        cr_assert(!strstr(other.body, code[i]), "another client sees a code");
    h_resp_free(&other);
    h_resp ops = get_order(id, "ops-token");
    for (size_t i = 0; i < 3; i++)
        cr_assert(!strstr(ops.body, code[i]), "ops sees a code: %s", ops.body);
    h_resp_free(&ops);
    h_resp ev = events_all();
    for (size_t i = 0; i < 3; i++) {
        cr_assert(!strstr(ev.body, code[i]), "an event carries a code");
        cr_assert_eq(h_file_count(D.log, code[i]), 0, "the log carries code %zu", i);
    }
    h_resp_free(&ev);
    stop_daemon();
}

Test(sandbox, card_refused_by_the_supplier_fails_out_of_stock)
{
    start_daemon();
    h_resp r = place("mall-token", "out-wait", "sbx.card.out", 1, NULL, 5);
    expect_status(&r, 201);
    cr_assert_str_eq(state_of(&r), "failed", "%s", r.body);
    cr_assert_str_eq(h_str(h_order_of(&r), "reason"), "out_of_stock", "%s", r.body);
    json_t *codes = json_object_get(h_order_of(&r), "codes");
    cr_assert(!codes || json_array_size(codes) == 0, "a failed order has codes: %s", r.body);
    expect_one_attempt(order_id(&r), "failed");
    h_resp_free(&r);

    r = place("mall-token", "out-nowait", "sbx.card.out", 1, NULL, -1);
    expect_status(&r, 202);
    long long id = order_id(&r);
    h_resp_free(&r);
    r = wait_state(id, "failed", 5000);
    cr_assert_str_eq(h_str(h_order_of(&r), "reason"), "out_of_stock", "%s", r.body);
    h_resp_free(&r);
    /* a replay returns the failed order, not a new try */
    r = place("mall-token", "out-nowait", "sbx.card.out", 1, NULL, -1);
    expect_status(&r, 200);
    cr_assert_eq(order_id(&r), id, "%s", r.body);
    cr_assert_str_eq(state_of(&r), "failed", "%s", r.body);
    h_resp_free(&r);
    expect_one_attempt(id, "failed");
    stop_daemon();
}

Test(sandbox, card_timeout_resolved_with_codes_by_queries)
{
    start_daemon();
    h_resp r = place("mall-token", "card-hang", "sbx.card.timeout", 2, NULL, -1);
    expect_status(&r, 202);
    long long id = order_id(&r);
    h_resp_free(&r);
    unknown_watch w = {.n = 1, .id = {id}};
    expect_unknown_seen(&w);
    cr_assert(!strstr(w.seen[0], "SBX-"), "an unknown order shows codes: %s", w.seen[0]);
    r = wait_state(id, "succeeded", 10000);
    json_t *codes = json_object_get(h_order_of(&r), "codes");
    cr_assert_eq(json_array_size(codes), 2, "%s", r.body);
    for (size_t i = 0; i < 2; i++)
        cr_assert(!strncmp(h_str(json_array_get(codes, i), "code"), "SBX-", 4), "%s", r.body);
    h_resp_free(&r);
    expect_one_attempt(id, "succeeded");
    h_resp ev = events_all();
    cr_assert_eq(h_events_count(ev.json, id, "order.unknown"), 1, "%s", ev.body);
    cr_assert_eq(h_events_count(ev.json, id, "order.succeeded"), 1, "%s", ev.body);
    h_resp_free(&ev);
    stop_daemon();
}

/* ---- idempotency ---------------------------------------------------------------- */

static void expect_replay(const h_resp *r, long long id)
{
    char buf[32];
    expect_status(r, 200);
    cr_assert_eq(order_id(r), id, "a replay names another order: %s", r->body);
    const char *h = h_header(r, "Idempotent-Replay", buf, sizeof buf);
    cr_assert(h && !strcmp(h, "true"), "Idempotent-Replay: %s", h ? h : "(missing)");
}

Test(sandbox, replay_returns_the_same_order_and_never_a_second_attempt)
{
    start_daemon();
    /* an order still with the supplier (unknown, then processing) */
    h_resp first = place("mall-token", "rp-hang", "sbx.topup", 1, "13800000003", -1);
    expect_status(&first, 202);
    long long id = order_id(&first);
    h_resp_free(&first);
    for (int i = 0; i < 3; i++) {
        h_resp r = place("mall-token", "rp-hang", "sbx.topup", 1, "13800000003", -1);
        expect_replay(&r, id);
        cr_assert_str_neq(state_of(&r), "succeeded", "resolved before settle_ms: %s", r.body);
        h_resp_free(&r);
    }
    /* the same id with another account is another request */
    h_resp c = place("mall-token", "rp-hang", "sbx.topup", 1, "13800000001", -1);
    expect_status(&c, 409);
    cr_assert_str_eq(h_str(c.json, "error"), "conflict", "%s", c.body);
    cr_assert(!strstr(c.body, "13800000001") && !strstr(c.body, "13800000003"), "%s", c.body);
    h_resp_free(&c);
    /* a replay with wait waits for the same order */
    h_resp w = place("mall-token", "rp-hang", "sbx.topup", 1, "13800000003", 10);
    expect_replay(&w, id);
    cr_assert_str_eq(state_of(&w), "succeeded", "%s", w.body);
    h_resp_free(&w);
    h_resp after = place("mall-token", "rp-hang", "sbx.topup", 1, "13800000003", -1);
    expect_replay(&after, id);
    cr_assert_str_eq(state_of(&after), "succeeded", "%s", after.body);
    h_resp_free(&after);
    expect_one_attempt(id, "succeeded");

    /* a final one at once, replayed: the same order */
    h_resp now = place("mall-token", "rp-now", "sbx.topup", 1, "13800000001", 5);
    expect_status(&now, 201);
    long long id2 = order_id(&now);
    h_resp_free(&now);
    h_resp again = place("mall-token", "rp-now", "sbx.topup", 1, "13800000001", 5);
    expect_replay(&again, id2);
    cr_assert_str_eq(state_of(&again), "succeeded", "%s", again.body);
    h_resp_free(&again);
    expect_one_attempt(id2, "succeeded");
    /* another client may use the same client_order_id: its own order */
    h_resp other = place("other-token", "rp-now", "sbx.topup", 1, "13800000001", 5);
    expect_status(&other, 201);
    cr_assert_neq(order_id(&other), id2, "%s", other.body);
    h_resp_free(&other);

    h_resp ev = events_all();
    cr_assert_eq(h_events_count(ev.json, id, "order.succeeded"), 1, "%s", ev.body);
    cr_assert_eq(h_events_count(ev.json, id, "order.accepted"), 1, "%s", ev.body);
    cr_assert_eq(h_events_count(ev.json, id2, "order.accepted"), 1, "%s", ev.body);
    h_resp_free(&ev);
    stop_daemon();
}

/* ---- rule 2 across a crash --------------------------------------------------------- */

Test(sandbox, unknown_recharge_survives_kill9_with_one_attempt)
{
    start_daemon();
    h_resp r = place("mall-token", "crash-hang", "sbx.topup", 1, "13800000003", -1);
    expect_status(&r, 202);
    long long id = order_id(&r);
    h_resp_free(&r);
    /* killed while the recharge is still "in the air" (the sandbox drops it at 800 ms) */
    cr_assert_eq(h_stop(&D, SIGKILL), 128 + SIGKILL);
    cr_assert(h_start(&D) == 0, "perkhubd did not restart on its data (log %s)", D.log);

    h_resp seen = get_order(id, "mall-token");
    expect_status(&seen, 200);
    cr_assert_str_neq(state_of(&seen), "failed", "%s", seen.body);
    h_resp_free(&seen);
    h_resp done = wait_state(id, "succeeded", 15000);
    expect_masked(&done, "138****0003");
    h_resp_free(&done);
    expect_one_attempt(id, "succeeded");
    /* the recharge request left at most once, before the kill; after it only queries */
    long sent = h_file_count(D.log, "op=recharge");
    cr_assert_leq(sent, 1, "the recharge was exchanged %ld times (log %s)", sent, D.log);
    cr_assert_geq(h_file_count(D.log, "op=order_query"), 1, "no order query in %s", D.log);
    cr_assert_eq(h_file_count(D.log, "13800000003"), 0, "the log carries the account");
    h_resp ev = events_all();
    cr_assert_eq(h_events_count(ev.json, id, "order.succeeded"), 1, "%s", ev.body);
    cr_assert_eq(h_events_count(ev.json, id, "order.failed"), 0, "%s", ev.body);
    h_resp_free(&ev);
    /* a replay after the restart: the same order */
    h_resp again = place("mall-token", "crash-hang", "sbx.topup", 1, "13800000003", -1);
    expect_replay(&again, id);
    h_resp_free(&again);
    stop_daemon();
}
