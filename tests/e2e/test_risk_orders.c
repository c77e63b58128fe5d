/*
 * test_risk_orders.c — issuance protection through perkhubd (issue 15): an
 * order's end user read, checked and shown masked; malformed members refused
 * naming the member with nothing placed; and, with the risk engine and its
 * rules API, the decisions in the order path (exact limits under 64 racing
 * connections, a rule change applied to the next order, deny and its replay,
 * review release and block with their events and audit, counters kept across
 * kill -9).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static h_daemon *live;

static void kill_leftover(void)
{
    h_leftover(live);
    live = NULL;
}

static h_resp order_eu(const h_daemon *d, const char *coid, const char *sku, const char *eu)
{
    char body[1024];
    snprintf(body, sizeof body, "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"end_user\":%s}", coid,
             sku, eu);
    return h_post_json(d, "/v1/orders", "mall-token", body);
}

static void start(h_daemon *d, const char *extra)
{
    h_setup(d, extra);
    live = d;
    cr_assert_eq(h_start(d), 0);
    char *csv = h_codes_csv("RISK", 200);
    h_resp r = h_import(d, "test.card", csv, 201);
    h_resp_free(&r);
    free(csv);
}

Test(risk_orders, malformed_end_user_members_are_named_and_place_nothing, .fini = kill_leftover)
{
    static h_daemon d;
    start(&d, NULL);
    json_t *before = h_stats(&d);
    long long ev = h_last_event(&d);
    static const struct {
        const char *eu, *message;
    } bad[] = {
        {"\"u-1\"", "end_user: expected an object"},
        {"{\"id\":\"\"}", "end_user.id: expected 1-128 printable ASCII bytes"},
        {"{\"id\":7}", "end_user.id: expected 1-128 printable ASCII bytes"},
        {"{\"device_id\":\"a\\u0001b\"}",
         "end_user.device_id: expected 1-128 printable ASCII bytes"},
        {"{\"ip\":\"300.1.2.3\"}", "end_user.ip: expected an IPv4 or IPv6 address"},
        {"{\"ip\":\"2001:db8::zz\"}", "end_user.ip: expected an IPv4 or IPv6 address"},
        {"{\"phone\":\"1234\"}", "end_user.phone: expected 5-20 digits, optionally after '+'"},
        {"{\"phone\":\"138-0013-8000\"}",
         "end_user.phone: expected 5-20 digits, optionally after '+'"},
        {"{\"tags\":[\"a\"]}", "end_user.tags: expected an object of at most 16 tags"},
        {"{\"tags\":{\"Dept\":\"x\"}}", "end_user.tags: tag 1: expected a key of 1-32 [a-z0-9_.-]"},
        {"{\"tags\":{\"dept\":\"a=b\"}}",
         "end_user.tags: tag 1: expected a value of 1-64 printable bytes without '='"},
        {"{\"id\":\"u-1\",\"name\":\"Zhang San\"}",
         "end_user: member 2 is unknown (expected id, ip, device_id, phone, tags)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        h_resp r = order_eu(&d, "BAD-1", "test.card", bad[i].eu);
        cr_assert_eq(r.status, 400, "%s: %s", bad[i].eu, r.body);
        cr_assert_str_eq(h_str(r.json, "error"), "invalid_request");
        cr_assert_str_eq(h_str(r.json, "message"), bad[i].message, "%s", bad[i].eu);
        cr_assert_eq(h_mem_count(r.body, r.len, "Zhang"), 0);
        h_resp_free(&r);
    }
    json_t *after = h_stats(&d);
    cr_assert(json_equal(before, after), "a refused end user changed the store");
    cr_assert_eq(h_last_event(&d), ev);
    json_decref(before);
    json_decref(after);
    /* the same id then places once */
    h_resp r = order_eu(&d, "BAD-1", "test.card", "{\"id\":\"u-1\"}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    h_stop(&d, SIGTERM);
    h_cleanup(&d);
}

