/*
 * test_store_grant.c — the store's side of grants (issue 16): a grant order
 * reserves its code (stock and ledger untouched until the claim), PH_CMD_GRANT
 * claim / gift / expire / extend with their refusals and replays, a welfare
 * batch all or none, a claim given back (a single grant's, a bundle grant's
 * with nothing delivered), and --check-store's grant invariants.
 */

#include "config/config.h"
#include "store/cmd_codec.h"
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

/* ---- a claim whose supplier order failed for good gives the grant back ------------- */

/* A granted recharge (no attempt, no account) for token tok. */
static uint64_t grant_recharge(const char *coid, uint8_t tok, int64_t expires_at)
{
    ph_grant_in gi = {.expires_at = expires_at,
                      .holder = {.key = 0xabcdef, .masked = "em****01", .tags = "[\"dept=eng\"]"}};
    token(tok, gi.token_hash);
    ph_cmd c = {.type = PH_CMD_SUPPLY_CREATE, .now = NOW};
    c.in.supply.client = "mall";
    c.in.supply.client_order_id = coid;
    c.in.supply.sku = TOPUP;
    c.in.supply.quantity = 1;
    c.in.supply.delivery = PH_DELIVERY_RECHARGE;
    c.in.supply.grant = &gi;
    fingerprint(TOPUP, 1, c.in.supply.fingerprint);
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_GRANTED);
    uint64_t id = c.order->id;
    ph_cmd_clear(&c);
    return id;
}

/* A claim of token tok to account `masked` at supplier sup (request key key). */
static int claim_recharge(uint8_t tok, uint8_t key, const char *masked, int64_t now, ph_cmd *out)
{
    memset(out, 0, sizeof *out);
    out->type = PH_CMD_GRANT;
    out->now = now;
    out->in.grant.op = PH_GRANT_CLAIM;
    out->in.grant.client = "mall";
    token(tok, out->in.grant.token_hash);
    memset(out->in.grant.key, key, 32);
    out->in.grant.account_sealed = (const uint8_t *)"sealed-account";
    out->in.grant.account_sealed_len = 14;
    out->in.grant.account_masked = masked;
    out->in.grant.first = (ph_attempt_target){"sup", "P-1", 2900};
    return ph_store_exec(g_s, out);
}

/* ATTEMPT no of order id becomes state at `now`, charged (-1 unknown). */
static int attempt_at(uint64_t id, uint32_t no, int state, int64_t charged, int64_t now,
                      ph_cmd *out)
{
    memset(out, 0, sizeof *out);
    out->type = PH_CMD_ATTEMPT;
    out->now = now;
    out->in.attempt.order_id = id;
    out->in.attempt.no = no;
    out->in.attempt.state = state;
    out->in.attempt.reason = state == PH_ATTEMPT_FAILED ? "account_suspended" : NULL;
    out->in.attempt.step = -1;
    out->in.attempt.charged = charged;
    out->in.attempt.next_check_at = -1;
    return ph_store_exec(g_s, out);
}

static json_t *grant_rec(uint64_t id)
{
    char *txt = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_store_grant_get(g_s, id, &txt, &err), PH_OK, "%s", err.msg);
    json_t *rec = json_loads(txt, 0, NULL);
    free(txt);
    cr_assert_not_null(rec);
    return rec;
}

/* Events of order id of type `type` after seq `after`. */
static int events_of(uint64_t after, uint64_t id, const char *type)
{
    json_t *evs = events_after_without(after, NULL);
    size_t i;
    json_t *ev;
    int n = 0;
    json_array_foreach(evs, i, ev) n +=
        !strcmp(ev_str(ev, "type"), type) &&
        (uint64_t)json_integer_value(json_object_get(ev, "order_id")) == id;
    json_decref(evs);
    return n;
}

