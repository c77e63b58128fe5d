/*
 * The late re-query schedule with entries fulfil cannot finish (supply/
 * late_defer.h): a refused or unanswered entry waits out a backoff behind
 * the others, so 32 of them at the head of `late` (a whole round) never
 * starve a healthy entry behind them. The real store holds the schedule
 * (store_fixture.h); the test plays fulfil's rounds with explicit times.
 */
#include "store_fixture.h"

#include "config/config.h"
#include "supply/late_defer.h"

#define ACCOUNT_SEALED "sealed-account"
#define ROUND          32 /* fulfil's LATE_BATCH */
#define DUE            (NOW + 1000)

TestSuite(late_defer, .init = fixture_setup, .fini = fixture_teardown);

/* A recharge order whose attempt 1 failed as not found, to be queried once
 * more at due (the `late` schedule). */
static uint64_t late_order(int k, int64_t due)
{
    char coid[32];
    snprintf(coid, sizeof coid, "late-%d", k);
    ph_cmd c = {.type = PH_CMD_SUPPLY_CREATE, .now = NOW};
    c.in.supply.client = "mall";
    c.in.supply.client_order_id = coid;
    c.in.supply.sku = TOPUP;
    c.in.supply.quantity = 1;
    fingerprint(coid, 1, c.in.supply.fingerprint);
    c.in.supply.delivery = PH_DELIVERY_RECHARGE;
    c.in.supply.account_sealed = (const uint8_t *)ACCOUNT_SEALED;
    c.in.supply.account_sealed_len = (uint32_t)strlen(ACCOUNT_SEALED);
    c.in.supply.account_masked = "138****0001";
    c.in.supply.first = (ph_attempt_target){"gw", "P-100", 4940};
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    uint64_t id = c.order->id;
    ph_cmd_clear(&c);
    ph_cmd a = {.type = PH_CMD_ATTEMPT, .now = NOW + 10};
    a.in.attempt.order_id = id;
    a.in.attempt.no = 1;
    a.in.attempt.state = PH_ATTEMPT_FAILED;
    a.in.attempt.step = -1;
    a.in.attempt.charged = -1;
    a.in.attempt.next_check_at = -1;
    a.in.attempt.reason = "not_found";
    a.in.attempt.late_check_at = due;
    cr_assert_eq(ph_store_exec(g_s, &a), PH_OK, "%s", a.err.msg);
    ph_cmd_clear(&a);
    return id;
}

static void setup_store(void)
{
    g_s = open_at(g_dir, 0);
    const char *const all[] = {P_TOPUP};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 1, &err), PH_OK, "%s", err.msg);
}

static int picked(const ph_late_check *v, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].order_id == id)
            return 1;
    return 0;
}

