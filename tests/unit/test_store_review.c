/*
 * test_store_review.c — the store's side of issuance protection (issue 15):
 * an order's risk record kept in its own transaction, held and denied orders,
 * PH_CMD_REVIEW (release, block), the review queue's reads, the risk record
 * scan of the counter rebuild, the codec of the risk input, and
 * --check-store's invariants of held orders.
 */

#include "config/config.h"
#include "store/cmd_codec.h"
#include "store/store.h"
#include "store_fixture.h"

TestSuite(review, .init = fixture_setup, .fini = fixture_teardown);

static void start(void)
{
    g_s = open_at(g_dir, 0);
    const char *const all[] = {P_IQ, P_TOPUP};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 2, &err), PH_OK, "put products: %s", err.msg);
}

static void import(unsigned first, size_t n)
{
    ph_import_code codes[8];
    uint32_t by_hash[8];
    char sealed[8][24];
    cr_assert(n <= 8);
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(sealed[i], sizeof sealed[i], "sealed-%u", first + (unsigned)i);
        codes[i] = (ph_import_code){
            .line = (uint32_t)(i + 1), .sealed_len = (uint32_t)len, .sealed = (uint8_t *)sealed[i]};
        code_hash(first + (unsigned)i, codes[i].hash);
    }
    /* by hash order */
    for (size_t i = 0; i < n; i++)
        by_hash[i] = (uint32_t)i;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (memcmp(codes[by_hash[j]].hash, codes[by_hash[i]].hash, 32) < 0) {
                uint32_t t = by_hash[i];
                by_hash[i] = by_hash[j];
                by_hash[j] = t;
            }
    ph_cmd c = {.type = PH_CMD_IMPORT, .now = NOW};
    c.in.import.supplier = "sup";
    c.in.import.sku = IQ;
    c.in.import.note = "t";
    c.in.import.unit_cost = 2000;
    c.in.import.codes = codes;
    c.in.import.ncodes = n;
    c.in.import.by_hash = by_hash;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "import: %s", c.err.msg);
    ph_cmd_clear(&c);
}

/* A record as end_user.c writes one (the writer checks only its frame). */
static char g_rec[512];
static ph_order_risk risk_at(int verdict, int64_t at)
{
    int n = snprintf(g_rec, sizeof g_rec,
                     "{\"v\":1,\"at\":%lld,\"sku\":\"" IQ "\",\"tags\":[],\"amount\":3000,"
                     "\"keys\":{\"user\":\"00000000000000aa\"},\"end_user\":{\"id\":\"ab****yz\"},"
                     "\"decision\":{\"action\":\"%s\",\"rule\":\"%s\",\"hits\":[]}}",
                     (long long)at,
                     verdict == PH_VERDICT_DENY   ? "deny"
                     : verdict == PH_VERDICT_HOLD ? "review"
                                                  : "allow",
                     verdict ? "per-user" : "");
    return (ph_order_risk){.verdict = verdict,
                           .rule = verdict ? "per-user" : NULL,
                           .hold_until = verdict == PH_VERDICT_HOLD ? at + 3600000 : 0,
                           .record = g_rec,
                           .record_len = (size_t)n};
}

static int order(const char *coid, uint32_t qty, const ph_order_risk *rk, int64_t now,
                 ph_order **out)
{
    ph_cmd c = {.type = PH_CMD_ORDER, .now = now};
    c.in.order.client = "mall";
    c.in.order.client_order_id = coid;
    c.in.order.sku = IQ;
    c.in.order.quantity = qty;
    c.in.order.risk = rk;
    fingerprint(IQ, qty, c.in.order.fingerprint);
    int rc = ph_store_exec(g_s, &c);
    if (out) {
        *out = c.order;
        c.order = NULL;
        cr_assert(rc || c.replayed || 1);
    }
    ph_cmd_clear(&c);
    return rc;
}

static int recharge(const char *coid, const ph_order_risk *rk, ph_order **out)
{
    ph_cmd c = {.type = PH_CMD_SUPPLY_CREATE, .now = NOW};
    c.in.supply.client = "mall";
    c.in.supply.client_order_id = coid;
    c.in.supply.sku = TOPUP;
    c.in.supply.quantity = 1;
    fingerprint(TOPUP, 1, c.in.supply.fingerprint);
    c.in.supply.delivery = PH_DELIVERY_RECHARGE;
    c.in.supply.account_sealed = (const uint8_t *)"sealed-account";
    c.in.supply.account_sealed_len = 14;
    c.in.supply.account_masked = "138****8000";
    c.in.supply.first = (ph_attempt_target){"sup", "P-1", 2900};
    c.in.supply.risk = rk;
    int rc = ph_store_exec(g_s, &c);
    if (out) {
        *out = c.order;
        c.order = NULL;
    }
    ph_cmd_clear(&c);
    return rc;
}

