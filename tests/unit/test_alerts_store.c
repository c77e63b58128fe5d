/*
 * test_alerts_store.c — the alert check inside the writer (store_alerts.c):
 * a product's rule judged by the commands that change its stock, the state
 * kept across a reopen, a failed order leaving no alert behind, min_validity
 * in the issuable count and the sweep, BALANCE and ALERT_ACK with their
 * refusals, their journal encodings, and --check-store's invariants.
 */
#include "store/store.h"
#include "store_fixture.h"
#include "store/cmd_codec.h"
#include "store/store_int.h"

#define SKU "rule.card"
#define DAY 86400000LL

static const char *const P_RULE =
    "{\"sku\":\"" SKU "\",\"name\":\"Rule card\",\"brand\":\"b\",\"delivery\":\"card_code\","
    "\"face_value\":\"10.00\",\"listed\":true,\"min_validity_days\":1,"
    "\"low_stock\":{\"below\":3,\"margin\":2}}";

TestSuite(alerts_store, .init = fixture_setup, .fini = fixture_teardown);

static unsigned next_code = 1;

static void import(size_t n, int64_t now, int64_t expires_at)
{
    ph_import_code *codes = calloc(n, sizeof *codes);
    uint32_t *by_hash = calloc(n, sizeof *by_hash);
    char(*sealed)[24] = calloc(n, sizeof *sealed);
    for (size_t i = 0; i < n; i++) {
        unsigned num = next_code++;
        int len = snprintf(sealed[i], sizeof sealed[i], "sealed-%u", num);
        codes[i] = (ph_import_code){.line = (uint32_t)i + 1,
                                    .expires_at = expires_at,
                                    .sealed_len = (uint32_t)len,
                                    .sealed = (uint8_t *)sealed[i]};
        code_hash(num, codes[i].hash);
    }
    /* sorted by hash: a selection sort is plenty for a handful */
    for (size_t i = 0; i < n; i++)
        by_hash[i] = (uint32_t)i;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (memcmp(codes[by_hash[j]].hash, codes[by_hash[i]].hash, 32) < 0) {
                uint32_t t = by_hash[i];
                by_hash[i] = by_hash[j];
                by_hash[j] = t;
            }
    ph_cmd c = {.type = PH_CMD_IMPORT, .now = now};
    c.in.import.supplier = "sup-a";
    c.in.import.sku = SKU;
    c.in.import.unit_cost = 500;
    c.in.import.codes = codes;
    c.in.import.ncodes = n;
    c.in.import.by_hash = by_hash;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "import: %s", c.err.msg);
    ph_cmd_clear(&c);
    free(codes);
    free(by_hash);
    free(sealed);
}

static int n_orders;

static int order(uint32_t qty, int64_t now)
{
    char coid[32];
    snprintf(coid, sizeof coid, "O-%d", n_orders++);
    ph_cmd c = {.type = PH_CMD_ORDER, .now = now};
    c.in.order.client = "mall";
    c.in.order.client_order_id = coid;
    c.in.order.sku = SKU;
    c.in.order.quantity = qty;
    fingerprint(SKU, qty, c.in.order.fingerprint);
    int rc = ph_store_exec(g_s, &c);
    ph_cmd_clear(&c);
    return rc;
}

static int count(const char *type)
{
    json_t *evs = events_after_without(0, NULL);
    size_t i;
    json_t *e;
    int n = 0;
    json_array_foreach(evs, i, e) n += !strcmp(ev_str(e, "type"), type);
    json_decref(evs);
    return n;
}

static void open_rule(void)
{
    g_s = open_at(g_dir, 0);
    const char *const all[] = {P_RULE};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 1, &err), PH_OK, "%s", err.msg);
}

static uint64_t open_total(void)
{
    uint64_t o[PH_ALERT_KINDS], t = 0;
    ph_store_alerts_open(g_s, o);
    for (int i = 0; i < PH_ALERT_KINDS; i++)
        t += o[i];
    return t;
}

