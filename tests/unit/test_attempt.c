/*
 * test_attempt.c — the money-safety decision table of core/supply/attempt.h: one test
 * per row, so breaking rule 2 (never resend, never fail over after the supplier
 * may have acted) fails a named test.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "supply/attempt.h"
#include "store/store.h"

#define NOW 1000000

static ph_attempt_ctx order_ctx(int card)
{
    return (ph_attempt_ctx){.is_order = 1,
                            .card = card,
                            .quantity = 2,
                            .state = PH_ATTEMPT_SENDING,
                            .created_at = NOW - 10,
                            .window_ms = 60000,
                            .query_delay_ms = 500,
                            .query_max_ms = 8000};
}

static ph_attempt_ctx query_ctx(int state, int64_t age)
{
    ph_attempt_ctx a = order_ctx(1);
    a.is_order = 0;
    a.state = state;
    a.created_at = NOW - age;
    return a;
}

static ph_attempt_move decide(const ph_attempt_ctx *a, int outcome, int parsed, int state,
                              size_t ncodes)
{
    static struct perkhub_code codes[4];
    struct perkhub_result res = {.state = state, .codes = ncodes ? codes : NULL, .ncodes = ncodes};
    ph_exchange x = {outcome, parsed, &res, "detail"};
    ph_attempt_move m;
    ph_attempt_decide(a, &x, NOW, &m);
    return m;
}

Test(attempt, order_success_with_all_codes_succeeds_and_takes_them)
{
    ph_attempt_ctx a = order_ctx(1);
    ph_attempt_move m = decide(&a, PERKHUB_OK, 1, PERKHUB_STATE_SUCCEEDED, 2);
    cr_expect_eq(m.state, PH_ATTEMPT_SUCCEEDED);
    cr_expect_eq(m.take_codes, 1);
    cr_expect_eq(m.failover, 0);
    cr_expect_eq(m.next_check_at, 0);
}

Test(attempt, order_success_with_missing_codes_is_unknown_not_failed)
{
    ph_attempt_ctx a = order_ctx(1);
    ph_attempt_move m = decide(&a, PERKHUB_OK, 1, PERKHUB_STATE_SUCCEEDED, 1);
    cr_expect_eq(m.state, PH_ATTEMPT_UNKNOWN);
    cr_expect_eq(m.failover, 0, "the supplier may have charged: never fail over");
    cr_expect_gt(m.next_check_at, NOW);
}

Test(attempt, recharge_success_needs_no_codes)
{
    ph_attempt_ctx a = order_ctx(0);
    ph_attempt_move m = decide(&a, PERKHUB_OK, 1, PERKHUB_STATE_SUCCEEDED, 0);
    cr_expect_eq(m.state, PH_ATTEMPT_SUCCEEDED);
    cr_expect_eq(m.take_codes, 0);
}

Test(attempt, order_processing_is_queried_after_the_first_delay)
{
    ph_attempt_ctx a = order_ctx(0);
    ph_attempt_move m = decide(&a, PERKHUB_OK, 1, PERKHUB_STATE_PROCESSING, 0);
    cr_expect_eq(m.state, PH_ATTEMPT_PROCESSING);
    cr_expect_eq(m.next_check_at, NOW + 500);
    cr_expect_eq(m.follow_step, 0);
}

Test(attempt, order_processing_with_next_step_follows_it)
{
    ph_attempt_ctx a = order_ctx(1);
    struct perkhub_result res = {
        .state = PERKHUB_STATE_PROCESSING, .next = 1, .next_delay_ms = 200};
    ph_exchange x = {PERKHUB_OK, 1, &res, ""};
    ph_attempt_move m;
    ph_attempt_decide(&a, &x, NOW, &m);
    cr_expect_eq(m.state, PH_ATTEMPT_PROCESSING);
    cr_expect_eq(m.follow_step, 1);
    cr_expect_eq(m.next_check_at, NOW + 200);
}

Test(attempt, definite_failure_fails_over_with_the_suppliers_reason)
{
    ph_attempt_ctx a = order_ctx(0);
    struct perkhub_result res = {.reason = "invalid_account"};
    ph_exchange x = {PERKHUB_DEFINITE_FAILURE, 1, &res, "http 200"};
    ph_attempt_move m;
    ph_attempt_decide(&a, &x, NOW, &m);
    cr_expect_eq(m.state, PH_ATTEMPT_FAILED);
    cr_expect_eq(m.failover, 1);
    cr_expect_str_eq(m.reason, "invalid_account");
}

Test(attempt, not_sent_fails_over_with_the_engines_detail)
{
    ph_attempt_ctx a = order_ctx(0);
    ph_exchange x = {PERKHUB_DEFINITE_FAILURE, 0, NULL, "connect refused"};
    ph_attempt_move m;
    ph_attempt_decide(&a, &x, NOW, &m);
    cr_expect_eq(m.state, PH_ATTEMPT_FAILED);
    cr_expect_eq(m.failover, 1);
    cr_expect_str_eq(m.reason, "connect refused");
}

Test(attempt, retryable_refusal_fails_over)
{
    ph_attempt_ctx a = order_ctx(1);
    ph_attempt_move m = decide(&a, PERKHUB_RETRYABLE, 1, PERKHUB_STATE_NONE, 0);
    cr_expect_eq(m.state, PH_ATTEMPT_FAILED);
    cr_expect_eq(m.failover, 1);
}

Test(attempt, ambiguous_order_is_unknown_never_failed_over)
{
    ph_attempt_ctx a = order_ctx(0);
    ph_exchange x = {PERKHUB_AMBIGUOUS, 0, NULL, "timeout after sending (10000 ms)"};
    ph_attempt_move m;
    ph_attempt_decide(&a, &x, NOW, &m);
    cr_expect_eq(m.state, PH_ATTEMPT_UNKNOWN);
    cr_expect_eq(m.failover, 0);
    cr_expect_str_eq(m.reason, "timeout after sending (10000 ms)");
    cr_expect_eq(m.next_check_at, NOW + 500, "a scheduled resolution");
}

Test(attempt, query_success_settles_unknown)
{
    ph_attempt_ctx a = query_ctx(PH_ATTEMPT_UNKNOWN, 1000);
    ph_attempt_move m = decide(&a, PERKHUB_OK, 1, PERKHUB_STATE_SUCCEEDED, 2);
    cr_expect_eq(m.state, PH_ATTEMPT_SUCCEEDED);
    cr_expect_eq(m.take_codes, 1);
    cr_expect_eq(m.count_check, 1);
}

Test(attempt, query_failed_fails_without_failover)
{
    ph_attempt_ctx a = query_ctx(PH_ATTEMPT_UNKNOWN, 1000);
    ph_attempt_move m = decide(&a, PERKHUB_OK, 1, PERKHUB_STATE_FAILED, 0);
    cr_expect_eq(m.state, PH_ATTEMPT_FAILED);
    cr_expect_eq(m.failover, 0);
}

Test(attempt, query_not_found_inside_the_window_keeps_waiting)
{
    ph_attempt_ctx a = query_ctx(PH_ATTEMPT_UNKNOWN, 59000);
    ph_attempt_move m = decide(&a, PERKHUB_OK, 1, PERKHUB_STATE_NOT_FOUND, 0);
    cr_expect_eq(m.state, PH_ATTEMPT_UNKNOWN);
    cr_expect_gt(m.next_check_at, NOW);
}

Test(attempt, query_not_found_after_the_window_fails)
{
    ph_attempt_ctx a = query_ctx(PH_ATTEMPT_UNKNOWN, 61000);
    ph_attempt_move m = decide(&a, PERKHUB_OK, 1, PERKHUB_STATE_NOT_FOUND, 0);
    cr_expect_eq(m.state, PH_ATTEMPT_FAILED);
    cr_expect_str_eq(m.reason, "not_found_at_supplier");
    cr_expect_eq(m.failover, 0);
}

Test(attempt, query_processing_moves_unknown_to_processing)
{
    ph_attempt_ctx a = query_ctx(PH_ATTEMPT_UNKNOWN, 10);
    ph_attempt_move m = decide(&a, PERKHUB_OK, 1, PERKHUB_STATE_PROCESSING, 0);
    cr_expect_eq(m.state, PH_ATTEMPT_PROCESSING);
}

Test(attempt, a_failed_query_changes_nothing_and_backs_off)
{
    ph_attempt_ctx a = query_ctx(PH_ATTEMPT_UNKNOWN, 10);
    a.checks = 3;
    ph_attempt_move m = decide(&a, PERKHUB_AMBIGUOUS, 0, PERKHUB_STATE_NONE, 0);
    cr_expect_eq(m.state, PH_ATTEMPT_UNKNOWN);
    cr_expect_eq(m.next_check_at, NOW + 8000, "500 doubled 4 times, capped at 8000");
}

Test(attempt, sending_after_restart_is_never_reported_as_sending)
{
    ph_attempt_ctx a = query_ctx(PH_ATTEMPT_SENDING, 10);
    ph_attempt_move m = decide(&a, PERKHUB_AMBIGUOUS, 0, PERKHUB_STATE_NONE, 0);
    cr_expect_eq(m.state, PH_ATTEMPT_UNKNOWN);
}

Test(attempt, backoff_doubles_up_to_the_ceiling)
{
    ph_attempt_ctx a = order_ctx(0);
    cr_expect_eq(ph_attempt_backoff(&a, 0, NOW), 500);
    cr_expect_eq(ph_attempt_backoff(&a, 1, NOW), 1000);
    cr_expect_eq(ph_attempt_backoff(&a, 3, NOW), 4000);
    cr_expect_eq(ph_attempt_backoff(&a, 60, NOW), 8000);
}

/* Issue 11, found 3: a stuck attempt is queried for ever but ever more
 * slowly. With stuck_after 60 s, a young ceiling of 8 s and a stuck ceiling
 * of 1 h: before 60 s nothing changes; after, each delay is the time since it
 * became stuck (so queries land 8, 16, 32, ... s after that moment), never
 * below the young ceiling, and settles at exactly 1 h. */
