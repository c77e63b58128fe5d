/*
 * test_analytics.c — the GET /v1/analytics endpoints against a brute-force count (issue 16
 * item 4): a few hundred varied orders (two clients, card codes from stock at
 * a price, at a per-client price and without one, some out of stock, and
 * recharges through the sandbox that succeed, fail or succeed later), then
 * every figure of /v1/analytics/top (days and weeks, by orders and by value)
 * and /v1/analytics/hours is recomputed from GET /v1/orders alone and must
 * be equal, for ops and for one mall's own view; a restart keeps them; bad
 * input is a 400 naming the parameter and co-redemption is ops only.
 *
 * Grant figures (claims, co-redemption) are fed by the grant transitions
 * (store_agg_grant) and checked at the store level in
 * tests/unit/test_store_agg.c.
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

TestSuite(analytics, .fini = teardown, .timeout = 240);

static const char *const BODY =
    "suppliers:\n"
    "  - id: acme\n    plugin: manual\n    priority: 10\n"
    "  - id: sbx\n    plugin: sandbox\n    priority: 5\n"
    "products:\n"
    "  - sku: an.card1\n    name: Card one\n    brand: b1\n    category: video\n"
    "    delivery: card_code\n    face_value: \"30.00\"\n    price: \"30.00\"\n"
    "    prices:\n      - {client: othermall, price: \"28.00\"}\n"
    "  - sku: an.card2\n    name: Card two\n    brand: b2\n    category: music\n"
    "    delivery: card_code\n    face_value: \"15.00\"\n    price: \"15.00\"\n"
    "  - sku: an.card3\n    name: Unpriced card\n    brand: b3\n    category: music\n"
    "    delivery: card_code\n    face_value: \"10.00\"\n"
    "  - sku: an.topup\n    name: Top-up\n    brand: telco\n    category: telecom\n"
    "    delivery: recharge\n    face_value: \"50.00\"\n    price: \"50.00\"\n"
    "    offers:\n      - {supplier: sbx, supplier_sku: sandbox.recharge, cost: \"49.00\"}\n";

#define NSKU 4
static const char *const SKU[NSKU] = {"an.card1", "an.card2", "an.card3", "an.topup"};

/* The unit price the ledger books (fen; -1 none): the configured price. */
static long long price_of(const char *sku, const char *client)
{
    if (!strcmp(sku, "an.card1"))
        return !strcmp(client, "othermall") ? 2800 : 3000;
    if (!strcmp(sku, "an.card2"))
        return 1500;
    if (!strcmp(sku, "an.topup"))
        return 5000;
    return -1;
}

static void import(const char *sku, const char *prefix, int n)
{
    char *csv = h_codes_csv(prefix, n);
    h_resp r = h_import(&D, sku, csv, 201);
    h_resp_free(&r);
    free(csv);
}

static int is_final(json_t *o, void *arg)
{
    (void)arg;
    return !strcmp(h_str(o, "state"), "succeeded") || !strcmp(h_str(o, "state"), "failed");
}

/* Every order, as GET /v1/orders pages them (ops). */
static json_t *all_orders(void)
{
    json_t *all = json_array();
    long long after = 0;
    for (;;) {
        char path[96];
        snprintf(path, sizeof path, "/v1/orders?limit=100&after=%lld", after);
        h_resp r = h_get(&D, path, "ops-token");
        cr_assert_eq(r.status, 200, "%s: %ld %s", path, r.status, r.body);
        json_array_extend(all, json_object_get(r.json, "orders"));
        json_t *next = json_object_get(r.json, "next_after");
        int done = !json_is_integer(next);
        after = done ? 0 : json_integer_value(next);
        h_resp_free(&r);
        if (done)
            return all;
    }
}

/* ---- the brute-force count ---- */

#define MAXDAYS 3
typedef struct fig {
    long long orders, units, value, unpriced;
} fig;
typedef struct brute {
    char day[MAXDAYS][11]; /* the UTC days the orders were created on */
    int ndays;
    fig f[MAXDAYS][NSKU];
    long long hours[24];
} brute;

