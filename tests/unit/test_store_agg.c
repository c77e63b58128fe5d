/*
 * test_store_agg.c — the grant analytics (core/store/store_agg.c) at the store
 * level: store_agg_grant called directly in a write transaction (the grant
 * transitions that call it live on another branch), then the reads
 * (ph_store_agg_claims, ph_store_agg_co) compared with a model that counts
 * the documented definitions over the same transitions; and its refusals.
 */
#include "config/config.h"
#include "store/store.h"
#include "store_fixture.h"
#include "store/store_int.h"

TestSuite(store_agg, .init = fixture_setup, .fini = fixture_teardown);

#define DAY 86400000LL

static void open_store(void)
{
    g_s = open_at(g_dir, 0);
}

/* One write transaction around fn's calls, committed when they all pass. */
typedef struct grant_call {
    int what;
    const char *client;
    const char *tags[3];
    size_t ntags;
    uint8_t user[8];
    const char *sku;
    int64_t at;
} grant_call;

static int apply(const grant_call *g, size_t n, ph_err *err)
{
    MDB_txn *txn;
    cr_assert_eq(mdb_txn_begin(g_s->env, NULL, 0, &txn), 0);
    ph_wtxn w = {.s = g_s, .txn = txn};
    int rc = PH_OK;
    for (size_t i = 0; rc == PH_OK && i < n; i++)
        rc = store_agg_grant(&w, g[i].what, g[i].client, g[i].tags, g[i].ntags, g[i].user, g[i].sku,
                             g[i].at, err);
    if (rc == PH_OK)
        cr_assert_eq(mdb_txn_commit(txn), 0);
    else
        mdb_txn_abort(txn);
    return rc;
}

static const ph_agg_claim_row *find_row(const ph_agg_claim_row *r, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(r[i].name, name) == 0)
            return &r[i];
    return NULL;
}

