/*
 * test_feed.c — the mall's own event feed (issue 13 item 5): GET /v1/events
 * with the fulfill scope returns the events of the token's client's orders
 * only, cut to what its order view shows (no supplier, cost or batch; never
 * an account or a code), paged with after/limit so a mall catches up after
 * its own downtime; ops still see every event; a support-only token is
 * refused (the route's scopes: fulfill or ops).
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

TestSuite(feed, .fini = teardown);

static void order_ok(const char *token, const char *coid, const char *sku, const char *account)
{
    char body[256];
    snprintf(body, sizeof body, "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"quantity\":1%s%s%s}",
             coid, sku, account ? ",\"account\":\"" : "", account ? account : "",
             account ? "\",\"wait\":5" : "");
    h_resp r = h_post_json(&D, "/v1/orders", token, body);
    cr_assert(r.status == 200 || r.status == 201, "%s %s: %ld %s", token, coid, r.status, r.body);
    cr_assert_str_eq(h_str(h_order_of(&r), "state"), "succeeded", "%s", r.body);
    h_resp_free(&r);
}

/* Every event the token's feed holds, paged `limit` at a time from the start;
 * asserts that each page continues where the last one said. */
static json_t *feed_all(const char *token, int limit, int *pages)
{
    json_t *all = json_array();
    long long after = 0;
    *pages = 0;
    for (;;) {
        char path[96];
        snprintf(path, sizeof path, "/v1/events?after=%lld&limit=%d", after, limit);
        h_resp r = h_get(&D, path, token);
        cr_assert_eq(r.status, 200, "%s %s: %ld %s", token, path, r.status, r.body);
        json_t *evs = json_object_get(r.json, "events");
        cr_assert(json_is_array(evs), "%s", r.body);
        cr_assert_leq(json_array_size(evs), (size_t)limit);
        size_t i;
        json_t *e;
        json_array_foreach(evs, i, e)
        {
            cr_assert_gt(h_int(e, "seq"), after, "ascending past after: %s", r.body);
            json_array_append(all, e);
        }
        long long next = h_int(r.json, "next_after");
        int more = json_is_true(json_object_get(r.json, "more"));
        cr_assert_geq(next, after, "%s", r.body);
        if (json_array_size(evs))
            cr_assert_geq(next, h_int(json_array_get(evs, json_array_size(evs) - 1), "seq"));
        (*pages)++;
        h_resp_free(&r);
        after = next;
        if (!more)
            break;
        cr_assert_lt(*pages, 1000, "the feed never ends");
    }
    return all;
}

static size_t count_type(json_t *evs, const char *type)
{
    size_t n = 0, i;
    json_t *e;
    json_array_foreach(evs, i, e) n += strcmp(h_str(e, "type"), type) == 0;
    return n;
}

/* Nothing a mall may not see: another client, a supplier, a cost, a batch, a
 * code, the account in any form. */
static void assert_mall_only(json_t *evs, const char *client)
{
    size_t i;
    json_t *e;
    json_array_foreach(evs, i, e)
    {
        char *txt = json_dumps(e, JSON_COMPACT);
        cr_assert(json_is_integer(json_object_get(e, "order_id")), "no order: %s", txt);
        cr_assert_str_eq(h_str(e, "client"), client, "%s", txt);
        static const char *const never[] = {"supplier", "cost_fen", "batch_id", "discrepancy_id",
                                            "ours",     "theirs",   "before",   "after"};
        for (size_t k = 0; k < sizeof never / sizeof *never; k++)
            cr_assert_null(json_object_get(e, never[k]), "%s in a mall's event: %s", never[k], txt);
        cr_assert_null(strstr(txt, "FEED-"), "a code: %s", txt);
        cr_assert_null(strstr(txt, "1380000"), "an account: %s", txt);
        cr_assert_null(strchr(txt, '*'), "a masked account: %s", txt);
        cr_assert_null(strstr(txt, "sbx"), "the supplier: %s", txt);
        free(txt);
    }
}

Test(feed, each_mall_sees_its_own_orders_ops_sees_all)
{
    h_setup(&D, NULL);
    cr_assert_eq(h_start(&D), 0);
    char *csv = h_codes_csv("FEED", 10);
    h_resp imp = h_import(&D, "test.card", csv, 201);
    h_resp_free(&imp);
    free(csv);
    /* interleaved, so a mall's page has the other's events between its own */
    for (int i = 0; i < 3; i++) {
        char coid[32];
        snprintf(coid, sizeof coid, "M-%d", i);
        order_ok("mall-token", coid, "test.card", NULL);
        snprintf(coid, sizeof coid, "O-%d", i);
        order_ok("other-token", coid, "test.card", NULL);
    }
    order_ok("mall-token", "M-R", "test.topup", "13800000001");
    order_ok("other-token", "O-R", "test.topup", "13800000001");

    int pages;
    json_t *ops = feed_all("ops-token", 1000, &pages);
    json_t *mall = feed_all("mall-token", 1000, &pages);
    json_t *other = feed_all("other-token", 1000, &pages);
    assert_mall_only(mall, "mall");
    assert_mall_only(other, "othermall");
    /* ops see the import and both malls' events: every one a mall sees */
    cr_assert_eq(count_type(ops, "batch.imported"), 1);
    cr_assert_eq(count_type(ops, "order.succeeded"), 8);
    cr_assert_eq(count_type(mall, "order.succeeded"), 4);
    cr_assert_eq(count_type(other, "order.succeeded"), 4);
    cr_assert_eq(count_type(mall, "order.accepted"), 1, "the recharge's");
    size_t ops_orders = 0, i;
    json_t *e;
    json_array_foreach(ops, i, e) ops_orders += json_object_get(e, "order_id") != NULL;
    cr_assert_eq(json_array_size(mall) + json_array_size(other), ops_orders);
    /* ops keep the whole event: the supplier and the cost */
    json_array_foreach(ops, i, e) if (!strcmp(h_str(e, "type"), "order.succeeded"))
        cr_assert(json_object_get(e, "cost_fen"), "ops lost the cost");

    /* one at a time: the same events, a page each, continuing where told */
    json_t *paged = feed_all("mall-token", 1, &pages);
    cr_assert(json_equal(paged, mall), "paged by 1 differs from one page");
    cr_assert_geq(pages, (int)json_array_size(mall));
    /* caught up from the middle: after the mall's 2nd event, the rest */
    long long mid = h_int(json_array_get(mall, 1), "seq");
    char path[96];
    snprintf(path, sizeof path, "/v1/events?after=%lld&limit=1000", mid);
    h_resp r = h_get(&D, path, "mall-token");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(json_array_size(json_object_get(r.json, "events")), json_array_size(mall) - 2);
    cr_assert_eq(h_int(json_array_get(json_object_get(r.json, "events"), 0), "seq"),
                 h_int(json_array_get(mall, 2), "seq"));
    h_resp_free(&r);

    /* support only: refused, naming the scopes that may */
    r = h_get(&D, "/v1/events", "support-token");
    cr_assert_eq(r.status, 403, "%s", r.body);
    cr_assert(strstr(r.body, "fulfill or ops"), "%s", r.body);
    h_resp_free(&r);

    json_decref(ops);
    json_decref(mall);
    json_decref(other);
    json_decref(paged);
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    h_cleanup(&D);
}