Test(risk_orders, the_end_user_is_shown_masked_to_its_owner_and_ops, .fini = kill_leftover)
{
    static h_daemon d;
    start(&d, NULL);
    h_resp r = order_eu(&d, "EU-1", "test.card",
                        "{\"id\":\"user-000123\",\"ip\":\"2001:db8:1:2::7\",\"device_id\":"
                        "\"dev-abcdef\",\"phone\":\"+8613800138000\",\"tags\":{\"campaign\":"
                        "\"new-user\"}}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    long long id = h_int(json_object_get(r.json, "order"), "id");
    h_resp_free(&r);
    char path[64];
    snprintf(path, sizeof path, "/v1/orders/%lld", id);
    for (int ops = 0; ops < 2; ops++) {
        r = h_get(&d, path, ops ? "ops-token" : "mall-token");
        cr_assert_eq(r.status, 200, "%s", r.body);
        json_t *o = json_object_get(r.json, "order");
        json_t *eu = json_object_get(o, "end_user");
        cr_assert_str_eq(h_str(eu, "id"), "us****23");
        cr_assert_str_eq(h_str(eu, "ip"), "2001:db8:1:2::*");
        cr_assert_str_eq(h_str(eu, "device"), "de****ef");
        cr_assert_str_eq(h_str(eu, "phone"), "861****8000");
        cr_assert_str_eq(h_str(json_object_get(eu, "tags"), "campaign"), "new-user");
        json_t *risk = json_object_get(o, "risk");
        if (ops)
            cr_assert_str_eq(h_str(json_object_get(risk, "decision"), "action"), "allow", "%s",
                             r.body);
        else
            cr_assert_null(risk, "the decision is for ops: %s", r.body);
        cr_assert_eq(h_mem_count(r.body, r.len, "13800138000"), 0);
        h_resp_free(&r);
    }
    /* an order without an end user shows none */
    r = h_order(&d, "mall-token", "EU-2", "test.card", 1);
    cr_assert_eq(r.status, 201);
    cr_assert_null(json_object_get(json_object_get(r.json, "order"), "end_user"));
    h_resp_free(&r);
    h_stop(&d, SIGTERM);
    char *out = NULL;
    cr_assert_eq(h_check_store(&d, &out), 0, "%s", out);
    free(out);
    h_cleanup(&d);
}

/* The reply to POST /v1/orders carries the masked end user as the order view
 * does, whichever way the order went — local stock, a supplier's recharge,
 * new or replayed — and never a clear value. */
Test(risk_orders, the_order_reply_carries_the_masked_end_user, .fini = kill_leftover)
{
    static h_daemon d;
    start(&d, NULL);
    static const char eu[] = "{\"id\":\"user-000123\",\"ip\":\"203.0.113.9\",\"device_id\":"
                             "\"dev-abcdef\",\"phone\":\"+8613800138000\",\"tags\":{\"dept\":"
                             "\"eng\"}}";
    static const char *const clear[] = {"user-000123", "203.0.113.9", "dev-abcdef", "13800138000"};
    static const char *const bodies[][3] = {
        {"stock", "succeeded",
         "{\"client_order_id\":\"EUR-1\",\"sku\":\"test.card\",\"end_user\":%s}"},
        {"recharge", "succeeded",
         "{\"client_order_id\":\"EUR-2\",\"sku\":\"test.topup\",\"account\":"
         "\"13800000001\",\"wait\":5,\"end_user\":%s}"},
        {"grant", "granted",
         "{\"client_order_id\":\"EUR-4\",\"sku\":\"test.card\",\"deliver\":\"grant\","
         "\"grant\":{\"ttl_s\":3600},\"end_user\":%s}"},
    };
    for (size_t b = 0; b < sizeof bodies / sizeof bodies[0]; b++) {
        char body[1024];
        snprintf(body, sizeof body, bodies[b][2], eu);
        for (int replay = 0; replay < 2; replay++) {
            h_resp r = h_post_json(&d, "/v1/orders", "mall-token", body);
            cr_assert_eq(r.status, replay ? 200 : 201, "%s: %s", bodies[b][0], r.body);
            json_t *o = json_object_get(r.json, "order");
            cr_assert_str_eq(h_str(o, "state"), bodies[b][1], "%s: %s", bodies[b][0], r.body);
            json_t *m = json_object_get(o, "end_user");
            cr_assert(json_is_object(m), "%s%s: no end_user in %s", bodies[b][0],
                      replay ? " replayed" : "", r.body);
            cr_assert_str_eq(h_str(m, "id"), "us****23", "%s", r.body);
            cr_assert_str_eq(h_str(m, "ip"), "203.0.113.*", "%s", r.body);
            cr_assert_str_eq(h_str(m, "device"), "de****ef", "%s", r.body);
            cr_assert_str_eq(h_str(m, "phone"), "861****8000", "%s", r.body);
            cr_assert_str_eq(h_str(json_object_get(m, "tags"), "dept"), "eng", "%s", r.body);
            cr_assert_null(json_object_get(o, "risk"), "the decision is for ops: %s", r.body);
            char path[64];
            snprintf(path, sizeof path, "/v1/orders/%lld", h_int(o, "id"));
            h_resp g = h_get(&d, path, "mall-token");
            cr_assert_eq(g.status, 200, "%s", g.body);
            cr_assert(json_equal(json_object_get(json_object_get(g.json, "order"), "end_user"), m),
                      "%s: the reply's end_user is not GET's: %s / %s", bodies[b][0], r.body,
                      g.body);
            h_resp_free(&g);
            for (size_t k = 0; k < sizeof clear / sizeof clear[0]; k++)
                cr_assert_eq(h_mem_count(r.body, r.len, clear[k]), 0, "%s: the reply holds %s",
                             bodies[b][0], clear[k]);
            h_resp_free(&r);
        }
    }
    /* an order without an end user shows none (a stock order: the test above) */
    h_resp r = h_post_json(&d, "/v1/orders", "mall-token",
                           "{\"client_order_id\":\"EUR-3\",\"sku\":\"test.topup\",\"account\":"
                           "\"13800000001\",\"wait\":5}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_null(json_object_get(json_object_get(r.json, "order"), "end_user"), "%s", r.body);
    h_resp_free(&r);
    h_stop(&d, SIGTERM);
    h_cleanup(&d);
}

/* ---- with the engine and its rules API (R's /v1/risk/rules) ---------------------- */

static void rule_put(const h_daemon *d, const char *method, const char *path, const char *json,
                     long want)
{
    h_resp r;
    cr_assert_eq(h_http(d, method, path, "ops-token", "application/json", json, strlen(json), &r),
                 0);
    cr_assert_eq(r.status, want, "%s %s: %s", method, path, r.body);
    h_resp_free(&r);
}

#define RACERS 64

typedef struct racer {
    h_conn *conn;
    pthread_barrier_t *go;
    int no;
    long status;
    char rule[80];
} racer;

static void *race_main(void *arg)
{
    racer *w = arg;
    char body[256];
    snprintf(body, sizeof body,
             "{\"client_order_id\":\"RACE-%d\",\"sku\":\"test.card\",\"end_user\":{\"id\":"
             "\"racer-1\"}}",
             w->no);
    pthread_barrier_wait(w->go);
    h_resp r;
    if (h_conn_http(w->conn, "POST", "/v1/orders", "mall-token", "application/json", body,
                    strlen(body), &r) == 0) {
        w->status = r.status;
        const char *rule = json_string_value(json_object_get(r.json, "rule"));
        snprintf(w->rule, sizeof w->rule, "%s", rule ? rule : "");
    }
    h_resp_free(&r);
    return NULL;
}

static h_resp order_user(const h_daemon *d, const char *coid, const char *user)
{
    char eu[128];
    snprintf(eu, sizeof eu, "{\"id\":\"%s\"}", user);
    return order_eu(d, coid, "test.card", eu);
}

Test(risk_orders, sixty_four_racers_on_one_end_user_get_exactly_the_limit, .fini = kill_leftover)
{
    static h_daemon d;
    start(&d, NULL);
    rule_put(&d, "POST", "/v1/risk/rules",
             "{\"id\":\"per-user\",\"variable\":\"user\",\"measure\":\"orders\",\"limit\":5,"
             "\"window_s\":43200,\"action\":\"deny\"}",
             201);
    racer w[RACERS];
    pthread_t th[RACERS];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, RACERS);
    for (int i = 0; i < RACERS; i++) {
        w[i] = (racer){.conn = h_conn_new(&d), .go = &go, .no = i};
        cr_assert_eq(pthread_create(&th[i], NULL, race_main, &w[i]), 0);
    }
    int ok = 0, denied = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(th[i], NULL);
        h_conn_free(w[i].conn);
        ok += w[i].status == 201;
        if (w[i].status == 403) {
            denied++;
            cr_assert_str_eq(w[i].rule, "per-user");
        }
    }
    pthread_barrier_destroy(&go);
    cr_assert_eq(ok, 5, "exactly the limit gets through: %d", ok);
    cr_assert_eq(denied, RACERS - 5);

    /* a denied order's replay: the same 403, as a replay */
    int denied_no = -1;
    for (int i = 0; i < RACERS && denied_no < 0; i++)
        if (w[i].status == 403)
            denied_no = i;
    char coid[32];
    snprintf(coid, sizeof coid, "RACE-%d", denied_no);
    h_resp r = order_user(&d, coid, "racer-1");
    cr_assert_eq(r.status, 403, "%s", r.body);
    char hv[16];
    cr_assert_str_eq(h_header(&r, "Idempotent-Replay", hv, sizeof hv), "true");
    cr_assert_str_eq(h_str(r.json, "rule"), "per-user");
    cr_assert_str_eq(h_str(r.json, "error"), "denied_by_risk");
    h_resp_free(&r);

    /* a rule change applies to the next order: raised to 7, two more pass */
    rule_put(&d, "PUT", "/v1/risk/rules/per-user",
             "{\"id\":\"per-user\",\"variable\":\"user\",\"measure\":\"orders\",\"limit\":7,"
             "\"window_s\":43200,\"action\":\"deny\"}",
             200);
    for (int i = 0; i < 3; i++) {
        snprintf(coid, sizeof coid, "NEXT-%d", i);
        r = order_user(&d, coid, "racer-1");
        cr_assert_eq(r.status, i < 2 ? 201 : 403, "%s: %s", coid, r.body);
        h_resp_free(&r);
    }
    /* and lowered to 0: the next one of a new user is refused too */
    rule_put(&d, "PUT", "/v1/risk/rules/per-user",
             "{\"id\":\"per-user\",\"variable\":\"user\",\"measure\":\"orders\",\"limit\":0,"
             "\"window_s\":43200,\"action\":\"deny\"}",
             200);
    r = order_user(&d, "NEW-1", "someone-else");
    cr_assert_eq(r.status, 403, "%s", r.body);
    h_resp_free(&r);

    /* bad rules are named */
    h_resp b = h_post_json(&d, "/v1/risk/rules", "ops-token",
                           "{\"id\":\"x\",\"variable\":\"foo\",\"limit\":1,\"window_s\":60,"
                           "\"action\":\"deny\"}");
    cr_assert_eq(b.status, 400, "%s", b.body);
    cr_assert(strstr(h_str(b.json, "message"), "variable"), "%s", b.body);
    h_resp_free(&b);
    b = h_post_json(&d, "/v1/risk/rules", "ops-token",
                    "{\"id\":\"y\",\"variable\":\"user\",\"limit\":1,\"window_s\":-5,"
                    "\"action\":\"deny\"}");
    cr_assert_eq(b.status, 400, "%s", b.body);
    cr_assert(strstr(h_str(b.json, "message"), "window_s"), "%s", b.body);
    h_resp_free(&b);
    h_stop(&d, SIGTERM);
    char *out = NULL;
    cr_assert_eq(h_check_store(&d, &out), 0, "%s", out);
    free(out);
    h_cleanup(&d);
}