Test(alerts_store, the_writer_judges_every_stock_change_and_keeps_state_across_a_reopen)
{
    open_rule();
    cr_assert_eq(count("stock.low"), 1, "the empty product is low at the catalog's command");
    cr_assert_eq(count("stock.out"), 1);
    import(6, NOW, 0);
    cr_assert_eq(count("stock.recovered"), 2, "6 >= 3 + 2 and >= 2: both re-armed");
    cr_assert_eq(order(3, NOW), PH_OK);
    cr_assert_eq(count("stock.low"), 1, "3 is not below 3");
    cr_assert_eq(order(1, NOW), PH_OK);
    cr_assert_eq(count("stock.low"), 2, "2 < 3");
    cr_assert_eq(open_total(), 1);
    /* a refused order (more than there is) changes nothing, alerts included */
    cr_assert_eq(order(5, NOW), PH_ENOSTOCK);
    cr_assert_eq(count("stock.out"), 1);
    reopen(); /* the state lives in the store, the rules are rebuilt from it */
    import(2, NOW, 0);
    cr_assert_eq(count("stock.low"), 2, "4 < 5: still fired, no second event");
    cr_assert_eq(count("stock.recovered"), 2);
    cr_assert_eq(order(4, NOW), PH_OK);
    cr_assert_eq(count("stock.out"), 2, "0: stock.out again");
    cr_assert_eq(open_total(), 2);
    assert_check();
}

Test(alerts_store, min_validity_counts_and_retires_codes_before_their_expiry)
{
    open_rule();
    import(2, NOW, NOW + DAY + 1000); /* issuable for 1 s */
    import(3, NOW, 0);
    ph_local_stock l;
    ph_err err = {0};
    cr_assert_eq(ph_store_product_local(g_s, SKU, NOW, &l, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(l.available, 5);
    cr_assert_eq(l.issuable, 5);
    cr_assert_eq(ph_store_product_local(g_s, SKU, NOW + 1000, &l, &err), PH_OK);
    cr_assert_eq(l.available, 5);
    cr_assert_eq(l.issuable, 3, "a day before their expiry they are not issuable");
    cr_assert(ph_store_expiry_due(g_s, NOW + 1000), "due a day before the expiry");
    cr_assert(!ph_store_expiry_due(g_s, NOW + 999));
    /* an order at NOW + 1000 gets neither of them (they come first in the stock) */
    cr_assert_eq(order(3, NOW + 1000), PH_OK);
    cr_assert_eq(order(1, NOW + 1000), PH_ENOSTOCK);
    assert_check();
}

Test(alerts_store, the_sweep_retires_within_min_validity_and_judges_the_sku)
{
    open_rule();
    import(5, NOW, NOW + DAY + 1000);
    int low = count("stock.low");
    ph_cmd c = {.type = PH_CMD_EXPIRE, .now = NOW + 999};
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK);
    cr_assert_eq(c.expired_codes, 0);
    ph_cmd_clear(&c);
    c = (ph_cmd){.type = PH_CMD_EXPIRE, .now = NOW + 1000};
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.expired_codes, 5);
    ph_cmd_clear(&c);
    cr_assert_eq(count("stock.low"), low + 1, "the sweep's command judged the sku");
    assert_check();
}

static int balance(int64_t fen, int64_t below, int64_t now, uint64_t *alert)
{
    ph_cmd c = {.type = PH_CMD_BALANCE, .now = now};
    c.in.balance.supplier = "gw";
    c.in.balance.balance = fen;
    c.in.balance.below = below;
    int rc = ph_store_exec(g_s, &c);
    if (alert)
        *alert = c.alert_id;
    ph_cmd_clear(&c);
    return rc;
}

static int ack(uint64_t id, const char *note, ph_err *err)
{
    ph_cmd c = {.type = PH_CMD_ALERT_ACK, .now = NOW + 5};
    c.in.alert_ack.id = id;
    c.in.alert_ack.by = "ops";
    c.in.alert_ack.note = note;
    int rc = ph_store_exec(g_s, &c);
    *err = c.err;
    ph_cmd_clear(&c);
    return rc;
}

