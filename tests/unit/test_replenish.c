/*
 * test_replenish.c — replenishment's decision (ph_replenish_decide, pure) and
 * its store command (PH_CMD_REPLENISH) with the purchase's end (PH_CMD_ATTEMPT
 * on its order), through the real writer into a fresh environment.
 *
 * The rule of the store tests: below 5, to 12, at most 30.00 a unit, 500.00 a
 * day; offers "a" at 28.50 and "b" at 27.00 (the cheaper).
 */
#include "store/cmd_codec.h"
#include "store/store.h"
#include "store_fixture.h"

/* ---- the decision ------------------------------------------------------------- */

static const ph_replenish_rule RULE = {
    .below = 5, .to = 12, .max_unit_cost = 3000, .max_per_day = 50000};
static const ph_attempt_target OFFERS[] = {{"a", "A1", 2850}, {"b", "B1", 2700}, {"c", "C1", 3100}};

static ph_replenish_decision decide(uint64_t avail, const ph_replenish_rule *r, int64_t spent,
                                    int flying, const ph_attempt_target *o, size_t n)
{
    ph_replenish_decision d;
    ph_replenish_decide(avail, r, spent, flying, o, n, &d);
    return d;
}

Test(decide, buys_up_to_to_from_the_cheapest_within_the_cap)
{
    ph_replenish_decision d = decide(2, &RULE, 0, 0, OFFERS, 3);
    cr_assert_eq(d.why, PH_REPL_BUY);
    cr_assert_eq(d.quantity, 10);
    cr_assert_eq(d.offer, 1, "b is the cheapest; c is over the cap");
    d = decide(0, &RULE, 0, 0, OFFERS, 1);
    cr_assert_eq(d.why, PH_REPL_BUY);
    cr_assert_eq(d.quantity, 12);
    cr_assert_eq(d.offer, 0);
}

Test(decide, a_tie_goes_to_the_first_offer)
{
    const ph_attempt_target tie[] = {{"x", "X", 2000}, {"y", "Y", 2000}};
    cr_assert_eq(decide(0, &RULE, 0, 0, tie, 2).offer, 0);
}

Test(decide, stock_at_or_above_below_buys_nothing)
{
    cr_assert_eq(decide(5, &RULE, 0, 0, OFFERS, 3).why, PH_REPL_STOCK_OK);
    cr_assert_eq(decide(100, &RULE, 0, 1, OFFERS, 3).why, PH_REPL_STOCK_OK);
    cr_assert_eq(decide(4, &RULE, 0, 0, OFFERS, 3).why, PH_REPL_BUY);
}

Test(decide, one_in_flight_at_a_time)
{
    cr_assert_eq(decide(0, &RULE, 0, 1, OFFERS, 3).why, PH_REPL_IN_FLIGHT);
}

Test(decide, no_offer_within_the_cap)
{
    cr_assert_eq(decide(0, &RULE, 0, 0, &OFFERS[2], 1).why, PH_REPL_NO_OFFER);
    cr_assert_eq(decide(0, &RULE, 0, 0, NULL, 0).why, PH_REPL_NO_OFFER);
}

Test(decide, the_budget_shrinks_the_quantity_or_refuses)
{
    /* 500.00 - 450.00 spent leaves 50.00: one unit of 27.00 */
    ph_replenish_decision d = decide(0, &RULE, 45000, 0, OFFERS, 3);
    cr_assert_eq(d.why, PH_REPL_BUY);
    cr_assert_eq(d.quantity, 1);
    cr_assert_leq(45000 + (int64_t)d.quantity * 2700, RULE.max_per_day);
    /* 500.00 - 480.00 leaves 20.00: not one */
    cr_assert_eq(decide(0, &RULE, 48000, 0, OFFERS, 3).why, PH_REPL_BUDGET);
    /* spent beyond the budget (a charge above the agreed cost): not one */
    cr_assert_eq(decide(0, &RULE, 55000, 0, OFFERS, 3).why, PH_REPL_BUDGET);
    /* exactly fitting */
    d = decide(0, &RULE, 50000 - 7 * 2700, 0, OFFERS, 3);
    cr_assert_eq(d.quantity, 7);
}