/* The stored decision is what counts for related rules: a retry of an order
 * placed earlier is checked afresh and may be denied now (its user is at the
 * limit), but it stores nothing, so its device must not become a suspect. */
Test(risk_orders, a_retry_denied_afresh_makes_no_subject_a_suspect, .fini = kill_leftover)
{
    static h_daemon d;
    start(&d, NULL);
    rule_put(&d, "POST", "/v1/risk/rules",
             "{\"id\":\"one\",\"variable\":\"user\",\"measure\":\"orders\",\"limit\":1,"
             "\"window_s\":3600,\"action\":\"deny\"}",
             201);
    rule_put(&d, "POST", "/v1/risk/rules",
             "{\"id\":\"rel\",\"kind\":\"related\",\"variables\":[\"device\"],\"window_s\":3600,"
             "\"action\":\"review\"}",
             201);
    const char *a = "{\"id\":\"first-user\",\"device_id\":\"shared-device\"}";
    h_resp r = order_eu(&d, "RETRY-1", "test.card", a);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    r = order_eu(&d, "RETRY-1", "test.card", a); /* the retry: the order as placed */
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(h_str(json_object_get(r.json, "order"), "state"), "succeeded");
    char hv[16];
    cr_assert_str_eq(h_header(&r, "Idempotent-Replay", hv, sizeof hv), "true");
    h_resp_free(&r);
    r = order_eu(&d, "OTHER-1", "test.card",
                 "{\"id\":\"second-user\",\"device_id\":\"shared-device\"}");
    cr_assert_eq(r.status, 201, "no order on the device was blocked: %s", r.body);
    h_resp_free(&r);
    /* a denial that is stored does make the device a suspect */
    r = order_eu(&d, "RETRY-2", "test.card", a);
    cr_assert_eq(r.status, 403, "%s", r.body);
    h_resp_free(&r);
    r = order_eu(&d, "OTHER-2", "test.card",
                 "{\"id\":\"third-user\",\"device_id\":\"shared-device\"}");
    cr_assert_eq(r.status, 202, "%s", r.body);
    cr_assert_str_eq(h_str(json_object_get(r.json, "order"), "state"), "held");
    h_resp_free(&r);
    h_stop(&d, SIGTERM);
    h_cleanup(&d);
}