Test(alerts_store, balance_and_ack)
{
    g_s = open_at(g_dir, 0);
    uint64_t id = 0;
    cr_assert_eq(balance(100000, 50000, NOW, &id), PH_OK);
    cr_assert_eq(id, 0);
    int64_t b, at;
    ph_err err = {0};
    cr_assert_eq(ph_store_balance_get(g_s, "gw", &b, &at, &err), PH_OK);
    cr_assert_eq(b, 100000);
    cr_assert_eq(at, NOW);
    cr_assert_eq(ph_store_balance_get(g_s, "other", &b, &at, &err), PH_ENOTFOUND);
    cr_assert_eq(balance(40000, 50000, NOW + 1, &id), PH_OK);
    cr_assert_neq(id, 0, "below 500.00: fired");
    cr_assert_eq(balance(54000, 50000, NOW + 2, NULL), PH_OK, "under 500.00 + 50.00: quiet");
    cr_assert_eq(count("supplier.balance_low"), 1);
    cr_assert_eq(ack(id, "topping up", &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ack(id, NULL, &err), PH_ESTATE);
    cr_assert(strstr(err.msg, "already acknowledged by ops"), "%s", err.msg);
    cr_assert_eq(ack(999, NULL, &err), PH_ENOTFOUND);
    cr_assert_eq(ack(id, "bad\001note", &err), PH_EINVAL);
    cr_assert_eq(open_total(), 0);
    cr_assert_eq(balance(55000, 50000, NOW + 3, NULL), PH_OK);
    cr_assert_eq(count("supplier.balance_recovered"), 1);
    cr_assert_eq(ack(id, NULL, &err), PH_ESTATE);
    cr_assert(strstr(err.msg, "is cleared"), "%s", err.msg);
    cr_assert_eq(balance(-5, 50000, NOW + 4, NULL), PH_EINVAL);
    char **list;
    size_t n;
    uint64_t next;
    cr_assert_eq(ph_store_alert_list(g_s, 0, 0, 10, &list, &n, &next, &err), PH_OK);
    cr_assert_eq(n, 1);
    cr_assert(strstr(list[0], "\"state\":\"cleared\""), "%s", list[0]);
    cr_assert(strstr(list[0], "\"acked_by\":\"ops\""), "%s", list[0]);
    ph_store_event_list_free(list, n);
    cr_assert_eq(ph_store_alert_list(g_s, PH_ALERT_OPEN, 0, 10, &list, &n, &next, &err), PH_OK);
    cr_assert_eq(n, 0);
    ph_store_event_list_free(list, n);
    assert_check();
}

Test(alerts_store, check_store_sees_a_counter_that_disagrees)
{
    g_s = open_at(g_dir, 0);
    cr_assert_eq(balance(10, 50000, NOW, NULL), PH_OK);
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi meta = raw_dbi(txn, "meta", 0);
    uint64_t zero[PH_ALERT_KINDS] = {0};
    MDB_val k = {11, "alerts_open"}, v = {sizeof zero, zero};
    cr_assert_eq(mdb_put(txn, meta, &k, &v, 0), 0);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    ph_store_stats st;
    cr_assert_eq(ph_store_check(g_s, &st, &err), PH_EIO);
    cr_assert(strstr(err.msg, "alerts_open"), "%s", err.msg);
}

Test(alerts_store, journal_round_trip)
{
    ph_cmd c[2] = {{.type = PH_CMD_BALANCE, .now = NOW}, {.type = PH_CMD_ALERT_ACK, .now = NOW}};
    c[0].in.balance.supplier = "gw";
    c[0].in.balance.balance = 1234;
    c[0].in.balance.below = -1;
    c[1].in.alert_ack.id = 7;
    c[1].in.alert_ack.by = "ops";
    c[1].in.alert_ack.note = "n";
    c[0].next = &c[1];
    uint8_t *p = NULL;
    size_t len;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_encode(&c[0], &p, &len, &err), PH_OK, "%s", err.msg);
    ph_cmd_batch b;
    cr_assert_eq(ph_cmd_batch_decode(p, len, &b, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(b.n, 2);
    cr_assert_str_eq(b.cmds[0].in.balance.supplier, "gw");
    cr_assert_eq(b.cmds[0].in.balance.balance, 1234);
    cr_assert_eq(b.cmds[0].in.balance.below, -1);
    cr_assert_eq(b.cmds[1].in.alert_ack.id, 7);
    cr_assert_str_eq(b.cmds[1].in.alert_ack.by, "ops");
    cr_assert_str_eq(b.cmds[1].in.alert_ack.note, "n");
    ph_cmd_batch_free(&b);
    free(p);
}
