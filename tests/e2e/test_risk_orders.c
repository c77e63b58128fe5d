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