Test(store_agg, counts_each_transition_by_client_tag_and_sku)
{
    open_store();
    int32_t d0 = (int32_t)(NOW / DAY);
    grant_call g[] = {
        {PH_AGG_GRANTED, "mall", {"department=hr", "site=sh"}, 2, {1}, IQ, NOW},
        {PH_AGG_GRANTED, "mall", {"department=it"}, 1, {2}, IQ, NOW},
        {PH_AGG_GRANTED, "shop", {"department=hr"}, 1, {3}, TOPUP, NOW},
        {PH_AGG_CLAIMED, "mall", {"department=hr", "site=sh"}, 2, {1}, IQ, NOW + DAY},
        {PH_AGG_GIFTED, "mall", {"department=it"}, 1, {2}, IQ, NOW + DAY},
        {PH_AGG_EXPIRED, "shop", {"department=hr"}, 1, {3}, TOPUP, NOW + 2 * DAY},
        /* a client whose name starts with another's: never in that one's rows */
        {PH_AGG_GRANTED, "shop2", {"department=hr"}, 1, {4}, TOPUP, NOW + 3 * DAY},
    };
    ph_err err = {0};
    cr_assert_eq(apply(g, 7, &err), PH_OK, "%s", err.msg);

    ph_agg_claim_row *r = NULL;
    size_t n = 0;
    cr_assert_eq(ph_store_agg_claims(g_s, d0, d0 + 2, PH_AGG_BY_TAG, NULL, &r, &n, &err), PH_OK,
                 "%s", err.msg);
    cr_assert_eq(n, 3);
    const ph_agg_claim_row *hr = find_row(r, n, "department=hr");
    cr_assert(hr && hr->granted == 2 && hr->claimed == 1 && hr->expired == 1 && hr->gifted == 0);
    const ph_agg_claim_row *it = find_row(r, n, "department=it");
    cr_assert(it && it->granted == 1 && it->claimed == 0 && it->gifted == 1);
    cr_assert(find_row(r, n, "site=sh")->claimed == 1);
    free(r);

    /* one client's tags only */
    cr_assert_eq(ph_store_agg_claims(g_s, d0, d0 + 2, PH_AGG_BY_TAG, "shop", &r, &n, &err), PH_OK);
    cr_assert_eq(n, 1);
    cr_assert(r[0].granted == 1 && r[0].expired == 1 && strcmp(r[0].name, "department=hr") == 0);
    free(r);

    cr_assert_eq(ph_store_agg_claims(g_s, d0, d0 + 5, PH_AGG_BY_CLIENT, "shop", &r, &n, &err),
                 PH_OK);
    cr_assert(n == 1 && strcmp(r[0].name, "shop") == 0 && r[0].granted == 1 && r[0].expired == 1);
    free(r);
    cr_assert_eq(ph_store_agg_claims(g_s, d0, d0 + 5, PH_AGG_BY_TAG, "shop2", &r, &n, &err), PH_OK);
    cr_assert(n == 1 && r[0].granted == 1 && r[0].expired == 0);
    free(r);

    /* days: the transitions of the first day only */
    cr_assert_eq(ph_store_agg_claims(g_s, d0, d0, PH_AGG_BY_CLIENT, NULL, &r, &n, &err), PH_OK);
    cr_assert_eq(n, 2);
    cr_assert(strcmp(r[0].name, "mall") == 0 && r[0].granted == 2 && r[0].claimed == 0);
    cr_assert(strcmp(r[1].name, "shop") == 0 && r[1].granted == 1);
    free(r);

    cr_assert_eq(ph_store_agg_claims(g_s, d0, d0 + 2, PH_AGG_BY_SKU, NULL, &r, &n, &err), PH_OK);
    cr_assert_eq(n, 2);
    cr_assert(strcmp(r[0].name, IQ) == 0 && r[0].granted == 2 && r[0].claimed == 1 &&
              r[0].gifted == 1);
    free(r);
    cr_assert_eq(ph_store_agg_claims(g_s, d0, d0, PH_AGG_BY_SKU, "mall", &r, &n, &err), PH_EINVAL);
    assert_check();
}

Test(store_agg, refuses_bad_input_and_writes_nothing)
{
    open_store();
    char long_tag[80];
    memset(long_tag, 'x', sizeof long_tag - 1);
    long_tag[sizeof long_tag - 1] = 0;
    grant_call ok = {PH_AGG_GRANTED, "mall", {"a=b"}, 1, {1}, IQ, NOW};
    grant_call bad[] = {
        {0, "mall", {0}, 0, {1}, IQ, NOW},
        {PH_AGG_GIFTED + 1, "mall", {0}, 0, {1}, IQ, NOW},
        {PH_AGG_GRANTED, "", {0}, 0, {1}, IQ, NOW},
        {PH_AGG_GRANTED, "mall", {0}, 0, {1}, "", NOW},
        {PH_AGG_GRANTED, "mall", {"a=b", long_tag}, 2, {1}, IQ, NOW},
        {PH_AGG_GRANTED, "mall", {"a=b", ""}, 2, {1}, IQ, NOW},
    };
    const char *names[] = {"transition", "transition", "client", "sku", "tag 2", "tag 2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        grant_call two[2] = {ok, bad[i]};
        ph_err err = {0};
        cr_assert_eq(apply(two, 2, &err), PH_EINVAL, "case %zu", i);
        cr_assert(strstr(err.msg, names[i]), "case %zu: %s", i, err.msg);
        cr_assert_null(strstr(err.msg, "xxxx"), "never quotes the tag");
    }
    ph_agg_claim_row *r = NULL;
    size_t n = 9;
    ph_err err = {0};
    int32_t d0 = (int32_t)(NOW / DAY);
    cr_assert_eq(ph_store_agg_claims(g_s, d0, d0, PH_AGG_BY_CLIENT, NULL, &r, &n, &err), PH_OK);
    cr_assert_eq(n, 0);
    cr_assert_null(r);
    /* the reads refuse bad ranges */
    cr_assert_eq(ph_store_agg_claims(g_s, d0, d0 - 1, PH_AGG_BY_CLIENT, NULL, &r, &n, &err),
                 PH_EINVAL);
    cr_assert_eq(
        ph_store_agg_claims(g_s, d0, d0 + PH_AGG_RANGE_DAYS, PH_AGG_BY_CLIENT, NULL, &r, &n, &err),
        PH_EINVAL);
    ph_agg_co co;
    cr_assert_eq(ph_store_agg_co(g_s, d0, d0, IQ, IQ, 30, &co, &err), PH_EINVAL);
    cr_assert_eq(ph_store_agg_co(g_s, d0, d0, IQ, TOPUP, 31, &co, &err), PH_EINVAL);
}

