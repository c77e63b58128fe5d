/*
 * test_discrep.c — discrepancies in the store (store.h, "discrepancies";
 * store_discrep.c): the amount comparison and its tolerance, the word about a
 * final attempt, a version-1 supply record read by this version, and the
 * commands through the real writer: an amount mismatch raised with the
 * success, a word raised once, the late schedule, resolutions and their bad
 * input. Each store test ends with ph_store_check.
 */
#include "config/config.h"
#include "store/store.h"
#include "store_fixture.h"
#include "store/store_int.h"
#include "supply/attempt.h"

#define ACCOUNT_SEALED "sealed-account"

/* ---- the comparison (pure) ------------------------------------------------------- */

Test(amounts, charge_against_cost_times_quantity_with_tolerance)
{
    /* 49.40 x 1 */
    cr_assert_eq(ph_amount_mismatch(4940, 1, 4940, 0, 0, -1), 0);
    cr_assert_eq(ph_amount_mismatch(4940, 1, 5100, 0, 0, -1), PH_AMOUNT_CHARGE);
    cr_assert_eq(ph_amount_mismatch(4940, 1, 4939, 0, 0, -1), PH_AMOUNT_CHARGE,
                 "less is another charge too");
    cr_assert_eq(ph_amount_mismatch(4940, 1, 5100, 160, 0, -1), 0, "within tolerance");
    cr_assert_eq(ph_amount_mismatch(4940, 1, 5101, 160, 0, -1), PH_AMOUNT_CHARGE);
    cr_assert_eq(ph_amount_mismatch(4940, 1, 4780, 160, 0, -1), 0, "tolerance both ways");
    cr_assert_eq(ph_amount_mismatch(4940, 1, -1, 0, 0, -1), 0,
                 "no charge said: nothing to compare");
    cr_assert_eq(ph_amount_mismatch(2850, 3, 8550, 0, 0, -1), 0, "x quantity");
    cr_assert_eq(ph_amount_mismatch(2850, 3, 2850, 0, 0, -1), PH_AMOUNT_CHARGE);
    cr_assert_eq(ph_amount_mismatch(INT64_MAX / 2, 3, 100, 0, 0, -1), PH_AMOUNT_CHARGE,
                 "an agreed cost beyond fen is never what was charged");
    cr_assert_eq(ph_amount_mismatch(4940, 1, 5100, -5, 0, -1), PH_AMOUNT_CHARGE,
                 "a negative tolerance is none");
}

Test(amounts, delivered_against_face_value)
{
    cr_assert_eq(ph_amount_mismatch(4900, 1, 4900, 0, 5000, 5000), 0);
    cr_assert_eq(ph_amount_mismatch(4900, 1, 4900, 0, 5000, 5100), PH_AMOUNT_DELIVERED);
    cr_assert_eq(ph_amount_mismatch(4900, 1, 5100, 0, 5000, 5100),
                 PH_AMOUNT_DELIVERED | PH_AMOUNT_CHARGE);
    cr_assert_eq(ph_amount_mismatch(4900, 1, 4900, 0, 0, 5100), 0, "no face value: not compared");
    cr_assert_eq(ph_amount_mismatch(4900, 1, 4900, 0, 5000, -1), 0, "unknown delivered value");
    cr_assert_eq(ph_amount_mismatch(4900, 1, 4900, 1000, 5000, 5100), PH_AMOUNT_DELIVERED,
                 "the charge tolerance does not cover the delivered value");
}