Test(attempt, stuck_backoff_doubles_from_the_young_ceiling_to_the_stuck_one)
{
    ph_attempt_ctx a = query_ctx(PH_ATTEMPT_UNKNOWN, 0);
    a.created_at = 0;
    a.stuck_after_ms = 60000;
    a.stuck_max_ms = 3600000;
    cr_expect_eq(ph_attempt_backoff(&a, 40, 59999), 8000, "not stuck yet: as before");
    cr_expect_eq(ph_attempt_backoff(&a, 40, 60000), 8000, "just stuck: never faster");
    /* follow the schedule the delays make, from the first query after stuck */
    int64_t t = 60000, prev = 0;
    int steps = 0;
    while (steps++ < 100) {
        int64_t d = ph_attempt_backoff(&a, 100, t);
        cr_assert_geq(d, 8000, "never below the young ceiling (t=%lld)", (long long)t);
        cr_assert_leq(d, 3600000, "never above the stuck ceiling (t=%lld)", (long long)t);
        cr_assert_geq(d, prev, "the delay never shrinks (t=%lld)", (long long)t);
        if (d == prev && d == 3600000)
            break;
        if (prev > 8000 && d < 3600000) /* 8, 8 (at stuck + 8 s), then 16, 32, ... */
            cr_expect_eq(d, 2 * prev, "doubles (t=%lld)", (long long)t);
        prev = d;
        t += d;
    }
    cr_expect_eq(prev, 3600000, "the ceiling is reached");
    cr_expect_leq(steps, 12, "in a handful of queries, not hundreds: %d", steps);
    cr_expect_eq(ph_attempt_backoff(&a, 5000, 86400000LL * 30), 3600000, "and stays");
}

