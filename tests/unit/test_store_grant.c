/*
 * test_store_grant.c — the store's side of grants (issue 16): a grant order
 * reserves its code (stock and ledger untouched until the claim), PH_CMD_GRANT
 * claim / gift / expire / extend with their refusals and replays, a welfare
 * batch all or none, and --check-store's grant invariants.
 */

#include "config/config.h"
#include "store/store.h"
#include "store_fixture.h"

TestSuite(grant, .init = fixture_setup, .fini = fixture_teardown);

#define HOUR 3600000LL

static void start(unsigned codes)
{
    g_s = open_at(g_dir, 0);
    const char *const all[] = {P_IQ, P_TOPUP};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 2, &err), PH_OK, "put products: %s", err.msg);
    ph_import_code c[8];
    uint32_t by_hash[8];
    char sealed[8][24];
    cr_assert(codes <= 8);
    for (unsigned i = 0; i < codes; i++) {
        int len = snprintf(sealed[i], sizeof sealed[i], "sealed-%u", i);
        c[i] = (ph_import_code){
            .line = i + 1, .sealed_len = (uint32_t)len, .sealed = (uint8_t *)sealed[i]};
        code_hash(i, c[i].hash);
        by_hash[i] = i;
    }
    for (unsigned i = 0; i < codes; i++)
        for (unsigned j = i + 1; j < codes; j++)
            if (memcmp(c[by_hash[j]].hash, c[by_hash[i]].hash, 32) < 0) {
                uint32_t t = by_hash[i];
                by_hash[i] = by_hash[j];
                by_hash[j] = t;
            }
    ph_cmd imp = {.type = PH_CMD_IMPORT, .now = NOW};
    imp.in.import.supplier = "sup";
    imp.in.import.sku = IQ;
    imp.in.import.note = "t";
    imp.in.import.unit_cost = 2000;
    imp.in.import.codes = c;
    imp.in.import.ncodes = codes;
    imp.in.import.by_hash = by_hash;
    cr_assert_eq(ph_store_exec(g_s, &imp), PH_OK, "import: %s", imp.err.msg);
    ph_cmd_clear(&imp);
}

static void token(uint8_t n, uint8_t out[32])
{
    memset(out, n, 32);
}

static uint64_t grant_order(const char *coid, uint8_t tok, int64_t expires_at)
{
    ph_grant_in gi = {.expires_at = expires_at,
                      .holder = {.key = 0xabcdef, .masked = "em****01", .tags = "[\"dept=eng\"]"}};
    token(tok, gi.token_hash);
    ph_cmd c = {.type = PH_CMD_ORDER, .now = NOW};
    c.in.order.client = "mall";
    c.in.order.client_order_id = coid;
    c.in.order.sku = IQ;
    c.in.order.quantity = 1;
    c.in.order.grant = &gi;
    fingerprint(IQ, 1, c.in.order.fingerprint);
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_GRANTED);
    cr_assert_eq(c.order->ncodes, 1);
    cr_assert_eq(c.order->codes[0].state, PH_CODE_RESERVED);
    cr_assert(c.record && strstr(c.record, "\"state\":\"active\""), "%s", c.record);
    uint64_t id = c.order->id;
    ph_cmd_clear(&c);
    return id;
}

static int grant_op(int op, uint8_t tok, uint64_t id, uint8_t key, int64_t now, ph_cmd *out)
{
    memset(out, 0, sizeof *out);
    out->type = PH_CMD_GRANT;
    out->now = now;
    out->in.grant.op = op;
    out->in.grant.grant_id = id;
    out->in.grant.client = op == PH_GRANT_EXTEND || op == PH_GRANT_EXPIRE ? NULL : "mall";
    token(tok, out->in.grant.token_hash);
    memset(out->in.grant.key, key, 32);
    out->in.grant.who = "ops";
    return ph_store_exec(g_s, out);
}

static uint64_t available(void)
{
    ph_local_stock ls;
    ph_err err = {0};
    cr_assert_eq(ph_store_product_local(g_s, IQ, NOW, &ls, &err), PH_OK, "%s", err.msg);
    return ls.available;
}