Test(grant, a_recharge_refused_for_good_gives_the_grant_back_and_a_claim_again_succeeds)
{
    start(0);
    uint64_t id = grant_recharge("r-1", 4, NOW + HOUR);
    uint64_t ev0 = last_event();
    ph_cmd c;
    cr_assert_eq(claim_recharge(4, 1, "139****0002", NOW + 10, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_PROCESSING);
    cr_assert_eq(c.order->nattempts, 1);
    ph_cmd_clear(&c);
    assert_check();

    /* the supplier refuses it for good, nothing charged: in that same command
     * the order is granted again and the grant active, same token */
    cr_assert_eq(attempt_at(id, 1, PH_ATTEMPT_FAILED, 0, NOW + 20, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_GRANTED, "%s", ph_order_state_name(c.order->state));
    cr_assert_str_eq(c.order->reason, "");
    cr_assert_eq(c.order->attempts[0].state, PH_ATTEMPT_FAILED, "the failed attempt is kept");
    cr_assert_null(c.record, "an ATTEMPT leaves no grant record as its result");
    ph_cmd_clear(&c);
    json_t *rec = grant_rec(id);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "active");
    cr_assert_null(json_object_get(rec, "claimed_at"));
    json_t *ret = json_array_get(json_object_get(rec, "returns"), 0);
    cr_assert_eq(json_array_size(json_object_get(rec, "returns")), 1);
    cr_assert_eq(json_integer_value(json_object_get(ret, "attempt")), 1);
    cr_assert_eq(json_integer_value(json_object_get(ret, "claimed_at")), NOW + 10);
    cr_assert_eq(json_integer_value(json_object_get(ret, "at")), NOW + 20);
    cr_assert_str_eq(json_string_value(json_object_get(ret, "reason")), "account_suspended");
    json_decref(rec);
    cr_assert_eq(events_of(ev0, id, "grant.claimed"), 1);
    cr_assert_eq(events_of(ev0, id, "order.attempt"), 1);
    cr_assert_eq(events_of(ev0, id, "grant.returned"), 1);
    cr_assert_eq(events_of(ev0, id, "order.failed"), 0, "the order did not end");
    ph_cmd_clear(&c);
    assert_check();
    /* and stays so across a reopen */
    reopen();
    assert_check();

    /* the same claim request again is a replay: it changes nothing */
    cr_assert_eq(claim_recharge(4, 1, "139****0002", NOW + 30, &c), PH_OK, "%s", c.err.msg);
    cr_assert(c.replayed);
    cr_assert_eq(c.order->state, PH_ORDER_GRANTED);
    ph_cmd_clear(&c);
    /* a claim again (another request) is attempt 2 to the new account */
    cr_assert_eq(claim_recharge(4, 2, "138****0001", NOW + 40, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_PROCESSING);
    cr_assert_eq(c.order->nattempts, 2);
    cr_assert_str_eq(c.order->account_masked, "138****0001");
    ph_cmd_clear(&c);
    assert_check();
    cr_assert_eq(attempt_at(id, 2, PH_ATTEMPT_SUCCEEDED, 2900, NOW + 50, &c), PH_OK, "%s",
                 c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_SUCCEEDED);
    cr_assert_eq(c.order->cost, 2900, "one charge: the attempt that succeeded");
    ph_cmd_clear(&c);
    rec = grant_rec(id);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "claimed");
    cr_assert_eq(json_integer_value(json_object_get(rec, "claimed_at")), NOW + 40);
    json_decref(rec);
    cr_assert_eq(events_of(ev0, id, "grant.claimed"), 2);
    cr_assert_eq(events_of(ev0, id, "order.succeeded"), 1);
    /* a claimed grant refuses another claim as before */
    cr_assert_eq(claim_recharge(4, 3, "138****0001", NOW + 60, &c), PH_ECONFLICT);
    ph_cmd_clear(&c);
    assert_check();
}

/* A supplier that names an amount in its refusal (rewards' amount_charged on
 * a refunded order) changes nothing: a failed attempt books no cost. */
Test(grant, a_refusal_naming_an_amount_gives_the_grant_back_too)
{
    start(0);
    uint64_t id = grant_recharge("r-1", 4, NOW + HOUR);
    ph_cmd c;
    cr_assert_eq(claim_recharge(4, 1, "139****0002", NOW + 10, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(attempt_at(id, 1, PH_ATTEMPT_FAILED, 2900, NOW + 20, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_GRANTED);
    cr_assert_eq(c.order->cost, 0);
    ph_cmd_clear(&c);
    json_t *rec = grant_rec(id);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "active");
    json_decref(rec);
    assert_check();
}

Test(grant, a_grant_given_back_after_its_expiry_expires)
{
    start(0);
    uint64_t id = grant_recharge("r-1", 4, NOW + HOUR);
    uint64_t ev0 = last_event();
    ph_cmd c;
    cr_assert_eq(claim_recharge(4, 1, "139****0002", NOW + 10, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    /* the expiry job passes while the supplier has it: a claimed grant is not due */
    cr_assert_eq(grant_op(PH_GRANT_EXPIRE, 0, 0, 0, NOW + 2 * HOUR, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.expired_codes, 0);
    ph_cmd_clear(&c);
    cr_assert_eq(attempt_at(id, 1, PH_ATTEMPT_FAILED, -1, NOW + 2 * HOUR, &c), PH_OK, "%s",
                 c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_FAILED);
    cr_assert_str_eq(c.order->reason, "grant_expired");
    ph_cmd_clear(&c);
    json_t *rec = grant_rec(id);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "expired");
    cr_assert_eq(json_array_size(json_object_get(rec, "returns")), 1);
    json_decref(rec);
    cr_assert_eq(events_of(ev0, id, "grant.returned"), 1);
    cr_assert_eq(events_of(ev0, id, "grant.expired"), 1);
    cr_assert_eq(events_of(ev0, id, "order.failed"), 1);
    cr_assert_eq(claim_recharge(4, 2, "138****0001", NOW + 2 * HOUR + 1, &c), PH_ESTATE);
    cr_assert_eq(c.grant_state, PH_GRANT_EXPIRED);
    ph_cmd_clear(&c);
    assert_check();
}

Test(grant, the_check_catches_an_active_grant_with_attempts_but_no_return)
{
    start(0);
    uint64_t id = grant_recharge("r-1", 4, NOW + HOUR);
    ph_cmd c;
    cr_assert_eq(claim_recharge(4, 1, "139****0002", NOW + 10, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(attempt_at(id, 1, PH_ATTEMPT_FAILED, 0, NOW + 20, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    assert_check();
    /* the record loses its return: an active grant whose claim left attempts unexplained */
    json_t *rec = grant_rec(id);
    json_object_del(rec, "returns");
    char *txt = json_dumps(rec, JSON_COMPACT);
    json_decref(rec);
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi dbi = raw_dbi(txn, "grants", MDB_INTEGERKEY);
    MDB_val k = {8, &id}, v = {strlen(txt), txt};
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    free(txt);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    ph_store_stats st;
    cr_assert_neq(ph_store_check(g_s, &st, &err), PH_OK);
    cr_assert(strstr(err.msg, "active with 1 attempts but 0 returns recorded"), "%s", err.msg);
}

/* The supplier later says the refused claim went through after all (a late
 * word, accepted by ops): the grant given back is claimed for good, and can
 * no longer be claimed a second time. */
Test(grant, a_late_success_accepted_claims_a_grant_given_back)
{
    start(0);
    uint64_t id = grant_recharge("r-1", 4, NOW + HOUR);
    ph_cmd c;
    cr_assert_eq(claim_recharge(4, 1, "139****0002", NOW + 10, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(attempt_at(id, 1, PH_ATTEMPT_FAILED, -1, NOW + 20, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_GRANTED);
    ph_cmd_clear(&c);
    c = (ph_cmd){.type = PH_CMD_FINAL_WORD, .now = NOW + 30};
    c.in.word.order_id = id;
    c.in.word.no = 1;
    c.in.word.source = PH_DISCREP_QUERY;
    c.in.word.state = PH_ATTEMPT_SUCCEEDED;
    c.in.word.charged = 2900;
    c.in.word.delivered = -1;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    uint64_t d = c.discrepancy_id;
    cr_assert_neq(d, 0);
    ph_cmd_clear(&c);
    assert_check(); /* raised: the grant stays claimable until ops decide */
    c = (ph_cmd){.type = PH_CMD_RESOLVE, .now = NOW + 40};
    c.in.resolve.id = d;
    c.in.resolve.accept = 1;
    c.in.resolve.who = "ops";
    c.in.resolve.note = "statement";
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    json_t *rec = grant_rec(id);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "claimed");
    json_decref(rec);
    ph_order *o = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_store_order_get(g_s, id, 0, &o, &err), PH_OK);
    cr_assert_eq(o->state, PH_ORDER_SUCCEEDED);
    ph_order_free(o);
    cr_assert_eq(claim_recharge(4, 2, "138****0001", NOW + 50, &c), PH_ECONFLICT);
    ph_cmd_clear(&c);
    assert_check();
}

/* The other way: the supplier later says a claim's recharge failed after all,
 * and ops accept it: the grant is given back as its failure would have. */
Test(grant, a_late_failure_accepted_gives_a_claimed_grant_back)
{
    start(0);
    uint64_t id = grant_recharge("r-1", 4, NOW + HOUR);
    ph_cmd c;
    cr_assert_eq(claim_recharge(4, 1, "138****0001", NOW + 10, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(attempt_at(id, 1, PH_ATTEMPT_SUCCEEDED, 2900, NOW + 20, &c), PH_OK, "%s",
                 c.err.msg);
    ph_cmd_clear(&c);
    c = (ph_cmd){.type = PH_CMD_FINAL_WORD, .now = NOW + 30};
    c.in.word.order_id = id;
    c.in.word.no = 1;
    c.in.word.source = PH_DISCREP_QUERY;
    c.in.word.state = PH_ATTEMPT_FAILED;
    c.in.word.charged = 0;
    c.in.word.delivered = -1;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    uint64_t d = c.discrepancy_id;
    cr_assert_neq(d, 0);
    ph_cmd_clear(&c);
    c = (ph_cmd){.type = PH_CMD_RESOLVE, .now = NOW + 40};
    c.in.resolve.id = d;
    c.in.resolve.accept = 1;
    c.in.resolve.who = "ops";
    c.in.resolve.note = "statement";
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    json_t *rec = grant_rec(id);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "active");
    cr_assert_eq(json_array_size(json_object_get(rec, "returns")), 1);
    json_decref(rec);
    ph_order *o = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_store_order_get(g_s, id, 0, &o, &err), PH_OK);
    cr_assert_eq(o->state, PH_ORDER_GRANTED);
    cr_assert_eq(o->cost, 0);
    ph_order_free(o);
    assert_check();
    cr_assert_eq(claim_recharge(4, 2, "138****0001", NOW + 50, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->nattempts, 2);
    ph_cmd_clear(&c);
    assert_check();
}

/* g_s opened on g_dir with a journal of its commands at jpath; rdir is where
 * replay_into replays it (both 128 bytes). */
static void open_journaled(char *jpath, char *rdir)
{
    snprintf(jpath, 128, "%s/j.journal", g_base);
    snprintf(rdir, 128, "%s/replayed", g_base);
    ph_store_opts o = {.dir = g_dir, .journal_file = jpath};
    ph_err err = {0};
    cr_assert_eq(ph_store_open(&o, &g_s, &err), PH_OK, "%s", err.msg);
}

/* Closes g_s, replays its journal into the empty rdir (what a standby applies:
 * the same commands through the same code) and opens g_s there. */
static void replay_into(const char *jpath, const char *rdir)
{
    ph_store_close(g_s);
    g_s = NULL;
    ph_replay_stats st = {0};
    ph_err err = {0};
    cr_assert_eq(ph_journal_replay(jpath, rdir, NULL, &st, &err), PH_OK, "%s", err.msg);
    g_s = open_at(rdir, 0);
}

/* The return is the ATTEMPT command's own doing, nothing beside it: the
 * journal of those commands replayed into an empty directory (what a standby
 * applies) gives the same grant record, order and events. */
Test(grant, a_journal_replay_gives_the_grant_back_the_same)
{
    char jpath[128], rdir[128];
    open_journaled(jpath, rdir);
    ph_err err = {0};
    const char *const all[] = {P_IQ, P_TOPUP};
    cr_assert_eq(put_products(all, 2, &err), PH_OK, "%s", err.msg);
    uint64_t id = grant_recharge("r-1", 4, NOW + HOUR);
    ph_cmd c;
    cr_assert_eq(claim_recharge(4, 1, "139****0002", NOW + 10, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(attempt_at(id, 1, PH_ATTEMPT_FAILED, -1, NOW + 20, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    char *want = NULL, *got = NULL;
    cr_assert_eq(ph_store_grant_get(g_s, id, &want, &err), PH_OK, "%s", err.msg);
    json_t *want_ev = events_after_without(0, NULL);
    replay_into(jpath, rdir);
    cr_assert_eq(ph_store_grant_get(g_s, id, &got, &err), PH_OK, "%s", err.msg);
    cr_assert_str_eq(got, want);
    cr_assert(strstr(got, "\"returns\""), "%s", got);
    json_t *got_ev = events_after_without(0, NULL);
    cr_assert(json_equal(got_ev, want_ev), "the replay's events differ");
    ph_order *ord = NULL;
    cr_assert_eq(ph_store_order_get(g_s, id, 0, &ord, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ord->state, PH_ORDER_GRANTED);
    ph_order_free(ord);
    assert_check();
    json_decref(want_ev);
    json_decref(got_ev);
    free(want);
    free(got);
}

/* ---- a bundle grant whose every component fails for good ------------------------- */

/* A bundle of a top-up and an iQiyi card; with no iQiyi code in stock (start(0))
 * the card is bought upstream: both components are supplier units. */
#define MIX "mix.pack"
static const char *const P_MIX =
    "{\"sku\":\"" MIX "\",\"name\":\"Mix\",\"brand\":\"p\",\"delivery\":\"bundle\","
    "\"face_value\":\"60.00\",\"listed\":true,\"components\":[{\"sku\":\"" TOPUP "\","
    "\"quantity\":1},{\"sku\":\"" IQ "\",\"quantity\":1}]}";

static const ph_attempt_target MIX_TARGETS[2] = {{"sup", "P-1", 2900}, {"sup", "P-2", 2000}};

static uint64_t grant_mix(const char *coid, uint8_t tok, int64_t expires_at)
{
    const char *const all[] = {P_IQ, P_TOPUP, P_MIX};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 3, &err), PH_OK, "%s", err.msg);
    ph_grant_in gi = {.expires_at = expires_at,
                      .holder = {.key = 0xabcdef, .masked = "em****01", .tags = "[\"dept=eng\"]"}};
    token(tok, gi.token_hash);
    ph_cmd c = {.type = PH_CMD_BUNDLE, .now = NOW};
    c.in.bundle.client = "mall";
    c.in.bundle.client_order_id = coid;
    c.in.bundle.sku = MIX;
    c.in.bundle.quantity = 1;
    c.in.bundle.targets = MIX_TARGETS;
    c.in.bundle.ntargets = 2;
    c.in.bundle.grant = &gi;
    fingerprint(MIX, 1, c.in.bundle.fingerprint);
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_GRANTED);
    uint64_t id = c.order->id;
    ph_cmd_clear(&c);
    return id;
}

/* The claim of the bundle grant of token tok (request key key). */
static int claim_mix(uint8_t tok, uint8_t key, int64_t now, ph_cmd *out)
{
    memset(out, 0, sizeof *out);
    out->type = PH_CMD_GRANT;
    out->now = now;
    out->in.grant.op = PH_GRANT_CLAIM;
    out->in.grant.client = "mall";
    token(tok, out->in.grant.token_hash);
    memset(out->in.grant.key, key, 32);
    out->in.grant.account_sealed = (const uint8_t *)"sealed-account";
    out->in.grant.account_sealed_len = 14;
    out->in.grant.account_masked = "138****0001";
    out->in.grant.targets[0] = MIX_TARGETS[0];
    out->in.grant.targets[1] = MIX_TARGETS[1];
    out->in.grant.ntargets = 2;
    return ph_store_exec(g_s, out);
}

/* The latest order of component j of bundle id, and how many it has. */
static uint64_t component_latest(uint64_t id, size_t j, size_t *norders)
{
    char *txt = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_store_bundle_get(g_s, id, &txt, &err), PH_OK, "%s", err.msg);
    json_t *rec = json_loads(txt, 0, NULL);
    free(txt);
    json_t *orders =
        json_object_get(json_array_get(json_object_get(rec, "components"), j), "orders");
    *norders = json_array_size(orders);
    uint64_t o = (uint64_t)json_integer_value(json_array_get(orders, *norders - 1));
    json_decref(rec);
    return o;
}

static ph_order *order_of(uint64_t id)
{
    ph_order *o = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_store_order_get(g_s, id, 0, &o, &err), PH_OK, "%s", err.msg);
    return o;
}

/* Claims the bundle grant of tok, then fails both components for good: their
 * ids into comp[] (as they were claimed). */
static void claim_and_fail_both(uint64_t id, uint8_t tok, uint8_t key, int64_t at, uint64_t comp[2])
{
    ph_cmd c;
    cr_assert_eq(claim_mix(tok, key, at, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_PROCESSING);
    ph_cmd_clear(&c);
    size_t n;
    for (size_t j = 0; j < 2; j++)
        comp[j] = component_latest(id, j, &n);
    cr_assert_eq(attempt_at(comp[0], 1, PH_ATTEMPT_FAILED, 0, at + 10, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    ph_order *p = order_of(id);
    cr_assert_eq(p->state, PH_ORDER_PROCESSING, "one component still open");
    ph_order_free(p);
    assert_check();
    cr_assert_eq(attempt_at(comp[1], 1, PH_ATTEMPT_FAILED, 0, at + 20, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_FAILED, "the component itself failed for good");
    ph_cmd_clear(&c);
}

Test(grant, a_bundle_grant_whose_every_component_fails_is_given_back_and_claimed_again)
{
    start(0);
    uint64_t id = grant_mix("b-1", 5, NOW + HOUR);
    uint64_t ev0 = last_event(), comp[2];
    claim_and_fail_both(id, 5, 1, NOW + 10, comp);

    /* nothing of it was delivered: in the last failure's command the bundle is
     * granted again (never failed), each component a new granted unit, the
     * grant active with the same token */
    ph_order *p = order_of(id);
    cr_assert_eq(p->state, PH_ORDER_GRANTED, "%s", ph_order_state_name(p->state));
    ph_order_free(p);
    for (size_t j = 0; j < 2; j++) {
        size_t n;
        uint64_t now_id = component_latest(id, j, &n);
        cr_assert_eq(n, 2, "the failed order kept, a new one after it");
        ph_order *old = order_of(comp[j]), *o = order_of(now_id);
        cr_assert_eq(old->state, PH_ORDER_FAILED);
        cr_assert_eq(o->state, PH_ORDER_GRANTED);
        cr_assert_eq(o->nattempts, 0);
        cr_assert_eq(o->ncodes, 0, "no code reserved nor issued");
        cr_assert_eq(o->account_sealed_len, 0, "the claim brings the account");
        char want[64];
        snprintf(want, sizeof want, "#%llu.%zu.r1", (unsigned long long)id, j);
        cr_assert_str_eq(o->client_order_id, want);
        cr_assert_eq(o->delivery, old->delivery);
        ph_order_free(old);
        ph_order_free(o);
    }
    json_t *rec = grant_rec(id);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "active");
    cr_assert_null(json_object_get(rec, "claimed_at"));
    json_t *ret = json_array_get(json_object_get(rec, "returns"), 0);
    cr_assert_eq(json_array_size(json_object_get(rec, "returns")), 1);
    cr_assert_eq((uint64_t)json_integer_value(json_object_get(ret, "order_id")), comp[1]);
    cr_assert_str_eq(json_string_value(json_object_get(ret, "reason")), "account_suspended");
    json_decref(rec);
    cr_assert_eq(events_of(ev0, id, "grant.returned"), 1);
    cr_assert_eq(events_of(ev0, id, "order.failed"), 0, "the bundle did not end");
    cr_assert_eq(events_of(ev0, comp[0], "order.failed"), 1);
    cr_assert_eq(events_of(ev0, comp[1], "order.failed"), 1);
    assert_check();
    reopen();
    assert_check();

    /* a claim again: each new unit's first attempt; both succeed */
    ph_cmd c;
    cr_assert_eq(claim_mix(5, 2, NOW + 100, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_PROCESSING);
    ph_cmd_clear(&c);
    assert_check();
    for (size_t j = 0; j < 2; j++) {
        size_t n;
        uint64_t cid = component_latest(id, j, &n);
        /* the card's code, delivered by its supplier */
        static const uint8_t sealed[] = "sealed-upstream";
        ph_supplied_code code = {.sealed_len = sizeof sealed, .sealed = sealed};
        memset(code.hash, 0x5a, 32);
        memset(&c, 0, sizeof c);
        c.type = PH_CMD_ATTEMPT;
        c.now = NOW + 110;
        c.in.attempt.order_id = cid;
        c.in.attempt.no = 1;
        c.in.attempt.state = PH_ATTEMPT_SUCCEEDED;
        c.in.attempt.step = -1;
        c.in.attempt.charged = -1;
        c.in.attempt.next_check_at = -1;
        if (j == 1) {
            c.in.attempt.codes = &code;
            c.in.attempt.ncodes = 1;
        }
        cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
        ph_cmd_clear(&c);
    }
    p = order_of(id);
    cr_assert_eq(p->state, PH_ORDER_SUCCEEDED, "%s", ph_order_state_name(p->state));
    ph_order_free(p);
    rec = grant_rec(id);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "claimed");
    json_decref(rec);
    cr_assert_eq(events_of(ev0, id, "grant.claimed"), 2);
    cr_assert_eq(events_of(ev0, id, "order.succeeded"), 1);
    cr_assert_eq(claim_mix(5, 3, NOW + 120, &c), PH_ECONFLICT);
    ph_cmd_clear(&c);
    assert_check();
}

/* Its time ran out while the suppliers had it: given back, then expired as
 * the job would (the bundle and its new units failed grant_expired). */
Test(grant, a_bundle_grant_given_back_after_its_expiry_expires)
{
    start(0);
    uint64_t id = grant_mix("b-2", 6, NOW + 1000);
    uint64_t comp[2];
    claim_and_fail_both(id, 6, 1, NOW + 2000, comp);
    ph_order *p = order_of(id);
    cr_assert_eq(p->state, PH_ORDER_FAILED, "%s", ph_order_state_name(p->state));
    cr_assert_str_eq(p->reason, "grant_expired");
    ph_order_free(p);
    json_t *rec = grant_rec(id);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "expired");
    cr_assert_eq(json_array_size(json_object_get(rec, "returns")), 1);
    json_decref(rec);
    for (size_t j = 0; j < 2; j++) {
        size_t n;
        ph_order *o = order_of(component_latest(id, j, &n));
        cr_assert_eq(o->state, PH_ORDER_FAILED);
        cr_assert_str_eq(o->reason, "grant_expired");
        ph_order_free(o);
    }
    ph_cmd c;
    cr_assert_eq(claim_mix(6, 2, NOW + 3000, &c), PH_ESTATE);
    ph_cmd_clear(&c);
    assert_check();
}

/* A late success on a component order of a bundle given back would deliver
 * that unit a second time once claimed again: ops cannot accept it while the
 * grant is claimable. */
Test(grant, a_late_success_on_a_given_back_bundle_is_refused_while_claimable)
{
    start(0);
    uint64_t id = grant_mix("b-3", 7, NOW + HOUR);
    uint64_t comp[2];
    claim_and_fail_both(id, 7, 1, NOW + 10, comp);
    ph_cmd c = {.type = PH_CMD_FINAL_WORD, .now = NOW + 30};
    c.in.word.order_id = comp[0];
    c.in.word.no = 1;
    c.in.word.source = PH_DISCREP_QUERY;
    c.in.word.state = PH_ATTEMPT_SUCCEEDED;
    c.in.word.charged = 2900;
    c.in.word.delivered = -1;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    uint64_t d = c.discrepancy_id;
    cr_assert_neq(d, 0);
    ph_cmd_clear(&c);
    c = (ph_cmd){.type = PH_CMD_RESOLVE, .now = NOW + 40};
    c.in.resolve.id = d;
    c.in.resolve.accept = 1;
    c.in.resolve.who = "ops";
    c.in.resolve.note = "statement";
    cr_assert_eq(ph_store_exec(g_s, &c), PH_ESTATE);
    cr_assert(strstr(c.err.msg, "given back"), "%s", c.err.msg);
    ph_cmd_clear(&c);
    assert_check();
}

/* --check-store (invariant 31): a bundle grant's returns agree with its
 * bundle record's. */
Test(grant, check_store_finds_a_bundle_grant_returned_out_of_step)
{
    start(0);
    uint64_t id = grant_mix("b-4", 8, NOW + HOUR);
    uint64_t comp[2];
    claim_and_fail_both(id, 8, 1, NOW + 10, comp);
    assert_check();
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi dbi = raw_dbi(txn, "bundles", MDB_INTEGERKEY);
    size_t len;
    uint8_t *rec = raw_copy(txn, dbi, id, &len);
    char *txt = calloc(1, len + 1);
    memcpy(txt, rec, len);
    free(rec);
    char *at = strstr(txt, "\"returns\":1");
    cr_assert_not_null(at, "%s", txt);
    at[10] = '2';
    raw_put_free(txn, dbi, id, (uint8_t *)txt, len);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    ph_store_stats st = {0};
    ph_err err = {0};
    cr_assert_eq(ph_store_check(g_s, &st, &err), PH_EIO);
    cr_assert(strstr(err.msg, "returns recorded but its bundle was given back 2 times"), "%s",
              err.msg);
    ph_store_stats_clear(&st);
}

/* A bundle claim none of whose units a supplier was routed for (the catalog
 * changed since the grant) is refused, the grant left claimable: never
 * claimed with its bundle failed at once. */
Test(grant, a_bundle_claim_with_no_unit_routed_is_refused)
{
    start(0);
    uint64_t id = grant_mix("b-5", 9, NOW + HOUR);
    ph_cmd c;
    memset(&c, 0, sizeof c);
    c.type = PH_CMD_GRANT;
    c.now = NOW + 10;
    c.in.grant.op = PH_GRANT_CLAIM;
    c.in.grant.client = "mall";
    token(9, c.in.grant.token_hash);
    memset(c.in.grant.key, 1, 32);
    c.in.grant.account_sealed = (const uint8_t *)"sealed-account";
    c.in.grant.account_sealed_len = 14;
    c.in.grant.account_masked = "138****0001";
    cr_assert_eq(ph_store_exec(g_s, &c), PH_ENOSTOCK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    json_t *rec = grant_rec(id);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "active");
    json_decref(rec);
    ph_order *p = order_of(id);
    cr_assert_eq(p->state, PH_ORDER_GRANTED);
    ph_order_free(p);
    assert_check();
    cr_assert_eq(claim_mix(9, 2, NOW + 20, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    assert_check();
}

/* The bundle's return is the failing ATTEMPT's own doing too: its journal
 * replayed (what a standby applies) gives the same grant, bundle record,
 * orders and events. */
Test(grant, a_journal_replay_gives_a_bundle_grant_back_the_same)
{
    char jpath[128], rdir[128];
    open_journaled(jpath, rdir);
    ph_err err = {0};
    uint64_t id = grant_mix("b-6", 10, NOW + HOUR);
    uint64_t comp[2];
    claim_and_fail_both(id, 10, 1, NOW + 10, comp);
    char *want = NULL, *got = NULL, *want_b = NULL, *got_b = NULL;
    cr_assert_eq(ph_store_grant_get(g_s, id, &want, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_store_bundle_get(g_s, id, &want_b, &err), PH_OK, "%s", err.msg);
    json_t *want_ev = events_after_without(0, NULL);
    replay_into(jpath, rdir);
    cr_assert_eq(ph_store_grant_get(g_s, id, &got, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_store_bundle_get(g_s, id, &got_b, &err), PH_OK, "%s", err.msg);
    cr_assert_str_eq(got, want);
    cr_assert_str_eq(got_b, want_b);
    cr_assert(strstr(got_b, "\"returns\":1"), "%s", got_b);
    json_t *got_ev = events_after_without(0, NULL);
    cr_assert(json_equal(got_ev, want_ev), "the replay's events differ");
    ph_order *p = order_of(id);
    cr_assert_eq(p->state, PH_ORDER_GRANTED);
    ph_order_free(p);
    assert_check();
    json_decref(want_ev);
    json_decref(got_ev);
    free(want);
    free(got);
    free(want_b);
    free(got_b);
}

/* ---- a store of the previous release: claims it left failed ------------------------ */

/* The previous release failed a claimed grant's order for good and left the
 * grant claimed. That state, crafted: grant id's record is taken out of the
 * store while fail() runs (so the failure path finds no claimed grant to
 * give back, and fails the order as that release did), then put back. */
static uint8_t *grant_hide(uint64_t id, size_t *len)
{
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi dbi = raw_dbi(txn, "grants", MDB_INTEGERKEY);
    uint8_t *rec = raw_copy(txn, dbi, id, len);
    MDB_val k = {8, &id};
    cr_assert_eq(mdb_del(txn, dbi, &k, NULL), 0);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    return rec;
}

/* Puts grant id's record back and makes the store a version 8 one (no
 * attempt index), as the previous release wrote it. */
static void grant_restore_as_v8(uint64_t id, uint8_t *rec, size_t len)
{
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    if (rec)
        raw_put_free(txn, raw_dbi(txn, "grants", MDB_INTEGERKEY), id, rec, len);
    cr_assert_eq(mdb_drop(txn, raw_dbi(txn, "supply_att", 0), 0), 0);
    uint32_t ver = 8;
    MDB_val k = {6, "schema"}, v = {sizeof ver, &ver};
    cr_assert_eq(mdb_put(txn, raw_dbi(txn, "meta", 0), &k, &v, 0), 0);
    raw_commit(env, txn);
}

Test(grant, a_version_8_store_gives_back_a_claim_whose_recharge_failed_for_good)
{
    start(0);
    uint64_t id = grant_recharge("r-1", 4, NOW + HOUR);
    ph_cmd c;
    cr_assert_eq(claim_recharge(4, 1, "139****0002", NOW + 10, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    size_t len;
    uint8_t *rec0 = grant_hide(id, &len);
    cr_assert_eq(attempt_at(id, 1, PH_ATTEMPT_FAILED, 0, NOW + 20, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_FAILED, "the previous release's outcome");
    ph_cmd_clear(&c);
    grant_restore_as_v8(id, rec0, len);
    uint64_t ev0;
    {
        /* the events before the upgrade: the order.failed the old release told */
        g_s = open_at(g_dir, 0);
        cr_assert_eq(ph_store_migrated_from(g_s), 8);
    }
    /* given back at the open, as at its failure (NOW + 20) */
    ph_order *o = order_of(id);
    cr_assert_eq(o->state, PH_ORDER_GRANTED, "%s", ph_order_state_name(o->state));
    cr_assert_str_eq(o->reason, "");
    cr_assert_eq(o->nattempts, 1);
    cr_assert_eq(o->attempts[0].state, PH_ATTEMPT_FAILED, "the failed attempt is kept");
    ph_order_free(o);
    json_t *rec = grant_rec(id);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "active");
    cr_assert_null(json_object_get(rec, "claimed_at"));
    cr_assert_eq(json_array_size(json_object_get(rec, "returns")), 1);
    json_t *ret = json_array_get(json_object_get(rec, "returns"), 0);
    cr_assert_eq(json_integer_value(json_object_get(ret, "at")), NOW + 20);
    cr_assert_eq(json_integer_value(json_object_get(ret, "claimed_at")), NOW + 10);
    cr_assert_str_eq(json_string_value(json_object_get(ret, "reason")), "account_suspended");
    json_decref(rec);
    cr_assert_eq(events_of(0, id, "grant.returned"), 1);
    cr_assert_eq(events_of(0, id, "order.failed"), 1, "the old release's, kept in the feed");
    assert_check();
    /* a second open has nothing more to do */
    ev0 = last_event();
    reopen();
    cr_assert_eq(ph_store_migrated_from(g_s), 0);
    cr_assert_eq(last_event(), ev0);
    assert_check();

    /* the same token claims again: attempt 2, delivered, claimed once */
    cr_assert_eq(claim_recharge(4, 2, "138****0001", NOW + 40, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_PROCESSING);
    cr_assert_eq(c.order->nattempts, 2);
    ph_cmd_clear(&c);
    cr_assert_eq(attempt_at(id, 2, PH_ATTEMPT_SUCCEEDED, 2900, NOW + 50, &c), PH_OK, "%s",
                 c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_SUCCEEDED);
    ph_cmd_clear(&c);
    rec = grant_rec(id);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "claimed");
    json_decref(rec);
    assert_check();
}

Test(grant, a_version_8_store_gives_back_a_bundle_grant_failed_with_nothing_delivered)
{
    start(0);
    uint64_t id = grant_mix("b-1", 5, NOW + HOUR), comp[2];
    ph_cmd c;
    cr_assert_eq(claim_mix(5, 1, NOW + 10, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    size_t n;
    for (size_t j = 0; j < 2; j++)
        comp[j] = component_latest(id, j, &n);
    cr_assert_eq(attempt_at(comp[0], 1, PH_ATTEMPT_FAILED, 0, NOW + 20, &c), PH_OK, "%s",
                 c.err.msg);
    ph_cmd_clear(&c);
    size_t len;
    uint8_t *rec0 = grant_hide(id, &len);
    cr_assert_eq(attempt_at(comp[1], 1, PH_ATTEMPT_FAILED, 0, NOW + 30, &c), PH_OK, "%s",
                 c.err.msg);
    ph_cmd_clear(&c);
    ph_order *p = order_of(id);
    cr_assert_eq(p->state, PH_ORDER_FAILED, "the previous release's outcome");
    ph_order_free(p);
    grant_restore_as_v8(id, rec0, len);
    g_s = open_at(g_dir, 0);
    cr_assert_eq(ph_store_migrated_from(g_s), 8);

    /* given back at the open as at the last failure: the bundle granted, each
     * component a new granted unit after its failed order, the grant active */
    p = order_of(id);
    cr_assert_eq(p->state, PH_ORDER_GRANTED, "%s", ph_order_state_name(p->state));
    cr_assert_str_eq(p->reason, "");
    ph_order_free(p);
    for (size_t j = 0; j < 2; j++) {
        uint64_t now_id = component_latest(id, j, &n);
        cr_assert_eq(n, 2, "the failed order kept, a new one after it");
        ph_order *o = order_of(now_id);
        cr_assert_eq(o->state, PH_ORDER_GRANTED);
        cr_assert_eq(o->nattempts, 0);
        cr_assert_eq(o->created_at, NOW + 30);
        char want[64];
        snprintf(want, sizeof want, "#%llu.%zu.r1", (unsigned long long)id, j);
        cr_assert_str_eq(o->client_order_id, want);
        ph_order_free(o);
    }
    json_t *rec = grant_rec(id);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "active");
    cr_assert_eq(json_array_size(json_object_get(rec, "returns")), 1);
    json_t *ret = json_array_get(json_object_get(rec, "returns"), 0);
    cr_assert_eq((uint64_t)json_integer_value(json_object_get(ret, "order_id")), comp[1]);
    cr_assert_eq(json_integer_value(json_object_get(ret, "at")), NOW + 30);
    json_decref(rec);
    cr_assert_eq(events_of(0, id, "grant.returned"), 1);
    assert_check();
    uint64_t ev0 = last_event();
    reopen();
    cr_assert_eq(last_event(), ev0, "nothing more at a second open");

    /* claimed again: each new unit's first attempt */
    cr_assert_eq(claim_mix(5, 2, NOW + 100, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_PROCESSING);
    ph_cmd_clear(&c);
    rec = grant_rec(id);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "claimed");
    json_decref(rec);
    assert_check();
}

/* Its time had run out when the supplier refused it: given back, then expired
 * as the job would, at the open as at that failure. */
Test(grant, a_version_8_store_expires_a_claim_given_back_after_its_time)
{
    start(0);
    uint64_t id = grant_recharge("r-1", 4, NOW + HOUR);
    ph_cmd c;
    cr_assert_eq(claim_recharge(4, 1, "139****0002", NOW + 10, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    size_t len;
    uint8_t *rec0 = grant_hide(id, &len);
    cr_assert_eq(attempt_at(id, 1, PH_ATTEMPT_FAILED, 0, NOW + HOUR + 5, &c), PH_OK, "%s",
                 c.err.msg);
    ph_cmd_clear(&c);
    grant_restore_as_v8(id, rec0, len);
    g_s = open_at(g_dir, 0);
    json_t *rec = grant_rec(id);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "state")), "expired");
    cr_assert_eq(json_integer_value(json_object_get(rec, "expired_at")), NOW + HOUR + 5);
    cr_assert_eq(json_array_size(json_object_get(rec, "returns")), 1);
    json_decref(rec);
    ph_order *o = order_of(id);
    cr_assert_eq(o->state, PH_ORDER_FAILED);
    cr_assert_str_eq(o->reason, "grant_expired");
    ph_order_free(o);
    cr_assert_eq(events_of(0, id, "grant.returned"), 1);
    cr_assert_eq(events_of(0, id, "grant.expired"), 1);
    assert_check();
    cr_assert_eq(claim_recharge(4, 2, "138****0001", NOW + HOUR + 10, &c), PH_ESTATE);
    ph_cmd_clear(&c);
}

/* Claims in flight, one delivered, one given back already: nothing moves. */
Test(grant, a_version_8_store_with_nothing_to_give_back_is_left_as_it_was)
{
    start(0);
    uint64_t a = grant_recharge("r-a", 4, NOW + HOUR), b = grant_recharge("r-b", 5, NOW + HOUR),
             d = grant_recharge("r-d", 6, NOW + HOUR);
    ph_cmd c;
    cr_assert_eq(claim_recharge(4, 1, "139****0002", NOW + 10, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(claim_recharge(5, 1, "139****0002", NOW + 10, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(claim_recharge(6, 1, "139****0002", NOW + 10, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(attempt_at(b, 1, PH_ATTEMPT_SUCCEEDED, 2900, NOW + 20, &c), PH_OK, "%s",
                 c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(attempt_at(d, 1, PH_ATTEMPT_FAILED, 0, NOW + 20, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    uint64_t ev0 = last_event();
    char *before[3];
    uint64_t ids[3] = {a, b, d};
    ph_err err = {0};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(ph_store_grant_get(g_s, ids[i], &before[i], &err), PH_OK, "%s", err.msg);
    grant_restore_as_v8(0, NULL, 0);
    g_s = open_at(g_dir, 0);
    cr_assert_eq(ph_store_migrated_from(g_s), 8);
    cr_assert_eq(last_event(), ev0, "no event");
    for (int i = 0; i < 3; i++) {
        char *now = NULL;
        cr_assert_eq(ph_store_grant_get(g_s, ids[i], &now, &err), PH_OK, "%s", err.msg);
        cr_assert_str_eq(now, before[i]);
        free(now);
        free(before[i]);
    }
    ph_order *o = order_of(a);
    cr_assert_eq(o->state, PH_ORDER_PROCESSING);
    ph_order_free(o);
    assert_check();
}
