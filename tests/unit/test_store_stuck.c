/*
 * test_store_stuck.c — stuck orders in the store (issue 11, found 3):
 * ATTEMPT's mark_stuck, PH_CMD_SETTLE, ph_store_stuck_list/_count, the
 * version-2 supply record and a version-1 one still read.
 *
 * A settle racing the supplier's answer is the writer's business: both are
 * put in one batch, in both orders, and exactly one of them wins.
 */

#include <sched.h>
#include <semaphore.h>

#include "config/config.h"
#include "store/store.h"
#include "store_fixture.h"
#include "store/store_int.h" /* the supply record's layout, for the version-1 test */

TestSuite(stuck, .init = fixture_setup, .fini = fixture_teardown);

static void start(void)
{
    g_s = open_at(g_dir, 0);
    const char *const all[] = {P_IQ, P_TOPUP};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 2, &err), PH_OK, "put products: %s", err.msg);
}

static uint64_t create(const char *coid, const char *sku)
{
    ph_cmd c;
    memset(&c, 0, sizeof c);
    c.type = PH_CMD_SUPPLY_CREATE;
    c.now = NOW;
    c.in.supply.client = "mall";
    c.in.supply.client_order_id = coid;
    c.in.supply.sku = sku;
    c.in.supply.quantity = 1;
    fingerprint(sku, 1, c.in.supply.fingerprint);
    if (!strcmp(sku, TOPUP)) {
        c.in.supply.delivery = PH_DELIVERY_RECHARGE;
        c.in.supply.account_sealed = (const uint8_t *)"sealed-account";
        c.in.supply.account_sealed_len = 14;
        c.in.supply.account_masked = "138****8000";
    } else {
        c.in.supply.delivery = PH_DELIVERY_CARD_CODE;
    }
    c.in.supply.first = (ph_attempt_target){"sup", "P-1", 4900};
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "create: %s", c.err.msg);
    uint64_t id = c.order->id;
    ph_cmd_clear(&c);
    return id;
}

static void attempt_cmd(ph_cmd *c, uint64_t id, int state, int64_t now, int mark)
{
    memset(c, 0, sizeof *c);
    c->type = PH_CMD_ATTEMPT;
    c->now = now;
    c->in.attempt.order_id = id;
    c->in.attempt.no = 1;
    c->in.attempt.state = state;
    c->in.attempt.step = -1;
    c->in.attempt.charged = -1;
    c->in.attempt.next_check_at = state == PH_ATTEMPT_PROCESSING ? now + 1000 : -1;
    c->in.attempt.count_check = 1;
    c->in.attempt.mark_stuck = mark;
}

static int attempt(uint64_t id, int state, int64_t now, int mark)
{
    ph_cmd c;
    attempt_cmd(&c, id, state, now, mark);
    int rc = ph_store_exec(g_s, &c);
    ph_cmd_clear(&c);
    return rc;
}

static void settle_cmd(ph_cmd *c, uint64_t id, int outcome, const char *note)
{
    memset(c, 0, sizeof *c);
    c->type = PH_CMD_SETTLE;
    c->now = NOW + 9000;
    c->in.settle.order_id = id;
    c->in.settle.outcome = outcome;
    c->in.settle.by = "ops";
    c->in.settle.note = note;
    c->in.settle.charged = -1;
}

static ph_order *get(uint64_t id)
{
    ph_order *o = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_store_order_get(g_s, id, 0, &o, &err), PH_OK, "%s", err.msg);
    return o;
}

static int count_type(json_t *evs, const char *type)
{
    size_t i;
    json_t *e;
    int n = 0;
    json_array_foreach(evs, i, e) n += !strcmp(ev_str(e, "type"), type);
    return n;
}

static uint64_t stuck_count(void)
{
    uint64_t n = 99;
    ph_err err = {0};
    cr_assert_eq(ph_store_stuck_count(g_s, &n, &err), PH_OK, "%s", err.msg);
    return n;
}