Test(attempt, stuck_backoff_never_goes_below_the_young_ceiling)
{
    ph_attempt_ctx a = query_ctx(PH_ATTEMPT_UNKNOWN, 0);
    a.created_at = 0;
    a.stuck_after_ms = 1000;
    a.stuck_max_ms = 2000; /* below query_max (8 s): the young ceiling wins */
    cr_expect_eq(ph_attempt_backoff(&a, 10, 500000), 8000);
    a.stuck_after_ms = 0; /* never stuck */
    cr_expect_eq(ph_attempt_backoff(&a, 10, 500000000), 8000);
    cr_expect_eq(ph_attempt_overdue(&a, 500000000), 0);
}

Test(attempt, an_open_overdue_attempt_asks_to_be_marked_stuck)
{
    ph_attempt_ctx a = query_ctx(PH_ATTEMPT_UNKNOWN, 1000);
    a.stuck_after_ms = 1000;
    ph_attempt_move m = decide(&a, PERKHUB_AMBIGUOUS, 0, PERKHUB_STATE_NONE, 0);
    cr_expect_eq(m.state, PH_ATTEMPT_UNKNOWN);
    cr_expect_eq(m.mark_stuck, 1, "no answer at all still escalates");
    m = decide(&a, PERKHUB_OK, 1, PERKHUB_STATE_PROCESSING, 0);
    cr_expect_eq(m.mark_stuck, 1);
    m = decide(&a, PERKHUB_OK, 1, PERKHUB_STATE_FAILED, 0);
    cr_expect_eq(m.mark_stuck, 0, "a final answer is not stuck");
    a.stuck_after_ms = 1001;
    m = decide(&a, PERKHUB_AMBIGUOUS, 0, PERKHUB_STATE_NONE, 0);
    cr_expect_eq(m.mark_stuck, 0, "not yet");
}