Test(decide, free_units_are_not_limited_by_the_budget)
{
    const ph_attempt_target free_offer[] = {{"f", "F", 0}};
    ph_replenish_decision d = decide(0, &RULE, 50000, 0, free_offer, 1);
    cr_assert_eq(d.why, PH_REPL_BUY);
    cr_assert_eq(d.quantity, 12);
}

Test(decide, a_rule_with_to_not_above_below_is_invalid)
{
    ph_replenish_rule r = RULE;
    r.to = r.below;
    cr_assert_eq(decide(0, &r, 0, 0, OFFERS, 3).why, PH_REPL_INVALID);
    cr_assert_str_eq(ph_repl_why_name(PH_REPL_INVALID), "invalid");
    cr_assert_str_eq(ph_repl_why_name(PH_REPL_BUDGET), "budget");
}

/* ---- the store ---------------------------------------------------------------- */

TestSuite(store, .init = fixture_setup, .fini = fixture_teardown);

static const char *const P_PRICED =
    "{\"sku\":\"" IQ "\",\"name\":\"iQiyi Gold, 1 month\",\"brand\":\"iqiyi\","
    "\"delivery\":\"card_code\",\"face_value\":\"30.00\",\"listed\":true,\"price_fen\":3500}";

static void start(void)
{
    g_s = open_at(g_dir, 0);
    const char *const all[] = {P_PRICED, P_TOPUP};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 2, &err), PH_OK, "%s", err.msg);
}

static void repl_cmd(ph_cmd *c, const char *sku, int64_t now)
{
    memset(c, 0, sizeof *c);
    c->type = PH_CMD_REPLENISH;
    c->now = now;
    c->in.replenish.sku = sku;
    c->in.replenish.below = RULE.below;
    c->in.replenish.to = RULE.to;
    c->in.replenish.max_unit_cost = RULE.max_unit_cost;
    c->in.replenish.max_per_day = RULE.max_per_day;
    c->in.replenish.offers = OFFERS;
    c->in.replenish.noffers = 3;
}

/* The purchase's attempt ends: succeeded with its codes (first code number
 * `first`), or failed out of stock. */
static void purchase_ends(const ph_order *o, int ok, unsigned first, int64_t now)
{
    char blobs[64][24];
    ph_supplied_code codes[64];
    cr_assert_leq(o->quantity, 64);
    for (uint32_t i = 0; ok && i < o->quantity; i++) {
        int len = snprintf(blobs[i], sizeof blobs[i], "sealed-%u", first + i);
        codes[i] =
            (ph_supplied_code){.sealed_len = (uint32_t)len, .sealed = (const uint8_t *)blobs[i]};
        code_hash(first + i, codes[i].hash);
    }
    ph_cmd c = {.type = PH_CMD_ATTEMPT, .now = now};
    c.in.attempt.order_id = o->id;
    c.in.attempt.no = 1;
    c.in.attempt.state = ok ? PH_ATTEMPT_SUCCEEDED : PH_ATTEMPT_FAILED;
    c.in.attempt.reason = ok ? NULL : "out_of_stock";
    c.in.attempt.step = -1;
    c.in.attempt.charged = -1;
    c.in.attempt.next_check_at = -1;
    c.in.attempt.codes = ok ? codes : NULL;
    c.in.attempt.ncodes = ok ? o->quantity : 0;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "attempt: %s", c.err.msg);
    ph_cmd_clear(&c);
}

static uint64_t stock_of(const char *sku)
{
    char *json = NULL;
    uint64_t n = 0;
    ph_err err = {0};
    cr_assert_eq(ph_store_product_get_at(g_s, sku, NOW + 1, &json, &n, &err), PH_OK, "%s", err.msg);
    free(json);
    return n;
}

