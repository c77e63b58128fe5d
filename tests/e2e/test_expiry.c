/*
 * Expired codes and unknown stock against a real perkhubd (issue 9, defects 5
 * and 6):
 *   - codes expiring in ~2 s count as available until their expiry and not a
 *     millisecond after; an order for them is then out_of_stock, never given
 *     an expired code; the daemon's sweep retires them with one code.expired
 *     event (a count, no code); stats and --check-store agree;
 *   - codes that expire while the daemon is down are retired after it starts;
 *   - stock nobody knows locally (a recharge, a card product served by a
 *     supplier offer with no local code) is null, never 0.
 * Every wait polls a condition with a generous deadline.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
}

TestSuite(expiry, .fini = teardown);

/* Imports two codes of sku expiring at expires_at; returns the batch id. */
static long long import_expiring(const char *sku, const char *prefix, int64_t expires_at)
{
    char when[40], csv[256];
    h_rfc3339(expires_at, when, sizeof when);
    snprintf(csv, sizeof csv, "code,expires_at\n%s-1,%s\n%s-2,%s\n", prefix, when, prefix, when);
    h_resp r = h_import(&D, sku, csv, 201);
    long long id = h_int(json_object_get(r.json, "batch"), "id");
    h_resp_free(&r);
    return id;
}

/* The product's stock.available (borrowed from r): an integer or JSON null. */
static json_t *stock_of(h_resp *r, const char *sku)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/products/%s", sku);
    *r = h_get(&D, path, "mall-token");
    cr_assert_eq(r->status, 200, "%s: %s", path, r->body);
    json_t *st = json_object_get(json_object_get(r->json, "product"), "stock");
    cr_assert(json_is_object(st), "%s: no stock object: %s", sku, r->body);
    json_t *v = json_object_get(st, "available");
    cr_assert_not_null(v, "%s: stock without available: %s", sku, r->body);
    return v;
}

static long long available(const char *sku)
{
    h_resp r;
    json_t *v = stock_of(&r, sku);
    cr_assert(json_is_integer(v), "%s: available is not a number: %s", sku, r.body);
    long long n = json_integer_value(v);
    h_resp_free(&r);
    return n;
}

static int card2_empty(void *arg)
{
    (void)arg;
    return available("test.card2") == 0;
}

/* The events feed from 0 (raw body and parsed), as ops. */
static h_resp feed(void)
{
    h_resp r = h_get(&D, "/v1/events?after=0&limit=1000", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    return r;
}

static int count_expired_events(const h_resp *r)
{
    size_t i;
    json_t *e;
    int n = 0;
    json_array_foreach(json_object_get(r->json, "events"), i, e)
    {
        const char *t = json_string_value(json_object_get(e, "type"));
        n += t && strcmp(t, "code.expired") == 0;
    }
    return n;
}

static int has_expired_event(void *arg)
{
    (void)arg;
    h_resp r = feed();
    int n = count_expired_events(&r);
    h_resp_free(&r);
    return n > 0;
}

/* The one code.expired event: a count per batch, no code. */
static void assert_one_expired_event(long long batch, int count, const char *prefix)
{
    h_resp r = feed();
    cr_assert_eq(count_expired_events(&r), 1, "one event for the sweep, not one per code: %s",
                 r.body);
    cr_assert_null(strstr(r.body, prefix), "an event holds a code: %s", r.body);
    cr_assert_null(strstr(r.body, "code_id"), "an event names a code: %s", r.body);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(r.json, "events"), i, e)
    {
        const char *t = json_string_value(json_object_get(e, "type"));
        if (!t || strcmp(t, "code.expired"))
            continue;
        cr_assert_eq(h_int(e, "count"), count);
        json_t *b = json_array_get(json_object_get(e, "batches"), 0);
        cr_assert_eq(json_array_size(json_object_get(e, "batches")), 1);
        cr_assert_eq(h_int(b, "batch_id"), batch);
        cr_assert_str_eq(h_str(b, "sku"), "test.card2");
        cr_assert_eq(h_int(b, "count"), count);
    }
    h_resp_free(&r);
}

static json_t *sku_row(json_t *stats, const char *sku)
{
    json_t *row = h_stats_sku(stats, sku);
    cr_assert(row, "no stats row for %s", sku);
    return row;
}

static void assert_card2_stats(int available_now, int expired)
{
    json_t *st = h_stats(&D);
    json_t *row = sku_row(st, "test.card2");
    cr_assert_eq(h_int(row, "available"), available_now);
    cr_assert_eq(h_int(row, "expired"), expired);
    cr_assert_eq(h_int(row, "imported"), available_now + expired);
    json_decref(st);
}

static void assert_store_ok(void)
{
    char *out = NULL;
    int rc = h_check_store(&D, &out);
    cr_assert_eq(rc, 0, "--check-store: %s", out);
    free(out);
}