Test(store_agg, co_redemption_examples)
{
    open_store();
    int32_t d0 = (int32_t)(NOW / DAY);
    grant_call g[] = {
        /* holder 1: a, then b 10 days later, then b again (a counted again) */
        {PH_AGG_CLAIMED, "mall", {0}, 0, {1}, "a", NOW},
        {PH_AGG_CLAIMED, "mall", {0}, 0, {1}, "b", NOW + 10 * DAY},
        {PH_AGG_CLAIMED, "mall", {0}, 0, {1}, "b", NOW + 20 * DAY},
        /* holder 2: a, then b 31 days later: too late */
        {PH_AGG_CLAIMED, "mall", {0}, 0, {2}, "a", NOW},
        {PH_AGG_CLAIMED, "mall", {0}, 0, {2}, "b", NOW + 31 * DAY},
        /* holder 3: b then a the same day */
        {PH_AGG_CLAIMED, "mall", {0}, 0, {3}, "b", NOW},
        {PH_AGG_CLAIMED, "mall", {0}, 0, {3}, "a", NOW},
    };
    ph_err err = {0};
    cr_assert_eq(apply(g, sizeof g / sizeof g[0], &err), PH_OK, "%s", err.msg);
    ph_agg_co co;
    cr_assert_eq(ph_store_agg_co(g_s, d0, d0 + 40, "a", "b", 30, &co, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(co.a_then_b, 2);
    cr_assert_eq(co.b_then_a, 1);
    cr_assert_eq(co.claims_a, 3);
    cr_assert_eq(co.claims_b, 4);
    cr_assert_eq(ph_store_agg_co(g_s, d0, d0 + 40, "a", "b", 10, &co, &err), PH_OK);
    cr_assert_eq(co.a_then_b, 1, "only the 10-day gap");
    cr_assert_eq(ph_store_agg_co(g_s, d0 + 15, d0 + 40, "a", "b", 30, &co, &err), PH_OK);
    cr_assert_eq(co.a_then_b, 1, "the claim of day 20 only");
    cr_assert_eq(co.b_then_a, 0);
}

/* The model: every claim in time order; a pair for each other sku the holder
 * claimed within PH_AGG_CO_DAYS before (its latest claim). */
#define USERS 12
#define SKUS  6
#define DAYS  90
Test(store_agg, random_transitions_match_a_brute_force_count)
{
    open_store();
    static const char *const sku[SKUS] = {"s0", "s1", "s2", "s3", "s4", "s5"};
    static const char *const client[2] = {"mall", "shop"};
    static const char *const tag[3] = {"department=hr", "department=it", "site=sh"};
    int32_t d0 = (int32_t)(NOW / DAY);
    int32_t last[USERS][SKUS];
    static uint64_t pair[DAYS][SKUS][SKUS][PH_AGG_CO_DAYS + 1];
    uint64_t by_client[2][4] = {{0}}, by_tag[3][4] = {{0}}, by_sku[SKUS][4] = {{0}};
    memset(pair, 0, sizeof pair);
    for (int u = 0; u < USERS; u++)
        for (int k = 0; k < SKUS; k++)
            last[u][k] = INT32_MIN / 2;
    srand(16);
    enum { N = 1500 };
    grant_call *g = calloc(N, sizeof *g);
    int32_t day = 0;
    for (int i = 0; i < N; i++) {
        day += rand() % 7 == 0;
        if (day >= DAYS)
            day = DAYS - 1;
        int u = rand() % USERS, k = rand() % SKUS, c = rand() % 2, what = 1 + rand() % 4;
        grant_call *x = &g[i];
        x->what = what;
        x->client = client[c];
        x->ntags = (size_t)(rand() % 3);
        for (size_t t = 0; t < x->ntags; t++) {
            x->tags[t] = tag[(u + t) % 3];
            by_tag[(u + t) % 3][what - 1]++;
        }
        x->user[0] = (uint8_t)u;
        x->sku = sku[k];
        x->at = (int64_t)(d0 + day) * DAY + (rand() % 86400) * 1000LL;
        by_client[c][what - 1]++;
        by_sku[k][what - 1]++;
        if (what == PH_AGG_CLAIMED) {
            for (int a = 0; a < SKUS; a++)
                if (a != k && day - last[u][a] <= PH_AGG_CO_DAYS && day - last[u][a] >= 0)
                    pair[day][a][k][day - last[u][a]]++;
            last[u][k] = day;
        }
    }
    ph_err err = {0};
    /* several transactions, as commands would come */
    for (int i = 0; i < N; i += 100)
        cr_assert_eq(apply(g + i, 100, &err), PH_OK, "%s", err.msg);
    free(g);

    ph_agg_claim_row *r;
    size_t n;
    cr_assert_eq(ph_store_agg_claims(g_s, d0, d0 + DAYS, PH_AGG_BY_CLIENT, NULL, &r, &n, &err),
                 PH_OK);
    cr_assert_eq(n, 2);
    for (int c = 0; c < 2; c++) {
        const ph_agg_claim_row *x = find_row(r, n, client[c]);
        cr_assert(x->granted == by_client[c][0] && x->claimed == by_client[c][1] &&
                  x->expired == by_client[c][2] && x->gifted == by_client[c][3]);
    }
    free(r);
    cr_assert_eq(ph_store_agg_claims(g_s, d0, d0 + DAYS, PH_AGG_BY_TAG, NULL, &r, &n, &err), PH_OK);
    for (int t = 0; t < 3; t++) {
        const ph_agg_claim_row *x = find_row(r, n, tag[t]);
        cr_assert(x && x->granted == by_tag[t][0] && x->claimed == by_tag[t][1] &&
                  x->expired == by_tag[t][2] && x->gifted == by_tag[t][3]);
    }
    free(r);
    cr_assert_eq(ph_store_agg_claims(g_s, d0, d0 + DAYS, PH_AGG_BY_SKU, NULL, &r, &n, &err), PH_OK);
    for (int k = 0; k < SKUS; k++) {
        const ph_agg_claim_row *x = find_row(r, n, sku[k]);
        cr_assert(x && x->claimed == by_sku[k][1] && x->granted == by_sku[k][0]);
    }
    free(r);
    /* pairs over a few ranges and windows */
    int32_t ranges[][2] = {{0, DAYS - 1}, {0, 9}, {30, 60}, {45, 45}};
    int windows[] = {0, 3, 30};
    for (size_t ri = 0; ri < 4; ri++)
        for (size_t wi = 0; wi < 3; wi++)
            for (int a = 0; a < SKUS; a++)
                for (int b = a + 1; b < SKUS; b++) {
                    uint64_t ab = 0, ba = 0, ca = 0, cb = 0;
                    for (int32_t d = ranges[ri][0]; d <= ranges[ri][1]; d++)
                        for (int gap = 0; gap <= windows[wi]; gap++)
                            ab += pair[d][a][b][gap], ba += pair[d][b][a][gap];
                    (void)ca, (void)cb;
                    ph_agg_co co;
                    cr_assert_eq(ph_store_agg_co(g_s, d0 + ranges[ri][0], d0 + ranges[ri][1],
                                                 sku[a], sku[b], windows[wi], &co, &err),
                                 PH_OK, "%s", err.msg);
                    cr_assert_eq(co.a_then_b, ab, "range %zu window %d %s->%s", ri, windows[wi],
                                 sku[a], sku[b]);
                    cr_assert_eq(co.b_then_a, ba);
                }
    assert_check();
}

/* ---- orders: what store_put_order counts, and the back-fill of an older store ---- */

#define PRICED "topup.priced" /* price 33.00, client vip 31.00 */
#define FREE   "topup.free"   /* no price */

static void start_priced(void)
{
    open_store();
    static const char *const all[] = {
        "{\"sku\":\"" PRICED "\",\"delivery\":\"recharge\",\"listed\":true,\"price_fen\":3300,"
        "\"prices\":{\"vip\":3100}}",
        "{\"sku\":\"" FREE "\",\"delivery\":\"recharge\",\"listed\":true}"};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 2, &err), PH_OK, "%s", err.msg);
}