Test(amounts, a_word_about_a_final_attempt)
{
    ph_attempt a = {.state = PH_ATTEMPT_FAILED, .unit_cost = 4900, .charged = -1};
    cr_assert_eq(ph_final_word_contradicts(&a, 1, PH_ATTEMPT_SUCCEEDED, 4900, 0), 1);
    cr_assert_eq(ph_final_word_contradicts(&a, 1, PH_ATTEMPT_FAILED, -1, 0), 0);
    cr_assert_eq(ph_final_word_contradicts(&a, 1, 0, 4900, 0), 0, "no claim");
    a.state = PH_ATTEMPT_SUCCEEDED;
    cr_assert_eq(ph_final_word_contradicts(&a, 1, PH_ATTEMPT_FAILED, -1, 0), 1);
    cr_assert_eq(ph_final_word_contradicts(&a, 1, PH_ATTEMPT_SUCCEEDED, 4900, 0), 0,
                 "ours without a charge is cost x quantity");
    cr_assert_eq(ph_final_word_contradicts(&a, 1, PH_ATTEMPT_SUCCEEDED, 5100, 0), 1);
    cr_assert_eq(ph_final_word_contradicts(&a, 1, PH_ATTEMPT_SUCCEEDED, 5100, 200), 0);
    a.charged = 5100;
    cr_assert_eq(ph_final_word_contradicts(&a, 1, PH_ATTEMPT_SUCCEEDED, 5100, 0), 0,
                 "the charge we hold");
    a.state = PH_ATTEMPT_UNKNOWN;
    cr_assert_eq(ph_final_word_contradicts(&a, 1, PH_ATTEMPT_SUCCEEDED, 5100, 0), 0,
                 "an open attempt is settled by its queries, not contradicted");
}

Test(amounts, what_a_word_claims)
{
    cr_assert_eq(ph_attempt_claim(PERKHUB_STATE_SUCCEEDED), PH_ATTEMPT_SUCCEEDED);
    cr_assert_eq(ph_attempt_claim(PERKHUB_STATE_FAILED), PH_ATTEMPT_FAILED);
    cr_assert_eq(ph_attempt_claim(PERKHUB_STATE_PROCESSING), 0);
    cr_assert_eq(ph_attempt_claim(PERKHUB_STATE_NOT_FOUND), 0);
    cr_assert_eq(ph_attempt_claim(-1), 0);
}

/* ---- records: a version-1 supply record --------------------------------------------- */

static void put(uint8_t **p, const void *src, size_t n)
{
    memcpy(*p, src, n);
    *p += n;
}

/* A malformed supply record is refused and leaves nothing allocated in the
 * order (the attempts decoded before the fault are released). */
static void supply_refused(const MDB_val *v)
{
    ph_order o = {0};
    cr_assert_eq(ph_supply_decode(v, &o), PH_EIO);
    cr_assert(o.attempts == NULL && o.nattempts == 0, "a refused record left %zu attempts",
              o.nattempts);
    cr_assert(o.account_sealed == NULL && o.account_sealed_len == 0);
}

Test(records, version_1_and_2_supply_records_decode_with_delivered_unknown)
{
    uint8_t buf[256], *p = buf;
    ph_supply_rec h = {.version = 1, .nattempts = 1};
    put(&p, &h, sizeof h);
    ph_attempt_rec ar = {.unit_cost = 4900,
                         .charged = 5100,
                         .created_at = NOW,
                         .updated_at = NOW,
                         .no = 1,
                         .state = PH_ATTEMPT_SUCCEEDED,
                         .supplier_len = 2,
                         .product_len = 5,
                         .ref_len = 3};
    put(&p, &ar, sizeof ar);
    put(&p, "gw", 2);
    put(&p, "20001", 5);
    put(&p, "r-1", 3);
    MDB_val v = {(size_t)(p - buf), buf};
    ph_order o = {0};
    cr_assert_eq(ph_supply_decode(&v, &o), PH_OK);
    cr_assert_eq(o.nattempts, 1);
    cr_assert_eq(o.attempts[0].delivered, -1);
    cr_assert_eq(o.attempts[0].charged, 5100);
    cr_assert_str_eq(o.attempts[0].ref, "r-1");
    /* written again, it is version 3 and keeps everything */
    o.attempts[0].delivered = 5000;
    size_t len;
    uint8_t *enc = ph_supply_encode(&o, &len);
    cr_assert_not_null(enc);
    cr_assert_eq(enc[0], PH_SUPPLY_VERSION);
    ph_order back = {0};
    MDB_val v2 = {len, enc};
    cr_assert_eq(ph_supply_decode(&v2, &back), PH_OK);
    cr_assert_eq(back.attempts[0].delivered, 5000);
    cr_assert_str_eq(back.attempts[0].supplier, "gw");
    free(enc);
    free(o.attempts);
    free(back.attempts);
    /* a version-2 record cut before its tail is malformed, and the refusal
     * leaves nothing allocated */
    h.version = 2;
    memcpy(buf, &h, sizeof h);
    supply_refused(&v);
    /* with its tail (stuck orders) it decodes, delivered still unknown */
    ph_attempt_tail t = {0};
    put(&p, &t, sizeof t);
    v.mv_size = (size_t)(p - buf);
    ph_order o2 = {0};
    cr_assert_eq(ph_supply_decode(&v, &o2), PH_OK);
    cr_assert_eq(o2.attempts[0].delivered, -1);
    free(o2.attempts);
    /* a version-3 record cut before its delivered value is malformed */
    h.version = 3;
    memcpy(buf, &h, sizeof h);
    supply_refused(&v);
    /* and a version from the future is refused */
    h.version = PH_SUPPLY_VERSION + 1;
    memcpy(buf, &h, sizeof h);
    supply_refused(&v);
}

