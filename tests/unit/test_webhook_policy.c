/*
 * test_webhook_policy.c — the pure decisions of webhook delivery
 * (core/notify/wh_policy.h): the Standard Webhooks signature against the
 * specification's reference vector, the backoff's bounds, an attempt's
 * outcome, the per-order gate and the event patterns.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "notify/wh_policy.h"

/* The Standard Webhooks reference vector (the specification's and every
 * reference library's test): proves interoperability, which a round trip
 * through our own verifier could not. */
Test(webhook_policy, signature_matches_the_standard_webhooks_vector)
{
    uint8_t key[PH_WH_KEY_MAX];
    size_t klen = 0;
    ph_err err = {0};
    cr_assert_eq(ph_wh_secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", key, &klen, &err),
                 PH_OK, "%s", err.msg);
    cr_assert_eq(klen, 24);
    const char *body = "{\"test\": 2432232314}";
    char sig[PH_WH_SIG_MAX];
    cr_assert_eq(
        ph_wh_sign(key, klen, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, strlen(body), sig),
        PH_OK);
    cr_assert_str_eq(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /* a signer made once signs each message as the one-shot does, again and again */
    ph_wh_signer *s = ph_wh_signer_new(key, klen);
    cr_assert(s);
    char other[PH_WH_SIG_MAX], again[PH_WH_SIG_MAX];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(ph_wh_sign_with(s, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                                     strlen(body), again),
                     PH_OK);
        cr_assert_str_eq(again, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        cr_assert_eq(ph_wh_sign_with(s, "wh_x_1", 7, "", 0, again), PH_OK);
        cr_assert_eq(ph_wh_sign(key, klen, "wh_x_1", 7, "", 0, other), PH_OK);
        cr_assert_str_eq(again, other);
    }
    ph_wh_signer_free(s);
}

Test(webhook_policy, secret_without_prefix_is_raw_bytes_and_bad_base64_is_refused)
{
    uint8_t key[PH_WH_KEY_MAX];
    size_t klen = 0;
    ph_err err = {0};
    cr_assert_eq(ph_wh_secret_key("plain-text-key", key, &klen, &err), PH_OK);
    cr_assert_eq(klen, strlen("plain-text-key"));
    cr_assert_eq(memcmp(key, "plain-text-key", klen), 0);
    cr_assert_eq(ph_wh_secret_key("whsec_not*base64!", key, &klen, &err), PH_EINVAL);
    cr_assert_null(strstr(err.msg, "not*base64"), "the message quotes the secret: %s", err.msg);
    cr_assert_eq(ph_wh_secret_key("", key, &klen, &err), PH_EINVAL);
    cr_assert_eq(ph_wh_secret_key("whsec_", key, &klen, &err), PH_EINVAL);
}

Test(webhook_policy, backoff_doubles_within_half_to_full_and_is_stable_per_id)
{
    const int64_t base = 1000, max = 3600000;
    for (uint32_t a = 1; a <= 30; a++) {
        int64_t full = base;
        for (uint32_t i = 1; i < a && full < max; i++)
            full = full * 2 > max ? max : full * 2;
        for (int k = 0; k < 20; k++) {
            char id[32];
            snprintf(id, sizeof id, "ep.%d", k);
            int64_t d = ph_wh_backoff_ms(id, a, base, max);
            cr_assert(d >= full / 2 && d <= full, "attempt %u id %s: %lld not in [%lld, %lld]", a,
                      id, (long long)d, (long long)full / 2, (long long)full);
            cr_assert_eq(d, ph_wh_backoff_ms(id, a, base, max), "not stable");
        }
    }
    /* the jitter spreads: different ids do not all wait the same */
    int differ = 0;
    for (int k = 1; k < 20; k++) {
        char a[16], b[16];
        snprintf(a, sizeof a, "x.%d", k);
        snprintf(b, sizeof b, "x.%d", k - 1);
        differ |= ph_wh_backoff_ms(a, 5, base, max) != ph_wh_backoff_ms(b, 5, base, max);
    }
    cr_assert(differ);
}

Test(webhook_policy, outcome_of_an_attempt)
{
    int64_t next = -1;
    cr_assert_eq(ph_wh_outcome(200, 1000, 0, 500, 10000, &next), PH_WH_DELIVERED);
    cr_assert_eq(next, 0);
    cr_assert_eq(ph_wh_outcome(204, 1000, 0, 500, 10000, &next), PH_WH_DELIVERED);
    cr_assert_eq(ph_wh_outcome(410, 1000, 0, 500, 10000, &next), PH_WH_GONE);
    cr_assert_eq(ph_wh_outcome(500, 1000, 0, 500, 10000, &next), PH_WH_RETRY);
    cr_assert_eq(next, 1500);
    cr_assert_eq(ph_wh_outcome(0, 1000, 0, 500, 10000, &next), PH_WH_RETRY, "a timeout retries");
    cr_assert_eq(ph_wh_outcome(404, 1000, 0, 500, 10000, &next), PH_WH_RETRY);
    cr_assert_eq(ph_wh_outcome(301, 1000, 0, 500, 10000, &next), PH_WH_RETRY);
    /* the next try would fall after created + retry_for: dead-lettered now */
    cr_assert_eq(ph_wh_outcome(503, 9600, 0, 500, 10000, &next), PH_WH_DEAD);
    cr_assert_eq(next, 0);
    cr_assert_eq(ph_wh_outcome(503, 9500, 0, 500, 10000, &next), PH_WH_RETRY);
}

Test(webhook_policy, a_delivery_waits_for_the_previous_one_of_its_order)
{
    /* (on_wire, next_at, now, prev, disabled, in_flight, max) */
    cr_assert_eq(ph_wh_may_send(0, 0, 10, PH_WH_PREV_NONE, 0, 0, 4), 1);
    cr_assert_eq(ph_wh_may_send(0, 0, 10, PH_WH_PREV_SETTLED, 0, 0, 4), 1);
    cr_assert_eq(ph_wh_may_send(0, 0, 10, PH_WH_PREV_OPEN, 0, 0, 4), 0, "previous still open");
    cr_assert_eq(ph_wh_may_send(1, 0, 10, PH_WH_PREV_NONE, 0, 0, 4), 0, "already on the wire");
    cr_assert_eq(ph_wh_may_send(0, 11, 10, PH_WH_PREV_NONE, 0, 0, 4), 0, "not due yet");
    cr_assert_eq(ph_wh_may_send(0, 10, 10, PH_WH_PREV_NONE, 0, 0, 4), 1);
    cr_assert_eq(ph_wh_may_send(0, 0, 10, PH_WH_PREV_NONE, 1, 0, 4), 0, "endpoint disabled");
    cr_assert_eq(ph_wh_may_send(0, 0, 10, PH_WH_PREV_NONE, 0, 4, 4), 0, "in-flight limit");
}

Test(webhook_policy, event_patterns)
{
    cr_assert(ph_wh_event_match("order.*", "order.succeeded"));
    cr_assert(ph_wh_event_match("order.succeeded", "order.succeeded"));
    cr_assert_not(ph_wh_event_match("order.*", "orders.x"));
    cr_assert_not(ph_wh_event_match("order.*", "order."));
    cr_assert_not(ph_wh_event_match("order.failed", "order.succeeded"));
    cr_assert(ph_wh_event_known("order.*"));
    cr_assert(ph_wh_event_known("order.failed"));
    cr_assert(ph_wh_event_known("stock.low"));
    cr_assert(ph_wh_event_known("stock.*"));
    cr_assert_not(ph_wh_event_known("order.finished"));
    cr_assert_not(ph_wh_event_known("supplier.*"), "ops events never go to a mall");
    cr_assert_not(ph_wh_event_known("*"));
    cr_assert(ph_wh_product_event("stock.out"));
    cr_assert_not(ph_wh_product_event("order.failed"));
}

/* At peak (orders flowing and this thread kept waiting for a core) deliveries
 * wait; an idle stream or a free CPU lets them go at full speed. */
Test(webhook_policy, deliveries_wait_only_while_orders_flow_and_the_cpu_is_short)
{
    const int64_t now = 1000000;
    const uint64_t wall = 250000000; /* 250 ms measured */
    /* flowing, waited 30 % of the time: busy */
    cr_assert(ph_wh_busy(now, now - 10, wall * 3 / 10, wall, 0));
    /* no event within the window, or never one: not busy, however short the CPU */
    cr_assert_not(ph_wh_busy(now, now - PH_WH_BUSY_WINDOW_MS - 1, wall, wall, 1));
    cr_assert_not(ph_wh_busy(now, 0, wall, wall, 1));
    /* flowing on a free CPU (1 % waiting), or nothing measured yet: not busy */
    cr_assert_not(ph_wh_busy(now, now, wall / 100, wall, 0));
    cr_assert_not(ph_wh_busy(now, now, 0, 0, 0));
    /* 5 %: below the tenth that makes it busy, above the fortieth that keeps it busy */
    cr_assert_not(ph_wh_busy(now, now, wall / 20, wall, 0));
    cr_assert(ph_wh_busy(now, now, wall / 20, wall, 1));
    cr_assert_not(ph_wh_busy(now, now, wall / 50, wall, 1));
}