Test(stuck, mark_escalates_exactly_once_and_survives_a_reopen)
{
    start();
    uint64_t id = create("s-1", TOPUP), other = create("s-2", TOPUP);
    uint64_t ev0 = last_event();
    cr_assert_eq(attempt(id, PH_ATTEMPT_PROCESSING, NOW + 1000, 0), PH_OK);
    cr_expect_eq(stuck_count(), 0, "not overdue: nothing marked");
    cr_assert_eq(attempt(id, PH_ATTEMPT_PROCESSING, NOW + 2000, 1), PH_OK);
    cr_assert_eq(attempt(id, PH_ATTEMPT_UNKNOWN, NOW + 3000, 1), PH_OK);
    cr_assert_eq(attempt(id, PH_ATTEMPT_UNKNOWN, NOW + 4000, 1), PH_OK);
    ph_order *o = get(id);
    cr_expect_eq(ph_order_stuck_since(o), NOW + 2000, "the first overdue check marks it");
    cr_expect_eq(o->attempts[0].checks, 4);
    ph_order_free(o);
    json_t *evs = events_after_without(ev0, NULL);
    cr_expect_eq(count_type(evs, "order.stuck"), 1);
    json_decref(evs);
    cr_expect_eq(stuck_count(), 1);

    reopen();
    cr_assert_eq(attempt(id, PH_ATTEMPT_UNKNOWN, NOW + 5000, 1), PH_OK);
    evs = events_after_without(ev0, NULL);
    cr_expect_eq(count_type(evs, "order.stuck"), 1, "a restart does not escalate again");
    json_decref(evs);
    ph_order **list = NULL;
    size_t n = 0;
    ph_err err = {0};
    cr_assert_eq(ph_store_stuck_list(g_s, NULL, 0, 10, &list, &n, &err), PH_OK);
    cr_expect_eq(n, 1);
    cr_expect_eq(list[0]->id, id);
    ph_order_list_free(list, n);
    cr_assert_eq(ph_store_stuck_list(g_s, "someone-else", 0, 10, &list, &n, &err), PH_OK);
    cr_expect_eq(n, 0, "a client sees only its own");
    ph_order_list_free(list, n);
    cr_assert_eq(ph_store_stuck_list(g_s, "mall", id, 10, &list, &n, &err), PH_OK);
    cr_expect_eq(n, 0, "paging after it");
    ph_order_list_free(list, n);

    /* an answer that settles it is never marked, and clears the list */
    cr_assert_eq(attempt(other, PH_ATTEMPT_SUCCEEDED, NOW + 5000, 1), PH_OK);
    o = get(other);
    cr_expect_eq(o->attempts[0].stuck_at, 0);
    ph_order_free(o);
    cr_assert_eq(attempt(id, PH_ATTEMPT_FAILED, NOW + 6000, 1), PH_OK);
    cr_expect_eq(stuck_count(), 0);
    o = get(id);
    cr_expect_eq(o->attempts[0].stuck_at, NOW + 2000, "the attempt keeps when it was stuck");
    cr_expect_eq(ph_order_stuck_since(o), 0, "a final order is not stuck");
    ph_order_free(o);
    assert_check();
}