/* ---- through the writer ---------------------------------------------------------------- */

TestSuite(discrep, .init = fixture_setup, .fini = fixture_teardown);

static void start(void)
{
    g_s = open_at(g_dir, 0);
    const char *const all[] = {P_TOPUP};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 1, &err), PH_OK, "put products: %s", err.msg);
}

/* A recharge at supplier "gw" for 15.00; its id. */
static uint64_t recharge(const char *coid)
{
    ph_cmd c = {.type = PH_CMD_SUPPLY_CREATE, .now = NOW};
    c.in.supply.client = "mall";
    c.in.supply.client_order_id = coid;
    c.in.supply.sku = TOPUP;
    c.in.supply.quantity = 1;
    fingerprint(TOPUP, 1, c.in.supply.fingerprint);
    c.in.supply.delivery = PH_DELIVERY_RECHARGE;
    c.in.supply.account_sealed = (const uint8_t *)ACCOUNT_SEALED;
    c.in.supply.account_sealed_len = (uint32_t)strlen(ACCOUNT_SEALED);
    c.in.supply.account_masked = "138****8000";
    c.in.supply.first = (ph_attempt_target){"gw", "P-100", 1500};
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    uint64_t id = c.order->id;
    ph_cmd_clear(&c);
    return id;
}

static void attempt_cmd(ph_cmd *c, uint64_t order, int state, int64_t charged)
{
    memset(c, 0, sizeof *c);
    c->type = PH_CMD_ATTEMPT;
    c->now = NOW + 1000;
    c->in.attempt.order_id = order;
    c->in.attempt.no = 1;
    c->in.attempt.state = state;
    c->in.attempt.step = -1;
    c->in.attempt.charged = charged;
    c->in.attempt.next_check_at = -1;
}

static uint64_t open_now(void)
{
    return ph_store_discrep_open(g_s);
}

static int word(uint64_t id, int claim, int64_t charged, int64_t late_due, uint64_t *raised)
{
    ph_cmd c = {.type = PH_CMD_FINAL_WORD, .now = NOW + 5000};
    c.in.word.order_id = id;
    c.in.word.no = 1;
    c.in.word.source = PH_DISCREP_CALLBACK;
    c.in.word.state = claim;
    c.in.word.charged = charged;
    c.in.word.delivered = -1;
    c.in.word.late_due = late_due;
    int rc = ph_store_exec(g_s, &c);
    if (raised)
        *raised = c.discrepancy_id;
    ph_cmd_clear(&c);
    return rc;
}

static int resolve(uint64_t id, int accept, const char *note, char *msg, size_t n)
{
    ph_cmd c = {.type = PH_CMD_RESOLVE, .now = NOW + 9000};
    c.in.resolve.id = id;
    c.in.resolve.accept = accept;
    c.in.resolve.who = "ops";
    c.in.resolve.note = note;
    int rc = ph_store_exec(g_s, &c);
    if (msg)
        snprintf(msg, n, "%.200s", c.err.msg);
    ph_cmd_clear(&c);
    return rc;
}