static uint64_t create(const char *client, const char *coid, const char *sku, uint32_t qty,
                       int64_t now)
{
    ph_cmd c = {.type = PH_CMD_SUPPLY_CREATE, .now = now};
    c.in.supply.client = client;
    c.in.supply.client_order_id = coid;
    c.in.supply.sku = sku;
    c.in.supply.quantity = qty;
    fingerprint(sku, qty, c.in.supply.fingerprint);
    c.in.supply.delivery = PH_DELIVERY_RECHARGE;
    c.in.supply.account_sealed = (const uint8_t *)"sealed-account";
    c.in.supply.account_sealed_len = 14;
    c.in.supply.account_masked = "138****8000";
    c.in.supply.first = (ph_attempt_target){"sup-a", "P-1", 1500};
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "create %s: %s", coid, c.err.msg);
    uint64_t id = c.order->id;
    ph_cmd_clear(&c);
    return id;
}

static void finish(uint64_t order, int state, int64_t now)
{
    ph_cmd c = {.type = PH_CMD_ATTEMPT, .now = now};
    c.in.attempt.order_id = order;
    c.in.attempt.no = 1;
    c.in.attempt.state = state;
    c.in.attempt.step = -1;
    c.in.attempt.charged = -1;
    c.in.attempt.next_check_at = -1;
    c.in.attempt.reason = state == PH_ATTEMPT_FAILED ? "out_of_stock" : NULL;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "attempt: %s", c.err.msg);
    ph_cmd_clear(&c);
}