/* An ops audit record of action for order id exists. */
static int audited(const h_daemon *d, const char *action, long long id)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/audit?action=%s", action);
    h_resp r = h_get(d, path, "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *a;
    size_t i;
    int n = 0;
    json_array_foreach(json_object_get(r.json, "audit"), i, a) n +=
        json_integer_value(json_object_get(json_object_get(a, "what"), "order_id")) == id;
    h_resp_free(&r);
    return n;
}

/* The types of the events about order id, in order. */
static void order_events(const h_daemon *d, long long id, char *out, size_t n)
{
    h_resp r = h_get(d, "/v1/events?limit=1000", "ops-token");
    json_t *e;
    size_t i;
    out[0] = 0;
    json_array_foreach(json_object_get(r.json, "events"), i, e)
    {
        if (json_integer_value(json_object_get(e, "order_id")) != id)
            continue;
        size_t l = strlen(out);
        snprintf(out + l, n - l, "%s%s", l ? " " : "",
                 json_string_value(json_object_get(e, "type")));
    }
    h_resp_free(&r);
}

static int perkctl(const h_daemon *d, char **out, ...)
{
    const char *argv[16] = {h_bin("PH_PERKCTL")};
    size_t n = 1;
    va_list ap;
    va_start(ap, out);
    for (const char *a; n < 15 && (a = va_arg(ap, const char *)) != NULL;)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    char env_url[128];
    snprintf(env_url, sizeof env_url, "PERKHUB_URL=http://127.0.0.1:%u", d->port);
    const char *env[] = {env_url, "PERKHUB_TOKEN=ops-token", NULL};
    return h_run(argv, env, NULL, 0, out, NULL);
}

