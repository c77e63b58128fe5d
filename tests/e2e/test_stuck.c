/*
 * test_stuck.c — issue 11, found 3: an order the supplier never decides was
 * queried for ever, with no ceiling beyond the young one, no escalation and no
 * way for ops to settle it.
 *
 * supsim keeps a recharge to 13900000003 processing until told otherwise
 * (POST /_sim/complete). Supplier "rw" (rewards protocol) has stuck_after_s 2,
 * query_max_delay_ms 200 and stuck_query_max_delay_s 1, so within seconds:
 *   - the order is escalated exactly once (one order.stuck, stuck_since in the
 *     view, listed by ?stuck=true, counted by /v1/health and /metrics), and a
 *     kill -9 and restart neither repeats nor loses it;
 *   - its queries back off to the stuck ceiling: the stored next_check_at is
 *     exactly 1 s after the attempt's last update, and stays there;
 *   - ops settle it (succeeded with the supplier's charge, or failed): the
 *     order follows, the mall's view says who settled it, nothing more goes to
 *     the supplier; settling again, or an order that is not stuck, is a 409
 *     naming its state; bad input is a 400 naming the field;
 *   - a supplier answer after a settle changes nothing, and a settle after the
 *     supplier's answer is refused.
 * Supplier "slow" (same simulator, default stuck_after_s of an hour) holds an
 * order that is processing but not stuck.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

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

TestSuite(stuck, .fini = teardown);

/* rw_fields: extra lines of supplier rw (NULL: none). */
static void start_with(const char *rw_fields)
{
    cr_assert(h_sim_start(&S, NULL) == 0, "supsim did not start");
    char rw[1024], slow[1024], fields[512];
    snprintf(fields, sizeof fields,
             "    query_max_delay_ms: 200\n    stuck_after_s: 2\n"
             "    stuck_query_max_delay_s: 1\n%s",
             rw_fields ? rw_fields : "");
    h_sim_supplier_yaml(&S, "rw", "rewards", fields,
                        "      auth: bearer\n      webhook_tolerance_s: 300\n", rw, sizeof rw);
    h_sim_supplier_yaml(&S, "slow", "rewards", "    query_max_delay_ms: 200\n",
                        "      auth: bearer\n      webhook_tolerance_s: 300\n", slow, sizeof slow);
    snprintf(BODY, sizeof BODY,
             "suppliers:\n%s%s"
             "products:\n"
             "  - sku: st.topup\n    name: Top-up\n    brand: telco\n    category: telecom\n"
             "    delivery: recharge\n    face_value: \"50.00\"\n"
             "    offers:\n      - {supplier: rw, supplier_sku: U20001, cost: \"49.00\"}\n"
             "  - sku: slow.topup\n    name: Slow top-up\n    brand: telco\n"
             "    category: telecom\n    delivery: recharge\n    face_value: \"50.00\"\n"
             "    offers:\n      - {supplier: slow, supplier_sku: U20001, cost: \"49.00\"}\n",
             rw, slow);
    h_setup_custom(&D, BODY, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
}

static void start(void)
{
    start_with(NULL);
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

/* A recharge to account; 202 processing. Returns its id. */
static long long place(const char *coid, const char *sku, const char *account)
{
    char body[256];
    snprintf(body, sizeof body, "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"account\":\"%s\"}",
             coid, sku, account);
    h_resp r = h_post_json(&D, "/v1/orders", "mall-token", body);
    cr_assert_eq(r.status, 202, "POST /v1/orders %s: %ld %s", coid, r.status, r.body);
    long long id = h_int(h_order_of(&r), "id");
    h_resp_free(&r);
    return id;
}

/* RFC 3339 with milliseconds ("2026-12-06T18:40:00.123Z") to ms. */
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

static json_t *last_attempt(json_t *o)
{
    json_t *arr = json_object_get(o, "attempts");
    cr_assert(json_array_size(arr) > 0, "no attempts");
    return json_array_get(arr, json_array_size(arr) - 1);
}

static int is_stuck(json_t *o, void *arg)
{
    (void)arg;
    return json_is_string(json_object_get(o, "stuck_since"));
}

/* The ceiling: the stored next check is exactly stuck_query_max_delay_s
 * after the attempt's last update (the decision's own clock). */
static int at_ceiling(json_t *o, void *arg)
{
    (void)arg;
    json_t *a = last_attempt(o);
    const char *next = json_string_value(json_object_get(a, "next_check_at"));
    return next && ms_of(next) - ms_of(h_str(a, "updated_at")) == 1000;
}

typedef struct checks_arg {
    long long more_than;
} checks_arg;

static int checked_more(json_t *o, void *arg)
{
    return h_int(last_attempt(o), "checks") > ((checks_arg *)arg)->more_than;
}

static int events_of(long long id, const char *type)
{
    h_resp r = h_get(&D, "/v1/events?after=0&limit=1000", "ops-token");
    cr_assert_eq(r.status, 200, "GET /v1/events: %ld", r.status);
    int n = h_events_count(r.json, id, type);
    h_resp_free(&r);
    return n;
}

/* The ids of GET /v1/orders?stuck=true as token, as "1,5". */
static const char *stuck_ids(const char *token, char *buf, size_t n)
{
    h_resp r = h_get(&D, "/v1/orders?stuck=true", token);
    cr_assert_eq(r.status, 200, "GET /v1/orders?stuck=true: %ld %s", r.status, r.body);
    size_t i, off = 0;
    json_t *o;
    buf[0] = 0;
    json_array_foreach(json_object_get(r.json, "orders"), i, o) off +=
        (size_t)snprintf(buf + off, n - off, "%s%lld", i ? "," : "", h_int(o, "id"));
    h_resp_free(&r);
    return buf;
}

static long long health_stuck(void)
{
    h_resp r = h_get(&D, "/v1/health", NULL);
    cr_assert_eq(r.status, 200);
    long long n = h_int(json_object_get(r.json, "orders"), "stuck");
    h_resp_free(&r);
    return n;
}

static int metrics_stuck(void)
{
    h_resp r = h_get(&D, "/metrics", "ops-token");
    cr_assert_eq(r.status, 200, "GET /metrics: %ld", r.status);
    const char *p = strstr(r.body, "\nperkhub_orders_stuck ");
    cr_assert(p, "no perkhub_orders_stuck sample");
    int n = atoi(p + strlen("\nperkhub_orders_stuck "));
    h_resp_free(&r);
    return n;
}

static h_resp settle(long long id, const char *token, const char *body)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/orders/%lld/settle", id);
    return h_post_json(&D, path, token, body);
}

Test(stuck, escalates_once_backs_off_to_the_ceiling_and_settles_succeeded, .timeout = 120)
{
    start();
    long long id = place("st-1", "st.topup", "13900000003");
    json_t *o = h_order_poll(&D, id, "ops-token", is_stuck, NULL, WAIT_MS, "stuck");
    const char *since = h_str(o, "stuck_since");
    char since_copy[40];
    snprintf(since_copy, sizeof since_copy, "%s", since);
    cr_expect_str_eq(h_str(o, "state"), "processing");
    json_decref(o);
    char ids[64], want[32];
    snprintf(want, sizeof want, "%lld", id);
    cr_expect_str_eq(stuck_ids("ops-token", ids, sizeof ids), want, "ops lists it");
    cr_expect_str_eq(stuck_ids("mall-token", ids, sizeof ids), want, "its client lists it");
    cr_expect_str_eq(stuck_ids("other-token", ids, sizeof ids), "", "nobody else sees it");
    cr_expect_eq(health_stuck(), 1);
    cr_expect_eq(metrics_stuck(), 1);
    json_t *mall = h_order_get(&D, id, "mall-token");
    cr_expect_str_eq(h_str(mall, "stuck_since"), since_copy, "the mall's view shows it too");
    json_decref(mall);

    /* the backoff reaches the stuck ceiling and stays there */
    o = h_order_poll(&D, id, "ops-token", at_ceiling, NULL, WAIT_MS, "at the ceiling");
    checks_arg ca = {h_int(last_attempt(o), "checks") + 1};
    json_decref(o);
    o = h_order_poll(&D, id, "ops-token", checked_more, &ca, WAIT_MS, "two more checks");
    cr_expect(at_ceiling(o, NULL), "still at the ceiling after two more checks");
    json_decref(o);
    cr_expect_eq(events_of(id, "order.stuck"), 1, "escalated exactly once");

    /* kill -9 and restart: the mark survives and is not repeated */
    cr_assert_eq(h_stop(&D, 9), 128 + 9);
    cr_assert(h_start(&D) == 0, "perkhubd did not restart");
    o = h_order_get(&D, id, "ops-token");
    ca.more_than = h_int(last_attempt(o), "checks") + 1;
    json_decref(o);
    o = h_order_poll(&D, id, "ops-token", checked_more, &ca, WAIT_MS, "queried after restart");
    cr_expect_str_eq(h_str(o, "stuck_since"), since_copy, "the same escalation");
    json_decref(o);
    cr_expect_eq(events_of(id, "order.stuck"), 1, "not escalated again after the restart");
    cr_expect_eq(health_stuck(), 1);

    /* bad input changes nothing */
    h_resp r = settle(id, "ops-token",
                      "{\"outcome\":\"succeeded\",\"note\":\"x\",\"charged\":\"49.401\"}");
    cr_expect_eq(r.status, 400, "%s", r.body);
    cr_expect(strstr(r.body, "charged"), "names the field: %s", r.body);
    h_resp_free(&r);
    r = settle(id, "ops-token", "{\"outcome\":\"succeeded\",\"note\":\"x\",\"by\":\"me\"}");
    cr_expect_eq(r.status, 400, "unknown field: %s", r.body);
    h_resp_free(&r);
    r = settle(id, "ops-token", "{\"outcome\":\"done\",\"note\":\"x\"}");
    cr_expect_eq(r.status, 400, "%s", r.body);
    cr_expect(strstr(r.body, "outcome"), "names the field: %s", r.body);
    h_resp_free(&r);
    r = settle(id, "ops-token", "{\"outcome\":\"succeeded\"}");
    cr_expect_eq(r.status, 400, "%s", r.body);
    cr_expect(strstr(r.body, "note"), "names the field: %s", r.body);
    h_resp_free(&r);
    r = settle(id, "mall-token", "{\"outcome\":\"succeeded\",\"note\":\"x\"}");
    cr_expect_eq(r.status, 403, "ops only: %s", r.body);
    h_resp_free(&r);
    r = settle(999999, "ops-token", "{\"outcome\":\"succeeded\",\"note\":\"x\"}");
    cr_expect_eq(r.status, 404, "%s", r.body);
    h_resp_free(&r);
    cr_expect_eq(health_stuck(), 1, "nothing changed");

    /* ops settle it with the supplier's evidence */
    r = settle(id, "ops-token",
               "{\"outcome\":\"succeeded\",\"note\":\"supplier ticket 8812: credited\","
               "\"charged\":\"49.00\",\"supplier_order_id\":\"R-MANUAL-1\"}");
    cr_assert_eq(r.status, 200, "settle: %ld %s", r.status, r.body);
    json_t *so = h_order_of(&r);
    cr_expect_str_eq(h_str(so, "state"), "succeeded");
    cr_expect_str_eq(h_str(so, "cost"), "49.00");
    cr_expect_str_eq(h_str(so, "settled_by"), "ops");
    cr_expect(!json_object_get(so, "stuck_since"), "no longer stuck");
    h_resp_free(&r);
    mall = h_order_get(&D, id, "mall-token");
    cr_expect_str_eq(h_str(mall, "state"), "succeeded");
    cr_expect_str_eq(h_str(mall, "settled_by"), "ops", "the mall sees who settled it");
    cr_expect_str_eq(h_str(mall, "settle_note"), "supplier ticket 8812: credited");
    json_decref(mall);
    cr_expect_eq(events_of(id, "order.settled"), 1);
    cr_expect_eq(events_of(id, "order.succeeded"), 1);
    cr_expect_str_eq(stuck_ids("ops-token", ids, sizeof ids), "");
    cr_expect_eq(health_stuck(), 0);
    cr_expect_eq(metrics_stuck(), 0);

    /* settled is final: again is a 409 naming the state */
    r = settle(id, "ops-token", "{\"outcome\":\"failed\",\"note\":\"again\"}");
    cr_expect_eq(r.status, 409, "%s", r.body);
    char msg[64];
    snprintf(msg, sizeof msg, "order %lld is succeeded, not stuck", id);
    cr_expect(strstr(r.body, msg), "names the state: %s", r.body);
    h_resp_free(&r);

    /* audited once, with who: the refused second settle left no record */
    r = h_get(&D, "/v1/audit?action=orders.settle", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *au = json_loads(r.body, 0, NULL);
    json_t *recs = json_object_get(au, "audit");
    cr_expect_eq(json_array_size(recs), 1, "%s", r.body);
    json_t *rec = json_array_get(recs, 0);
    cr_expect_str_eq(h_str(rec, "client"), "ops");
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(rec, "what"), "order_id")), id);
    json_decref(au);
    h_resp_free(&r);

    /* the supplier got one order request, never a resend */
    json_t *t = h_sim_truth(&S);
    size_t n = 0;
    json_t *so2 = h_sim_truth_find(t, "orders", "rewards", id, &n);
    cr_expect_eq(n, 1);
    cr_expect_eq(h_int(so2, "creates"), 1);
    char body[200];
    snprintf(body, sizeof body, "{\"ref\":\"%s\",\"state\":\"success\"}", h_str(so2, "ref"));
    json_decref(t);

    /* the settle booked the ledger: the charge in evidence and the sale */
    char led[256];
    h_ledger_words(&D, id, led, sizeof led);
    cr_expect_str_eq(led, "supplier_cost:4900 ");

    /* the supplier completes it as its ticket said, charging 49.00 (its
     * callback goes to the port perkhubd had before the restart, and a settled
     * order is queried no more): the ledger equals its charge (stop()) */
    r = h_sim_req(&S, "POST", "/_sim/complete", body);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    stop();
}