static json_t *list(const char *sku, int state)
{
    char **l;
    size_t n;
    uint64_t next;
    ph_err err = {0};
    cr_assert_eq(ph_store_replenish_list(g_s, sku, state, 0, 100, &l, &n, &next, &err), PH_OK, "%s",
                 err.msg);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_loads(l[i], 0, NULL));
    ph_store_event_list_free(l, n);
    return arr;
}

Test(store, a_second_start_in_the_same_batch_is_refused)
{
    start();
    ph_cmd a, b;
    repl_cmd(&a, IQ, NOW);
    repl_cmd(&b, IQ, NOW);
    a.next = &b;
    cr_assert_eq(ph_store_exec_list(g_s, &a), PH_OK);
    cr_assert_eq(a.rc, PH_OK, "%s", a.err.msg);
    cr_assert_eq(b.rc, PH_ESTATE, "the second start: %s", b.err.msg);
    cr_assert_eq(b.repl_why, PH_REPL_IN_FLIGHT);
    cr_assert_not_null(a.order);
    cr_assert_str_eq(a.order->client, PH_REPLENISH_CLIENT);
    cr_assert(ph_order_is_replenish(a.order));
    cr_assert_eq(a.order->quantity, 12);
    cr_assert_str_eq(a.order->attempts[0].supplier, "b");
    cr_assert_eq(a.order->attempts[0].state, PH_ATTEMPT_SENDING);
    int64_t spent;
    uint64_t flying;
    ph_err err = {0};
    cr_assert_eq(ph_store_replenish_state(g_s, IQ, NOW, &spent, &flying, &err), PH_OK);
    cr_assert_eq(spent, 12 * 2700);
    cr_assert_eq(flying, a.replenish_id);
    ph_cmd_clear(&a);
    ph_cmd_clear(&b);
    assert_check();
}