Test(risk_orders, a_review_rule_holds_and_ops_release_or_block, .fini = kill_leftover)
{
    static h_daemon d;
    start(&d, NULL);
    rule_put(&d, "POST", "/v1/risk/rules",
             "{\"id\":\"look-first\",\"variable\":\"user\",\"measure\":\"orders\",\"limit\":0,"
             "\"window_s\":3600,\"action\":\"review\"}",
             201);
    long long ids[2];
    for (int i = 0; i < 2; i++) {
        char coid[16];
        snprintf(coid, sizeof coid, "HOLD-%d", i);
        h_resp r = order_user(&d, coid, "reviewed-user");
        cr_assert_eq(r.status, 202, "%s", r.body);
        json_t *o = json_object_get(r.json, "order");
        cr_assert_str_eq(h_str(o, "state"), "held");
        cr_assert_null(json_object_get(o, "codes"));
        ids[i] = h_int(o, "id");
        h_resp_free(&r);
    }
    h_resp r = h_get(&d, "/v1/reviews", "ops-token");
    cr_assert_eq(json_array_size(json_object_get(r.json, "reviews")), 2, "%s", r.body);
    cr_assert_str_eq(h_str(json_array_get(json_object_get(r.json, "reviews"), 0), "rule"),
                     "look-first");
    h_resp_free(&r);
    /* perkctl lists them */
    char *out = NULL;
    cr_assert_eq(perkctl(&d, &out, "reviews", NULL), 0, "%s", out);
    cr_assert(strstr(out, "HOLD-0") && strstr(out, "HOLD-1") && strstr(out, "look-first"), "%s",
              out);
    free(out);
    char path[64], ev[512];
    snprintf(path, sizeof path, "/v1/reviews/%lld/release", ids[0]);
    r = h_post_json(&d, path, "ops-token", "{\"note\":\"known\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(h_str(json_object_get(r.json, "order"), "state"), "succeeded");
    h_resp_free(&r);
    order_events(&d, ids[0], ev, sizeof ev);
    cr_assert_str_eq(ev, "order.held order.released order.succeeded");
    cr_assert_eq(audited(&d, "review.release", ids[0]), 1);
    char idtxt[24];
    snprintf(idtxt, sizeof idtxt, "%lld", ids[1]);
    cr_assert_eq(perkctl(&d, &out, "reviews", "block", idtxt, "--note", "farm", NULL), 0, "%s",
                 out);
    cr_assert(strstr(out, "blocked: failed"), "%s", out);
    free(out);
    cr_assert_eq(perkctl(&d, &out, "reviews", "block", idtxt, NULL), 1, "a second decision: %s",
                 out);
    free(out);
    order_events(&d, ids[1], ev, sizeof ev);
    cr_assert_str_eq(ev, "order.held order.blocked order.failed");
    cr_assert_eq(audited(&d, "review.block", ids[1]), 1);
    /* the owner sees its order blocked, with its reason */
    snprintf(path, sizeof path, "/v1/orders/%lld", ids[1]);
    r = h_get(&d, path, "mall-token");
    cr_assert_str_eq(h_str(json_object_get(r.json, "order"), "state"), "failed");
    cr_assert_str_eq(h_str(json_object_get(r.json, "order"), "reason"), "blocked_by_review");
    h_resp_free(&r);
    /* a replay of the held-then-released order is that order */
    r = order_user(&d, "HOLD-0", "reviewed-user");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(h_str(json_object_get(r.json, "order"), "state"), "succeeded");
    h_resp_free(&r);
    h_stop(&d, SIGTERM);
    out = NULL;
    cr_assert_eq(h_check_store(&d, &out), 0, "%s", out);
    free(out);
    h_cleanup(&d);
}

Test(risk_orders, counters_survive_kill_9, .fini = kill_leftover)
{
    static h_daemon d;
    start(&d, NULL);
    rule_put(&d, "POST", "/v1/risk/rules",
             "{\"id\":\"five\",\"variable\":\"user\",\"measure\":\"orders\",\"limit\":5,"
             "\"window_s\":43200,\"action\":\"deny\"}",
             201);
    char coid[16];
    for (int i = 0; i < 5; i++) {
        snprintf(coid, sizeof coid, "K-%d", i);
        h_resp r = order_user(&d, coid, "survivor");
        cr_assert_eq(r.status, 201, "%s", r.body);
        h_resp_free(&r);
    }
    h_stop(&d, SIGKILL);
    cr_assert_eq(h_start(&d), 0);
    h_resp r = order_user(&d, "K-5", "survivor");
    cr_assert_eq(r.status, 403, "the sixth after a restart: %s", r.body);
    h_resp_free(&r);
    r = order_user(&d, "K-6", "another");
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    h_stop(&d, SIGTERM);
    h_cleanup(&d);
}

typedef struct state_wait {
    const h_daemon *d;
    long long id;
    const char *state;
} state_wait;

static int order_in_state(void *arg)
{
    state_wait *w = arg;
    char path[64];
    snprintf(path, sizeof path, "/v1/orders/%lld", w->id);
    h_resp r = h_get(w->d, path, "ops-token");
    const char *st = json_string_value(json_object_get(json_object_get(r.json, "order"), "state"));
    int ok = st && !strcmp(st, w->state);
    h_resp_free(&r);
    return ok;
}

Test(risk_orders, a_review_nobody_decides_times_out_to_the_default, .fini = kill_leftover)
{
    static h_daemon d;
    start(&d, "risk:\n  review_timeout_s: 1\n  review_default: release\n  review_check_s: 1\n");
    rule_put(&d, "POST", "/v1/risk/rules",
             "{\"id\":\"look\",\"variable\":\"user\",\"limit\":0,\"window_s\":3600,"
             "\"action\":\"review\"}",
             201);
    h_resp r = order_user(&d, "T-1", "slow-ops");
    cr_assert_eq(r.status, 202, "%s", r.body);
    state_wait w = {&d, h_int(json_object_get(r.json, "order"), "id"), "succeeded"};
    h_resp_free(&r);
    cr_assert_eq(h_wait_for(order_in_state, &w, 10000), 0, "the timeout did not release it");
    char ev[512];
    order_events(&d, w.id, ev, sizeof ev);
    cr_assert_str_eq(ev, "order.held order.released order.succeeded");
    r = h_get(&d, "/v1/events?limit=1000", "ops-token");
    json_t *e;
    size_t i;
    int by_timeout = 0;
    json_array_foreach(json_object_get(r.json, "events"), i, e) by_timeout +=
        !strcmp(json_string_value(json_object_get(e, "type")), "order.released") &&
        !strcmp(json_string_value(json_object_get(e, "by")), "timeout");
    h_resp_free(&r);
    cr_assert_eq(by_timeout, 1);
    /* audited like ops' decision, by the job */
    r = h_get(&d, "/v1/audit?action=review.release", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *recs = json_object_get(r.json, "audit"), *a = json_array_get(recs, 0);
    cr_assert_eq(json_array_size(recs), 1, "%s", r.body);
    cr_assert_str_eq(json_string_value(json_object_get(a, "via")), "job", "%s", r.body);
    cr_assert(strstr(r.body, "\"by\":\"timeout\""), "%s", r.body);
    h_resp_free(&r);
    h_stop(&d, SIGTERM);
    h_cleanup(&d);
}