static const ph_agg_top_row *top_find(const ph_agg_top_row *r, size_t n, int32_t period,
                                      const char *sku)
{
    for (size_t i = 0; i < n; i++)
        if (r[i].period == period && strcmp(r[i].sku, sku) == 0)
            return &r[i];
    return NULL;
}

/* The figures the orders below make (d0 = NOW's UTC day, 22:13 UTC). */
static void expect_order_figures(void)
{
    int32_t d0 = (int32_t)(NOW / DAY);
    ph_err err = {0};
    ph_agg_top_row *r;
    size_t n;
    cr_assert_eq(ph_store_agg_top(g_s, d0, d0 + 1, 1, PH_AGG_BY_VALUE, 10, NULL, &r, &n, &err),
                 PH_OK, "%s", err.msg);
    cr_assert_eq(n, 3, "day 0: priced and free; day 1: priced");
    /* day 0: mall's two orders (3 units at 33.00) and vip's one at 31.00; not the failed one */
    const ph_agg_top_row *p = top_find(r, n, d0, PRICED);
    cr_assert(p && p->orders == 3 && p->units == 4 && p->value == 3 * 3300 + 3100 &&
              p->unpriced == 0);
    cr_assert_eq(&r[0], p, "by value: priced first");
    const ph_agg_top_row *f = top_find(r, n, d0, FREE);
    cr_assert(f && f->orders == 1 && f->value == 0 && f->unpriced == 1);
    /* created on day 1, succeeded on day 2: counted on day 1 (its creation) */
    p = top_find(r, n, d0 + 1, PRICED);
    cr_assert(p && p->orders == 1 && p->value == 3300);
    free(r);
    /* one client's; weeks */
    cr_assert_eq(ph_store_agg_top(g_s, d0, d0 + 1, 7, PH_AGG_BY_ORDERS, 1, "vip", &r, &n, &err),
                 PH_OK);
    cr_assert_eq(n, 1);
    cr_assert(r[0].period == ph_agg_week_start(d0) && r[0].orders == 1 && r[0].value == 3100);
    free(r);
    uint64_t h[24];
    cr_assert_eq(ph_store_agg_hours(g_s, d0, d0 + 1, NULL, h, &err), PH_OK);
    cr_assert_eq(h[22], 5, "every order created at 22:xx, failed or not");
    cr_assert_eq(h[3], 1);
    uint64_t sum = 0;
    for (int i = 0; i < 24; i++)
        sum += h[i];
    cr_assert_eq(sum, 6);
    cr_assert_eq(ph_store_agg_hours(g_s, d0, d0 + 1, "vip", h, &err), PH_OK);
    cr_assert_eq(h[22], 1);
}

