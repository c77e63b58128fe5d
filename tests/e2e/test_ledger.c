/*
 * test_ledger.c — the ledger and the reports against the simulator's own
 * charges (issue 11 items 5 and 7).
 *
 * Supplier A ("gwa", gateway, priority 20) and B ("rwb", rewards, priority
 * 10) at one supsim. Orders: a recharge that succeeds at A (client mall, the
 * product's price), the same for othermall (its own price), a card order of
 * 2 that A refuses (out of stock) and B delivers, a recharge to the account
 * supsim fails (at both: failed, refunded), and a recharge of a product with
 * no price. Then GET /v1/ledger must book, for every order, exactly what
 * supsim's truth says it charged, and the sale at the configured price;
 * reports must total the ledger; the CSV exports must parse to the same
 * sums; bad report input is a 400 naming the field; --check-store passes,
 * and fails once a ledger entry is tampered with.
 */
#include <criterion/criterion.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define OK_ACCOUNT   "13800000001" /* supsim completes it succeeded */
#define FAIL_ACCOUNT "13900000002" /* supsim completes it failed (refunded) */
#define WAIT_MS      20000

static h_daemon D;
static h_sim S;
static char BODY[8192];

static void teardown(void)
{
    h_leftover(&D);
    if (S.pid > 0)
        h_sim_stop(&S);
}

TestSuite(ledger, .fini = teardown, .timeout = 120);

#define TIMEOUTS "    timeout_ms: 1500\n    connect_timeout_ms: 1000\n    query_max_delay_ms: 300\n"