Test(stuck, settle_moves_a_stuck_order_once_and_refuses_others)
{
    start();
    uint64_t id = create("s-1", TOPUP), young = create("s-2", TOPUP);
    cr_assert_eq(attempt(id, PH_ATTEMPT_UNKNOWN, NOW + 2000, 1), PH_OK);
    cr_assert_eq(attempt(young, PH_ATTEMPT_PROCESSING, NOW + 2000, 0), PH_OK);
    uint64_t ev0 = last_event();

    ph_cmd c;
    settle_cmd(&c, young, PH_ATTEMPT_FAILED, "n");
    cr_expect_eq(ph_store_exec(g_s, &c), PH_ESTATE);
    char msg[64];
    snprintf(msg, sizeof msg, "order %llu is processing, not stuck", (unsigned long long)young);
    cr_expect_str_eq(c.err.msg, msg);
    ph_cmd_clear(&c);
    settle_cmd(&c, id, PH_ATTEMPT_FAILED, "n");
    c.in.settle.charged = 100;
    cr_expect_eq(ph_store_exec(g_s, &c), PH_EINVAL, "a charge with a failure");
    cr_expect(strstr(c.err.msg, "charged"), "%s", c.err.msg);
    ph_cmd_clear(&c);
    settle_cmd(&c, id, PH_ATTEMPT_FAILED, "two\nlines");
    cr_expect_eq(ph_store_exec(g_s, &c), PH_EINVAL);
    cr_expect(strstr(c.err.msg, "note"), "%s", c.err.msg);
    ph_cmd_clear(&c);
    settle_cmd(&c, id, PH_ATTEMPT_SENDING, "n");
    cr_expect_eq(ph_store_exec(g_s, &c), PH_EINVAL);
    ph_cmd_clear(&c);
    cr_expect_eq(last_event(), ev0, "refusals change nothing");

    settle_cmd(&c, id, PH_ATTEMPT_SUCCEEDED, "ticket 8812");
    c.in.settle.charged = 4850;
    c.in.settle.supplier_order_id = "R-9";
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_expect_eq(c.order->state, PH_ORDER_SUCCEEDED);
    ph_cmd_clear(&c);
    ph_order *o = get(id);
    const ph_attempt *a = &o->attempts[0];
    cr_expect_eq(o->state, PH_ORDER_SUCCEEDED);
    cr_expect_eq(o->cost, 4850);
    cr_expect_eq(a->state, PH_ATTEMPT_SUCCEEDED);
    cr_expect_eq(a->settled_at, NOW + 9000);
    cr_expect_str_eq(a->settled_by, "ops");
    cr_expect_str_eq(a->settle_note, "ticket 8812");
    cr_expect_str_eq(a->supplier_order_id, "R-9");
    cr_expect_eq(a->next_check_at, 0);
    ph_order_free(o);
    json_t *evs = events_after_without(ev0, (const char *const[]){"ticket", NULL});
    cr_expect_eq(json_array_size(evs), 3, "order.attempt, order.succeeded, order.settled");
    cr_expect_str_eq(ev_str(json_array_get(evs, 2), "type"), "order.settled");
    cr_expect_str_eq(ev_str(json_array_get(evs, 2), "by"), "ops");
    cr_expect_eq(ev_int(json_array_get(evs, 2), "cost_fen"), 4850);
    json_decref(evs);
    cr_expect_eq(stuck_count(), 0);

    settle_cmd(&c, id, PH_ATTEMPT_FAILED, "again");
    cr_expect_eq(ph_store_exec(g_s, &c), PH_ESTATE);
    snprintf(msg, sizeof msg, "order %llu is succeeded, not stuck", (unsigned long long)id);
    cr_expect_str_eq(c.err.msg, msg);
    ph_cmd_clear(&c);
    assert_check();
}

Test(stuck, a_card_order_settles_failed_only)
{
    start();
    uint64_t id = create("c-1", IQ);
    cr_assert_eq(attempt(id, PH_ATTEMPT_UNKNOWN, NOW + 2000, 1), PH_OK);
    ph_cmd c;
    settle_cmd(&c, id, PH_ATTEMPT_SUCCEEDED, "n");
    cr_expect_eq(ph_store_exec(g_s, &c), PH_ESTATE);
    cr_expect(strstr(c.err.msg, "card-code"), "%s", c.err.msg);
    ph_cmd_clear(&c);
    settle_cmd(&c, id, PH_ATTEMPT_FAILED, "n");
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_expect_eq(c.order->state, PH_ORDER_FAILED);
    cr_expect_str_eq(c.order->reason, "settled_by_ops");
    cr_expect_eq(c.order->nattempts, 1, "never a fail-over");
    ph_cmd_clear(&c);
    assert_check();
}