Test(expiry, codes_stop_counting_at_expiry_and_are_swept_with_one_event)
{
    h_setup(&D, NULL);
    cr_assert_eq(h_start(&D), 0);
    cr_assert_eq(available("test.card2"), 0, "no codes, no supplier offer: a known 0");

    int64_t expires = h_wall_ms() + 2000;
    long long batch = import_expiring("test.card2", "EXPX", expires);
    /* before the expiry both count (asked and answered before it: a loaded
     * machine may take longer, and then there is nothing to compare) */
    long long n = available("test.card2");
    if (h_wall_ms() < expires)
        cr_assert_eq(n, 2, "both count until they expire");
    json_t *st = h_stats(&D);
    if (h_wall_ms() < expires)
        cr_assert_eq(h_int(sku_row(st, "test.card2"), "available"), 2);
    json_decref(st);

    cr_assert_eq(h_wait_for(card2_empty, NULL, 20000), 0, "available never dropped to 0");
    cr_assert_geq(h_wall_ms(), expires, "available dropped before the codes expired");

    /* the last two codes have expired: out of stock, never an expired code */
    h_resp r = h_order(&D, "mall-token", "EXP-O1", "test.card2", 1);
    cr_assert_eq(r.status, 409, "%s", r.body);
    cr_assert_str_eq(h_str(r.json, "error"), "out_of_stock");
    cr_assert_null(strstr(r.body, "EXPX"), "%s", r.body);
    h_resp_free(&r);

    cr_assert_eq(h_wait_for(has_expired_event, NULL, 20000), 0, "no code.expired event");
    assert_one_expired_event(batch, 2, "EXPX");
    assert_card2_stats(0, 2);
    r = h_order(&D, "mall-token", "EXP-O2", "test.card2", 1);
    cr_assert_eq(r.status, 409, "after the sweep too: %s", r.body);
    h_resp_free(&r);
    cr_assert_eq(h_log_wait(&D, "msg=codes.expired", 1, 5000), 0);
    cr_assert_eq(h_file_count(D.log, "EXPX"), 0, "the log holds a code");
    assert_store_ok();
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    assert_store_ok();
    h_cleanup(&D);
}

static int past(void *arg)
{
    return h_wall_ms() > *(int64_t *)arg;
}

Test(expiry, codes_that_expire_while_stopped_are_retired_after_start)
{
    h_setup(&D, NULL);
    cr_assert_eq(h_start(&D), 0);
    int64_t expires = h_wall_ms() + 3000;
    long long batch = import_expiring("test.card2", "EXPR", expires);
    h_resp r = feed();
    int before = count_expired_events(&r);
    h_resp_free(&r);
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    if (before || h_wall_ms() >= expires)
        cr_skip_test("the machine took over 3 s to import and stop: nothing left to test");
    cr_assert_eq(h_wait_for(past, &expires, 20000), 0);

    cr_assert_eq(h_start(&D), 0);
    cr_assert_eq(available("test.card2"), 0);
    cr_assert_eq(h_wait_for(has_expired_event, NULL, 20000), 0, "no code.expired after start");
    assert_one_expired_event(batch, 2, "EXPR");
    assert_card2_stats(0, 2);
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    assert_store_ok();
    h_cleanup(&D);
}

Test(expiry, unknown_stock_is_null_never_zero)
{
    h_setup(&D, NULL);
    cr_assert_eq(h_start(&D), 0);
    h_resp r;
    json_t *v = stock_of(&r, "test.topup");
    cr_assert(json_is_null(v), "a recharge's stock is unknown: %s", r.body);
    h_resp_free(&r);
    v = stock_of(&r, "test.card");
    cr_assert(json_is_null(v), "a supplier-served card with no local code: %s", r.body);
    h_resp_free(&r);

    /* local codes are known: the count of what can be issued from stock */
    r = h_import(&D, "test.card", "code\nNUL-1\nNUL-2\n", 201);
    h_resp_free(&r);
    cr_assert_eq(available("test.card"), 2);
    r = h_order(&D, "mall-token", "NUL-O1", "test.card", 2);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    v = stock_of(&r, "test.card");
    cr_assert(json_is_null(v), "local stock gone, supplier stock unknown: %s", r.body);
    h_resp_free(&r);

    /* the list says the same as the single product */
    r = h_get(&D, "/v1/products", "mall-token");
    cr_assert_eq(r.status, 200);
    size_t i;
    json_t *p;
    int seen = 0;
    json_array_foreach(json_object_get(r.json, "products"), i, p)
    {
        const char *sku = h_str(p, "sku");
        json_t *a = json_object_get(json_object_get(p, "stock"), "available");
        cr_assert_not_null(a, "%s: no stock.available", sku);
        if (!strcmp(sku, "test.topup") || !strcmp(sku, "test.card")) {
            cr_assert(json_is_null(a), "%s: %s", sku, r.body);
            seen++;
        }
        if (!strcmp(sku, "test.card2")) {
            cr_assert(json_is_integer(a) && json_integer_value(a) == 0, "%s", r.body);
            seen++;
        }
    }
    cr_assert_eq(seen, 3, "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    h_cleanup(&D);
}