Test(discrep, another_charge_settles_with_the_supplier_and_is_raised)
{
    start();
    uint64_t id = recharge("a-1");
    uint64_t ev0 = last_event();
    ph_cmd c;
    attempt_cmd(&c, id, PH_ATTEMPT_SUCCEEDED, 1700);
    c.in.attempt.tolerance = 100;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->cost, 1700, "the supplier's charge is the cost");
    cr_assert_neq(c.discrepancy_id, 0);
    ph_cmd_clear(&c);
    cr_assert_eq(open_now(), 1);
    json_t *evs = events_after_without(ev0, (const char *const[]){ACCOUNT_SEALED, NULL});
    size_t i;
    json_t *e;
    int seen = 0;
    json_array_foreach(evs, i, e)
    {
        if (strcmp(ev_str(e, "type"), "order.discrepancy"))
            continue;
        seen++;
        cr_assert_str_eq(json_string_value(json_object_get(e, "source")), "amount");
        cr_assert_eq(
            json_integer_value(json_object_get(json_object_get(e, "theirs"), "charged_fen")), 1700);
    }
    json_decref(evs);
    cr_assert_eq(seen, 1);

    /* within tolerance: nothing raised */
    id = recharge("a-2");
    attempt_cmd(&c, id, PH_ATTEMPT_SUCCEEDED, 1600);
    c.in.attempt.tolerance = 100;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.discrepancy_id, 0);
    ph_cmd_clear(&c);
    cr_assert_eq(open_now(), 1);

    /* bad input changes nothing */
    attempt_cmd(&c, id, PH_ATTEMPT_SUCCEEDED, 1600);
    c.in.attempt.tolerance = -1;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_EINVAL);
    ph_cmd_clear(&c);
    assert_check();
}

Test(discrep, a_word_is_raised_once_and_resolved_once)
{
    start();
    uint64_t id = recharge("w-1");
    ph_cmd c;
    attempt_cmd(&c, id, PH_ATTEMPT_FAILED, -1);
    c.in.attempt.reason = "not_found_at_supplier";
    c.in.attempt.late_check_at = NOW + 86400000LL;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);

    /* the late schedule holds it, due a day later */
    ph_late_check lc[4];
    int64_t next = 0;
    cr_assert_eq(ph_store_late_due(g_s, NOW, lc, 4, &next), 0);
    cr_assert_eq(next, NOW + 86400000LL);
    cr_assert_eq(ph_store_late_due(g_s, NOW + 86400000LL, lc, 4, &next), 1);
    cr_assert_eq(lc[0].order_id, id);
    cr_assert_eq(lc[0].no, 1);

    uint64_t d1 = 0, d2 = 0;
    cr_assert_eq(word(id, PH_ATTEMPT_FAILED, -1, 0, &d1), PH_OK);
    cr_assert_eq(d1, 0, "agreeing with us is no discrepancy");
    cr_assert_eq(word(id, PH_ATTEMPT_SUCCEEDED, 1500, 0, &d1), PH_OK);
    cr_assert_neq(d1, 0);
    cr_assert_eq(word(id, PH_ATTEMPT_SUCCEEDED, 1500, NOW + 86400000LL, &d2), PH_OK);
    cr_assert_eq(d2, 0, "the same word twice is one discrepancy");
    cr_assert_eq(ph_store_late_due(g_s, NOW + 86400000LL, lc, 4, &next), 0, "the re-query is done");
    cr_assert_eq(open_now(), 1);

    char msg[256];
    cr_assert_eq(resolve(d1, 0, "", msg, sizeof msg), PH_EINVAL, "a dispute needs a note");
    cr_assert(strstr(msg, "note"), "%s", msg);
    cr_assert_eq(resolve(d1, 0, "bad\nnote", msg, sizeof msg), PH_EINVAL);
    cr_assert_eq(resolve(424242, 1, NULL, msg, sizeof msg), PH_ENOTFOUND);
    cr_assert_eq(open_now(), 1);

    cr_assert_eq(resolve(d1, 1, "statement", msg, sizeof msg), PH_OK, "%s", msg);
    cr_assert_eq(open_now(), 0);
    ph_order *o = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_store_order_get(g_s, id, 0, &o, &err), PH_OK);
    cr_assert_eq(o->state, PH_ORDER_SUCCEEDED);
    cr_assert_eq(o->cost, 1500);
    cr_assert_eq(o->attempts[0].state, PH_ATTEMPT_SUCCEEDED);
    ph_order_free(o);
    cr_assert_eq(resolve(d1, 0, "again", msg, sizeof msg), PH_ESTATE);
    cr_assert(strstr(msg, "accepted"), "%s", msg);

    char *txt = NULL;
    cr_assert_eq(ph_store_discrep_get(g_s, d1, &txt, &err), PH_OK);
    cr_assert(strstr(txt, "\"resolver\":\"ops\"") && strstr(txt, "\"before\""), "%s", txt);
    free(txt);
    char **list;
    size_t n;
    uint64_t more;
    cr_assert_eq(ph_store_discrep_list(g_s, PH_DISCREP_OPEN, NULL, 0, 10, &list, &n, &more, &err),
                 PH_OK);
    cr_assert_eq(n, 0);
    ph_store_event_list_free(list, n);
    cr_assert_eq(
        ph_store_discrep_list(g_s, PH_DISCREP_ACCEPTED, "gw", 0, 10, &list, &n, &more, &err),
        PH_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(more, 0);
    ph_store_event_list_free(list, n);
    reopen();
    cr_assert_eq(open_now(), 0);
    assert_check();
}