/* The supplier's answer and ops' settle in one batch, in both orders: the
 * first applied wins, the second is refused and changes nothing. */
Test(stuck, settle_racing_the_supplier_answer_one_wins)
{
    start();
    uint64_t a = create("r-1", TOPUP), b = create("r-2", TOPUP);
    cr_assert_eq(attempt(a, PH_ATTEMPT_UNKNOWN, NOW + 2000, 1), PH_OK);
    cr_assert_eq(attempt(b, PH_ATTEMPT_UNKNOWN, NOW + 2000, 1), PH_OK);

    ph_cmd answer, settle;
    attempt_cmd(&answer, a, PH_ATTEMPT_SUCCEEDED, NOW + 8000, 1);
    settle_cmd(&settle, a, PH_ATTEMPT_FAILED, "n");
    answer.next = &settle;
    settle.next = NULL;
    cr_assert_eq(ph_store_exec_list(g_s, &answer), PH_OK);
    cr_expect_eq(answer.rc, PH_OK, "%s", answer.err.msg);
    cr_expect_eq(settle.rc, PH_ESTATE, "the settle loses: %s", settle.err.msg);
    ph_cmd_clear(&answer);
    ph_cmd_clear(&settle);
    ph_order *o = get(a);
    cr_expect_eq(o->state, PH_ORDER_SUCCEEDED);
    cr_expect_eq(o->attempts[0].settled_at, 0);
    ph_order_free(o);

    settle_cmd(&settle, b, PH_ATTEMPT_FAILED, "n");
    attempt_cmd(&answer, b, PH_ATTEMPT_SUCCEEDED, NOW + 8000, 1);
    settle.next = &answer;
    answer.next = NULL;
    cr_assert_eq(ph_store_exec_list(g_s, &settle), PH_OK);
    cr_expect_eq(settle.rc, PH_OK, "%s", settle.err.msg);
    cr_expect_eq(answer.rc, PH_ESTATE, "the late answer loses: %s", answer.err.msg);
    ph_cmd_clear(&answer);
    ph_cmd_clear(&settle);
    o = get(b);
    cr_expect_eq(o->state, PH_ORDER_FAILED);
    cr_expect_str_eq(o->attempts[0].settled_by, "ops");
    ph_order_free(o);
    assert_check();
}

/* A supply record written before issue 11 (version 1: attempts without the
 * tail) still reads, and the next write makes it version 2. */
Test(stuck, a_version_1_supply_record_still_reads)
{
    start();
    uint64_t id = create("v-1", TOPUP);
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi dbi = raw_dbi(txn, "supply", MDB_INTEGERKEY);
    size_t len;
    uint8_t *rec = raw_copy(txn, dbi, id, &len);
    cr_assert_eq(rec[0], PH_SUPPLY_VERSION);
    /* one attempt, not stuck, not settled: its tail is the 24 bytes before
     * the record's last 8 (delivered, version 3: unknown) */
    static const uint8_t zero[sizeof(ph_attempt_tail)];
    int64_t delivered;
    memcpy(&delivered, rec + len - 8, 8);
    cr_assert_eq(delivered, -1);
    cr_assert_eq(memcmp(rec + len - 8 - sizeof zero, zero, sizeof zero), 0);
    rec[0] = 1;
    raw_put_free(txn, dbi, id, rec, len - 8 - sizeof zero);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    ph_order *o = get(id);
    cr_expect_eq(o->nattempts, 1);
    cr_expect_str_eq(o->attempts[0].supplier, "sup");
    cr_expect_eq(o->attempts[0].stuck_at, 0);
    ph_order_free(o);
    assert_check();
    cr_assert_eq(attempt(id, PH_ATTEMPT_UNKNOWN, NOW + 2000, 1), PH_OK);
    o = get(id);
    cr_expect_eq(ph_order_stuck_since(o), NOW + 2000);
    ph_order_free(o);
    assert_check();
}