static int day_index(brute *b, const char *created)
{
    for (int i = 0; i < b->ndays; i++)
        if (!strncmp(b->day[i], created, 10))
            return i;
    cr_assert(b->ndays < MAXDAYS, "orders over more than %d days", MAXDAYS);
    snprintf(b->day[b->ndays], 11, "%.10s", created);
    return b->ndays++;
}

static void count(json_t *orders, const char *client, brute *b)
{
    memset(b, 0, sizeof *b);
    size_t i;
    json_t *o;
    json_array_foreach(orders, i, o)
    {
        const char *c = h_str(o, "client"), *created = h_str(o, "created_at");
        if (client && strcmp(c, client))
            continue;
        cr_assert(strlen(created) >= 13 && created[10] == 'T', "created_at %s", created);
        b->hours[atoi(created + 11)]++;
        int d = day_index(b, created), k = -1;
        for (int s = 0; s < NSKU; s++)
            if (!strcmp(SKU[s], h_str(o, "sku")))
                k = s;
        cr_assert(k >= 0);
        if (strcmp(h_str(o, "state"), "succeeded"))
            continue;
        long long q = h_int(o, "quantity"), p = price_of(SKU[k], c);
        b->f[d][k].orders++;
        b->f[d][k].units += q;
        if (p >= 0)
            b->f[d][k].value += p * q;
        else
            b->f[d][k].unpriced++;
    }
}

static json_t *get_ok(const char *path, const char *token)
{
    h_resp r = h_get(&D, path, token);
    cr_assert_eq(r.status, 200, "GET %s: %ld %s", path, r.status, r.body);
    json_t *j = json_incref(r.json);
    h_resp_free(&r);
    return j;
}

static void expect_400(const char *path, const char *field)
{
    h_resp r = h_get(&D, path, "ops-token");
    cr_assert_eq(r.status, 400, "GET %s: %ld %s", path, r.status, r.body);
    const char *msg = h_str(r.json, "message");
    cr_assert(strstr(msg, field) != NULL, "GET %s should name %s: %s", path, field, msg);
    h_resp_free(&r);
}

/* The daily top lists (n = every sku) equal the count, in the documented order. */
static void check_days(const brute *b, const char *token, const char *by)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/analytics/top?by=%s&period=day&n=100&from=%s&to=%s", by,
             b->day[0], b->day[b->ndays - 1]);
    json_t *j = get_ok(path, token);
    json_t *periods = json_object_get(j, "periods");
    int value = !strcmp(by, "value");
    size_t seen = 0;
    for (int d = 0; d < b->ndays; d++) {
        int nonzero = 0;
        for (int k = 0; k < NSKU; k++)
            nonzero += b->f[d][k].orders > 0;
        if (!nonzero)
            continue;
        json_t *p = json_array_get(periods, seen++);
        cr_assert(p, "%s: no period for %s", path, b->day[d]);
        cr_assert_str_eq(h_str(p, "period"), b->day[d]);
        json_t *top = json_object_get(p, "top");
        cr_assert_eq(json_array_size(top), (size_t)nonzero, "%s %s", path, b->day[d]);
        long long prev_key = -1, prev_other = -1;
        size_t i;
        json_t *row;
        json_array_foreach(top, i, row)
        {
            int k = -1;
            for (int s = 0; s < NSKU; s++)
                if (!strcmp(SKU[s], h_str(row, "sku")))
                    k = s;
            cr_assert(k >= 0);
            const fig *f = &b->f[d][k];
            cr_assert_eq(h_int(row, "orders"), f->orders, "%s %s orders", b->day[d], SKU[k]);
            cr_assert_eq(h_int(row, "units"), f->units, "%s %s units", b->day[d], SKU[k]);
            cr_assert_eq(h_int(row, "value_fen"), f->value, "%s %s value", b->day[d], SKU[k]);
            cr_assert_eq(h_int(row, "unpriced"), f->unpriced);
            cr_assert_eq(h_int(row, "rank"), (long long)i + 1);
            long long key = value ? f->value : f->orders, other = value ? f->orders : f->value;
            cr_assert(prev_key < 0 || key < prev_key || (key == prev_key && other <= prev_other),
                      "%s: best first", path);
            prev_key = key, prev_other = other;
        }
    }
    cr_assert_eq(json_array_size(periods), seen, "%s: no period without orders", path);
    json_decref(j);
}