Test(store, a_success_puts_the_codes_in_stock_and_books_no_sale)
{
    start();
    uint64_t ev0 = last_event();
    ph_cmd a;
    repl_cmd(&a, IQ, NOW);
    cr_assert_eq(ph_store_exec(g_s, &a), PH_OK, "%s", a.err.msg);
    purchase_ends(a.order, 1, 100, NOW + 10);
    cr_assert_eq(stock_of(IQ), 12);
    json_t *l = list(IQ, PH_RS_SUCCEEDED);
    cr_assert_eq(json_array_size(l), 1);
    json_t *r = json_array_get(l, 0);
    cr_assert_eq(json_integer_value(json_object_get(r, "cost_fen")), 12 * 2700);
    cr_assert(json_integer_value(json_object_get(r, "batch_id")) > 0);
    json_decref(l);
    /* the ledger: the supplier's cost, and no sale although the product has a price */
    ph_ledger_order lo;
    ph_err err = {0};
    cr_assert_eq(ph_store_ledger_order(g_s, a.order->id, &lo, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(lo.cost, 12 * 2700);
    cr_assert_eq(lo.revenue, 0);
    /* the in-flight mark is gone: the next one can start once stock is low */
    int64_t spent;
    uint64_t flying;
    cr_assert_eq(ph_store_replenish_state(g_s, IQ, NOW, &spent, &flying, &err), PH_OK);
    cr_assert_eq(flying, 0);
    cr_assert_eq(spent, 12 * 2700);
    /* events: started then succeeded, with numbers, never a code */
    json_t *evs = events_after_without(ev0, NULL);
    int started = 0, succeeded = 0;
    size_t i;
    json_t *e;
    json_array_foreach(evs, i, e)
    {
        const char *type = ev_str(e, "type");
        if (!strcmp(type, "replenish.started")) {
            started++;
            cr_assert_eq(ev_int(e, "quantity"), 12);
            cr_assert_eq(ev_int(e, "unit_cost"), 2700);
            cr_assert_str_eq(ev_str(e, "supplier"), "b");
        } else if (!strcmp(type, "replenish.succeeded")) {
            succeeded++;
            cr_assert_eq(ev_int(e, "replenishment_id"), (json_int_t)a.replenish_id);
        }
    }
    cr_assert_eq(started, 1);
    cr_assert_eq(succeeded, 1);
    json_decref(evs);
    ph_cmd_clear(&a);
    /* two codes sold from that stock: the sale is booked, the cost is not
     * booked twice (the purchase booked it) */
    ph_cmd o = {.type = PH_CMD_ORDER, .now = NOW + 15};
    o.in.order.client = "mall";
    o.in.order.client_order_id = "from-stock";
    o.in.order.sku = IQ;
    o.in.order.quantity = 2;
    fingerprint(IQ, 2, o.in.order.fingerprint);
    cr_assert_eq(ph_store_exec(g_s, &o), PH_OK, "%s", o.err.msg);
    cr_assert_eq(o.order->cost, 2 * 2700, "the order's cost is its codes' unit cost");
    cr_assert_eq(ph_store_ledger_order(g_s, o.order->id, &lo, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(lo.revenue, 2 * 3500);
    cr_assert_eq(lo.cost, 0, "booked by the purchase already");
    ph_cmd_clear(&o);
    cr_assert_eq(stock_of(IQ), 10);
    /* stock at 10 >= below: nothing to do */
    repl_cmd(&a, IQ, NOW + 20);
    cr_assert_eq(ph_store_exec(g_s, &a), PH_ESTATE);
    cr_assert_eq(a.repl_why, PH_REPL_STOCK_OK);
    ph_cmd_clear(&a);
    assert_check();
    reopen();
    assert_check();
}

Test(store, a_failure_gives_the_budget_back_and_the_day_is_kept)
{
    start();
    ph_cmd a;
    repl_cmd(&a, IQ, NOW);
    cr_assert_eq(ph_store_exec(g_s, &a), PH_OK, "%s", a.err.msg);
    purchase_ends(a.order, 0, 0, NOW + 10);
    ph_cmd_clear(&a);
    json_t *l = list(NULL, PH_RS_FAILED);
    cr_assert_eq(json_array_size(l), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(l, 0), "reason")),
                     "out_of_stock");
    json_decref(l);
    int64_t spent;
    uint64_t flying;
    ph_err err = {0};
    cr_assert_eq(ph_store_replenish_state(g_s, IQ, NOW, &spent, &flying, &err), PH_OK);
    cr_assert_eq(spent, 0, "a failed purchase costs nothing");
    cr_assert_eq(flying, 0);
    cr_assert_eq(stock_of(IQ), 0);
    /* the next check buys again, the whole budget left */
    repl_cmd(&a, IQ, NOW + 1000);
    cr_assert_eq(ph_store_exec(g_s, &a), PH_OK, "%s", a.err.msg);
    cr_assert_eq(a.order->quantity, 12);
    purchase_ends(a.order, 1, 200, NOW + 1010);
    ph_cmd_clear(&a);
    cr_assert_eq(ph_store_replenish_state(g_s, IQ, NOW, &spent, &flying, &err), PH_OK);
    cr_assert_eq(spent, 12 * 2700);
    /* a budget of 344.00 leaves 20.00 after 324.00: not one more unit */
    ph_cmd b;
    repl_cmd(&b, IQ, NOW + 2000);
    b.in.replenish.to = 30;
    b.in.replenish.below = 20;
    b.in.replenish.max_per_day = 12 * 2700 + 2000;
    cr_assert_eq(ph_store_exec(g_s, &b), PH_ELIMIT, "%s", b.err.msg);
    cr_assert_eq(b.repl_why, PH_REPL_BUDGET);
    ph_cmd_clear(&b);
    assert_check();
}

Test(store, refusals_change_nothing)
{
    start();
    uint64_t ev0 = last_event();
    ph_cmd a;
    repl_cmd(&a, TOPUP, NOW);
    cr_assert_eq(ph_store_exec(g_s, &a), PH_ESKU, "a recharge product is not replenished");
    ph_cmd_clear(&a);
    repl_cmd(&a, IQ, NOW);
    a.in.replenish.noffers = 0;
    cr_assert_eq(ph_store_exec(g_s, &a), PH_ENOTFOUND);
    cr_assert_eq(a.repl_why, PH_REPL_NO_OFFER);
    ph_cmd_clear(&a);
    repl_cmd(&a, "no.such", NOW);
    cr_assert_eq(ph_store_exec(g_s, &a), PH_ESKU);
    ph_cmd_clear(&a);
    cr_assert_eq(last_event(), ev0);
    json_t *l = list(NULL, 0);
    cr_assert_eq(json_array_size(l), 0);
    json_decref(l);
    assert_check();
}

Test(store, the_checker_sees_a_spend_or_mark_that_disagrees)
{
    start();
    ph_cmd a;
    repl_cmd(&a, IQ, NOW);
    cr_assert_eq(ph_store_exec(g_s, &a), PH_OK, "%s", a.err.msg);
    ph_cmd_clear(&a);
    assert_check();
    ph_store_close(g_s);
    g_s = NULL;
    /* the in-flight mark dropped behind the writer's back */
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi dbi = raw_dbi(txn, "replenish_sku", 0);
    MDB_val k = {strlen(IQ), IQ};
    cr_assert_eq(mdb_del(txn, dbi, &k, NULL), 0);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    ph_store_stats st;
    ph_err err = {0};
    cr_assert_eq(ph_store_check(g_s, &st, &err), PH_EIO);
    cr_assert(strstr(err.msg, "in-flight mark"), "%s", err.msg);
    ph_store_close(g_s);
    g_s = NULL;
    /* a day's spend that is not what its replenishments hold */
    env = raw_open(&txn);
    dbi = raw_dbi(txn, "replenish_sku", 0);
    uint64_t one = 1;
    MDB_val v = {8, &one};
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    MDB_dbi days = raw_dbi(txn, "replenish_day", 0);
    MDB_cursor *cur;
    cr_assert_eq(mdb_cursor_open(txn, days, &cur), 0);
    MDB_val dk, dv;
    cr_assert_eq(mdb_cursor_get(cur, &dk, &dv, MDB_FIRST), 0);
    int64_t wrong = 1;
    MDB_val wv = {8, &wrong};
    cr_assert_eq(mdb_cursor_put(cur, &dk, &wv, MDB_CURRENT), 0);
    mdb_cursor_close(cur);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    cr_assert_eq(ph_store_check(g_s, &st, &err), PH_EIO);
    cr_assert(strstr(err.msg, "replenish_day"), "%s", err.msg);
}

/* ---- the journal -------------------------------------------------------------- */

Test(codec, a_replenish_command_round_trips)
{
    ph_cmd c;
    repl_cmd(&c, IQ, NOW);
    uint8_t *buf = NULL;
    size_t len = 0;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_encode(&c, &buf, &len, &err), PH_OK, "%s", err.msg);
    ph_cmd_batch b = {0};
    cr_assert_eq(ph_cmd_batch_decode(buf, len, &b, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(b.n, 1);
    const ph_cmd *d = &b.cmds[0];
    cr_assert_eq(d->type, PH_CMD_REPLENISH);
    cr_assert_eq(d->now, NOW);
    cr_assert_str_eq(d->in.replenish.sku, IQ);
    cr_assert_eq(d->in.replenish.below, RULE.below);
    cr_assert_eq(d->in.replenish.to, RULE.to);
    cr_assert_eq(d->in.replenish.max_unit_cost, RULE.max_unit_cost);
    cr_assert_eq(d->in.replenish.max_per_day, RULE.max_per_day);
    cr_assert_eq(d->in.replenish.noffers, 3);
    for (size_t i = 0; i < 3; i++) {
        cr_assert_str_eq(d->in.replenish.offers[i].supplier, OFFERS[i].supplier);
        cr_assert_str_eq(d->in.replenish.offers[i].product_id, OFFERS[i].product_id);
        cr_assert_eq(d->in.replenish.offers[i].unit_cost, OFFERS[i].unit_cost);
    }
    /* cut short: refused, naming the command */
    ph_cmd_batch t = {0};
    cr_assert_neq(ph_cmd_batch_decode(buf, len - 3, &t, &err), PH_OK);
    ph_cmd_batch_free(&b);
    free(buf);
}