/* Issue 11, found 4: an answer the plugin parsed without a reason of its own is
 * stored with a word, never the engine's "http 200". */
Test(attempt, query_failed_without_a_reason_reads_supplier_failed)
{
    ph_attempt_ctx a = query_ctx(PH_ATTEMPT_UNKNOWN, 1000);
    struct perkhub_result res = {.state = PERKHUB_STATE_FAILED};
    ph_exchange x = {PERKHUB_OK, 1, &res, "http 200"};
    ph_attempt_move m;
    ph_attempt_decide(&a, &x, NOW, &m);
    cr_expect_eq(m.state, PH_ATTEMPT_FAILED);
    cr_expect_str_eq(m.reason, "supplier_failed");

    res.reason = "";
    ph_attempt_decide(&a, &x, NOW, &m);
    cr_expect_str_eq(m.reason, "supplier_failed", "an empty reason is none");

    res.reason = "card_voided";
    ph_attempt_decide(&a, &x, NOW, &m);
    cr_expect_str_eq(m.reason, "card_voided", "the plugin's own reason stands");
}

Test(attempt, order_refused_without_a_reason_reads_supplier_failed)
{
    ph_attempt_ctx a = order_ctx(0);
    struct perkhub_result res = {0};
    ph_exchange x = {PERKHUB_DEFINITE_FAILURE, 1, &res, "http 400"};
    ph_attempt_move m;
    ph_attempt_decide(&a, &x, NOW, &m);
    cr_expect_eq(m.state, PH_ATTEMPT_FAILED);
    cr_expect_eq(m.failover, 1);
    cr_expect_str_eq(m.reason, "supplier_failed");
}

Test(attempt, unclear_parsed_query_keeps_a_word_not_the_status)
{
    ph_attempt_ctx a = query_ctx(PH_ATTEMPT_UNKNOWN, 1000);
    struct perkhub_result res = {0};
    ph_exchange x = {PERKHUB_AMBIGUOUS, 1, &res, "http 200"};
    ph_attempt_move m;
    ph_attempt_decide(&a, &x, NOW, &m);
    cr_expect_eq(m.state, PH_ATTEMPT_UNKNOWN);
    cr_expect_str_eq(m.reason, "query_failed");
}
