/*
 * test_ledger.c — the ledger derived from order writes (core/store/store_ledger.c):
 * which facts each order write books, the delta logic (a repeated write books
 * nothing), the kinds, prices per client, local stock, the business day of the
 * daily aggregates around midnight, a changed offset rebuilding them, and the
 * checker catching a tampered ledger, summary or aggregate.
 *
 * Every command goes through the real writer into a fresh store under /tmp.
 */
#include "config/config.h"
#include "store/store.h"
#include "store_fixture.h"
#include "store/store_int.h" /* record layouts, for the tampering tests only */

TestSuite(ledger, .init = fixture_setup, .fini = fixture_teardown);

#define PRICED "topup.priced" /* recharge, price 33.00, client vip 31.00 */
#define FREE   "topup.free"   /* recharge, no price */
#define CARD   "card.priced"  /* card codes, price 30.00 */

static const char *const P_PRICED =
    "{\"sku\":\"" PRICED "\",\"delivery\":\"recharge\",\"listed\":true,\"price_fen\":3300,"
    "\"prices\":{\"vip\":3100}}";
static const char *const P_FREE =
    "{\"sku\":\"" FREE "\",\"delivery\":\"recharge\",\"listed\":true}";
static const char *const P_CARD =
    "{\"sku\":\"" CARD "\",\"delivery\":\"card_code\",\"listed\":true,\"price_fen\":3000}";

static void start_at(int offset_min)
{
    ph_store_opts o = {.dir = g_dir, .report_utc_offset_min = offset_min, .report_offset_given = 1};
    ph_err err = {0};
    cr_assert_eq(ph_store_open(&o, &g_s, &err), PH_OK, "open: %s", err.msg);
    const char *const all[] = {P_PRICED, P_FREE, P_CARD};
    cr_assert_eq(put_products(all, 3, &err), PH_OK, "put products: %s", err.msg);
}

static uint64_t create(const char *client, const char *coid, const char *sku, uint32_t qty,
                       const char *supplier, int64_t unit_cost, int64_t now)
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
    c.in.supply.first = (ph_attempt_target){supplier, "P-1", unit_cost};
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "create %s: %s", coid, c.err.msg);
    uint64_t id = c.order->id;
    ph_cmd_clear(&c);
    return id;
}

/* Attempt no of order moves to state (charged -1: the supplier gave none;
 * next: failover supplier or NULL). */
static void attempt(uint64_t order, uint32_t no, int state, int64_t charged, const char *next,
                    int64_t now)
{
    ph_cmd c = {.type = PH_CMD_ATTEMPT, .now = now};
    c.in.attempt.order_id = order;
    c.in.attempt.no = no;
    c.in.attempt.state = state;
    c.in.attempt.step = -1;
    c.in.attempt.charged = charged;
    c.in.attempt.next_check_at = -1;
    c.in.attempt.reason = state == PH_ATTEMPT_FAILED ? "out_of_stock" : NULL;
    if (next)
        c.in.attempt.next = (ph_attempt_target){next, "P-2", 1450};
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "attempt: %s", c.err.msg);
    ph_cmd_clear(&c);
}

/* All entries, in order (caller frees). */
static ph_ledger_entry *entries(const ph_ledger_filter *f, size_t *n)
{
    ph_ledger_filter none = {0};
    ph_ledger_entry *e = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_store_ledger_list(g_s, f ? f : &none, 0, 1000, &e, n, &err), PH_OK, "%s",
                 err.msg);
    return e;
}

static ph_ledger_order booked(uint64_t id)
{
    ph_ledger_order lo;
    ph_err err = {0};
    cr_assert_eq(ph_store_ledger_order(g_s, id, &lo, &err), PH_OK, "%s", err.msg);
    return lo;
}