static void check_hours(const brute *b, const char *token)
{
    char path[160];
    snprintf(path, sizeof path, "/v1/analytics/hours?from=%s&to=%s", b->day[0],
             b->day[b->ndays - 1]);
    json_t *j = get_ok(path, token);
    long long total = 0;
    for (int h = 0; h < 24; h++) {
        json_t *row = json_array_get(json_object_get(j, "hours"), (size_t)h);
        cr_assert_eq(h_int(row, "hour"), h);
        cr_assert_eq(h_int(row, "orders"), b->hours[h], "hour %d", h);
        total += b->hours[h];
    }
    cr_assert_eq(h_int(j, "total"), total);
    json_decref(j);
}

/* A week's figures: the sum of its days. */
static void check_week(const brute *b)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/analytics/top?by=orders&period=week&n=2&from=%s&to=%s",
             b->day[0], b->day[b->ndays - 1]);
    json_t *j = get_ok(path, "ops-token");
    long long sum = 0, best = 0;
    for (int k = 0; k < NSKU; k++) {
        long long o = 0;
        for (int d = 0; d < b->ndays; d++)
            o += b->f[d][k].orders;
        best = o > best ? o : best;
    }
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(j, "periods"), i, p)
    {
        json_t *top = json_object_get(p, "top");
        cr_assert(json_array_size(top) <= 2, "n=2");
        sum += h_int(json_array_get(top, 0), "orders");
    }
    if (json_array_size(json_object_get(j, "periods")) == 1)
        cr_assert_eq(sum, best, "the week's best sku: the sum of its days");
    json_decref(j);
    /* the whole range as one period: every sku's sums over its days */
    snprintf(path, sizeof path, "/v1/analytics/top?by=value&period=range&n=100&from=%s&to=%s",
             b->day[0], b->day[b->ndays - 1]);
    j = get_ok(path, "ops-token");
    json_t *periods = json_object_get(j, "periods");
    cr_assert_eq(json_array_size(periods), 1);
    cr_assert_str_eq(h_str(json_array_get(periods, 0), "period"), b->day[0]);
    json_t *top = json_object_get(json_array_get(periods, 0), "top");
    for (int k = 0; k < NSKU; k++) {
        fig f = {0};
        for (int d = 0; d < b->ndays; d++)
            f.orders += b->f[d][k].orders, f.units += b->f[d][k].units, f.value += b->f[d][k].value;
        json_t *row = NULL, *x;
        size_t i2;
        json_array_foreach(top, i2, x) if (!strcmp(h_str(x, "sku"), SKU[k])) row = x;
        cr_assert_eq(row ? h_int(row, "orders") : 0, f.orders, "range: %s orders", SKU[k]);
        cr_assert_eq(row ? h_int(row, "units") : 0, f.units, "range: %s units", SKU[k]);
        cr_assert_eq(row ? h_int(row, "value_fen") : 0, f.value, "range: %s value", SKU[k]);
    }
    json_decref(j);
}

