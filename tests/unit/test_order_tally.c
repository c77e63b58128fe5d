/*
 * test_order_tally.c — ph_store_order_tally (core/store/store_tally.c): orders
 * since a moment counted by state and SKU, read backwards from the newest, in a
 * fresh store under /tmp with orders placed through the real writer at chosen
 * times.
 */
#include "store/store.h"
#include "config/config.h"
#include "store_fixture.h" /* criterion, the catalog, setup */

TestSuite(tally, .init = fixture_setup, .fini = fixture_teardown);

static void start(void)
{
    g_s = open_at(g_dir, 0);
    const char *const all[] = {P_IQ, P_TOPUP, P_OLD};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 3, &err), PH_OK, "put products: %s", err.msg);
}

/* A supplier order created at `now`: PROCESSING at supplier "sup", or FAILED at
 * once when supplier is NULL. Returns its id. */
static uint64_t create_at(const char *coid, const char *sku, uint32_t qty, const char *supplier,
                          int64_t now)
{
    ph_cmd c;
    memset(&c, 0, sizeof c);
    c.type = PH_CMD_SUPPLY_CREATE;
    c.now = now;
    c.in.supply.client = "mall";
    c.in.supply.client_order_id = coid;
    c.in.supply.sku = sku;
    c.in.supply.quantity = qty;
    fingerprint(sku, qty, c.in.supply.fingerprint);
    int recharge = strcmp(sku, TOPUP) == 0;
    c.in.supply.delivery = recharge ? PH_DELIVERY_RECHARGE : PH_DELIVERY_CARD_CODE;
    if (recharge) {
        c.in.supply.account_sealed = (const uint8_t *)"sealed-account";
        c.in.supply.account_sealed_len = 14;
        c.in.supply.account_masked = "138****8000";
    }
    c.in.supply.first = (ph_attempt_target){supplier, supplier ? "P-1" : NULL, 1500};
    c.in.supply.fail_reason = supplier ? NULL : "no_offer";
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "create %s: %s", coid, c.err.msg);
    uint64_t id = c.order->id;
    ph_cmd_clear(&c);
    return id;
}

/* Attempt 1 of order id moves to state (a recharge succeeds without codes). */
static void attempt_to(uint64_t id, int state, int64_t now)
{
    ph_cmd c;
    memset(&c, 0, sizeof c);
    c.type = PH_CMD_ATTEMPT;
    c.now = now;
    c.in.attempt.order_id = id;
    c.in.attempt.no = 1;
    c.in.attempt.state = state;
    c.in.attempt.reason = state == PH_ATTEMPT_SUCCEEDED ? NULL : "timeout";
    c.in.attempt.step = -1;
    c.in.attempt.charged = -1;
    c.in.attempt.next_check_at = -1;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "attempt %llu: %s", (unsigned long long)id,
                 c.err.msg);
    ph_cmd_clear(&c);
}

static ph_order_tally tally(int64_t since, size_t max)
{
    ph_order_tally t;
    ph_err err = {0};
    cr_assert_eq(ph_store_order_tally(g_s, since, max, &t, &err), PH_OK, "tally: %s", err.msg);
    return t;
}

Test(tally, empty_store_counts_nothing)
{
    start();
    ph_order_tally t = tally(NOW, 100);
    cr_assert_eq(t.orders, 0);
    cr_assert_eq(t.nskus, 0);
    cr_assert_eq(t.complete, 1);
    cr_assert_eq(t.counted_from, NOW);
    cr_assert_eq(t.last_event, last_event(), "the catalog's events");
    ph_order_tally_clear(&t);
}