Test(ledger, success_books_cost_and_sale_once)
{
    start_at(480);
    uint64_t id = create("mall", "o1", PRICED, 2, "sup-a", 1500, NOW);
    size_t n;
    ph_ledger_entry *e = entries(NULL, &n);
    cr_assert_eq(n, 0, "an order in processing moved no money");
    free(e);
    attempt(id, 1, PH_ATTEMPT_PROCESSING, -1, NULL, NOW + 10);
    attempt(id, 1, PH_ATTEMPT_SUCCEEDED, 2980, NULL, NOW + 20);
    e = entries(NULL, &n);
    cr_assert_eq(n, 2);
    cr_assert_eq(e[0].kind, PH_LEDGER_SUPPLIER_COST);
    cr_assert_eq(e[0].amount, 2980, "the supplier's own charge, not 2 x 15.00");
    cr_assert_eq(e[0].attempt, 1);
    cr_assert_str_eq(e[0].supplier, "sup-a");
    cr_assert_eq(e[0].command, PH_CMD_ATTEMPT);
    cr_assert_eq(e[0].at, NOW + 20);
    cr_assert_eq(e[1].kind, PH_LEDGER_SALE);
    cr_assert_eq(e[1].amount, 6600);
    cr_assert_eq(e[1].attempt, 0);
    cr_assert_eq(e[1].quantity, 2);
    cr_assert_str_eq(e[1].client, "mall");
    cr_assert_str_eq(e[1].sku, PRICED);
    free(e);
    ph_ledger_order lo = booked(id);
    cr_assert(lo.revenue == 6600 && lo.cost == 2980 && lo.entries == 2 && lo.unit_price == 3300);
    /* the same order written again (a replayed create) books nothing */
    create("mall", "o1", PRICED, 2, "sup-a", 1500, NOW + 30);
    e = entries(NULL, &n);
    cr_assert_eq(n, 2);
    free(e);
    assert_check();
}

Test(ledger, failover_books_only_the_attempt_that_succeeded)
{
    start_at(480);
    uint64_t id = create("vip", "o2", PRICED, 1, "sup-a", 1500, NOW);
    attempt(id, 1, PH_ATTEMPT_FAILED, -1, "sup-b", NOW + 10);
    attempt(id, 2, PH_ATTEMPT_SUCCEEDED, -1, NULL, NOW + 20);
    size_t n;
    ph_ledger_entry *e = entries(NULL, &n);
    cr_assert_eq(n, 2);
    cr_assert(e[0].kind == PH_LEDGER_SUPPLIER_COST && e[0].attempt == 2 &&
                  !strcmp(e[0].supplier, "sup-b") && e[0].amount == 1450,
              "no charge reported: the offer's cost x quantity of attempt 2");
    cr_assert(e[1].kind == PH_LEDGER_SALE && e[1].amount == 3100 && !strcmp(e[1].supplier, "sup-b"),
              "vip's own price, credited to the supplier that delivered");
    free(e);
    assert_check();
}

Test(ledger, failed_and_unpriced_orders)
{
    start_at(480);
    uint64_t f = create("mall", "o3", PRICED, 1, "sup-a", 1500, NOW);
    attempt(f, 1, PH_ATTEMPT_FAILED, -1, NULL, NOW + 10);
    uint64_t u = create("mall", "o4", FREE, 1, "sup-a", 1500, NOW);
    attempt(u, 1, PH_ATTEMPT_SUCCEEDED, -1, NULL, NOW + 10);
    size_t n;
    ph_ledger_entry *e = entries(NULL, &n);
    cr_assert_eq(n, 1, "a failed order moves nothing; an unpriced one only its cost");
    cr_assert(e[0].order_id == u && e[0].kind == PH_LEDGER_SUPPLIER_COST);
    free(e);
    cr_assert_eq(booked(u).unit_price, -1);
    ph_report_row *rows;
    ph_err err = {0};
    int32_t day = ph_ledger_day(NOW, 480);
    cr_assert_eq(ph_store_report(g_s, day, day, PH_REPORT_BY_SKU, &rows, &n, &err), PH_OK, "%s",
                 err.msg);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(rows[0].sku, FREE);
    cr_assert(rows[0].succeeded == 1 && rows[0].unpriced == 1 && rows[0].revenue == 0 &&
              rows[0].cost == 1500);
    cr_assert_str_eq(rows[1].sku, PRICED);
    cr_assert(rows[1].failed == 1 && rows[1].succeeded == 0 && rows[1].cost == 0);
    free(rows);
    assert_check();
}