Test(grant, a_claim_issues_the_reserved_code_once)
{
    start(2);
    uint64_t id = grant_order("g-1", 1, NOW + HOUR);
    cr_assert_eq(available(), 1, "the reserved code left the stock");
    assert_counts(IQ, 1, 1, 0, 0, 0, 0); /* available -> reserved */
    ph_cmd c;
    cr_assert_eq(grant_op(PH_GRANT_CLAIM, 9, 0, 0, NOW + 1, &c), PH_ENOTFOUND, "unknown token");
    ph_cmd_clear(&c);
    c = (ph_cmd){0};
    cr_assert_eq(grant_op(PH_GRANT_CLAIM, 1, 0, 7, NOW + 1, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->id, id);
    cr_assert_eq(c.order->state, PH_ORDER_SUCCEEDED);
    cr_assert_eq(c.order->codes[0].state, PH_CODE_ISSUED);
    ph_cmd_clear(&c);
    cr_assert_eq(grant_op(PH_GRANT_CLAIM, 1, 0, 7, NOW + 2, &c), PH_OK, "the same claim: a replay");
    cr_assert(c.replayed);
    ph_cmd_clear(&c);
    cr_assert_eq(grant_op(PH_GRANT_CLAIM, 1, 0, 8, NOW + 2, &c), PH_ECONFLICT);
    cr_assert_eq(c.grant_state, PH_GRANT_CLAIMED);
    ph_cmd_clear(&c);
    assert_counts(IQ, 1, 0, 1, 0, 0, 0); /* reserved -> issued */
}

Test(grant, expiry_returns_the_code_and_a_late_claim_is_told_so)
{
    start(1);
    uint64_t id = grant_order("g-1", 1, NOW + HOUR);
    cr_assert_eq(available(), 0);
    ph_cmd c;
    cr_assert_eq(grant_op(PH_GRANT_EXPIRE, 0, 0, 0, NOW + HOUR - 1, &c), PH_OK);
    cr_assert_eq(c.expired_codes, 0, "not due yet");
    ph_cmd_clear(&c);
    cr_assert_eq(grant_op(PH_GRANT_EXPIRE, 0, 0, 0, NOW + HOUR, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.expired_codes, 1);
    ph_cmd_clear(&c);
    cr_assert_eq(available(), 1, "the code is back in stock");
    ph_order *o = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_store_order_get(g_s, id, 1, &o, &err), PH_OK);
    cr_assert_eq(o->state, PH_ORDER_FAILED);
    cr_assert_str_eq(o->reason, "grant_expired");
    cr_assert_eq(o->ncodes, 0);
    ph_order_free(o);
    cr_assert_eq(grant_op(PH_GRANT_CLAIM, 1, 0, 0, NOW + HOUR + 1, &c), PH_ESTATE);
    cr_assert_eq(c.grant_state, PH_GRANT_EXPIRED);
    ph_cmd_clear(&c);
    assert_counts(IQ, 1, 0, 0, 0, 0, 0); /* reserved -> available */
    reopen();
    assert_check();
}

Test(grant, a_gift_kills_the_old_token_and_an_extend_moves_the_expiry)
{
    start(1);
    uint64_t id = grant_order("g-1", 1, NOW + HOUR);
    ph_cmd c;
    memset(&c, 0, sizeof c);
    c.type = PH_CMD_GRANT;
    c.now = NOW + 1;
    c.in.grant.op = PH_GRANT_GIFT;
    c.in.grant.grant_id = id;
    c.in.grant.client = "mall";
    token(1, c.in.grant.token_hash);
    token(2, c.in.grant.new_token_hash);
    c.in.grant.to = (ph_grant_holder){.key = 0x1234, .masked = "fr****02"};
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_assert(strstr(c.record, "\"to\":\"fr****02\""), "%s", c.record);
    ph_cmd_clear(&c);
    cr_assert_eq(grant_op(PH_GRANT_CLAIM, 1, 0, 0, NOW + 2, &c), PH_ENOTFOUND, "the old token");
    ph_cmd_clear(&c);
    c = (ph_cmd){0};
    cr_assert_eq(grant_op(PH_GRANT_EXTEND, 0, id, 0, NOW + 3, &c), PH_EINVAL, "no new time");
    ph_cmd_clear(&c);
    memset(&c, 0, sizeof c);
    c.type = PH_CMD_GRANT;
    c.now = NOW + 3;
    c.in.grant.op = PH_GRANT_EXTEND;
    c.in.grant.grant_id = id;
    c.in.grant.expires_at = NOW + 5 * HOUR;
    c.in.grant.who = "ops";
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(grant_op(PH_GRANT_EXPIRE, 0, 0, 0, NOW + HOUR, &c), PH_OK);
    cr_assert_eq(c.expired_codes, 0, "extended: not due at its first time");
    ph_cmd_clear(&c);
    cr_assert_eq(grant_op(PH_GRANT_CLAIM, 2, 0, 0, NOW + 2 * HOUR, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    assert_check();
}

Test(grant, a_batch_with_a_line_it_cannot_serve_stores_nothing)
{
    start(2);
    ph_grant_line lines[3];
    memset(lines, 0, sizeof lines);
    for (int i = 0; i < 3; i++) {
        lines[i] = (ph_grant_line){.line = (uint32_t)i + 2,
                                   .sku = IQ,
                                   .delivery = PH_DELIVERY_CARD_CODE,
                                   .holder = {.key = (uint64_t)i + 1, .masked = "em****0x"}};
        token((uint8_t)(i + 1), lines[i].token_hash);
    }
    ph_cmd c = {.type = PH_CMD_GRANT_BATCH, .now = NOW};
    c.in.grant_batch.client = "mall";
    c.in.grant_batch.batch_id = "B-1";
    c.in.grant_batch.expires_at = NOW + HOUR;
    c.in.grant_batch.lines = lines;
    c.in.grant_batch.n = 3;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_ENOSTOCK, "three lines, two codes");
    cr_assert(!strncmp(c.err.msg, "line 4: ", 8), "%s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(available(), 2, "nothing taken");
    c = (ph_cmd){.type = PH_CMD_GRANT_BATCH, .now = NOW};
    c.in.grant_batch.client = "mall";
    c.in.grant_batch.batch_id = "B-1";
    c.in.grant_batch.expires_at = NOW + HOUR;
    c.in.grant_batch.lines = lines;
    c.in.grant_batch.n = 2;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.ngrant_ids, 2);
    uint64_t first = c.grant_ids[0];
    ph_cmd_clear(&c);
    c = (ph_cmd){.type = PH_CMD_GRANT_BATCH, .now = NOW + 1};
    c.in.grant_batch.client = "mall";
    c.in.grant_batch.batch_id = "B-1";
    c.in.grant_batch.expires_at = NOW + HOUR;
    c.in.grant_batch.lines = lines;
    c.in.grant_batch.n = 2;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_assert(c.replayed);
    cr_assert_eq(c.grant_ids[0], first);
    ph_cmd_clear(&c);
    assert_check();
}

Test(grant, the_check_catches_an_active_grant_without_its_expiry_entry)
{
    start(1);
    grant_order("g-1", 1, NOW + HOUR);
    assert_check();
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi dbi = raw_dbi(txn, "grant_expiry", 0);
    MDB_cursor *cur;
    MDB_val k, v;
    cr_assert_eq(mdb_cursor_open(txn, dbi, &cur), 0);
    cr_assert_eq(mdb_cursor_get(cur, &k, &v, MDB_FIRST), 0);
    cr_assert_eq(mdb_cursor_del(cur, 0), 0);
    mdb_cursor_close(cur);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    ph_store_stats st;
    cr_assert_neq(ph_store_check(g_s, &st, &err), PH_OK);
    cr_assert_str_eq(err.msg, "grant 1: active but not in grant_expiry");
}

Test(grant, the_check_catches_a_reserved_code_of_an_order_that_is_not_granted)
{
    start(1);
    grant_order("g-1", 1, NOW + HOUR);
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi dbi = raw_dbi(txn, "orders", MDB_INTEGERKEY);
    size_t len;
    uint8_t *rec = raw_copy(txn, dbi, 1, &len);
    rec[1] = PH_ORDER_SUCCEEDED; /* the state byte: the code stays reserved */
    raw_put_free(txn, dbi, 1, rec, len);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    ph_store_stats st;
    cr_assert_neq(ph_store_check(g_s, &st, &err), PH_OK);
    cr_assert(strstr(err.msg, "code 1 is reserved"), "%s", err.msg);
}

Test(grant, a_holder_masked_with_quotes_is_stored_as_json)
{
    start(1);
    ph_grant_in gi = {.expires_at = NOW + HOUR,
                      .holder = {.key = 1, .masked = "\"\\****z\"", .tags = "[\"a=\\\"b\"]"}};
    token(3, gi.token_hash);
    ph_cmd c = {.type = PH_CMD_ORDER, .now = NOW};
    c.in.order.client = "mall";
    c.in.order.client_order_id = "q-1";
    c.in.order.sku = IQ;
    c.in.order.quantity = 1;
    c.in.order.grant = &gi;
    fingerprint(IQ, 1, c.in.order.fingerprint);
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    uint64_t id = c.order->id;
    ph_cmd_clear(&c);
    char *txt = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_store_grant_get(g_s, id, &txt, &err), PH_OK);
    json_t *rec = json_loads(txt, 0, NULL);
    cr_assert(json_is_object(rec), "%s", txt);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(rec, "holder"), "masked")),
                     "\"\\****z\"");
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(rec, "tags"), 0)), "a=\"b");
    json_decref(rec);
    free(txt);
    assert_check();
}