static int callback_sent(void *arg)
{
    json_t *t = h_sim_truth(&S);
    json_t *o = h_sim_truth_find(t, "orders", "rewards", *(long long *)arg, NULL);
    int done = o && json_integer_value(json_object_get(o, "callbacks")) > 0;
    json_decref(t);
    return done;
}

static int is_final(json_t *o, void *arg)
{
    (void)arg;
    const char *s = h_str(o, "state");
    return !strcmp(s, "succeeded") || !strcmp(s, "failed");
}

Test(stuck, settle_failed_then_a_late_success_changes_nothing, .timeout = 120)
{
    start();
    long long id = place("st-2", "st.topup", "13900000003");
    json_decref(h_order_poll(&D, id, "ops-token", is_stuck, NULL, WAIT_MS, "stuck"));
    h_resp r = settle(id, "ops-token", "{\"outcome\":\"failed\",\"note\":\"supplier: not done\"}");
    cr_assert_eq(r.status, 200, "settle: %ld %s", r.status, r.body);
    cr_expect_str_eq(h_str(h_order_of(&r), "state"), "failed");
    cr_expect_str_eq(h_str(h_order_of(&r), "reason"), "settled_by_ops");
    h_resp_free(&r);

    /* the supplier answers late (success) and calls back: the order stays failed */
    r = h_sim_req(&S, "POST", "/_sim/complete", "{\"ref\":\"x\",\"state\":\"success\"}");
    cr_expect_eq(r.status, 404);
    h_resp_free(&r);
    json_t *o = h_order_get(&D, id, "ops-token");
    char body[200];
    snprintf(body, sizeof body, "{\"ref\":\"%s\",\"state\":\"success\"}",
             h_str(last_attempt(o), "ref"));
    json_decref(o);
    r = h_sim_req(&S, "POST", "/_sim/complete", body);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    cr_assert(h_wait_for(callback_sent, &id, WAIT_MS) == 0, "no callback went out");
    cr_assert_eq(h_log_wait(&D, "callback.accepted", 1, WAIT_MS), 0,
                 "perkhub never handled the callback");
    o = h_order_get(&D, id, "ops-token");
    cr_expect_str_eq(h_str(o, "state"), "failed", "the settle stands");
    cr_expect_str_eq(h_str(o, "settled_by"), "ops");
    json_decref(o);
    cr_expect_eq(events_of(id, "order.succeeded"), 0);
    cr_expect_eq(events_of(id, "order.failed"), 1);

    /* but the supplier's signed success is kept (it charged 49.00): accepting
     * it corrects the settled order and books the charge */
    r = h_get(&D, "/v1/discrepancies?status=open", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *dl = json_object_get(r.json, "discrepancies");
    cr_assert_eq(json_array_size(dl), 1, "the late success after the settle: %s", r.body);
    json_t *d0 = json_array_get(dl, 0);
    cr_expect_eq(h_int(d0, "order_id"), id);
    cr_expect_str_eq(h_str(d0, "source"), "callback");
    char path[96];
    snprintf(path, sizeof path, "/v1/discrepancies/%lld/accept", h_int(d0, "id"));
    h_resp_free(&r);
    r = h_post_json(&D, path, "ops-token", "{\"note\":\"it landed\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    o = h_order_get(&D, id, "ops-token");
    cr_expect_str_eq(h_str(o, "state"), "succeeded");
    json_decref(o);
    char led[256];
    h_ledger_words(&D, id, led, sizeof led);
    cr_expect_str_eq(led, "supplier_cost:4900 ");

    /* the other way round: the supplier answers first, the settle is refused */
    long long id2 = place("st-3", "st.topup", "13900000003");
    json_decref(h_order_poll(&D, id2, "ops-token", is_stuck, NULL, WAIT_MS, "stuck"));
    o = h_order_get(&D, id2, "ops-token");
    snprintf(body, sizeof body, "{\"ref\":\"%s\",\"state\":\"success\"}",
             h_str(last_attempt(o), "ref"));
    json_decref(o);
    r = h_sim_req(&S, "POST", "/_sim/complete", body);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    o = h_order_poll(&D, id2, "ops-token", is_final, NULL, WAIT_MS, "the supplier's answer");
    cr_expect_str_eq(h_str(o, "state"), "succeeded");
    json_decref(o);
    r = settle(id2, "ops-token", "{\"outcome\":\"failed\",\"note\":\"too late\"}");
    cr_expect_eq(r.status, 409, "%s", r.body);
    char msg[64];
    snprintf(msg, sizeof msg, "order %lld is succeeded, not stuck", id2);
    cr_expect(strstr(r.body, msg), "%s", r.body);
    h_resp_free(&r);
    o = h_order_get(&D, id2, "ops-token");
    cr_expect(!json_object_get(o, "settled_by"), "nothing changed");
    json_decref(o);

    /* processing but not stuck (an hour to go): refused naming its state */
    long long id3 = place("st-4", "slow.topup", "13900000003");
    r = settle(id3, "ops-token", "{\"outcome\":\"failed\",\"note\":\"early\"}");
    cr_expect_eq(r.status, 409, "%s", r.body);
    snprintf(msg, sizeof msg, "order %lld is processing, not stuck", id3);
    cr_expect(strstr(r.body, msg), "%s", r.body);
    h_resp_free(&r);

    json_t *t = h_sim_truth(&S);
    cr_expect_eq(h_int(json_object_get(t, "counts"), "order_requests"), 3, "no resend");
    json_decref(t);
    stop();
}

/* The query timer escalates whether or not the supplier answers: every query
 * of the order is held by the simulator until perkhub's timeout (300 ms)
 * gives up on it, so no answer ever comes. */
Test(stuck, escalates_when_the_supplier_never_answers, .timeout = 120)
{
    start_with("    timeout_ms: 300\n");
    h_resp r = h_sim_req(&S, "POST", "/_sim/faults",
                         "{\"protocol\":\"rewards\",\"op\":\"query\",\"fault\":\"timeout_after\","
                         "\"count\":-1}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    long long id = place("nq-1", "st.topup", "13900000003");
    json_t *o = h_order_poll(&D, id, "ops-token", is_stuck, NULL, WAIT_MS, "stuck");
    json_t *a = last_attempt(o);
    cr_expect(h_int(a, "checks") >= 1, "queried");
    cr_expect_str_neq(h_str(a, "state"), "succeeded");
    json_decref(o);
    cr_expect_eq(events_of(id, "order.stuck"), 1);
    r = h_sim_req(&S, "DELETE", "/_sim/faults", NULL);
    h_resp_free(&r);
    stop();
}

/* An order whose supplier is disabled by the next start: no query can go
 * out, and the order is escalated all the same. */
Test(stuck, escalates_when_its_supplier_is_gone, .timeout = 120)
{
    start();
    long long id = place("gone-1", "st.topup", "13900000003");
    h_stop_clean(&D);
    char *text = h_config_text(&D, NULL);
    char *off = h_replace(text, "  - id: rw\n", "  - id: rw\n    enabled: false\n");
    h_write_config_text(&D, off);
    free(off);
    free(text);
    cr_assert(h_start(&D) == 0, "perkhubd did not restart");
    cr_expect_eq(h_log_wait(&D, "fulfil.supplier_unavailable", 1, WAIT_MS), 0,
                 "the attempt is not queried");
    json_t *o = h_order_poll(&D, id, "ops-token", is_stuck, NULL, WAIT_MS, "stuck");
    /* still open: processing, or unknown when a query before the stop timed
     * out on a loaded machine; either way nothing settled it */
    const char *st = h_str(o, "state");
    cr_expect(!strcmp(st, "processing") || !strcmp(st, "unknown"), "state %s", st);
    json_decref(o);
    cr_expect_eq(events_of(id, "order.stuck"), 1);
    cr_expect_eq(health_stuck(), 1);
    h_resp r = settle(id, "ops-token", "{\"outcome\":\"failed\",\"note\":\"supplier closed\"}");
    cr_expect_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    cr_expect_eq(health_stuck(), 0);
    stop();
}