Test(ledger, unknown_counted_then_moved_to_succeeded)
{
    start_at(480);
    uint64_t id = create("mall", "o5", PRICED, 1, "sup-a", 1500, NOW);
    attempt(id, 1, PH_ATTEMPT_UNKNOWN, -1, NULL, NOW + 10);
    ph_report_row *rows;
    size_t n;
    ph_err err = {0};
    int32_t day = ph_ledger_day(NOW, 480);
    cr_assert_eq(ph_store_report(g_s, day, day, PH_REPORT_BY_DAY, &rows, &n, &err), PH_OK);
    cr_assert(n == 1 && rows[0].unknown == 1 && rows[0].succeeded == 0);
    free(rows);
    attempt(id, 1, PH_ATTEMPT_SUCCEEDED, -1, NULL, NOW + 20);
    cr_assert_eq(ph_store_report(g_s, day, day, PH_REPORT_BY_DAY, &rows, &n, &err), PH_OK);
    cr_assert(n == 1 && rows[0].unknown == 0 && rows[0].succeeded == 1 && rows[0].revenue == 3300 &&
              rows[0].cost == 1500);
    free(rows);
    assert_check();
}

static void import_codes(unsigned first, unsigned n, int64_t unit_cost, const char *supplier)
{
    ph_import_code ic[4];
    char blob[4][24];
    uint32_t by_hash[4];
    cr_assert_leq(n, 4);
    for (unsigned i = 0; i < n; i++) {
        ic[i] = (ph_import_code){.line = i + 1};
        ic[i].sealed_len = (uint32_t)snprintf(blob[i], sizeof blob[i], "sealed-%u", first + i);
        ic[i].sealed = (const uint8_t *)blob[i];
        code_hash(first + i, ic[i].hash);
    }
    /* by hash order: sort the indices by their hashes */
    for (unsigned i = 0; i < n; i++)
        by_hash[i] = i;
    for (unsigned i = 0; i < n; i++)
        for (unsigned j = i + 1; j < n; j++)
            if (memcmp(ic[by_hash[j]].hash, ic[by_hash[i]].hash, 32) < 0) {
                uint32_t t = by_hash[i];
                by_hash[i] = by_hash[j];
                by_hash[j] = t;
            }
    ph_cmd c = {.type = PH_CMD_IMPORT, .now = NOW};
    c.in.import.supplier = supplier;
    c.in.import.sku = CARD;
    c.in.import.unit_cost = unit_cost;
    c.in.import.codes = ic;
    c.in.import.ncodes = n;
    c.in.import.by_hash = by_hash;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "import: %s", c.err.msg);
    ph_cmd_clear(&c);
}

Test(ledger, local_stock_books_codes_cost_per_supplier)
{
    start_at(480);
    import_codes(1, 1, 2700, "sup-x");
    import_codes(10, 2, 2600, "sup-y");
    ph_cmd c = {.type = PH_CMD_ORDER, .now = NOW + 5};
    c.in.order.client = "mall";
    c.in.order.client_order_id = "local-1";
    c.in.order.sku = CARD;
    c.in.order.quantity = 3;
    fingerprint(CARD, 3, c.in.order.fingerprint);
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "order: %s", c.err.msg);
    uint64_t id = c.order->id;
    ph_cmd_clear(&c);
    size_t n;
    ph_ledger_entry *e = entries(NULL, &n);
    cr_assert_eq(n, 4, "cost and sale for each of the two suppliers");
    int64_t cost = 0, sale = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(e[i].order_id, id);
        cr_assert_eq(e[i].command, PH_CMD_ORDER);
        if (e[i].kind == PH_LEDGER_SUPPLIER_COST)
            cost += e[i].amount;
        else
            sale += e[i].amount;
        if (!strcmp(e[i].supplier, "sup-x"))
            cr_assert_eq(e[i].quantity, 1);
    }
    cr_assert_eq(cost, 2700 + 2 * 2600);
    cr_assert_eq(sale, 3 * 3000);
    free(e);
    ph_ledger_filter f = {.supplier = "sup-y"};
    e = entries(&f, &n);
    cr_assert_eq(n, 2);
    free(e);
    assert_check();
}

/* 2023-11-14T16:00:00Z is midnight at +08:00. */
#define MIDNIGHT_8 1699977600000LL