Test(discrep, an_open_attempt_takes_no_final_word)
{
    start();
    uint64_t id = recharge("o-1");
    cr_assert_eq(word(id, PH_ATTEMPT_SUCCEEDED, 1500, 0, NULL), PH_ESTATE);
    cr_assert_eq(word(id + 100, PH_ATTEMPT_SUCCEEDED, 1500, 0, NULL), PH_ENOTFOUND);
    cr_assert_eq(open_now(), 0);
    assert_check();
}

Test(discrep, check_counts_the_open_ones)
{
    start();
    uint64_t id = recharge("k-1");
    ph_cmd c;
    attempt_cmd(&c, id, PH_ATTEMPT_SUCCEEDED, 1600); /* 16.00 against 15.00 */
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(open_now(), 1);
    assert_check();
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi meta = raw_dbi(txn, "meta", 0);
    uint64_t wrong = 5;
    MDB_val k = {12, "discrep_open"}, v = {8, &wrong};
    cr_assert_eq(mdb_put(txn, meta, &k, &v, 0), 0);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    ph_store_stats st;
    cr_assert_eq(ph_store_check(g_s, &st, &err), PH_EIO, "the checker accepted a wrong count");
    cr_assert(strstr(err.msg, "discrep_open"), "%s", err.msg);
}

Test(discrep, the_list_pages)
{
    start();
    const char *coids[] = {"p-1", "p-2", "p-3"};
    for (size_t i = 0; i < 3; i++) {
        ph_cmd c;
        attempt_cmd(&c, recharge(coids[i]), PH_ATTEMPT_SUCCEEDED, 1400); /* 14.00 vs 15.00 */
        cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
        ph_cmd_clear(&c);
    }
    char **list;
    size_t n;
    uint64_t more;
    ph_err err = {0};
    cr_assert_eq(ph_store_discrep_list(g_s, 0, NULL, 0, 2, &list, &n, &more, &err), PH_OK);
    cr_assert_eq(n, 2);
    cr_assert(strstr(list[1], "\"id\":2,"), "%s", list[1]);
    ph_store_event_list_free(list, n);
    cr_assert_eq(more, 2);
    cr_assert_eq(ph_store_discrep_list(g_s, 0, NULL, more, 2, &list, &n, &more, &err), PH_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(more, 0, "the end");
    ph_store_event_list_free(list, n);
    cr_assert_eq(ph_store_discrep_list(g_s, 0, "other", 0, 2, &list, &n, &more, &err), PH_OK);
    cr_assert_eq(n, 0, "another supplier's filter");
    ph_store_event_list_free(list, n);
    assert_check();
}
