/*
 * Orders end to end: creation with FIFO codes, idempotent replay, conflicts,
 * out-of-stock that reserves nothing, SKUs that cannot be ordered, the quantity
 * limit, a 100,000-code employee-welfare order, and reading orders back (by
 * id, by client order id, paged lists) with the visibility rules of each client.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* The test's daemon. A failed assertion skips the rest of the test, so the
 * suite's fini stops a daemon still running (and keeps its directory, log
 * included, for a look). */
static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
}

TestSuite(orders, .fini = teardown);

static json_t *order_of(const h_resp *r)
{
    json_t *o = json_object_get(r->json, "order");
    cr_assert(json_is_object(o), "no order in %s", r->body);
    return o;
}

static json_t *codes_of(const h_resp *r)
{
    json_t *c = json_object_get(order_of(r), "codes");
    cr_assert(json_is_array(c), "no codes in %s", r->body);
    return c;
}

static const char *code_at(json_t *codes, size_t i)
{
    const char *s = json_string_value(json_object_get(json_array_get(codes, i), "code"));
    cr_assert(s, "codes[%zu] has no code", i);
    return s;
}

static void expect_error(const h_resp *r, long status, const char *code, const char *needle)
{
    cr_assert_eq(r->status, status, "expected %ld %s, got %ld: %s", status, code, r->status,
                 r->body);
    cr_assert_str_eq(h_str(r->json, "error"), code, "%s", r->body);
    const char *msg = h_str(r->json, "message");
    if (needle)
        cr_assert(strstr(msg, needle), "message '%s' does not mention '%s'", msg, needle);
    cr_assert(json_is_string(json_object_get(r->json, "request_id")), "%s", r->body);
}

/* Stats and events must not move: compares with a snapshot and frees it. */
static void expect_unchanged(const h_daemon *d, json_t *before, const char *what)
{
    json_t *after = h_stats(d);
    char *a = json_dumps(before, JSON_SORT_KEYS), *b = json_dumps(after, JSON_SORT_KEYS);
    cr_assert(json_equal(before, after), "%s changed the store:\nbefore %s\nafter  %s", what, a, b);
    free(a);
    free(b);
    json_decref(before);
    json_decref(after);
}

static long long available(const h_daemon *d, const char *sku)
{
    json_t *st = h_stats(d);
    json_t *s = h_stats_sku(st, sku);
    long long n = s ? h_int(s, "available") : 0;
    json_decref(st);
    return n;
}

static void start(h_daemon *d, const char *extra)
{
    h_setup(d, extra);
    cr_assert_eq(h_start(d), 0);
}

static void finish(h_daemon *d)
{
    cr_assert_eq(h_stop(d, SIGTERM), 0, "perkhubd did not exit 0 on SIGTERM");
    h_cleanup(d);
}