static void place_orders(void)
{
    uint64_t a = create("mall", "m1", PRICED, 2, NOW);
    uint64_t b = create("mall", "m2", PRICED, 1, NOW + 1);
    uint64_t c = create("vip", "v1", PRICED, 1, NOW + 2);
    uint64_t d = create("mall", "m3", PRICED, 1, NOW + 3);
    uint64_t e = create("mall", "m4", FREE, 1, NOW + 4);
    uint64_t f = create("mall", "m5", PRICED, 1, NOW + 5 * 3600000LL); /* day 1, 03:13 */
    finish(a, PH_ATTEMPT_SUCCEEDED, NOW + 10);
    finish(b, PH_ATTEMPT_SUCCEEDED, NOW + 10);
    finish(c, PH_ATTEMPT_SUCCEEDED, NOW + 10);
    finish(d, PH_ATTEMPT_FAILED, NOW + 10);
    finish(e, PH_ATTEMPT_SUCCEEDED, NOW + 10);
    finish(f, PH_ATTEMPT_SUCCEEDED, NOW + DAY + 5 * 3600000LL);
}

Test(store_agg, orders_count_on_creation_by_the_ledger_price)
{
    start_priced();
    place_orders();
    expect_order_figures();
    assert_check();
}

/* A version 6 store (no aggregates) is back-filled at its first open. */
Test(store_agg, schema_6_store_is_back_filled_at_open)
{
    start_priced();
    place_orders();
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    static const char *const dbs[] = {"agg_sku", "agg_hours", "agg_claims", "agg_co", "agg_users"};
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(mdb_drop(txn, raw_dbi(txn, dbs[i], 0), 1), 0);
    MDB_dbi meta = raw_dbi(txn, "meta", 0);
    uint32_t six = 6;
    cr_assert_eq(mdb_put(txn, meta, &(MDB_val){6, "schema"}, &(MDB_val){4, &six}, 0), 0);
    raw_commit(env, txn);

    ph_store_opts ro = {.dir = g_dir, .read_only = 1};
    ph_err err = {0};
    ph_store *s = NULL;
    cr_assert_eq(ph_store_open(&ro, &s, &err), PH_EVERSION, "read-only: refused, not migrated");
    g_s = open_at(g_dir, 0);
    cr_assert_eq(ph_store_migrated_from(g_s), 6);
    expect_order_figures();
    assert_check();
}