Test(analytics, figures_match_a_brute_force_count_over_the_orders)
{
    h_setup_custom(&D, BODY, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
    import("an.card1", "A1", 250);
    import("an.card2", "A2", 80);
    import("an.card3", "A3", 200);

    srand(16);
    enum { N = 300 };
    static const char *const accounts[] = {"13800000001", "13800000002", "13800000006"};
    long long ids[N];
    for (int i = 0; i < N; i++) {
        const char *token = rand() % 3 ? "mall-token" : "other-token";
        int k = rand() % NSKU, q = 1 + rand() % 3;
        char body[256];
        if (k == 3)
            snprintf(body, sizeof body,
                     "{\"client_order_id\":\"an-%d\",\"sku\":\"an.topup\",\"account\":\"%s\","
                     "\"wait\":0}",
                     i, accounts[rand() % 3]);
        else
            snprintf(body, sizeof body,
                     "{\"client_order_id\":\"an-%d\",\"sku\":\"%s\",\"quantity\":%d}", i, SKU[k],
                     q);
        h_resp r = h_post_json(&D, "/v1/orders", token, body);
        /* out of stock (no offer to buy it from) stores no order */
        cr_assert(r.status == 200 || r.status == 201 || r.status == 202 || r.status == 409,
                  "%s: %ld %s", body, r.status, r.body);
        ids[i] = r.status == 409 ? 0 : h_int(h_order_of(&r), "id");
        h_resp_free(&r);
    }
    for (int i = 0; i < N; i++)
        if (ids[i])
            json_decref(h_order_poll(&D, ids[i], "ops-token", is_final, NULL, 30000, "final"));

    json_t *orders = all_orders();
    cr_assert_geq(json_array_size(orders), 230, "a few hundred orders");
    brute all, mall;
    count(orders, NULL, &all);
    count(orders, "mall", &mall);
    long long failed = 0, succeeded = 0;
    size_t i;
    json_t *o;
    json_array_foreach(orders, i, o)
    {
        failed += !strcmp(h_str(o, "state"), "failed");
        succeeded += !strcmp(h_str(o, "state"), "succeeded");
    }
    cr_assert(failed > 10 && succeeded > 100, "varied outcomes: %lld failed, %lld succeeded",
              failed, succeeded);

    check_days(&all, "ops-token", "orders");
    check_days(&all, "ops-token", "value");
    check_days(&mall, "mall-token", "orders");
    check_days(&mall, "mall-token", "value");
    check_hours(&all, "ops-token");
    check_hours(&mall, "mall-token");
    check_week(&all);

    /* a restart reads the same figures */
    cr_assert(h_stop(&D, SIGTERM) == 0);
    cr_assert(h_start(&D) == 0);
    check_days(&all, "ops-token", "value");
    check_hours(&mall, "mall-token");

    /* refusals */
    expect_400("/v1/analytics/top?by=units", "by");
    expect_400("/v1/analytics/top?period=month", "period");
    expect_400("/v1/analytics/top?n=0", "n");
    expect_400("/v1/analytics/top?n=101", "n");
    expect_400("/v1/analytics/top?from=2026-02-30", "from");
    expect_400("/v1/analytics/top?from=2026-01-02&to=2026-01-01", "from");
    expect_400("/v1/analytics/top?from=2024-01-01&to=2026-01-01", "to");
    expect_400("/v1/analytics/top?limit=5", "unknown parameter");
    expect_400("/v1/analytics/claims?by=department", "by");
    expect_400("/v1/analytics/co?a=an.card1", "b");
    expect_400("/v1/analytics/co?a=an.card1&b=an.card1", "b");
    expect_400("/v1/analytics/co?a=an.card1&b=an.card2&within_d=31", "within_d");
    h_resp r = h_get(&D, "/v1/analytics/co?a=an.card1&b=an.card2", "mall-token");
    cr_assert_eq(r.status, 403, "co-redemption is ops only: %ld", r.status);
    h_resp_free(&r);
    r = h_get(&D, "/v1/analytics/claims?by=sku", "mall-token");
    cr_assert_eq(r.status, 403, "claims by sku is ops only: %ld", r.status);
    h_resp_free(&r);
    r = h_get(&D, "/v1/analytics/top", "support-token");
    cr_assert_eq(r.status, 403, "support reads no analytics: %ld", r.status);
    h_resp_free(&r);
    /* without grants the claim figures are empty, not an error */
    json_t *j = get_ok("/v1/analytics/claims?by=tag", "ops-token");
    cr_assert_eq(json_array_size(json_object_get(j, "rows")), 0);
    json_decref(j);

    char *out = NULL;
    cr_assert_eq(h_check_store(&D, &out), 0, "--check-store: %s", out ? out : "");
    free(out);
    json_decref(orders);
}
