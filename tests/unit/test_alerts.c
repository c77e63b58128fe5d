/*
 * The alert discipline (store.h, ph_alert_next): fire once on crossing below,
 * stay quiet while the value hovers under threshold + margin, re-arm at it;
 * the default margin; the issuable predicate with min_validity_days.
 */
#include <criterion/criterion.h>

#include "store/store.h"

/* Feeds values through the state machine; returns fire and re-arm counts. */
static void run(const int64_t *v, size_t n, int64_t below, int64_t margin, int *fires, int *rearms)
{
    int fired = 0;
    *fires = *rearms = 0;
    for (size_t i = 0; i < n; i++) {
        int step = ph_alert_next(fired, v[i], below, margin);
        if (step == PH_ALERT_FIRE) {
            cr_assert(!fired, "fired twice without a re-arm at value %lld", (long long)v[i]);
            fired = 1;
            (*fires)++;
        } else if (step == PH_ALERT_REARM) {
            cr_assert(fired);
            fired = 0;
            (*rearms)++;
        }
    }
}

Test(alerts, fires_once_and_stays_quiet_while_hovering)
{
    const int64_t v[] = {10, 6, 5, 4, 5, 4, 6, 4, 3, 6, 5};
    int f, r;
    run(v, sizeof v / sizeof *v, 5, 2, &f, &r);
    cr_assert_eq(f, 1);
    cr_assert_eq(r, 0);
}

Test(alerts, rearms_at_threshold_plus_margin_then_fires_again)
{
    const int64_t v[] = {4, 6, 7, 6, 5, 4, 9, 0};
    int f, r;
    run(v, sizeof v / sizeof *v, 5, 2, &f, &r);
    cr_assert_eq(f, 3, "4 fires, 7 re-arms, 4 fires, 9 re-arms, 0 fires");
    cr_assert_eq(r, 2);
}

Test(alerts, edges)
{
    cr_assert_eq(ph_alert_next(0, 5, 5, 1), PH_ALERT_KEEP, "at below: not below");
    cr_assert_eq(ph_alert_next(0, 4, 5, 1), PH_ALERT_FIRE);
    cr_assert_eq(ph_alert_next(1, 5, 5, 1), PH_ALERT_KEEP, "below + margin - 1");
    cr_assert_eq(ph_alert_next(1, 6, 5, 1), PH_ALERT_REARM);
    cr_assert_eq(ph_alert_next(1, 6, 5, 0), PH_ALERT_REARM, "a margin under 1 counts as 1");
    cr_assert_eq(ph_alert_next(0, 0, 1, 2), PH_ALERT_FIRE, "stock.out: below 1 is zero");
    cr_assert_eq(ph_alert_next(1, 1, 1, 2), PH_ALERT_KEEP);
    cr_assert_eq(ph_alert_next(1, 3, 1, 2), PH_ALERT_REARM);
}

Test(alerts, default_margin)
{
    cr_assert_eq(ph_alert_default_margin(1), 1);
    cr_assert_eq(ph_alert_default_margin(19), 1);
    cr_assert_eq(ph_alert_default_margin(100), 10);
    cr_assert_eq(ph_alert_default_margin(50000), 5000);
}

Test(alerts, retire_due_with_min_validity)
{
    int64_t day = ph_min_validity_ms(1);
    cr_assert_eq(day, 86400000);
    cr_assert_eq(ph_code_retire_due(0, day, 1000), 0, "never expires");
    cr_assert_eq(ph_code_retire_due(2000, 0, 1999), 0);
    cr_assert_eq(ph_code_retire_due(2000, 0, 2000), 1, "at its expiry");
    cr_assert_eq(ph_code_retire_due(day + 5000, day, 4999), 0);
    cr_assert_eq(ph_code_retire_due(day + 5000, day, 5000), 1, "a day before its expiry");
    cr_assert_eq(ph_alert_kind_name(PH_ALERT_BALANCE_LOW)[0], 's');
    cr_assert_eq(ph_alert_state_parse("acknowledged"), PH_ALERT_ACKED);
    cr_assert_eq(ph_alert_state_parse("nope"), 0);
}