Test(ledger, business_day_boundary_and_offset_rebuild)
{
    start_at(480);
    uint64_t a = create("mall", "late", PRICED, 1, "sup-a", 1500, MIDNIGHT_8 - 1000);
    attempt(a, 1, PH_ATTEMPT_SUCCEEDED, -1, NULL, MIDNIGHT_8 - 1);
    uint64_t b = create("mall", "early", PRICED, 1, "sup-a", 1500, MIDNIGHT_8);
    attempt(b, 1, PH_ATTEMPT_SUCCEEDED, -1, NULL, MIDNIGHT_8);
    int32_t d14 = ph_report_day_parse("2023-11-14"), d15 = ph_report_day_parse("2023-11-15");
    cr_assert_eq(d15, d14 + 1);
    cr_assert_eq(ph_ledger_day(MIDNIGHT_8 - 1, 480), d14);
    cr_assert_eq(ph_ledger_day(MIDNIGHT_8, 480), d15);
    cr_assert_eq(ph_ledger_day(-1, 0), -1, "floor, not truncation, before 1970");
    ph_report_row *rows;
    size_t n;
    ph_err err = {0};
    cr_assert_eq(ph_store_report(g_s, d14, d15, PH_REPORT_BY_DAY, &rows, &n, &err), PH_OK);
    cr_assert_eq(n, 2);
    cr_assert(!strcmp(rows[0].day, "2023-11-14") && rows[0].revenue == 3300 &&
              rows[0].succeeded == 1);
    cr_assert(!strcmp(rows[1].day, "2023-11-15") && rows[1].revenue == 3300 &&
              rows[1].succeeded == 1);
    free(rows);
    /* the same store kept in UTC: both orders fall on the 14th */
    ph_store_close(g_s);
    ph_store_opts o = {.dir = g_dir, .report_utc_offset_min = 0, .report_offset_given = 1};
    cr_assert_eq(ph_store_open(&o, &g_s, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_store_report_offset(g_s), 0);
    cr_assert_eq(ph_store_report(g_s, d14, d15, PH_REPORT_BY_DAY, &rows, &n, &err), PH_OK);
    cr_assert_eq(n, 1);
    cr_assert(!strcmp(rows[0].day, "2023-11-14") && rows[0].revenue == 6600 &&
              rows[0].succeeded == 2 && rows[0].cost == 3000);
    free(rows);
    assert_check();
    /* an open that does not say keeps the store's */
    ph_store_close(g_s);
    g_s = open_at(g_dir, 0);
    cr_assert_eq(ph_store_report_offset(g_s), 0);
}

Test(ledger, report_input)
{
    start_at(480);
    cr_assert_eq(ph_report_day_parse("2026-02-30"), -1);
    cr_assert_eq(ph_report_day_parse("2026-2-3"), -1);
    cr_assert_eq(ph_report_day_parse("x"), -1);
    cr_assert_eq(ph_report_day_parse("1970-01-02"), 1);
    ph_report_row *rows;
    size_t n;
    ph_err err = {0};
    cr_assert_eq(ph_store_report(g_s, 5, 4, PH_REPORT_BY_DAY, &rows, &n, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "from"));
    cr_assert_eq(ph_store_report(g_s, 4, 5, 9, &rows, &n, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "by"));
}

/* ---- the checker -------------------------------------------------------------------- */

static void tampered(const char *db, unsigned flags, uint64_t key, size_t off, int64_t delta,
                     const char *expect)
{
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi dbi = raw_dbi(txn, db, flags);
    size_t len;
    uint8_t *rec = raw_copy(txn, dbi, key, &len);
    int64_t v;
    cr_assert_leq(off + 8, len);
    memcpy(&v, rec + off, 8);
    v += delta;
    memcpy(rec + off, &v, 8);
    raw_put_free(txn, dbi, key, rec, len);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    cr_assert_eq(ph_store_check(g_s, NULL, &err), PH_EIO, "the check missed a tampered %s", db);
    cr_assert(strstr(err.msg, expect), "%s", err.msg);
}

static uint64_t one_sale(void)
{
    start_at(480);
    uint64_t id = create("mall", "t1", PRICED, 1, "sup-a", 1500, NOW);
    attempt(id, 1, PH_ATTEMPT_SUCCEEDED, 1490, NULL, NOW + 10);
    assert_check();
    return id;
}

Test(ledger, check_catches_a_tampered_entry)
{
    one_sale();
    tampered("ledger", MDB_INTEGERKEY, 1, offsetof(ph_ledger_rec, amount), 100, "order 1");
}

Test(ledger, check_catches_a_tampered_summary)
{
    uint64_t id = one_sale();
    /* the summary's unit price: the sale no longer matches the order */
    tampered("ledger_orders", MDB_INTEGERKEY, id, 8, 1, "order 1");
}

Test(ledger, check_catches_a_lost_charge)
{
    uint64_t id = one_sale();
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi dbi = raw_dbi(txn, "ledger", MDB_INTEGERKEY);
    uint64_t k1 = 1;
    cr_assert_eq(mdb_del(txn, dbi, &(MDB_val){8, &k1}, NULL), 0);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    cr_assert_eq(ph_store_check(g_s, NULL, &err), PH_EIO);
    cr_assert(strstr(err.msg, "ledger"), "%s", err.msg);
    (void)id;
}

Test(ledger, check_catches_a_tampered_aggregate)
{
    one_sale();
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi dbi = raw_dbi(txn, "report_days", 0);
    MDB_cursor *c;
    MDB_val k, v;
    cr_assert_eq(mdb_cursor_open(txn, dbi, &c), 0);
    cr_assert_eq(mdb_cursor_get(c, &k, &v, MDB_FIRST), 0);
    int64_t agg[6];
    cr_assert_eq(v.mv_size, sizeof agg);
    memcpy(agg, v.mv_data, sizeof agg);
    agg[0] += 1; /* revenue */
    cr_assert_eq(mdb_cursor_put(c, &k, &(MDB_val){sizeof agg, agg}, MDB_CURRENT), 0);
    mdb_cursor_close(c);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    cr_assert_eq(ph_store_check(g_s, NULL, &err), PH_EIO);
    cr_assert(strstr(err.msg, "report_days"), "%s", err.msg);
}

/* A store of schema 3 (no ledger) is booked whole at its first open. */
Test(ledger, schema_3_store_is_booked_at_open)
{
    start_at(480);
    uint64_t a = create("mall", "m1", PRICED, 1, "sup-a", 1500, NOW);
    attempt(a, 1, PH_ATTEMPT_SUCCEEDED, 1490, NULL, NOW + 10);
    uint64_t b = create("mall", "m2", PRICED, 1, "sup-a", 1500, NOW);
    attempt(b, 1, PH_ATTEMPT_FAILED, -1, NULL, NOW + 10);
    ph_store_close(g_s);
    g_s = NULL;
    /* what a version 3 store holds: no ledger, schema 3 */
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    static const char *const dbs[] = {"ledger", "ledger_orders", "report_days"};
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(mdb_drop(txn, raw_dbi(txn, dbs[i], i < 2 ? MDB_INTEGERKEY : 0), 1), 0);
    MDB_dbi meta = raw_dbi(txn, "meta", 0);
    uint32_t three = 3;
    cr_assert_eq(mdb_put(txn, meta, &(MDB_val){6, "schema"}, &(MDB_val){4, &three}, 0), 0);
    cr_assert_eq(mdb_del(txn, meta, &(MDB_val){13, "report_offset"}, NULL), 0);
    raw_commit(env, txn);

    /* read-only, it is refused; a writable open migrates */
    ph_store_opts ro = {.dir = g_dir, .read_only = 1};
    ph_err err = {0};
    ph_store *s = NULL;
    cr_assert_eq(ph_store_open(&ro, &s, &err), PH_EVERSION);
    cr_assert(strstr(err.msg, "version 3"), "%s", err.msg);
    g_s = open_at(g_dir, 0);
    cr_assert_eq(ph_store_migrated_from(g_s), 3);
    cr_assert_eq(ph_store_report_offset(g_s), PH_REPORT_OFFSET_DEFAULT);
    size_t n;
    ph_ledger_entry *e = entries(NULL, &n);
    cr_assert_eq(n, 2);
    cr_assert(e[0].order_id == a && e[0].kind == PH_LEDGER_SUPPLIER_COST && e[0].amount == 1490 &&
              e[0].command == 0 && e[0].at == NOW + 10);
    cr_assert(e[1].kind == PH_LEDGER_SALE && e[1].amount == 3300);
    free(e);
    cr_assert_eq(booked(b).entries, 0);
    assert_check();
}