Test(late_defer, stuck_entries_at_the_head_do_not_starve_the_one_behind)
{
    setup_store();
    /* 40 entries the store refuses (say), due first; a healthy one behind them */
    uint64_t stuck[40];
    for (int k = 0; k < 40; k++)
        stuck[k] = late_order(k, DUE);
    uint64_t healthy = late_order(99, DUE + 1);

    ph_late_defer d;
    ph_late_defer_init(&d, 0);
    ph_late_check v[ROUND];
    int64_t next, now = DUE + 10;
    /* without the table every round is the same 32 stuck entries */
    size_t n = ph_store_late_due(g_s, now, v, ROUND, &next);
    cr_assert_eq(n, ROUND);
    cr_assert(!picked(v, n, healthy));

    /* round 1: the 32 at the head, every one of them fails */
    n = ph_late_defer_pick(&d, g_s, now, v, ROUND, &next);
    cr_assert_eq(n, ROUND);
    cr_assert_eq(v[0].order_id, stuck[0]);
    cr_assert(!picked(v, n, healthy));
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ph_late_defer_failed(&d, &v[i], now), 1);
    /* round 2, at once: the rest of the schedule, the healthy one with them */
    now += 1000;
    n = ph_late_defer_pick(&d, g_s, now, v, ROUND, &next);
    cr_assert_eq(n, 9, "8 stuck and the healthy one, got %zu", n);
    cr_assert(picked(v, n, healthy), "the healthy entry is re-queried in round 2");
    cr_assert(!picked(v, n, stuck[0]));
    /* the healthy one's word is stored (its entry removed); the others fail again */
    for (size_t i = 0; i < n; i++)
        if (v[i].order_id == healthy) {
            ph_cmd w = {.type = PH_CMD_FINAL_WORD, .now = now};
            w.in.word.order_id = healthy;
            w.in.word.no = 1;
            w.in.word.source = PH_DISCREP_QUERY;
            w.in.word.state = PH_ATTEMPT_FAILED;
            w.in.word.charged = -1;
            w.in.word.delivered = -1;
            w.in.word.late_due = v[i].due;
            cr_assert_eq(ph_store_exec(g_s, &w), PH_OK, "%s", w.err.msg);
            ph_cmd_clear(&w);
            ph_late_defer_done(&d, &v[i]);
        } else {
            ph_late_defer_failed(&d, &v[i], now);
        }
    cr_assert_null(ph_late_defer_find(&d, &(ph_late_check){healthy, 1, DUE + 1}));
    cr_assert_eq(d.n, 40);

    /* nothing to do until the first backoff ends: *next says when */
    n = ph_late_defer_pick(&d, g_s, now, v, ROUND, &next);
    cr_assert_eq(n, 0);
    cr_assert_eq(next, DUE + 10 + PH_LATE_DEFER_BASE_MS);
    /* then the first round's entries come back, and only they */
    n = ph_late_defer_pick(&d, g_s, next, v, ROUND, &next);
    cr_assert_eq(n, ROUND);
    cr_assert_eq(v[0].order_id, stuck[0]);
    cr_assert_eq(v[ROUND - 1].order_id, stuck[ROUND - 1]);
    ph_late_defer_free(&d);
}

Test(late_defer, the_backoff_doubles_up_to_its_cap)
{
    ph_late_defer d;
    ph_late_defer_init(&d, 0);
    ph_late_check lc = {7, 1, DUE};
    int64_t want = PH_LATE_DEFER_BASE_MS;
    for (int k = 0; k < 12; k++) {
        cr_assert_eq(ph_late_defer_failed(&d, &lc, NOW), 1);
        const ph_late_deferred *e = ph_late_defer_find(&d, &lc);
        cr_assert_not_null(e);
        cr_assert_eq(e->retry_at - NOW, want, "failure %d: %lld", k + 1,
                     (long long)(e->retry_at - NOW));
        want = want * 2 > PH_LATE_DEFER_CAP_MS ? PH_LATE_DEFER_CAP_MS : want * 2;
    }
    cr_assert_eq(d.n, 1);
    /* another due time of the same attempt is another entry */
    ph_late_check other = {7, 1, DUE + 5};
    cr_assert_null(ph_late_defer_find(&d, &other));
    ph_late_defer_free(&d);
}

Test(late_defer, the_table_is_bounded)
{
    ph_late_defer d;
    ph_late_defer_init(&d, 4);
    for (uint64_t id = 1; id <= 4; id++) /* retry times: 10 + 60 s, 20 + 60 s, ... */
        ph_late_defer_failed(&d, &(ph_late_check){id, 1, DUE}, NOW + (int64_t)id * 10);
    ph_late_defer_failed(&d, &(ph_late_check){5, 1, DUE}, NOW + 50);
    cr_assert_eq(d.n, 4);
    /* the one due back soonest is forgotten (it will be tried at once) */
    cr_assert_null(ph_late_defer_find(&d, &(ph_late_check){1, 1, DUE}));
    for (uint64_t id = 2; id <= 5; id++)
        cr_assert_not_null(ph_late_defer_find(&d, &(ph_late_check){id, 1, DUE}));
    ph_late_defer_free(&d);
}