Test(tally, counts_by_state_and_sku_from_since_on)
{
    start();
    create_at("old", IQ, 1, NULL, NOW - 1); /* before since: not counted */
    create_at("f1", IQ, 3, NULL, NOW);      /* failed, at since: counted */
    uint64_t p = create_at("p1", TOPUP, 1, "sup", NOW + 10);
    uint64_t u = create_at("u1", TOPUP, 1, "sup", NOW + 20);
    uint64_t ok = create_at("s1", TOPUP, 1, "sup", NOW + 30);
    create_at("p2", IQ, 2, "sup", NOW + 40);
    attempt_to(u, PH_ATTEMPT_UNKNOWN, NOW + 50);
    attempt_to(ok, PH_ATTEMPT_SUCCEEDED, NOW + 60);
    (void)p;

    ph_order_tally t = tally(NOW, 100);
    cr_assert_eq(t.orders, 5);
    cr_assert_eq(t.by_state[PH_ORDER_FAILED], 1);
    cr_assert_eq(t.by_state[PH_ORDER_PROCESSING], 2);
    cr_assert_eq(t.by_state[PH_ORDER_UNKNOWN], 1);
    cr_assert_eq(t.by_state[PH_ORDER_SUCCEEDED], 1);
    cr_assert_eq(t.complete, 1);
    cr_assert_eq(t.counted_from, NOW);
    cr_assert_eq(t.last_event, last_event());
    /* sorted by SKU: iqiyi.gold.1m, phone.topup.30 */
    cr_assert_eq(t.nskus, 2);
    cr_assert_str_eq(t.skus[0].sku, IQ);
    cr_assert_eq(t.skus[0].orders, 2);
    cr_assert_eq(t.skus[0].quantity, 5, "3 + 2, the order before since left out");
    cr_assert_eq(t.skus[0].by_state[PH_ORDER_FAILED], 1);
    cr_assert_eq(t.skus[0].by_state[PH_ORDER_PROCESSING], 1);
    cr_assert_str_eq(t.skus[1].sku, TOPUP);
    cr_assert_eq(t.skus[1].orders, 3);
    cr_assert_eq(t.skus[1].quantity, 3);
    cr_assert_eq(t.skus[1].by_state[PH_ORDER_UNKNOWN], 1);
    cr_assert_eq(t.skus[1].by_state[PH_ORDER_SUCCEEDED], 1);
    ph_order_tally_clear(&t);

    /* one millisecond later the failed order at NOW drops out */
    t = tally(NOW + 1, 100);
    cr_assert_eq(t.orders, 4);
    cr_assert_eq(t.by_state[PH_ORDER_FAILED], 0);
    ph_order_tally_clear(&t);
}

/* created_at is the submitter's clock, so an order can be older than the one
 * before it: the walk must not stop at the first order before since. */
Test(tally, an_order_after_an_older_one_is_still_counted)
{
    start();
    create_at("ancient", IQ, 1, NULL, NOW - 3600000); /* ends the walk */
    create_at("a", IQ, 1, NULL, NOW + 5);             /* counted */
    create_at("b", IQ, 1, NULL, NOW - 10);            /* a later id, an earlier time */
    create_at("c", IQ, 1, NULL, NOW - 30000);
    ph_order_tally t = tally(NOW, 100);
    cr_assert_eq(t.orders, 1, "order a, behind two orders older than since");
    cr_assert_eq(t.complete, 1);
    ph_order_tally_clear(&t);
}

Test(tally, stops_at_max_orders_and_says_so)
{
    start();
    for (int i = 0; i < 5; i++) {
        char coid[16];
        snprintf(coid, sizeof coid, "o%d", i);
        create_at(coid, IQ, 1, NULL, NOW + 100 * i);
    }
    ph_order_tally t = tally(NOW, 3);
    cr_assert_eq(t.orders, 3, "the newest three");
    cr_assert_eq(t.complete, 0);
    cr_assert_eq(t.counted_from, NOW + 200, "the oldest of those counted");
    ph_order_tally_clear(&t);
    t = tally(NOW, 5);
    cr_assert_eq(t.orders, 5);
    cr_assert_eq(t.complete, 1);
    ph_order_tally_clear(&t);
}

Test(tally, counts_survive_a_restart)
{
    start();
    create_at("x", IQ, 4, NULL, NOW);
    reopen();
    ph_order_tally t = tally(NOW, 100);
    cr_assert_eq(t.orders, 1);
    cr_assert_eq(t.skus[0].quantity, 4);
    ph_order_tally_clear(&t);
    assert_check();
}