static void start(void)
{
    cr_assert(h_sim_start(&S, NULL) == 0, "supsim did not start");
    char a[1024], b[1024];
    h_sim_supplier_yaml(&S, "gwa", "gateway", "    priority: 20\n" TIMEOUTS, NULL, a, sizeof a);
    h_sim_supplier_yaml(&S, "rwb", "rewards", "    priority: 10\n" TIMEOUTS, NULL, b, sizeof b);
    snprintf(BODY, sizeof BODY,
             "suppliers:\n%s%s"
             "reports:\n  utc_offset: \"+08:00\"\n"
             "products:\n"
             "  - sku: led.topup\n    name: Top-up\n    brand: sim\n    category: telecom\n"
             "    delivery: recharge\n    face_value: \"50.00\"\n    price: \"55.00\"\n"
             "    prices:\n      - {client: othermall, price: \"52.50\"}\n    offers:\n"
             "      - {supplier: gwa, supplier_sku: \"20001\", cost: \"49.00\"}\n"
             "      - {supplier: rwb, supplier_sku: \"U20001\", cost: \"49.00\"}\n"
             "  - sku: led.card\n    name: Card\n    brand: sim\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n    price: \"29.90\"\n"
             "    offers:\n"
             "      - {supplier: gwa, supplier_sku: \"10002\", cost: \"28.00\"}\n"
             "      - {supplier: rwb, supplier_sku: \"U10001\", cost: \"28.50\"}\n"
             "  - sku: led.free\n    name: Unpriced top-up\n    brand: sim\n    category: telecom\n"
             "    delivery: recharge\n    face_value: \"50.00\"\n    offers:\n"
             "      - {supplier: gwa, supplier_sku: \"20001\", cost: \"49.00\"}\n",
             a, b);
    h_setup_custom(&D, BODY, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
}

static long long order_post(const char *token, const char *coid, const char *sku, int qty,
                            const char *account)
{
    char body[320];
    if (account)
        snprintf(body, sizeof body,
                 "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"account\":\"%s\",\"wait\":0}", coid,
                 sku, account);
    else
        snprintf(body, sizeof body,
                 "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"quantity\":%d,\"wait\":0}", coid,
                 sku, qty);
    h_resp r = h_post_json(&D, "/v1/orders", token, body);
    cr_assert(r.status == 200 || r.status == 202, "POST /v1/orders %s: %ld %s", body, r.status,
              r.body);
    long long id = h_int(h_order_of(&r), "id");
    h_resp_free(&r);
    return id;
}

static int is_final(json_t *o, void *arg)
{
    (void)arg;
    return !strcmp(h_str(o, "state"), "succeeded") || !strcmp(h_str(o, "state"), "failed");
}

static const char *final_state(long long id)
{
    json_t *o = h_order_poll(&D, id, "ops-token", is_final, NULL, WAIT_MS, "final");
    static char st[5][16];
    static int i;
    char *out = st[i++ % 5];
    snprintf(out, 16, "%s", h_str(o, "state"));
    json_decref(o);
    return out;
}

/* Sums of the ledger's entries for order id: cost and sale. */
static void ledger_sums(json_t *entries, long long id, long long *cost, long long *sale)
{
    size_t i;
    json_t *e;
    *cost = *sale = 0;
    json_array_foreach(entries, i, e)
    {
        if (h_int(e, "order_id") != id)
            continue;
        const char *k = h_str(e, "kind");
        if (!strcmp(k, "sale") || !strcmp(k, "sale_correction"))
            *sale += h_int(e, "amount_fen");
        else
            *cost += h_int(e, "amount_fen");
    }
}

static json_t *get_json(const char *path)
{
    h_resp r = h_get(&D, path, "ops-token");
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
    cr_assert(!strncmp(msg, field, strlen(field)), "GET %s should name %s: %s", path, field, msg);
    h_resp_free(&r);
}

/* A CSV body's rows (header excluded), each split on commas into cols[] (at
 * most 16): returns the number of rows; asserts every row has ncols columns. */
static size_t csv_sum(const char *body, size_t ncols, size_t col, long long *sum)
{
    size_t rows = 0;
    *sum = 0;
    const char *p = strstr(body, "\r\n");
    cr_assert(p, "no CSV header: %s", body);
    for (p += 2; *p; rows++) {
        const char *end = strstr(p, "\r\n");
        cr_assert(end, "a CSV line without CRLF");
        size_t n = 1, c = 0;
        const char *f = p;
        for (const char *q = p; q < end; q++)
            if (*q == ',') {
                n++;
                if (++c == col)
                    f = q + 1;
            }
        cr_assert_eq(n, ncols, "row %zu has %zu columns", rows + 1, n);
        *sum += strtoll(f, NULL, 10);
        p = end + 2;
    }
    return rows;
}

Test(ledger, matches_the_suppliers_charges_and_reports_total_it)
{
    start();
    long long t1 = order_post("mall-token", "led-1", "led.topup", 1, OK_ACCOUNT);
    long long t2 = order_post("other-token", "led-2", "led.topup", 1, OK_ACCOUNT);
    long long c1 = order_post("mall-token", "led-3", "led.card", 2, NULL);
    long long f1 = order_post("mall-token", "led-4", "led.topup", 1, FAIL_ACCOUNT);
    long long u1 = order_post("mall-token", "led-5", "led.free", 1, OK_ACCOUNT);
    cr_assert_str_eq(final_state(t1), "succeeded");
    cr_assert_str_eq(final_state(t2), "succeeded");
    cr_assert_str_eq(final_state(c1), "succeeded");
    cr_assert_str_eq(final_state(f1), "failed");
    cr_assert_str_eq(final_state(u1), "succeeded");

    /* supsim charged t1, t2, c1 (at B) and u1; the failed f1 was refunded */
    cr_assert_eq(h_ledger_matches_sim(&D, &S), 4);
    json_t *truth = h_sim_truth(&S);
    size_t n_c1 = 0;
    json_t *at_b = h_sim_truth_find(truth, "orders", "rewards", c1, &n_c1);
    cr_assert(at_b && n_c1 == 1 && h_int(at_b, "charged_fen") > 0,
              "the card order was charged by B");
    json_decref(truth);
    json_t *page = get_json("/v1/ledger?limit=1000");
    json_t *entries = json_object_get(page, "entries");
    cr_assert(json_is_null(json_object_get(page, "next_after")));
    struct {
        long long id, sale;
    } want[] = {{t1, 5500}, {t2, 5250}, {c1, 2 * 2990}, {f1, 0}, {u1, 0}};
    long long all_cost = 0, all_sale = 0;
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        long long cost, sale;
        ledger_sums(entries, want[i].id, &cost, &sale);
        cr_assert_eq(sale, want[i].sale, "order %lld: sale %lld, expected %lld", want[i].id, sale,
                     want[i].sale);
        all_cost += cost;
        all_sale += sale;
    }

    /* filters: one client, one supplier, paging */
    json_t *om = get_json("/v1/ledger?client=othermall");
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(om, "entries"), i, e)
        cr_assert_str_eq(h_str(e, "client"), "othermall");
    cr_assert_eq(json_array_size(json_object_get(om, "entries")), 2);
    json_decref(om);
    json_t *p1 = get_json("/v1/ledger?supplier=rwb&limit=1");
    cr_assert_eq(json_array_size(json_object_get(p1, "entries")), 1);
    long long next = h_int(p1, "next_after");
    json_decref(p1);
    char path[256];
    snprintf(path, sizeof path, "/v1/ledger?supplier=rwb&after=%lld", next);
    json_t *p2 = get_json(path);
    cr_assert_eq(json_array_size(json_object_get(p2, "entries")), 1, "card cost and sale at rwb");
    json_decref(p2);

    /* reports over yesterday..tomorrow (whatever the business day is now) */
    char from[16], to[16], at[40];
    h_rfc3339(h_wall_ms() - 86400000LL, at, sizeof at);
    snprintf(from, sizeof from, "%.10s", at);
    h_rfc3339(h_wall_ms() + 2 * 86400000LL, at, sizeof at);
    snprintf(to, sizeof to, "%.10s", at);
    snprintf(path, sizeof path, "/v1/reports?from=%s&to=%s&by=supplier", from, to);
    json_t *rep = get_json(path);
    json_t *tot = json_object_get(rep, "totals");
    cr_assert_eq(h_int(tot, "revenue_fen"), all_sale);
    cr_assert_eq(h_int(tot, "cost_fen"), all_cost);
    cr_assert_eq(h_int(tot, "margin_fen"), all_sale - all_cost);
    json_t *orders = json_object_get(tot, "orders");
    cr_assert_eq(h_int(orders, "succeeded"), 4);
    cr_assert_eq(h_int(orders, "failed"), 1);
    cr_assert_eq(h_int(orders, "unknown"), 0);
    cr_assert_eq(h_int(orders, "unpriced"), 1);
    cr_assert_str_eq(h_str(rep, "utc_offset"), "+08:00");
    json_decref(rep);
    snprintf(path, sizeof path, "/v1/reports?from=%s&to=%s&by=client", from, to);
    rep = get_json(path);
    cr_assert_eq(json_array_size(json_object_get(rep, "rows")), 2, "mall and othermall");
    json_decref(rep);

    /* CSV exports parse to the same sums */
    h_resp r = h_get(&D, "/v1/ledger.csv", "ops-token");
    cr_assert_eq(r.status, 200);
    long long sum;
    size_t rows = csv_sum(r.body, 12, 10, &sum);
    cr_assert_eq(rows, json_array_size(entries));
    cr_assert_eq(sum, all_cost + all_sale);
    h_resp_free(&r);
    snprintf(path, sizeof path, "/v1/reports?from=%s&to=%s&by=sku&format=csv", from, to);
    r = h_get(&D, path, "ops-token");
    cr_assert_eq(r.status, 200);
    rows = csv_sum(r.body, 11, 4, &sum);
    cr_assert_eq(rows, 3);
    cr_assert_eq(sum, all_sale);
    h_resp_free(&r);
    json_decref(page);

    /* bad input names the field and changes nothing */
    expect_400("/v1/reports?from=2026-02-30&to=2026-03-01", "from");
    expect_400("/v1/reports?from=2026-03-02&to=2026-03-01", "from");
    expect_400("/v1/reports?from=2026-03-01&to=tomorrow", "to");
    expect_400("/v1/reports?from=2026-03-01&to=2026-03-01&by=week", "by");
    expect_400("/v1/ledger?from=yesterday", "from");
    expect_400("/v1/ledger?limit=0", "limit");
    h_resp fr = h_get(&D, "/v1/ledger", "mall-token");
    cr_assert_eq(fr.status, 403, "the ledger is for ops");
    h_resp_free(&fr);

    h_stop_clean(&D);
    char *out = NULL;
    cr_assert_eq(h_check_store(&D, &out), 0, "check-store: %s", out);
    free(out);

    /* a tampered ledger entry: the check names the order */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 32);
    cr_assert_eq(mdb_env_open(env, D.data, 0, 0600), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "ledger", MDB_INTEGERKEY, &dbi), 0);
    uint64_t k1 = 1;
    MDB_val k = {8, &k1}, v;
    cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0);
    uint8_t rec[512];
    cr_assert_leq(v.mv_size, sizeof rec);
    memcpy(rec, v.mv_data, v.mv_size);
    int64_t amount;
    memcpy(&amount, rec + 32, 8); /* ph_ledger_rec.amount */
    amount -= 1;
    memcpy(rec + 32, &amount, 8);
    v.mv_data = rec;
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    cr_assert_neq(h_check_store(&D, &out), 0, "the check missed a tampered ledger: %s", out);
    cr_assert(strstr(out, "ledger"), "%s", out);
    free(out);
    h_cleanup(&D);
}