static int review(uint64_t id, int release, const ph_attempt_target *first, ph_cmd *out)
{
    ph_cmd c = {.type = PH_CMD_REVIEW, .now = NOW + 5000};
    c.in.review.order_id = id;
    c.in.review.release = release;
    c.in.review.who = "ops";
    c.in.review.note = "checked the account";
    if (first)
        c.in.review.first = *first;
    int rc = ph_store_exec(g_s, &c);
    if (out)
        *out = c;
    else
        ph_cmd_clear(&c);
    return rc;
}

static char *record_of(uint64_t id)
{
    char *txt = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_store_order_risk_get(g_s, id, &txt, &err), PH_OK, "%s", err.msg);
    return txt;
}

static size_t queue_len(void)
{
    ph_review_row *rows;
    size_t n;
    uint64_t next;
    ph_err err = {0};
    cr_assert_eq(ph_store_review_list(g_s, 0, 100, &rows, &n, &next, &err), PH_OK, "%s", err.msg);
    free(rows);
    return n;
}

static const char *const personal[] = {"abcdefyz", "13800138000", NULL};

Test(review, a_held_card_order_takes_no_code_and_is_queued_then_released_from_stock)
{
    start();
    import(1, 3);
    uint64_t ev0 = last_event();
    ph_order_risk rk = risk_at(PH_VERDICT_HOLD, NOW);
    ph_order *o = NULL;
    cr_assert_eq(order("h-1", 2, &rk, NOW, &o), PH_OK);
    cr_assert_eq(o->state, PH_ORDER_HELD);
    cr_assert_eq(o->ncodes, 0);
    cr_assert_str_eq(ph_order_state_name(o->state), "held");
    uint64_t id = o->id;
    ph_order_free(o);
    cr_assert_eq(queue_len(), 1);
    char *rec = record_of(id);
    cr_assert_str_eq(rec, g_rec, "the record is kept byte for byte");
    free(rec);
    json_t *evs = events_after_without(ev0, personal);
    cr_assert_eq(json_array_size(evs), 1);
    cr_assert_str_eq(ev_str(json_array_get(evs, 0), "type"), "order.held");
    cr_assert_str_eq(ev_str(json_array_get(evs, 0), "rule"), "per-user");
    cr_assert_eq(ev_int(json_array_get(evs, 0), "hold_until"), NOW + 3600000);
    json_decref(evs);
    assert_check();

    /* a replay gets the held order back, nothing new */
    cr_assert_eq(order("h-1", 2, &rk, NOW + 1, &o), PH_OK);
    cr_assert_eq(o->id, id);
    cr_assert_eq(o->state, PH_ORDER_HELD);
    ph_order_free(o);
    cr_assert_eq(queue_len(), 1);

    uint64_t ev1 = last_event();
    ph_cmd c;
    cr_assert_eq(review(id, 1, NULL, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_SUCCEEDED);
    cr_assert_eq(c.order->ncodes, 2);
    ph_cmd_clear(&c);
    cr_assert_eq(queue_len(), 0);
    evs = events_after_without(ev1, personal);
    cr_assert_eq(json_array_size(evs), 2);
    cr_assert_str_eq(ev_str(json_array_get(evs, 0), "type"), "order.released");
    cr_assert_str_eq(ev_str(json_array_get(evs, 0), "by"), "ops");
    cr_assert_str_eq(ev_str(json_array_get(evs, 1), "type"), "order.succeeded");
    json_decref(evs);
    rec = record_of(id);
    cr_assert_not_null(strstr(rec, "\"review\":{\"outcome\":\"released\",\"by\":\"ops\""), "%s",
                       rec);
    free(rec);
    assert_check();

    /* released once: not held any more */
    cr_assert_eq(review(id, 0, NULL, &c), PH_ESTATE);
    cr_assert_str_eq(c.err.msg, "order 1 is succeeded, not held");
    ph_cmd_clear(&c);
    cr_assert_eq(review(999, 1, NULL, NULL), PH_ENOTFOUND);
}

Test(review, a_denied_order_fails_at_once_and_its_replay_is_the_same)
{
    start();
    import(1, 2);
    uint64_t ev0 = last_event();
    ph_order_risk rk = risk_at(PH_VERDICT_DENY, NOW);
    ph_order *o = NULL;
    cr_assert_eq(order("d-1", 1, &rk, NOW, &o), PH_OK);
    cr_assert_eq(o->state, PH_ORDER_FAILED);
    cr_assert_str_eq(o->reason, "denied_by_risk");
    cr_assert_eq(o->ncodes, 0);
    ph_order_free(o);
    json_t *evs = events_after_without(ev0, personal);
    cr_assert_eq(json_array_size(evs), 2);
    cr_assert_str_eq(ev_str(json_array_get(evs, 0), "type"), "order.denied");
    cr_assert_str_eq(ev_str(json_array_get(evs, 0), "rule"), "per-user");
    cr_assert_str_eq(ev_str(json_array_get(evs, 1), "type"), "order.failed");
    cr_assert_str_eq(ev_str(json_array_get(evs, 1), "reason"), "denied_by_risk");
    json_decref(evs);
    cr_assert_eq(queue_len(), 0);
    /* the stock is untouched: both codes still go to the next order */
    ph_order_risk ok = risk_at(PH_VERDICT_FULFIL, NOW);
    cr_assert_eq(order("d-2", 2, &ok, NOW, &o), PH_OK);
    cr_assert_eq(o->state, PH_ORDER_SUCCEEDED);
    ph_order_free(o);
    cr_assert_eq(order("d-1", 1, NULL, NOW + 1, &o), PH_OK);
    cr_assert_eq(o->state, PH_ORDER_FAILED);
    cr_assert_str_eq(o->reason, "denied_by_risk");
    ph_order_free(o);
    assert_check();
}

Test(review, a_held_recharge_keeps_its_account_and_no_attempt_until_released)
{
    start();
    ph_order_risk rk = risk_at(PH_VERDICT_HOLD, NOW);
    ph_order *o = NULL;
    cr_assert_eq(recharge("r-1", &rk, &o), PH_OK);
    cr_assert_eq(o->state, PH_ORDER_HELD);
    cr_assert_eq(o->nattempts, 0);
    cr_assert_eq(o->account_sealed_len, 14);
    uint64_t id = o->id;
    ph_order_free(o);
    uint64_t n = 9;
    ph_err err = {0};
    assert_check();
    ph_cmd c;
    ph_attempt_target t = {"sup", "P-1", 2900};
    cr_assert_eq(review(id, 1, &t, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_PROCESSING);
    cr_assert_eq(c.order->nattempts, 1);
    cr_assert_eq(c.order->attempts[0].state, PH_ATTEMPT_SENDING);
    ph_cmd_clear(&c);
    ph_order **list;
    size_t np;
    cr_assert_eq(ph_store_pending_list(g_s, 0, 10, &list, &np, &err), PH_OK);
    cr_assert_eq(np, 1, "the released recharge is pending at its supplier");
    ph_order_list_free(list, np);
    (void)n;
    assert_check();
}

Test(review, a_blocked_order_fails_blocked_by_review)
{
    start();
    ph_order_risk rk = risk_at(PH_VERDICT_HOLD, NOW);
    ph_order *o = NULL;
    cr_assert_eq(recharge("b-1", &rk, &o), PH_OK);
    uint64_t id = o->id;
    ph_order_free(o);
    uint64_t ev0 = last_event();
    ph_cmd c;
    cr_assert_eq(review(id, 0, NULL, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_FAILED);
    cr_assert_str_eq(c.order->reason, "blocked_by_review");
    ph_cmd_clear(&c);
    json_t *evs = events_after_without(ev0, personal);
    cr_assert_eq(json_array_size(evs), 2);
    cr_assert_str_eq(ev_str(json_array_get(evs, 0), "type"), "order.blocked");
    cr_assert_str_eq(ev_str(json_array_get(evs, 1), "type"), "order.failed");
    cr_assert_str_eq(ev_str(json_array_get(evs, 1), "reason"), "blocked_by_review");
    json_decref(evs);
    char *rec = record_of(id);
    cr_assert_not_null(strstr(rec, "\"outcome\":\"blocked\""), "%s", rec);
    cr_assert_not_null(strstr(rec, "\"note\":\"checked the account\""), "%s", rec);
    free(rec);
    cr_assert_eq(queue_len(), 0);
    assert_check();
}

Test(review, a_released_card_order_short_of_stock_goes_to_a_supplier_or_fails)
{
    start();
    import(1, 1);
    ph_order_risk rk = risk_at(PH_VERDICT_HOLD, NOW);
    ph_order *o = NULL;
    cr_assert_eq(order("s-1", 2, &rk, NOW, &o), PH_OK);
    uint64_t a = o->id;
    ph_order_free(o);
    cr_assert_eq(order("s-2", 2, &rk, NOW, &o), PH_OK);
    uint64_t b = o->id;
    ph_order_free(o);
    ph_cmd c;
    ph_attempt_target t = {"sup", "P-9", 1900};
    cr_assert_eq(review(a, 1, &t, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_PROCESSING);
    cr_assert_eq(c.order->delivery, PH_DELIVERY_CARD_CODE);
    cr_assert_eq(c.order->ncodes, 0, "the one code in stock was not taken");
    ph_cmd_clear(&c);
    cr_assert_eq(review(b, 1, NULL, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_FAILED);
    cr_assert_str_eq(c.order->reason, "out_of_stock");
    ph_cmd_clear(&c);
    /* the code is still there */
    cr_assert_eq(order("s-3", 1, NULL, NOW, &o), PH_OK);
    cr_assert_eq(o->state, PH_ORDER_SUCCEEDED);
    ph_order_free(o);
    assert_check();
}

Test(review, the_queue_pages_and_the_due_read_finds_timed_out_orders)
{
    start();
    ph_order *o = NULL;
    uint64_t ids[5];
    for (int i = 0; i < 5; i++) {
        char coid[16];
        snprintf(coid, sizeof coid, "q-%d", i);
        ph_order_risk rk = risk_at(PH_VERDICT_HOLD, NOW + i * 1000);
        cr_assert_eq(order(coid, 1, &rk, NOW + i * 1000, &o), PH_OK);
        ids[i] = o->id;
        ph_order_free(o);
    }
    ph_review_row *rows;
    size_t n;
    uint64_t next;
    ph_err err = {0};
    cr_assert_eq(ph_store_review_list(g_s, 0, 2, &rows, &n, &next, &err), PH_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(rows[0].order_id, ids[0]);
    cr_assert_eq(rows[1].hold_until, NOW + 1000 + 3600000);
    cr_assert_eq(next, ids[1]);
    free(rows);
    cr_assert_eq(ph_store_review_list(g_s, next, 10, &rows, &n, &next, &err), PH_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(next, 0);
    free(rows);
    uint64_t due[8];
    cr_assert_eq(ph_store_review_due(g_s, NOW + 3600000 + 2000, due, 8, &n, &err), PH_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(due[0], ids[0]);
    cr_assert_eq(due[2], ids[2]);
}

typedef struct scan_seen {
    uint64_t ids[16];
    size_t n;
} scan_seen;

static int seen(void *arg, uint64_t id, const char *json, size_t len)
{
    scan_seen *s = arg;
    cr_assert(len > 10 && json[0] == '{');
    s->ids[s->n++] = id;
    return 0;
}

Test(review, the_scan_gives_the_records_of_the_window_oldest_first)
{
    start();
    import(1, 8);
    ph_order *o = NULL;
    /* an hour apart, then one whose time lags its id by 30 s */
    int64_t at[] = {NOW, NOW + 3600000, NOW + 7200000, NOW + 7170000};
    for (int i = 0; i < 4; i++) {
        char coid[16];
        snprintf(coid, sizeof coid, "w-%d", i);
        ph_order_risk rk = risk_at(PH_VERDICT_FULFIL, at[i]);
        cr_assert_eq(order(coid, 1, &rk, at[i], &o), PH_OK);
        ph_order_free(o);
    }
    cr_assert_eq(order("w-none", 1, NULL, NOW, &o), PH_OK); /* no record */
    ph_order_free(o);
    scan_seen s = {0};
    ph_err err = {0};
    cr_assert_eq(ph_store_order_risk_scan(g_s, NOW + 3600000, seen, &s, &err), PH_OK);
    cr_assert_eq(s.n, 3);
    cr_assert_eq(s.ids[0], 2);
    cr_assert_eq(s.ids[1], 3);
    cr_assert_eq(s.ids[2], 4);
    s.n = 0;
    cr_assert_eq(ph_store_order_risk_scan(g_s, NOW + 7180000, seen, &s, &err), PH_OK);
    cr_assert_eq(s.n, 1, "only the record at or after since");
    cr_assert_eq(s.ids[0], 3);
    s.n = 0;
    cr_assert_eq(ph_store_order_risk_scan(g_s, 0, seen, &s, &err), PH_OK);
    cr_assert_eq(s.n, 4);
    cr_assert_eq(s.ids[0], 1);
}

Test(review, a_malformed_risk_input_is_refused_and_changes_nothing)
{
    start();
    import(1, 1);
    ph_order_risk rk = risk_at(PH_VERDICT_HOLD, NOW);
    rk.record = "{\"not\":\"a record\"}";
    rk.record_len = strlen(rk.record);
    ph_cmd c = {.type = PH_CMD_ORDER, .now = NOW};
    c.in.order.client = "mall";
    c.in.order.client_order_id = "bad-1";
    c.in.order.sku = IQ;
    c.in.order.quantity = 1;
    c.in.order.risk = &rk;
    fingerprint(IQ, 1, c.in.order.fingerprint);
    cr_assert_eq(ph_store_exec(g_s, &c), PH_EINVAL);
    cr_assert_str_eq(c.err.msg, "risk: record: expected a risk record of at most 8192 bytes");
    ph_cmd_clear(&c);
    rk = risk_at(PH_VERDICT_HOLD, NOW);
    rk.rule = NULL;
    cr_assert_eq(order("bad-2", 1, &rk, NOW, NULL), PH_EINVAL);
    ph_order *o;
    cr_assert_eq(order("ok-1", 1, NULL, NOW, &o), PH_OK);
    cr_assert_eq(o->id, 1, "nothing was stored before");
    ph_order_free(o);
}

Test(review, the_check_catches_a_held_order_outside_the_queue)
{
    start();
    ph_order_risk rk = risk_at(PH_VERDICT_HOLD, NOW);
    cr_assert_eq(order("c-1", 1, &rk, NOW, NULL), PH_OK);
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi dbi = raw_dbi(txn, "reviews", MDB_INTEGERKEY);
    uint64_t id = 1;
    MDB_val k = {8, &id};
    cr_assert_eq(mdb_del(txn, dbi, &k, NULL), 0);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    ph_store_stats st;
    cr_assert_neq(ph_store_check(g_s, &st, &err), PH_OK);
    cr_assert_str_eq(err.msg, "order 1: held but not in reviews");
}

Test(review, the_risk_input_and_review_round_trip_through_the_codec)
{
    ph_order_risk rk = risk_at(PH_VERDICT_HOLD, NOW);
    ph_cmd a = {.type = PH_CMD_ORDER, .now = NOW}, b = {.type = PH_CMD_REVIEW, .now = NOW};
    a.in.order.client = "mall";
    a.in.order.client_order_id = "x";
    a.in.order.sku = IQ;
    a.in.order.quantity = 1;
    a.in.order.risk = &rk;
    a.next = &b;
    b.in.review.order_id = 7;
    b.in.review.release = 1;
    b.in.review.who = "timeout";
    b.in.review.first = (ph_attempt_target){"sup", "P-1", 100};
    uint8_t *buf;
    size_t len;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_encode(&a, &buf, &len, &err), PH_OK, "%s", err.msg);
    ph_cmd_batch batch;
    cr_assert_eq(ph_cmd_batch_decode(buf, len, &batch, &err), PH_OK, "%s", err.msg);
    free(buf);
    cr_assert_eq(batch.n, 2);
    const ph_order_risk *d = batch.cmds[0].in.order.risk;
    cr_assert_not_null(d);
    cr_assert_eq(d->verdict, PH_VERDICT_HOLD);
    cr_assert_str_eq(d->rule, "per-user");
    cr_assert_eq(d->hold_until, NOW + 3600000);
    cr_assert_eq(d->record_len, rk.record_len);
    cr_assert_eq(memcmp(d->record, rk.record, rk.record_len), 0);
    cr_assert_eq(batch.cmds[1].in.review.order_id, 7);
    cr_assert_eq(batch.cmds[1].in.review.release, 1);
    cr_assert_str_eq(batch.cmds[1].in.review.who, "timeout");
    cr_assert_str_eq(batch.cmds[1].in.review.first.supplier, "sup");
    cr_assert_null(batch.cmds[1].in.review.note);
    ph_cmd_batch_free(&batch);
}