Test(orders, create_fifo_then_replay_is_identical)
{
    h_daemon *d = &D;
    start(d, NULL);
    h_resp r = h_import(d, "test.card", "code\nORD-1\nORD-2\nORD-3\nORD-4\n", 201);
    h_resp_free(&r);

    h_resp first = h_order(d, "mall-token", "A-1", "test.card", 2);
    cr_assert_eq(first.status, 201, "%s", first.body);
    char hv[64];
    cr_assert_null(h_header(&first, "Idempotent-Replay", hv, sizeof hv),
                   "a first order is not a replay");
    json_t *o = order_of(&first);
    cr_assert_gt(h_int(o, "id"), 0);
    cr_assert_str_eq(h_str(o, "client_order_id"), "A-1");
    cr_assert_str_eq(h_str(o, "sku"), "test.card");
    cr_assert_str_eq(h_str(o, "product_name"), "Test card");
    cr_assert_eq(h_int(o, "quantity"), 2);
    cr_assert_str_eq(h_str(o, "delivery"), "card_code");
    cr_assert_str_eq(h_str(o, "state"), "succeeded");
    cr_assert(strlen(h_str(o, "created_at")) >= 20 && strlen(h_str(o, "updated_at")) >= 20);
    json_t *codes = codes_of(&first);
    cr_assert_eq(json_array_size(codes), 2);
    cr_assert_str_eq(code_at(codes, 0), "ORD-1", "first in, first out");
    cr_assert_str_eq(code_at(codes, 1), "ORD-2");
    cr_assert_null(json_object_get(json_array_get(codes, 0), "card_no"),
                   "card_no only when the code has one");

    json_t *before = h_stats(d);
    long long ev = h_last_event(d);
    h_resp again = h_order(d, "mall-token", "A-1", "test.card", 2);
    cr_assert_eq(again.status, 200, "a replay answers 200: %s", again.body);
    cr_assert_not_null(h_header(&again, "Idempotent-Replay", hv, sizeof hv));
    cr_assert_str_eq(hv, "true");
    cr_assert_eq(h_int(order_of(&again), "id"), h_int(o, "id"), "the same order");
    cr_assert(json_equal(codes_of(&again), codes), "the same codes: %s vs %s", again.body,
              first.body);
    cr_assert_eq(h_last_event(d), ev, "a replay writes no event");
    expect_unchanged(d, before, "a replay");
    h_resp_free(&again);

    /* the replay took nothing from stock: the next order gets the next code */
    r = h_order(d, "mall-token", "A-2", "test.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_str_eq(code_at(codes_of(&r), 0), "ORD-3");
    h_resp_free(&r);
    h_resp_free(&first);
    finish(d);
}

Test(orders, same_id_different_request_is_a_conflict)
{
    h_daemon *d = &D;
    start(d, NULL);
    h_resp r = h_import(d, "test.card", "code\nCF-1\nCF-2\nCF-3\nCF-4\n", 201);
    h_resp_free(&r);
    r = h_import(d, "test.card2", "code\nCF2-1\nCF2-2\n", 201);
    h_resp_free(&r);
    h_resp first = h_order(d, "mall-token", "C-1", "test.card", 1);
    cr_assert_eq(first.status, 201, "%s", first.body);

    json_t *before = h_stats(d);
    r = h_order(d, "mall-token", "C-1", "test.card", 2);
    expect_error(&r, 409, "conflict", "client_order_id");
    h_resp_free(&r);
    r = h_order(d, "mall-token", "C-1", "test.card2", 1);
    expect_error(&r, 409, "conflict", "C-1");
    h_resp_free(&r);
    expect_unchanged(d, before, "a conflicting order");

    /* the original is untouched and still replays */
    r = h_order(d, "mall-token", "C-1", "test.card", 1);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(json_equal(codes_of(&r), codes_of(&first)));
    h_resp_free(&r);

    /* client order ids are per client: another client's C-1 is a new order */
    r = h_order(d, "other-token", "C-1", "test.card", 2);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_str_eq(code_at(codes_of(&r), 0), "CF-2");
    cr_assert_neq(h_int(order_of(&r), "id"), h_int(order_of(&first), "id"));
    h_resp_free(&r);
    h_resp_free(&first);
    finish(d);
}

Test(orders, out_of_stock_reserves_nothing)
{
    h_daemon *d = &D;
    start(d, NULL);
    h_resp r = h_import(d, "test.card", "code\nOOS-1\nOOS-2\nOOS-3\n", 201);
    h_resp_free(&r);

    json_t *before = h_stats(d);
    r = h_order(d, "mall-token", "X-1", "test.card", 5);
    expect_error(&r, 409, "out_of_stock", "test.card");
    h_resp_free(&r);
    expect_unchanged(d, before, "an out-of-stock order");
    cr_assert_eq(available(d, "test.card"), 3);
    r = h_get(d, "/v1/orders?client_order_id=X-1", "mall-token");
    cr_assert_eq(r.status, 404, "no order is stored: %s", r.body);
    h_resp_free(&r);

    /* what remains can be ordered, under the same id */
    r = h_order(d, "mall-token", "X-1", "test.card", 3);
    cr_assert_eq(r.status, 201, "%s", r.body);
    json_t *codes = codes_of(&r);
    cr_assert_eq(json_array_size(codes), 3);
    cr_assert_str_eq(code_at(codes, 0), "OOS-1");
    cr_assert_str_eq(code_at(codes, 2), "OOS-3");
    h_resp_free(&r);

    before = h_stats(d);
    r = h_order(d, "mall-token", "X-2", "test.card", 1);
    expect_error(&r, 409, "out_of_stock", NULL);
    h_resp_free(&r);
    expect_unchanged(d, before, "an order on empty stock");
    finish(d);
}

Test(orders, unorderable_skus_are_unknown)
{
    h_daemon *d = &D;
    start(d, NULL);
    /* stock exists for the hidden product, so only the listing can refuse it */
    h_resp r = h_import(d, "test.hidden", "code\nHID-1\nHID-2\n", 201);
    h_resp_free(&r);
    r = h_import(d, "test.card", "code\nUK-1\n", 201);
    h_resp_free(&r);

    json_t *before = h_stats(d);
    r = h_order(d, "mall-token", "U-1", "no.such.sku", 1);
    expect_error(&r, 422, "unknown_sku", "sku: no such product");
    cr_assert_null(strstr(r.body, "no.such.sku"), "an unknown value is echoed: %s", r.body);
    h_resp_free(&r);
    r = h_order(d, "mall-token", "U-2", "test.hidden", 1);
    expect_error(&r, 422, "unknown_sku", "test.hidden");
    h_resp_free(&r);
    r = h_order(d, "mall-token", "U-3", "test.topup", 1);
    expect_error(&r, 400, "invalid_request", "account: required for a recharge product");
    h_resp_free(&r);
    r = h_post_json(
        d, "/v1/orders", "mall-token",
        "{\"client_order_id\":\"U-4\",\"sku\":\"test.card\",\"account\":\"13800000001\"}");
    expect_error(&r, 400, "invalid_request", "account: only for recharge products");
    h_resp_free(&r);
    r = h_post_json(d, "/v1/orders", "mall-token",
                    "{\"client_order_id\":\"U-5\",\"sku\":\"test.topup\",\"quantity\":2,"
                    "\"account\":\"13800000001\"}");
    expect_error(&r, 400, "invalid_request", "quantity: a recharge is one unit");
    h_resp_free(&r);
    expect_unchanged(d, before, "orders for unknown and delisted SKUs, recharges without account");
    cr_assert_eq(available(d, "test.hidden"), 2);

    /* and the same ids stay free for a real order */
    r = h_order(d, "mall-token", "U-2", "test.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    finish(d);
}

Test(orders, quantity_over_the_limit)
{
    h_daemon *d = &D;
    start(d, "limits:\n  max_order_quantity: 50\n");
    char *csv = h_codes_csv("LIM", 60);
    h_resp r = h_import(d, "test.card", csv, 201);
    free(csv);
    h_resp_free(&r);

    json_t *before = h_stats(d);
    r = h_order(d, "mall-token", "L-1", "test.card", 51);
    expect_error(&r, 422, "limit_exceeded", "quantity");
    cr_assert(strstr(h_str(r.json, "message"), "50"), "names the limit: %s", r.body);
    h_resp_free(&r);
    expect_unchanged(d, before, "an order over the limit");

    r = h_order(d, "mall-token", "L-1", "test.card", 50);
    cr_assert_eq(r.status, 201, "exactly the limit is fine: %s", r.body);
    cr_assert_eq(json_array_size(codes_of(&r)), 50);
    h_resp_free(&r);
    cr_assert_eq(available(d, "test.card"), 10);
    finish(d);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

Test(orders, employee_welfare_100k_codes_in_one_order)
{
    enum { N = 100000 };
    h_daemon *d = &D;
    start(d, NULL);
    char *csv = h_codes_csv("EW", N);
    h_resp r = h_import(d, "test.card", csv, 201);
    free(csv);
    json_t *batch = json_object_get(r.json, "batch");
    cr_assert_eq(h_int(batch, "count"), N);
    cr_assert_str_eq(h_str(batch, "state"), "active");
    h_resp_free(&r);
    cr_assert_eq(available(d, "test.card"), N);

    r = h_order(d, "mall-token", "WELFARE-2026", "test.card", N);
    cr_assert_eq(r.status, 201, "status %ld: %.300s", r.status, r.body);
    json_t *codes = codes_of(&r);
    cr_assert_eq(json_array_size(codes), N);
    const char **list = malloc(N * sizeof *list);
    cr_assert(list);
    char want[32];
    for (size_t i = 0; i < N; i++) {
        list[i] = code_at(codes, i);
        snprintf(want, sizeof want, "EW-%07zu", i);
        if (strcmp(list[i], want) != 0)
            cr_assert_fail("codes[%zu] is %s, expected %s (FIFO)", i, list[i], want);
    }
    qsort(list, N, sizeof *list, cmp_str);
    for (size_t i = 1; i < N; i++)
        if (strcmp(list[i - 1], list[i]) == 0)
            cr_assert_fail("code %s issued twice in one order", list[i]);
    free(list);
    h_resp_free(&r);

    json_t *st = h_stats(d);
    json_t *s = h_stats_sku(st, "test.card");
    cr_assert_eq(h_int(s, "available"), 0);
    cr_assert_eq(h_int(s, "issued"), N);
    cr_assert_eq(h_int(st, "orders"), 1);
    json_decref(st);
    finish(d);
}

Test(orders, read_back_by_owner_other_client_and_ops)
{
    h_daemon *d = &D;
    start(d, NULL);
    h_resp r = h_import(d, "test.card", "code\nRB-1\nRB-2\nRB-3\n", 201);
    h_resp_free(&r);
    h_resp created = h_order(d, "mall-token", "R-1", "test.card", 2);
    cr_assert_eq(created.status, 201, "%s", created.body);
    long long id = h_int(order_of(&created), "id");
    char path[64];
    snprintf(path, sizeof path, "/v1/orders/%lld", id);

    r = h_get(d, path, "mall-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(h_int(order_of(&r), "id"), id);
    cr_assert(json_equal(codes_of(&r), codes_of(&created)), "the owner sees its codes");
    h_resp_free(&r);

    h_resp other = h_get(d, path, "other-token");
    expect_error(&other, 404, "not_found", NULL);
    cr_assert_null(strstr(other.body, "RB-1"));
    /* the same answer as for an order that does not exist at all */
    r = h_get(d, "/v1/orders/999999", "other-token");
    expect_error(&r, 404, "not_found", NULL);
    cr_assert_str_eq(h_str(r.json, "message"), h_str(other.json, "message"));
    h_resp_free(&r);
    h_resp_free(&other);

    r = h_get(d, path, "support-token");
    expect_error(&r, 404, "not_found", NULL);
    h_resp_free(&r);

    r = h_get(d, path, "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = order_of(&r);
    cr_assert_null(json_object_get(o, "codes"), "ops never gets codes: %s", r.body);
    cr_assert_null(strstr(r.body, "RB-1"));
    cr_assert_null(strstr(r.body, "RB-2"));
    cr_assert_str_eq(h_str(o, "cost"), "39.60", "2 x 19.80");
    cr_assert_str_eq(h_str(o, "client_order_id"), "R-1");
    h_resp_free(&r);

    /* the owner's view carries no cost: that is ops' business */
    r = h_get(d, path, "mall-token");
    cr_assert_null(json_object_get(order_of(&r), "cost"));
    h_resp_free(&r);
    h_resp_free(&created);
    finish(d);
}

/* GET path as token; checks every order belongs to client (NULL: any) and has
 * no codes; returns next_after (-1 for null). */
static long long list_ids(const h_daemon *d, const char *path, const char *token,
                          const char *client, long long *ids, size_t max, size_t *n)
{
    h_resp r = h_get(d, path, token);
    cr_assert_eq(r.status, 200, "GET %s: %s", path, r.body);
    json_t *orders = json_object_get(r.json, "orders");
    cr_assert(json_is_array(orders), "%s", r.body);
    *n = json_array_size(orders);
    cr_assert_leq(*n, max);
    for (size_t i = 0; i < *n; i++) {
        json_t *o = json_array_get(orders, i);
        ids[i] = h_int(o, "id");
        cr_assert_null(json_object_get(o, "codes"), "lists carry no codes: %s", r.body);
        if (client)
            cr_assert_str_eq(h_str(o, "client"), client, "%s", r.body);
    }
    json_t *next = json_object_get(r.json, "next_after");
    cr_assert(next, "next_after is always present: %s", r.body);
    long long na = json_is_integer(next) ? json_integer_value(next) : -1;
    h_resp_free(&r);
    return na;
}

Test(orders, find_by_client_order_id_and_page_own_orders)
{
    h_daemon *d = &D;
    start(d, NULL);
    char *csv = h_codes_csv("PG", 10);
    h_resp r = h_import(d, "test.card", csv, 201);
    free(csv);
    h_resp_free(&r);
    long long mall[3], other;
    const char *coids[] = {"P-1", "P-2", "P-3"};
    for (int i = 0; i < 3; i++) {
        r = h_order(d, "mall-token", coids[i], "test.card", 1);
        cr_assert_eq(r.status, 201, "%s", r.body);
        mall[i] = h_int(order_of(&r), "id");
        h_resp_free(&r);
        if (i == 0) { /* interleave another client's order */
            r = h_order(d, "other-token", "Q-1", "test.card", 1);
            cr_assert_eq(r.status, 201, "%s", r.body);
            other = h_int(order_of(&r), "id");
            h_resp_free(&r);
        }
    }

    r = h_get(d, "/v1/orders?client_order_id=P-2", "mall-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(h_int(order_of(&r), "id"), mall[1]);
    cr_assert_str_eq(code_at(codes_of(&r), 0), "PG-0000002");
    h_resp_free(&r);
    r = h_get(d, "/v1/orders?client_order_id=P-2", "other-token");
    expect_error(&r, 404, "not_found", NULL);
    h_resp_free(&r);
    r = h_get(d, "/v1/orders?client_order_id=Q-1", "mall-token");
    expect_error(&r, 404, "not_found", NULL);
    h_resp_free(&r);

    long long ids[8];
    size_t n;
    long long next = list_ids(d, "/v1/orders?limit=2", "mall-token", "mall", ids, 8, &n);
    cr_assert_eq(n, 2);
    cr_assert_eq(ids[0], mall[0]);
    cr_assert_eq(ids[1], mall[1], "othermall's order is not listed to mall");
    cr_assert_eq(next, mall[1]);
    char path[64];
    snprintf(path, sizeof path, "/v1/orders?after=%lld&limit=2", next);
    next = list_ids(d, path, "mall-token", "mall", ids, 8, &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(ids[0], mall[2]);
    cr_assert_eq(next, -1, "the last page has next_after null");

    next = list_ids(d, "/v1/orders", "other-token", "othermall", ids, 8, &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(ids[0], other);

    next = list_ids(d, "/v1/orders", "ops-token", NULL, ids, 8, &n);
    cr_assert_eq(n, 4, "ops sees every order, without codes");
    for (size_t i = 1; i < n; i++)
        cr_assert_lt(ids[i - 1], ids[i], "ascending ids");

    next = list_ids(d, "/v1/orders", "support-token", "cs", ids, 8, &n);
    cr_assert_eq(n, 0, "cs has no orders of its own");
    finish(d);
}

Test(orders, csv_expiry_accepts_the_time_format_the_api_writes)
{
    h_daemon *d = &D;
    start(d, NULL);
    /* the API writes times as "2030-06-01T08:00:00.250Z"; an operator copying
     * one into a CSV must not be told it is "not a date (... RFC 3339)" */
    h_resp r = h_import(d, "test.card",
                        "code,card_no,expires_at\n"
                        "FR-1,,2030-06-01T08:00:00.250Z\n"
                        "FR-2,,2030-06-01T16:00:00+08:00\n"
                        "FR-3,,2030-06-01\n"
                        "FR-4,,2030-06-01T08:00:00.5+00:00\n",
                        201);
    h_resp_free(&r);
    r = h_order(d, "mall-token", "FR-O1", "test.card", 4);
    cr_assert_eq(r.status, 201, "%s", r.body);
    json_t *codes = codes_of(&r);
    const char *want[] = {"2030-06-01T08:00:00.250Z", "2030-06-01T08:00:00.000Z",
                          "2030-06-01T15:59:59.999Z", "2030-06-01T08:00:00.500Z"};
    for (size_t i = 0; i < 4; i++)
        cr_assert_str_eq(h_str(json_array_get(codes, i), "expires_at"), want[i], "FR-%zu", i + 1);
    h_resp_free(&r);
    /* a fraction is digits: anything else is still refused */
    r = h_import(d, "test.card", "code,card_no,expires_at\nFR-5,,2030-06-01T08:00:00.Z\n", 422);
    h_resp_free(&r);
    finish(d);
}

/* ---- the HTTP layer under an order ----------------------------------------- */

static void token_hash(const char *token, char out[65])
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "printf %%s '%s' | sha256sum", token);
    FILE *f = popen(cmd, "r");
    cr_assert(f);
    cr_assert_eq(fread(out, 1, 64, f), 64);
    out[64] = 0;
    pclose(f);
}

static long order_status_as(const char *token, const char *coid)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/orders?client_order_id=%s", coid);
    h_resp r = h_get(&D, path, token);
    long status = r.status;
    h_resp_free(&r);
    return status;
}

/* The daemon remembers which client a token is (so it need not hash it on every
 * request); a reload that gives the tokens to other clients must be obeyed at
 * once: the swapped tokens act as their new clients, never as the cached ones. */
Test(orders, a_reload_that_swaps_tokens_is_obeyed_at_once)
{
    start(&D, NULL);
    h_resp r = h_import(&D, "test.card", "code\nSWAP-1\nSWAP-2\n", 201);
    h_resp_free(&r);
    r = h_order(&D, "mall-token", "SWAP-A", "test.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(order_status_as("mall-token", "SWAP-A"), 200); /* mall: its own */
    cr_assert_eq(order_status_as("other-token", "SWAP-A"), 404);

    char mall[65], other[65];
    token_hash("mall-token", mall);
    token_hash("other-token", other);
    char *base = h_config_text(&D, NULL);
    char *t1 = h_replace(base, mall, "SWAPPED-HASH");
    char *t2 = h_replace(t1, other, mall);
    char *t3 = h_replace(t2, "SWAPPED-HASH", other);
    h_write_config_text(&D, t3);
    free(base);
    free(t1);
    free(t2);
    free(t3);
    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    cr_assert_eq(h_log_wait(&D, "msg=config.reloaded", 1, 10000), 0);

    /* other-token is the mall now, mall-token the other mall */
    cr_assert_eq(order_status_as("other-token", "SWAP-A"), 200);
    cr_assert_eq(order_status_as("mall-token", "SWAP-A"), 404);
    r = h_order(&D, "mall-token", "SWAP-B", "test.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(order_status_as("mall-token", "SWAP-B"), 200);
    cr_assert_eq(order_status_as("other-token", "SWAP-B"), 404);
    r = h_get(&D, "/v1/orders", "bogus-token");
    cr_assert_eq(r.status, 401, "%s", r.body);
    h_resp_free(&r);
    finish(&D);
}

/* Each connection's memory is kept small (bench/README.md, "Where an order's CPU
 * goes"), but 8 KB of request headers (a common proxy limit) must still fit. */
Test(orders, eight_kilobytes_of_request_headers_fit)
{
    start(&D, NULL);
    h_resp r = h_import(&D, "test.card", "code\nHDR-1\n", 201);
    h_resp_free(&r);
    static char header[8200];
    int n = snprintf(header, sizeof header, "X-Padding: ");
    memset(header + n, 'p', 8 * 1024 - (size_t)n);
    header[8 * 1024] = 0;
    const char *body = "{\"client_order_id\":\"HDR-A\",\"sku\":\"test.card\",\"quantity\":1}";
    cr_assert_eq(h_http_hdr(&D, "POST", "/v1/orders", "mall-token", "application/json", header,
                            body, strlen(body), &r),
                 0);
    cr_assert_eq(r.status, 201, "%ld: %s", r.status, r.body);
    cr_assert_str_eq(code_at(codes_of(&r), 0), "HDR-1");
    h_resp_free(&r);
    finish(&D);
}
