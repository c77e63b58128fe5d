/*
 * test_risk.c — the risk engine (core/risk/risk.h): the decision order (allow
 * list, block list, rules by priority then id, the first enforced firing rule
 * decides, dry-run recorded), windows at their edges, the fen measure, the
 * trimming's exactness against a brute-force reference over random sequences,
 * lists with expiry, related rules, release, replay with created_at, sweep,
 * rule parsing refusals naming the field, and 64 threads racing on one subject.
 *
 * Every time is an argument: no clock, no sleep.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/metrics.h"
#include "risk/risk.h"

#define HOUR 3600000LL

static ph_risk_rule vel(const char *id, int var, int64_t limit, int64_t window_s, int action)
{
    ph_risk_rule r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    r.version = 1;
    r.kind = PH_RISK_VELOCITY;
    r.var = var;
    r.scope = PH_RISK_ANY;
    r.measure = PH_RISK_ORDERS;
    r.limit = limit;
    r.window_s = window_s;
    r.action = action;
    r.enabled = 1;
    r.priority = 100;
    return r;
}

static ph_risk *engine(const ph_risk_rule *rules, size_t n)
{
    ph_risk *rk = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_risk_new(NULL, &rk, &err), PH_OK);
    cr_assert_eq(ph_risk_rules_set(rk, rules, n, &err), PH_OK, "%s", err.msg);
    return rk;
}

static ph_risk_subject subj(uint64_t user, int64_t now)
{
    ph_risk_subject s;
    memset(&s, 0, sizeof s);
    s.keys[PH_RISK_USER] = user;
    s.sku = "iqiyi.gold.1m";
    s.brand = "iqiyi";
    s.amount = 1500;
    s.now = now;
    return s;
}

static int check(ph_risk *rk, const ph_risk_subject *s, ph_risk_decision *out)
{
    ph_risk_decision d;
    ph_risk_check(rk, s, out ? out : &d);
    return (out ? out : &d)->action;
}

Test(risk, names_round_trip)
{
    for (int v = 0; v < PH_RISK_VARS; v++)
        cr_assert_eq(ph_risk_var_parse(ph_risk_var_name(v)), v);
    cr_assert_eq(ph_risk_var_parse("foo"), -1);
    cr_assert_str_eq(ph_risk_var_name(99), "?");
    for (int a = PH_RISK_ALLOW; a <= PH_RISK_DENY; a++)
        cr_assert_eq(ph_risk_action_parse(ph_risk_action_name(a)), a);
    cr_assert_eq(ph_risk_action_parse("block"), -1);
}

Test(risk, key_is_keyed_and_never_zero)
{
    uint8_t ik[PH_KEY_LEN], k[PH_KEY_LEN], ik2[PH_KEY_LEN];
    for (int i = 0; i < PH_KEY_LEN; i++) {
        ik[i] = (uint8_t)i;
        k[i] = (uint8_t)(i * 7);
        ik2[i] = (uint8_t)(i + 1);
    }
    ph_keyring *a = NULL, *b = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_keyring_from_raw(ik, 1, k, &a, &err), PH_OK);
    cr_assert_eq(ph_keyring_from_raw(ik2, 1, k, &b, &err), PH_OK);
    uint64_t k1 = ph_risk_key(a, PH_RISK_PHONE, "13800138000", 11);
    cr_assert_neq(k1, 0);
    cr_assert_eq(k1, ph_risk_key(a, PH_RISK_PHONE, "13800138000", 11), "pure");
    cr_assert_neq(k1, ph_risk_key(b, PH_RISK_PHONE, "13800138000", 11), "keyed");
    cr_assert_neq(k1, ph_risk_key(a, PH_RISK_USER, "13800138000", 11), "per variable");
    /* the definition: the first 8 bytes, little-endian, of the index hash */
    const char *msg = "eu\nphone\n13800138000";
    uint8_t h[PH_HASH_LEN];
    ph_crypto_index(a, msg, strlen(msg), h);
    uint64_t want = 0;
    for (int i = 7; i >= 0; i--)
        want = want << 8 | h[i];
    cr_assert_eq(k1, want);
    ph_keyring_free(a);
    ph_keyring_free(b);
}

/* ---- decisions ------------------------------------------------------------ */

Test(risk, no_rules_allows_and_counts_nothing)
{
    ph_risk *rk = engine(NULL, 0);
    ph_risk_subject s = subj(7, HOUR);
    ph_risk_decision d;
    cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW);
    cr_assert_str_eq(d.rule, "");
    cr_assert_eq(d.nhits, 0);
    cr_assert_eq(d.ticket, 0);
    ph_risk_free(rk);
}

Test(risk, velocity_limit_then_deny_and_denied_count_nowhere)
{
    ph_risk_rule r = vel("five", PH_RISK_USER, 5, 3600, PH_RISK_DENY);
    ph_risk *rk = engine(&r, 1);
    ph_risk_decision d;
    for (int i = 0; i < 5; i++) {
        ph_risk_subject s = subj(7, HOUR + i);
        cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW, "order %d", i);
        cr_assert_neq(d.ticket, 0);
    }
    for (int i = 0; i < 10; i++) {
        ph_risk_subject s = subj(7, HOUR + 10 + i);
        cr_assert_eq(check(rk, &s, &d), PH_RISK_DENY);
        cr_assert_str_eq(d.rule, "five");
        cr_assert_eq(d.ticket, 0, "a denied order counts nowhere");
        cr_assert_eq(d.nhits, 1);
        cr_assert_str_eq(d.hits[0].rule, "five");
        cr_assert_eq(d.hits[0].dry_run, 0);
    }
    /* another user is not concerned */
    ph_risk_subject o = subj(8, HOUR + 30);
    cr_assert_eq(check(rk, &o, NULL), PH_RISK_ALLOW);
    /* the first order leaves the window exactly one window after it: the
     * denied ones never counted, so one more goes through, then none */
    ph_risk_subject s = subj(7, HOUR + 3600000 - 1);
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_DENY, "still inside at window - 1 ms");
    s.now = HOUR + 3600000;
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_ALLOW, "the first left at exactly the window");
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_DENY);
    ph_risk_stats st;
    ph_risk_stats_get(rk, &st);
    cr_assert_eq(st.rules, 1);
    cr_assert_eq(st.by_action[PH_RISK_DENY], 12);
    cr_assert_eq(st.by_action[PH_RISK_ALLOW], 7);
    ph_risk_free(rk);
}

Test(risk, variable_not_given_is_not_counted)
{
    ph_risk_rule r = vel("dev", PH_RISK_DEVICE, 0, 60, PH_RISK_DENY);
    ph_risk *rk = engine(&r, 1);
    ph_risk_subject s = subj(7, HOUR);
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_ALLOW, "no device: the rule does not apply");
    s.keys[PH_RISK_DEVICE] = 99;
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_DENY, "limit 0 fires for every order");
    ph_risk_free(rk);
}

Test(risk, review_counts_held_orders_and_fires_on)
{
    ph_risk_rule r = vel("rev", PH_RISK_USER, 2, 60, PH_RISK_REVIEW);
    ph_risk *rk = engine(&r, 1);
    int got[5];
    for (int i = 0; i < 5; i++) {
        ph_risk_subject s = subj(1, HOUR + i * 1000);
        got[i] = check(rk, &s, NULL);
    }
    cr_assert_eq(got[0], PH_RISK_ALLOW);
    cr_assert_eq(got[1], PH_RISK_ALLOW);
    cr_assert_eq(got[2], PH_RISK_REVIEW);
    cr_assert_eq(got[3], PH_RISK_REVIEW);
    cr_assert_eq(got[4], PH_RISK_REVIEW);
    /* held orders count: 60 s after the third (held) order two are still in */
    ph_risk_subject s = subj(1, HOUR + 2000 + 60000);
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_REVIEW);
    ph_risk_free(rk);
}

Test(risk, fen_measure_sums_face_value)
{
    ph_risk_rule r = vel("money", PH_RISK_PHONE, 5000, 86400, PH_RISK_DENY);
    r.measure = PH_RISK_FEN;
    ph_risk *rk = engine(&r, 1);
    ph_risk_subject s = subj(0, HOUR);
    s.keys[PH_RISK_PHONE] = 42;
    s.amount = 3000;
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_ALLOW);
    s.amount = 2000;
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_ALLOW, "5000 is the limit, not over it");
    s.amount = 1;
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_DENY);
    s.amount = 0;
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_ALLOW, "zero fen cannot take the sum over");
    ph_risk_free(rk);
}

Test(risk, fen_trimming_keeps_what_a_small_order_needs)
{
    ph_risk_rule r = vel("money", PH_RISK_USER, 1000, 60, PH_RISK_REVIEW);
    r.measure = PH_RISK_FEN;
    ph_risk *rk = engine(&r, 1);
    ph_risk_subject s = subj(1, HOUR);
    s.amount = 500;
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_ALLOW);
    s.amount = 999;
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_REVIEW, "1499 > 1000 (held, counted)");
    /* 999 alone does not reach 1000: the 500 must stay for a 1-fen order */
    s.amount = 1;
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_REVIEW);
    ph_risk_free(rk);
}

Test(risk, scopes_sku_brand_tag)
{
    ph_risk_rule r[3] = {vel("sku", PH_RISK_USER, 0, 60, PH_RISK_DENY),
                         vel("brand", PH_RISK_USER, 0, 60, PH_RISK_REVIEW),
                         vel("tag", PH_RISK_USER, 0, 60, PH_RISK_DENY)};
    r[0].scope = PH_RISK_SKU;
    strcpy(r[0].scope_value, "tencent.video.1m");
    r[1].scope = PH_RISK_BRAND;
    strcpy(r[1].scope_value, "iqiyi");
    r[2].scope = PH_RISK_TAG;
    strcpy(r[2].scope_value, "campaign=newuser");
    ph_risk *rk = engine(r, 3);
    ph_risk_decision d;
    ph_risk_subject s = subj(1, HOUR);
    s.brand = "netease";
    cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW, "nothing in scope");
    s.brand = "iqiyi";
    cr_assert_eq(check(rk, &s, &d), PH_RISK_REVIEW);
    cr_assert_str_eq(d.rule, "brand");
    s.brand = "iqiyi2"; /* same prefix, longer: not the brand */
    cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW);
    const char *tags[] = {"dept=sales", "campaign=newuser"};
    s.tags = tags;
    s.ntags = 2;
    cr_assert_eq(check(rk, &s, &d), PH_RISK_DENY);
    cr_assert_str_eq(d.rule, "tag");
    s.ntags = 1;
    s.sku = "tencent.video.1m";
    cr_assert_eq(check(rk, &s, &d), PH_RISK_DENY);
    cr_assert_str_eq(d.rule, "sku");
    ph_risk_free(rk);
}

Test(risk, priority_then_id_and_allow_exempts)
{
    ph_risk_rule r[4] = {
        vel("b.deny", PH_RISK_USER, 0, 60, PH_RISK_DENY),
        vel("a.review", PH_RISK_USER, 0, 60, PH_RISK_REVIEW),
        vel("vip", PH_RISK_CLIENT, 0, 60, PH_RISK_ALLOW),
        vel("dry", PH_RISK_USER, 0, 60, PH_RISK_DENY),
    };
    r[2].priority = 10; /* the exemption goes first */
    r[3].priority = 5;
    r[3].dry_run = 1;
    ph_risk *rk = engine(r, 4);
    ph_risk_decision d;
    ph_risk_subject s = subj(1, HOUR);
    cr_assert_eq(check(rk, &s, &d), PH_RISK_REVIEW, "ties by id: a.review before b.deny");
    cr_assert_str_eq(d.rule, "a.review");
    cr_assert_eq(d.nhits, 2);
    cr_assert_str_eq(d.hits[0].rule, "dry");
    cr_assert_eq(d.hits[0].dry_run, 1);
    cr_assert_eq(d.hits[0].action, PH_RISK_DENY);
    cr_assert_str_eq(d.hits[1].rule, "a.review");
    s.keys[PH_RISK_CLIENT] = 5;
    cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW, "the allow rule exempts");
    cr_assert_str_eq(d.rule, "vip");
    cr_assert_eq(d.nhits, 2, "dry, then the exemption; later rules not looked at");
    cr_assert_neq(d.ticket, 0, "an exempted order still counts");
    ph_risk_stats st;
    ph_risk_stats_get(rk, &st);
    cr_assert_eq(st.dry_run_hits, 2);
    ph_risk_free(rk);
}

Test(risk, dry_run_changes_nothing_but_is_recorded_and_counts)
{
    ph_risk_rule r[2] = {vel("dry", PH_RISK_USER, 1, 60, PH_RISK_DENY),
                         vel("real", PH_RISK_USER, 3, 60, PH_RISK_DENY)};
    r[0].dry_run = 1;
    ph_metrics *m = ph_metrics_create();
    ph_risk *rk = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_risk_new(m, &rk, &err), PH_OK);
    cr_assert_eq(ph_risk_rules_set(rk, r, 2, &err), PH_OK);
    ph_risk_decision d;
    int acts[4];
    for (int i = 0; i < 4; i++) {
        ph_risk_subject s = subj(1, HOUR + i);
        acts[i] = check(rk, &s, &d);
    }
    cr_assert_eq(acts[0], PH_RISK_ALLOW);
    cr_assert_eq(acts[1], PH_RISK_ALLOW, "the dry-run rule fired and did nothing");
    cr_assert_eq(acts[2], PH_RISK_ALLOW);
    cr_assert_eq(acts[3], PH_RISK_DENY);
    cr_assert_str_eq(d.rule, "real");
    cr_assert_eq(atomic_load(&m->risk_checks), 4);
    cr_assert_eq(atomic_load(&m->risk_decisions[PH_RISK_ALLOW]), 3);
    cr_assert_eq(atomic_load(&m->risk_decisions[PH_RISK_DENY]), 1);
    cr_assert_eq(atomic_load(&m->risk_dry_run_hits), 3);
    cr_assert_eq(atomic_load(&m->risk_fail_closed), 0);
    ph_risk_free(rk);
    ph_metrics_free(m);
}

Test(risk, disabled_rules_are_not_in_force)
{
    ph_risk_rule r = vel("off", PH_RISK_USER, 0, 60, PH_RISK_DENY);
    r.enabled = 0;
    ph_risk *rk = engine(&r, 1);
    ph_risk_subject s = subj(1, HOUR);
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_ALLOW);
    cr_assert_eq(ph_risk_reach_ms(rk), 0);
    ph_risk_free(rk);
}

/* ---- lists ------------------------------------------------------------------ */

Test(risk, lists_allow_first_then_block_with_expiry)
{
    ph_risk_rule r = vel("zero", PH_RISK_USER, 0, 60, PH_RISK_REVIEW);
    ph_risk *rk = engine(&r, 1);
    ph_risk_entry e[2];
    memset(e, 0, sizeof e);
    e[0].list = PH_RISK_BLOCK;
    e[0].var = PH_RISK_DEVICE;
    e[0].key = 77;
    e[0].expires_at = HOUR + 1000;
    e[1].list = PH_RISK_ALLOWLIST;
    e[1].var = PH_RISK_PHONE;
    e[1].key = 88;
    ph_err err = {0};
    cr_assert_eq(ph_risk_list_set(rk, e, 2, &err), PH_OK);
    ph_risk_decision d;
    ph_risk_subject s = subj(1, HOUR);
    s.keys[PH_RISK_DEVICE] = 77;
    cr_assert_eq(check(rk, &s, &d), PH_RISK_DENY);
    cr_assert_str_eq(d.rule, "block:device");
    s.keys[PH_RISK_PHONE] = 88;
    cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW, "allow list before block list");
    cr_assert_str_eq(d.rule, "allow:phone");
    cr_assert_eq(d.nhits, 0, "nothing else evaluated");
    s.keys[PH_RISK_PHONE] = 0;
    s.now = HOUR + 1000;
    cr_assert_eq(check(rk, &s, &d), PH_RISK_REVIEW, "the block expired at expires_at");
    ph_risk_stats st;
    ph_risk_stats_get(rk, &st);
    cr_assert_eq(st.entries, 2);
    ph_risk_sweep(rk, HOUR + 1000);
    ph_risk_stats_get(rk, &st);
    cr_assert_eq(st.entries, 1, "the sweep dropped the expired entry");
    cr_assert_eq(ph_risk_list_set(rk, NULL, 0, &err), PH_OK);
    ph_risk_stats_get(rk, &st);
    cr_assert_eq(st.entries, 0);
    e[0].var = 9;
    cr_assert_eq(ph_risk_list_set(rk, e, 1, &err), PH_EINVAL);
    ph_risk_free(rk);
}

/* ---- related ---------------------------------------------------------------- */

Test(risk, related_to_a_blocked_order)
{
    ph_risk_rule r[2] = {vel("one", PH_RISK_USER, 1, 3600, PH_RISK_DENY),
                         vel("rel", PH_RISK_USER, 0, 600, PH_RISK_REVIEW)};
    r[1].kind = PH_RISK_RELATED;
    r[1].related = 1u << PH_RISK_DEVICE | 1u << PH_RISK_IP;
    r[1].priority = 200;
    ph_risk *rk = engine(r, 2);
    ph_risk_decision d;
    ph_risk_subject a = subj(1, HOUR);
    a.keys[PH_RISK_DEVICE] = 500;
    cr_assert_eq(check(rk, &a, &d), PH_RISK_ALLOW);
    a.now += 1;
    cr_assert_eq(check(rk, &a, &d), PH_RISK_DENY, "user 1's second: denied, so blocked");
    /* user 2 on the same device within 600 s: related */
    ph_risk_subject b = subj(2, HOUR + 1 + 599999);
    b.keys[PH_RISK_DEVICE] = 500;
    cr_assert_eq(check(rk, &b, &d), PH_RISK_REVIEW);
    cr_assert_str_eq(d.rule, "rel");
    b.keys[PH_RISK_USER] = 6;
    b.keys[PH_RISK_DEVICE] = 501;
    cr_assert_eq(check(rk, &b, &d), PH_RISK_ALLOW, "another device");
    ph_risk_subject c = subj(3, HOUR + 1 + 600000);
    c.keys[PH_RISK_DEVICE] = 500;
    cr_assert_eq(check(rk, &c, &d), PH_RISK_ALLOW, "the block left the window");
    /* blocked at review, by ip */
    ph_risk_subject x = subj(4, HOUR + 700000);
    x.keys[PH_RISK_IP] = 9;
    ph_risk_note_blocked(rk, &x, HOUR + 700000);
    ph_risk_subject y = subj(5, HOUR + 700001);
    y.keys[PH_RISK_IP] = 9;
    cr_assert_eq(check(rk, &y, &d), PH_RISK_REVIEW);
    /* the sweep keeps blocks within the related window */
    ph_risk_sweep(rk, HOUR + 700002);
    y.keys[PH_RISK_USER] = 10;
    cr_assert_eq(check(rk, &y, &d), PH_RISK_REVIEW);
    ph_risk_sweep(rk, HOUR + 700000 + 600000);
    y.now = HOUR + 700000 + 599999;
    y.keys[PH_RISK_USER] = 11;
    cr_assert_eq(check(rk, &y, &d), PH_RISK_ALLOW, "swept once outside the window");
    ph_risk_free(rk);
}

Test(risk, related_ignores_blocks_before_the_rule)
{
    ph_risk_rule r = vel("rel", PH_RISK_USER, 0, 600, PH_RISK_DENY);
    r.kind = PH_RISK_RELATED;
    r.related = 1u << PH_RISK_ACCOUNT;
    r.created_at = HOUR;
    ph_risk *rk = engine(&r, 1);
    ph_risk_subject s = subj(1, HOUR - 10);
    s.keys[PH_RISK_ACCOUNT] = 3;
    ph_risk_note_blocked(rk, &s, HOUR - 10);
    s.now = HOUR + 10;
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_ALLOW);
    ph_risk_note_blocked(rk, &s, HOUR + 10);
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_DENY);
    ph_risk_free(rk);
}

/* ---- release, replay, rule changes, sweep ------------------------------------ */

Test(risk, release_takes_back_what_was_counted)
{
    ph_risk_rule r[2] = {vel("u", PH_RISK_USER, 2, 60, PH_RISK_DENY),
                         vel("f", PH_RISK_USER, 3000, 60, PH_RISK_DENY)};
    r[1].measure = PH_RISK_FEN;
    ph_risk *rk = engine(r, 2);
    ph_risk_decision d1, d2, d3;
    ph_risk_subject s = subj(1, HOUR);
    cr_assert_eq(check(rk, &s, &d1), PH_RISK_ALLOW);
    cr_assert_eq(check(rk, &s, &d2), PH_RISK_ALLOW);
    cr_assert_eq(check(rk, &s, &d3), PH_RISK_DENY);
    ph_risk_release(rk, &s, &d3); /* ticket 0: a no-op */
    ph_risk_release(rk, &s, &d2);
    cr_assert_eq(check(rk, &s, &d3), PH_RISK_ALLOW, "the released order counts nowhere");
    cr_assert_eq(check(rk, &s, &d3), PH_RISK_DENY);
    ph_risk_free(rk);
}

/* A retry of an order already placed is checked afresh and may be denied now;
 * it stores nothing, so its denial must not make the subject a suspect of
 * the related rules: the stored decision is what counts (the request's end
 * releases the check, http/api_orders.c). A denial that is stored stands. */
Test(risk, release_takes_back_a_denials_note_for_related_rules)
{
    ph_risk_rule r[2] = {vel("one", PH_RISK_USER, 1, 3600, PH_RISK_DENY),
                         vel("rel", PH_RISK_USER, 0, 600, PH_RISK_REVIEW)};
    r[1].kind = PH_RISK_RELATED;
    r[1].related = 1u << PH_RISK_DEVICE;
    r[1].priority = 200;
    ph_risk *rk = engine(r, 2);
    ph_risk_decision d, retry;
    ph_risk_subject a = subj(1, HOUR);
    a.keys[PH_RISK_DEVICE] = 500;
    cr_assert_eq(check(rk, &a, &d), PH_RISK_ALLOW, "placed and stored");
    a.now += 1;
    cr_assert_eq(check(rk, &a, &retry), PH_RISK_DENY, "its retry, checked afresh");
    cr_assert_neq(retry.noted, 0);
    ph_risk_release(rk, &a, &retry); /* the retry stored nothing */
    ph_risk_subject b = subj(2, HOUR + 2);
    b.keys[PH_RISK_DEVICE] = 500;
    cr_assert_eq(check(rk, &b, &d), PH_RISK_ALLOW, "no order on device 500 was blocked");
    /* a denial that is stored stands */
    a.now = HOUR + 3;
    cr_assert_eq(check(rk, &a, &d), PH_RISK_DENY);
    b.keys[PH_RISK_USER] = 3;
    b.now = HOUR + 4;
    cr_assert_eq(check(rk, &b, &d), PH_RISK_REVIEW, "related to the stored denial");
    cr_assert_str_eq(d.rule, "rel");
    /* a replayed denial (a stored one, at start) stands too: nothing to release */
    ph_risk *rk2 = engine(r, 2);
    ph_risk_subject c = subj(4, HOUR);
    c.keys[PH_RISK_DEVICE] = 600;
    ph_risk_replay(rk2, &c, PH_RISK_DENY);
    c.keys[PH_RISK_USER] = 5;
    c.now = HOUR + 1;
    cr_assert_eq(check(rk2, &c, &d), PH_RISK_REVIEW);
    ph_risk_free(rk2);
    ph_risk_free(rk);
}

/* An entry keeps its time as ms after its block's base (32 bits, 49 days):
 * a subject ordering across more than that, its windows of 30 days, stays
 * exact. */
Test(risk, windows_stay_exact_across_more_than_49_days)
{
    const int64_t day = 24 * HOUR;
    ph_risk_rule r = vel("u", PH_RISK_USER, 3, PH_RISK_WINDOW_MAX, PH_RISK_DENY);
    ph_risk *rk = engine(&r, 1);
    ph_risk_decision d[8];
    ph_risk_subject s = subj(1, HOUR);
    cr_assert_eq(check(rk, &s, &d[0]), PH_RISK_ALLOW);
    s.now = HOUR + 20 * day;
    cr_assert_eq(check(rk, &s, &d[1]), PH_RISK_ALLOW);
    s.now = HOUR + 25 * day;
    cr_assert_eq(check(rk, &s, &d[2]), PH_RISK_ALLOW);
    s.now = HOUR + 30 * day - 1;
    cr_assert_eq(check(rk, &s, &d[3]), PH_RISK_DENY, "the first is in the window");
    s.now = HOUR + 30 * day;
    cr_assert_eq(check(rk, &s, &d[3]), PH_RISK_ALLOW, "the first left it");
    /* 52 days after the first: 20 d left; 25 d and 30 d are in */
    s.now = HOUR + 52 * day;
    cr_assert_eq(check(rk, &s, &d[4]), PH_RISK_ALLOW);
    s.now = HOUR + 52 * day + 1;
    cr_assert_eq(check(rk, &s, &d[5]), PH_RISK_DENY);
    /* a release finds its entry across the rebase */
    s.now = HOUR + 52 * day;
    ph_risk_release(rk, &s, &d[4]);
    s.now = HOUR + 52 * day + 2;
    cr_assert_eq(check(rk, &s, &d[5]), PH_RISK_ALLOW);
    s.now = HOUR + 55 * day - 1;
    cr_assert_eq(check(rk, &s, &d[6]), PH_RISK_DENY, "25 d is still in");
    s.now = HOUR + 55 * day;
    cr_assert_eq(check(rk, &s, &d[6]), PH_RISK_ALLOW, "25 d left");
    ph_risk_free(rk);
}

/* The amount of an order is face value x quantity, INT64_MAX when that
 * overflows (http/api_orders.c): a fen window holding it still fires. */
Test(risk, fen_windows_hold_the_largest_amounts)
{
    ph_risk_rule r[2] = {vel("big", PH_RISK_USER, INT64_MAX / 4, 3600, PH_RISK_REVIEW),
                         vel("small", PH_RISK_DEVICE, 1000, 3600, PH_RISK_REVIEW)};
    r[0].measure = r[1].measure = PH_RISK_FEN;
    ph_risk *rk = engine(r, 2);
    ph_risk_decision d;
    ph_risk_subject s = subj(1, HOUR);
    s.keys[PH_RISK_DEVICE] = 9;
    s.amount = 5;
    cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW);
    s.amount = INT64_MAX;
    s.now++;
    cr_assert_eq(check(rk, &s, &d), PH_RISK_REVIEW, "over its limit");
    cr_assert_str_eq(d.rule, "big");
    s.amount = 1;
    s.now++;
    cr_assert_eq(check(rk, &s, &d), PH_RISK_REVIEW, "the held order fills the window");
    cr_assert_str_eq(d.rule, "big");
    s.keys[PH_RISK_USER] = 0; /* the device's window only */
    s.now++;
    cr_assert_eq(check(rk, &s, &d), PH_RISK_REVIEW, "and the small one's");
    cr_assert_str_eq(d.rule, "small");
    ph_risk_free(rk);
}

Test(risk, replay_counts_from_created_at_and_skips_denied)
{
    ph_risk_rule r = vel("u", PH_RISK_USER, 3, 3600, PH_RISK_DENY);
    r.created_at = HOUR;
    ph_risk *rk = engine(&r, 1);
    ph_risk_subject s = subj(1, HOUR - 5);
    ph_risk_replay(rk, &s, PH_RISK_ALLOW); /* before the rule: not its business */
    s.now = HOUR + 1;
    ph_risk_replay(rk, &s, PH_RISK_ALLOW);
    s.now = HOUR + 2;
    ph_risk_replay(rk, &s, PH_RISK_REVIEW); /* held orders count */
    s.now = HOUR + 3;
    ph_risk_replay(rk, &s, PH_RISK_DENY);
    s.now = HOUR + 4;
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_ALLOW, "two counted: the third goes");
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_DENY);
    /* live, too, a rule counts from its creation: an order older than it */
    ph_risk_subject old = subj(2, HOUR - 1);
    ph_risk_decision d;
    cr_assert_eq(check(rk, &old, &d), PH_RISK_ALLOW);
    cr_assert_eq(d.ticket, 0);
    ph_risk_free(rk);
}

Test(risk, rules_set_keeps_counters_of_kept_rules_only)
{
    ph_risk_rule r[2] = {vel("keep", PH_RISK_USER, 2, 60, PH_RISK_DENY),
                         vel("gone", PH_RISK_USER, 2, 60, PH_RISK_REVIEW)};
    r[1].priority = 300;
    ph_risk *rk = engine(r, 2);
    ph_risk_subject s = subj(1, HOUR);
    check(rk, &s, NULL);
    check(rk, &s, NULL);
    ph_risk_stats st;
    ph_risk_stats_get(rk, &st);
    cr_assert_eq(st.counters, 2);
    /* a tightened "keep" (same id, same counting) keeps its count; "gone"
     * leaves; a new one starts empty */
    ph_risk_rule n[2] = {vel("keep", PH_RISK_USER, 3, 60, PH_RISK_DENY),
                         vel("new", PH_RISK_USER, 2, 60, PH_RISK_REVIEW)};
    n[0].priority = 500; /* moved to another slot */
    ph_err err = {0};
    cr_assert_eq(ph_risk_rules_set(rk, n, 2, &err), PH_OK);
    ph_risk_stats_get(rk, &st);
    cr_assert_eq(st.counters, 1);
    ph_risk_decision d;
    cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW, "keep: 2 held + 1 = 3, within");
    cr_assert_eq(check(rk, &s, &d), PH_RISK_DENY, "keep: its 3 reached the new limit");
    cr_assert_str_eq(d.rule, "keep");
    cr_assert_eq(d.nhits, 1, "new had 1 of its own: did not fire");
    /* a changed variable starts over */
    n[0].var = PH_RISK_DEVICE;
    s.keys[PH_RISK_DEVICE] = 4;
    cr_assert_eq(ph_risk_rules_set(rk, n, 1, &err), PH_OK);
    cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW);
    /* duplicates refused, the set in force kept */
    ph_risk_rule dup[2] = {n[0], n[0]};
    cr_assert_eq(ph_risk_rules_set(rk, dup, 2, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "id"), "%s", err.msg);
    ph_risk_stats_get(rk, &st);
    cr_assert_eq(st.rules, 1);
    ph_risk_free(rk);
}

Test(risk, sweep_drops_ended_windows_and_reach)
{
    ph_risk_rule r[2] = {vel("short", PH_RISK_USER, 10, 60, PH_RISK_DENY),
                         vel("long", PH_RISK_IP, 80, 7200, PH_RISK_DENY)};
    ph_risk *rk = engine(r, 2);
    cr_assert_eq(ph_risk_reach_ms(rk), 7200 * 1000LL);
    for (uint64_t u = 1; u <= 500; u++) {
        ph_risk_subject s = subj(u, HOUR);
        s.keys[PH_RISK_IP] = u % 7 + 1;
        check(rk, &s, NULL);
    }
    ph_risk_stats st;
    ph_risk_stats_get(rk, &st);
    cr_assert_eq(st.counters, 507);
    ph_risk_sweep(rk, HOUR + 59999);
    ph_risk_stats_get(rk, &st);
    cr_assert_eq(st.counters, 507);
    ph_risk_sweep(rk, HOUR + 60000);
    ph_risk_stats_get(rk, &st);
    cr_assert_eq(st.counters, 7, "the short windows ended");
    /* the long ones still count, found after the table shrank */
    ph_risk_subject s = subj(999, HOUR + 60000);
    s.keys[PH_RISK_IP] = 1;
    ph_risk_decision d;
    for (int i = 0; i < 9; i++)
        cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW, "ip 1 held 71 orders: %d more", i);
    cr_assert_eq(check(rk, &s, &d), PH_RISK_DENY, "71 + 9 = 80 reached the limit");
    ph_risk_sweep(rk, HOUR + 7200000 + 60000);
    ph_risk_stats_get(rk, &st);
    cr_assert_eq(st.counters, 0);
    ph_risk_free(rk);
}

/* ---- exactness: the trimmed windows against every entry kept ---------------- */

typedef struct ref_ent {
    int64_t at, amount;
} ref_ent;

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* The reference: every counted order kept forever, the window and the limit
 * applied by brute force at each check, the risk.h decision order. */
static int ref_decide(const ph_risk_rule *r, size_t nr, ref_ent (*kept)[4096], size_t *nkept,
                      const uint64_t *keys, int64_t amount, int64_t now)
{
    int action = PH_RISK_ALLOW;
    for (size_t i = 0; i < nr; i++) {
        int64_t c = 0;
        ref_ent *k = kept[i * 4 + keys[i] - 1];
        size_t n = nkept[i * 4 + keys[i] - 1];
        for (size_t j = 0; j < n; j++)
            if (now - k[j].at < r[i].window_s * 1000)
                c += r[i].measure == PH_RISK_FEN ? k[j].amount : 1;
        int fires = r[i].measure == PH_RISK_FEN ? amount > 0 && c + amount > r[i].limit
                                                : c + 1 > r[i].limit;
        if (fires && !r[i].dry_run) {
            action = r[i].action;
            break;
        }
    }
    if (action != PH_RISK_DENY)
        for (size_t i = 0; i < nr; i++) {
            if (r[i].measure == PH_RISK_FEN && amount <= 0)
                continue;
            size_t slot = i * 4 + keys[i] - 1;
            cr_assert_lt(nkept[slot], 4096);
            kept[slot][nkept[slot]++] = (ref_ent){now, r[i].measure == PH_RISK_FEN ? amount : 1};
        }
    return action;
}

Test(risk, trimming_is_exact_against_brute_force)
{
    static ref_ent kept[3 * 4][4096];
    size_t nkept[3 * 4];
    for (int round = 0; round < 200; round++) {
        memset(nkept, 0, sizeof nkept);
        /* rules sorted as the engine sorts them (priority, then id) */
        ph_risk_rule r[3] = {
            vel("a", PH_RISK_USER, (int64_t)(rnd() % 6), 1 + rnd() % 20,
                rnd() % 2 ? PH_RISK_REVIEW : PH_RISK_DENY),
            vel("b", PH_RISK_DEVICE, (int64_t)(rnd() % 5000), 1 + rnd() % 30,
                rnd() % 3 ? PH_RISK_DENY : PH_RISK_REVIEW),
            vel("c", PH_RISK_IP, (int64_t)(rnd() % 4), 1 + rnd() % 10, PH_RISK_DENY)};
        r[1].measure = PH_RISK_FEN;
        r[2].dry_run = (int)(rnd() % 2);
        ph_risk *rk = engine(r, 3);
        int64_t now = HOUR;
        for (int i = 0; i < 400; i++) {
            /* half seconds: orders land exactly on window edges, and repeat
             * one instant */
            now += (int64_t)(rnd() % 5) * 500;
            uint64_t keys[3] = {1 + rnd() % 4, 1 + rnd() % 4, 1 + rnd() % 4};
            int64_t amount = rnd() % 5 ? (int64_t)(rnd() % 3000) : 0; /* zero, too */
            ph_risk_subject s;
            memset(&s, 0, sizeof s);
            s.keys[PH_RISK_USER] = keys[0];
            s.keys[PH_RISK_DEVICE] = keys[1];
            s.keys[PH_RISK_IP] = keys[2];
            s.sku = "x";
            s.amount = amount;
            s.now = now;
            int want = ref_decide(r, 3, kept, nkept, keys, amount, now);
            ph_risk_decision d;
            ph_risk_check(rk, &s, &d);
            cr_assert_eq(d.action, want, "round %d order %d", round, i);
            if (i % 97 == 0)
                ph_risk_sweep(rk, now); /* the sweep changes no answer */
        }
        /* memory stays bounded by the limits */
        ph_risk_stats st;
        ph_risk_stats_get(rk, &st);
        cr_assert_leq(st.counters, 12);
        ph_risk_free(rk);
    }
}

/* Rules sharing a variable share its subjects' entries (core/risk/risk.c):
 * each still decides as if it kept every entry it counted. Several rules on
 * one variable with different scopes, measures, windows and limits,
 * releases, sweeps, and rule sets put in
 * force again mid-run (reordered: their rules change group bits; limits
 * changed), against the brute-force reference. With `releases`, every rule
 * is an enforced deny (the one setting where a release is exact, risk.h);
 * without, actions mix and dry runs count on past their limits. */
typedef struct ref_ord {
    int64_t at, amount;
    int id; /* the order, for a release */
} ref_ord;

typedef struct shared_run {
    ph_risk_rule r[6];
    ref_ord kept[6][4][512]; /* rule, key - 1 */
    size_t nkept[6][4];
} shared_run;

static int shared_applies(const ph_risk_rule *r, const ph_risk_subject *s)
{
    if (!s->keys[r->var])
        return 0;
    if (r->scope == PH_RISK_SKU && strcmp(s->sku, r->scope_value))
        return 0;
    if (r->scope == PH_RISK_TAG && !(s->ntags && !strcmp(s->tags[0], r->scope_value)))
        return 0;
    return 1;
}

static int shared_decide(shared_run *x, const ph_risk_subject *s, int id)
{
    int action = PH_RISK_ALLOW;
    for (size_t i = 0; i < 6; i++) {
        const ph_risk_rule *r = &x->r[i];
        if (!shared_applies(r, s))
            continue;
        int64_t c = 0;
        uint64_t k = s->keys[r->var] - 1;
        for (size_t j = 0; j < x->nkept[i][k]; j++)
            if (s->now - x->kept[i][k][j].at < r->window_s * 1000)
                c += r->measure == PH_RISK_FEN ? x->kept[i][k][j].amount : 1;
        int fires = r->measure == PH_RISK_FEN ? s->amount > 0 && c + s->amount > r->limit
                                              : c + 1 > r->limit;
        if (fires && !r->dry_run) {
            action = r->action;
            break;
        }
    }
    if (action == PH_RISK_DENY)
        return action;
    for (size_t i = 0; i < 6; i++) {
        const ph_risk_rule *r = &x->r[i];
        if (!shared_applies(r, s) || (r->measure == PH_RISK_FEN && s->amount <= 0))
            continue;
        uint64_t k = s->keys[r->var] - 1;
        cr_assert_lt(x->nkept[i][k], 512);
        x->kept[i][k][x->nkept[i][k]++] = (ref_ord){s->now, s->amount, id};
    }
    return action;
}

static void shared_release(shared_run *x, int id)
{
    for (size_t i = 0; i < 6; i++)
        for (size_t k = 0; k < 4; k++)
            for (size_t j = 0; j < x->nkept[i][k]; j++)
                if (x->kept[i][k][j].id == id) {
                    memmove(&x->kept[i][k][j], &x->kept[i][k][j + 1],
                            (x->nkept[i][k] - j - 1) * sizeof x->kept[i][k][j]);
                    x->nkept[i][k]--;
                    break;
                }
}

/* Puts x->r in force in a shuffled priority order (ids keep the reference's
 * order of evaluation only when `ordered`). */
static void shared_set(ph_risk *rk, shared_run *x, int ordered)
{
    ph_risk_rule set[6];
    memcpy(set, x->r, sizeof set);
    for (int i = 0; i < 6; i++)
        set[i].priority = ordered ? 100 + i : (int32_t)(rnd() % 1000);
    ph_err err = {0};
    cr_assert_eq(ph_risk_rules_set(rk, set, 6, &err), PH_OK, "%s", err.msg);
}

static void shared_round(shared_run *x, int releases)
{
    static const char *const ids[6] = {"a", "b", "c", "d", "e", "f"};
    static const char *const tag = "t=1";
    memset(x->nkept, 0, sizeof x->nkept);
    for (int i = 0; i < 6; i++) {
        /* four rules on the user, two on the device */
        x->r[i] =
            vel(ids[i], i < 4 ? PH_RISK_USER : PH_RISK_DEVICE, 0, 1 + rnd() % 20, PH_RISK_DENY);
        x->r[i].priority = 100 + i;
        x->r[i].measure = rnd() % 3 ? PH_RISK_ORDERS : PH_RISK_FEN;
        x->r[i].limit = (int64_t)(x->r[i].measure == PH_RISK_FEN ? rnd() % 8000 : rnd() % 7);
        int sc = (int)(rnd() % 3);
        x->r[i].scope = sc == 0 ? PH_RISK_ANY : sc == 1 ? PH_RISK_SKU : PH_RISK_TAG;
        strcpy(x->r[i].scope_value, sc == 0 ? "" : sc == 1 ? "x" : tag);
        if (!releases) {
            x->r[i].action = (int)(1 + rnd() % 3);
            x->r[i].dry_run = rnd() % 4 == 0;
        }
    }
    ph_risk *rk = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_risk_new(NULL, &rk, &err), PH_OK);
    shared_set(rk, x, 1);
    ph_risk_subject held[4];
    ph_risk_decision hd[4];
    int hid[4], nheld = 0;
    int64_t now = HOUR;
    for (int i = 0; i < 300; i++) {
        now += (int64_t)(rnd() % 5) * 500;
        ph_risk_subject s;
        memset(&s, 0, sizeof s);
        s.keys[PH_RISK_USER] = rnd() % 8 ? 1 + rnd() % 3 : 0;
        s.keys[PH_RISK_DEVICE] = rnd() % 8 ? 1 + rnd() % 3 : 0;
        s.sku = rnd() % 2 ? "x" : "y";
        s.tags = &tag;
        s.ntags = rnd() % 2;
        s.amount = rnd() % 5 ? (int64_t)(rnd() % 3000) : 0;
        s.now = now;
        int want = shared_decide(x, &s, i);
        ph_risk_decision d;
        ph_risk_check(rk, &s, &d);
        cr_assert_eq(d.action, want, "order %d", i);
        if (releases && d.ticket) {
            int at = nheld < 4 ? nheld++ : (int)(rnd() % 4);
            held[at] = s;
            hd[at] = d;
            hid[at] = i;
        }
        if (releases && nheld && rnd() % 6 == 0) {
            int k = (int)(rnd() % (uint64_t)nheld);
            ph_risk_release(rk, &held[k], &hd[k]);
            shared_release(x, hid[k]);
            held[k] = held[nheld - 1];
            hd[k] = hd[nheld - 1];
            hid[k] = hid[nheld - 1];
            nheld--;
        }
        if (i % 61 == 60)
            ph_risk_sweep(rk, now);
        if (i % 47 == 46) {
            /* deny-only rules decide alike in any order, and a limit moves
             * freely while nothing was trimmed by it */
            if (releases)
                x->r[rnd() % 6].limit += (int64_t)(rnd() % 3);
            shared_set(rk, x, !releases);
        }
    }
    ph_risk_stats st;
    ph_risk_stats_get(rk, &st);
    cr_assert_leq(st.counters, 6 * 3);
    ph_risk_free(rk);
}

Test(risk, rules_sharing_a_variable_are_exact_against_brute_force)
{
    static shared_run x;
    for (int round = 0; round < 150; round++)
        shared_round(&x, round % 2);
}

/* A check that reaches the lock after a later one (threads) is kept in time
 * order in the ring its variable's rules share, so it leaves the window when
 * its time says, not after the orders counted before it. */
Test(risk, an_order_arriving_late_leaves_the_window_in_time_order)
{
    ph_risk_rule r[2] = {vel("a", PH_RISK_USER, 2, 10, PH_RISK_DENY),
                         vel("b", PH_RISK_USER, 100, 60, PH_RISK_DENY)};
    r[0].scope = PH_RISK_SKU;
    strcpy(r[0].scope_value, "iqiyi.gold.1m");
    r[1].scope = PH_RISK_SKU;
    strcpy(r[1].scope_value, "other");
    ph_risk *rk = engine(r, 2);
    ph_risk_decision d;
    /* b's orders first, then a's: a's oldest sits behind b's in the ring */
    ph_risk_subject o = subj(1, HOUR - 1000);
    o.sku = "other";
    cr_assert_eq(check(rk, &o, &d), PH_RISK_ALLOW);
    o.now = HOUR - 950;
    cr_assert_eq(check(rk, &o, &d), PH_RISK_ALLOW);
    ph_risk_subject s = subj(1, HOUR);
    cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW, "a: 1");
    s.now = HOUR - 980; /* late: lands between b's two */
    cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW, "a: 2");
    s.now = HOUR + 9000;
    cr_assert_eq(check(rk, &s, &d), PH_RISK_DENY, "a: 2 in its window");
    s.now = HOUR + 9021; /* a's window (HOUR - 979, ...]: the late one is out */
    cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW, "a: HOUR alone, and this one");
    cr_assert_eq(check(rk, &s, &d), PH_RISK_DENY);
    ph_risk_free(rk);
}

/* A variable with more rules than one group holds (16, core/risk/risk.c):
 * the rules past it count alike, and a new set that moves them across groups
 * keeps every kept rule's count. */
Test(risk, a_variable_with_more_rules_than_a_group_holds)
{
    ph_risk_rule r[70];
    for (int i = 0; i < 70; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%02d", i);
        r[i] = vel(id, PH_RISK_USER, i == 69 ? 3 : 100, 60, PH_RISK_DENY);
        r[i].priority = 100 + i;
    }
    ph_risk *rk = engine(r, 70);
    ph_risk_subject s = subj(1, HOUR);
    ph_risk_decision d;
    cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW);
    cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW);
    ph_risk_stats st;
    ph_risk_stats_get(rk, &st);
    cr_assert_eq(st.counters, 70);
    /* reversed: r69 now first, in the first group */
    for (int i = 0; i < 70; i++)
        r[i].priority = 1000 - i;
    ph_err err = {0};
    cr_assert_eq(ph_risk_rules_set(rk, r, 70, &err), PH_OK, "%s", err.msg);
    ph_risk_stats_get(rk, &st);
    cr_assert_eq(st.counters, 70, "every rule kept its count");
    cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW, "r69: 2 + 1 = 3");
    cr_assert_eq(check(rk, &s, &d), PH_RISK_DENY);
    cr_assert_str_eq(d.rule, "r69");
    /* half of them gone, r69 re-scoped (starts over): 34 windows left */
    r[69].scope = PH_RISK_SKU;
    strcpy(r[69].scope_value, s.sku);
    cr_assert_eq(ph_risk_rules_set(rk, r + 35, 35, &err), PH_OK, "%s", err.msg);
    ph_risk_stats_get(rk, &st);
    cr_assert_eq(st.counters, 34);
    cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW, "r69 starts from nothing");
    ph_risk_free(rk);
}

/* ---- threads -------------------------------------------------------------- */

typedef struct race {
    ph_risk *rk;
    pthread_barrier_t *go;
    int action;
} race;

static void *racer(void *p)
{
    race *x = p;
    ph_risk_subject s = subj(12345, HOUR);
    pthread_barrier_wait(x->go);
    ph_risk_decision d;
    ph_risk_check(x->rk, &s, &d);
    x->action = d.action;
    return NULL;
}

Test(risk, sixty_four_threads_limit_five)
{
    ph_risk_rule r[3] = {vel("five", PH_RISK_USER, 5, 43200, PH_RISK_DENY),
                         vel("other", PH_RISK_IP, 100, 60, PH_RISK_REVIEW),
                         vel("dry", PH_RISK_USER, 1, 60, PH_RISK_DENY)};
    r[2].dry_run = 1;
    ph_risk *rk = engine(r, 3);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 64);
    pthread_t t[64];
    race x[64];
    for (int i = 0; i < 64; i++) {
        x[i] = (race){rk, &go, 0};
        cr_assert_eq(pthread_create(&t[i], NULL, racer, &x[i]), 0);
    }
    int allowed = 0, denied = 0;
    for (int i = 0; i < 64; i++) {
        pthread_join(t[i], NULL);
        allowed += x[i].action == PH_RISK_ALLOW;
        denied += x[i].action == PH_RISK_DENY;
    }
    cr_assert_eq(allowed, 5);
    cr_assert_eq(denied, 59);
    pthread_barrier_destroy(&go);
    ph_risk_free(rk);
}

/* ---- the rule's JSON ----------------------------------------------------- */

static int parse(const char *text, ph_risk_rule *r, ph_err *err)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    int rc = ph_risk_rule_parse(j, r, err);
    json_decref(j);
    return rc;
}

Test(risk, rule_parse_and_json_round_trip)
{
    ph_risk_rule r;
    ph_err err = {0};
    cr_assert_eq(parse("{\"id\":\"newuser.5\",\"variable\":\"user\",\"scope\":{\"tag\":"
                       "\"campaign=newuser\"},\"measure\":\"fen\",\"limit\":5000,\"window_s\":"
                       "43200,\"action\":\"review\",\"mode\":\"dry_run\",\"priority\":7,"
                       "\"note\":\"promo\"}",
                       &r, &err),
                 PH_OK, "%s", err.msg);
    cr_assert_eq(r.kind, PH_RISK_VELOCITY);
    cr_assert_eq(r.scope, PH_RISK_TAG);
    cr_assert_str_eq(r.scope_value, "campaign=newuser");
    cr_assert_eq(r.measure, PH_RISK_FEN);
    cr_assert_eq(r.limit, 5000);
    cr_assert_eq(r.window_s, 43200);
    cr_assert_eq(r.dry_run, 1);
    cr_assert_eq(r.enabled, 1);
    cr_assert_eq(r.priority, 7);
    r.version = 3;
    r.created_at = 1000;
    r.updated_at = 2000;
    json_t *j = ph_risk_rule_json(&r);
    char *text = json_dumps(j, JSON_COMPACT);
    cr_assert_str_eq(text, "{\"id\":\"newuser.5\",\"kind\":\"velocity\",\"variable\":\"user\","
                           "\"scope\":{\"tag\":\"campaign=newuser\"},\"measure\":\"fen\","
                           "\"limit\":5000,\"window_s\":43200,\"action\":\"review\",\"mode\":"
                           "\"dry_run\",\"enabled\":true,\"priority\":7,\"note\":\"promo\","
                           "\"version\":3,\"created_at\":1000,\"updated_at\":2000}");
    ph_risk_rule back;
    cr_assert_eq(ph_risk_rule_parse(j, &back, &err), PH_OK, "%s", err.msg);
    json_t *j2 = ph_risk_rule_json(&back);
    char *text2 = json_dumps(j2, JSON_COMPACT);
    cr_assert_str_eq(text2, text, "what it writes it reads back");
    free(text2);
    json_decref(j2);
    free(text);
    json_decref(j);

    cr_assert_eq(parse("{\"id\":\"rel\",\"kind\":\"related\",\"variables\":[\"device\",\"ip\","
                       "\"account\"],\"window_s\":600,\"action\":\"deny\",\"enabled\":false}",
                       &r, &err),
                 PH_OK, "%s", err.msg);
    cr_assert_eq(r.related, 1u << PH_RISK_DEVICE | 1u << PH_RISK_IP | 1u << PH_RISK_ACCOUNT);
    cr_assert_eq(r.enabled, 0);
}

Test(risk, rule_parse_refusals_name_the_field)
{
    static const struct {
        const char *json, *starts;
    } cases[] = {
        {"{\"id\":\"a\",\"variable\":\"foo\",\"limit\":1,\"window_s\":1,\"action\":\"deny\"}",
         "variable: unknown 'foo' (expected user, ip, ip24, device, account, phone, client)"},
        {"{\"id\":\"a\",\"variable\":\"user\",\"limit\":1,\"window_s\":-5,\"action\":\"deny\"}",
         "window_s: expected 1..2592000 seconds"},
        {"{\"id\":\"a\",\"variable\":\"user\",\"limit\":1,\"window_s\":0,\"action\":\"deny\"}",
         "window_s:"},
        {"{\"id\":\"a\",\"variable\":\"user\",\"limit\":1,\"window_s\":2592001,\"action\":"
         "\"deny\"}",
         "window_s:"},
        {"{\"id\":\"a\",\"variable\":\"user\",\"limit\":-1,\"window_s\":1,\"action\":\"deny\"}",
         "limit: expected an integer >= 0"},
        {"{\"id\":\"a\",\"variable\":\"user\",\"limit\":1,\"window_s\":1,\"action\":\"deny\","
         "\"secret13800138000\":1}",
         "rule: unknown member (member 6 of the object"},
        {"{\"id\":\"A B\",\"variable\":\"user\",\"limit\":1,\"window_s\":1,\"action\":\"deny\"}",
         "id:"},
        {"{\"id\":\"a\",\"limit\":1,\"window_s\":1,\"action\":\"deny\"}", "variable: missing"},
        {"{\"id\":\"a\",\"variable\":\"user\",\"limit\":1,\"window_s\":1,\"action\":\"block\"}",
         "action:"},
        {"{\"id\":\"a\",\"variable\":\"user\",\"limit\":1,\"window_s\":1,\"action\":\"deny\","
         "\"mode\":\"shadow\"}",
         "mode:"},
        {"{\"id\":\"a\",\"variable\":\"user\",\"limit\":1,\"window_s\":1,\"action\":\"deny\","
         "\"scope\":{\"color\":\"red\"}}",
         "scope:"},
        {"{\"id\":\"a\",\"variable\":\"user\",\"limit\":1,\"window_s\":1,\"action\":\"deny\","
         "\"scope\":{\"tag\":\"novalue\"}}",
         "scope.tag:"},
        {"{\"id\":\"a\",\"variable\":\"user\",\"limit\":1,\"window_s\":1,\"action\":\"deny\","
         "\"measure\":\"yuan\"}",
         "measure:"},
        {"{\"id\":\"a\",\"kind\":\"related\",\"variables\":[\"device\",\"bar\"],\"window_s\":1,"
         "\"action\":\"deny\"}",
         "variables[1]: unknown 'bar'"},
        {"{\"id\":\"a\",\"kind\":\"related\",\"variables\":[],\"window_s\":1,\"action\":"
         "\"deny\"}",
         "variables:"},
        {"{\"id\":\"a\",\"kind\":\"related\",\"variables\":[\"ip\"],\"limit\":3,\"window_s\":1,"
         "\"action\":\"deny\"}",
         "limit:"},
        {"{\"id\":\"a\",\"kind\":\"sometimes\",\"variable\":\"user\",\"limit\":1,\"window_s\":1,"
         "\"action\":\"deny\"}",
         "kind:"},
        {"{\"id\":\"a\",\"variable\":\"user\",\"limit\":1.5,\"window_s\":1,\"action\":\"deny\"}",
         "limit:"},
        {"[1]", "rule: expected a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ph_risk_rule r;
        ph_err err = {0};
        cr_assert_eq(parse(cases[i].json, &r, &err), PH_EINVAL, "case %zu", i);
        cr_assert_eq(strncmp(err.msg, cases[i].starts, strlen(cases[i].starts)), 0, "case %zu: %s",
                     i, err.msg);
        cr_assert_null(strstr(err.msg, "13800138000"), "an unknown member is not quoted");
    }
}

Test(risk, load_puts_rules_and_lists_in_force_unless_older)
{
    ph_risk *rk = engine(NULL, 0);
    ph_risk_rule tight = vel("r", PH_RISK_USER, 0, 60, PH_RISK_DENY);
    ph_risk_rule loose = vel("r", PH_RISK_USER, 100, 60, PH_RISK_DENY);
    ph_risk_entry e;
    memset(&e, 0, sizeof e);
    e.list = PH_RISK_ALLOWLIST;
    e.var = PH_RISK_DEVICE;
    e.key = 3;
    ph_err err = {0};
    cr_assert_eq(ph_risk_load(rk, 10, &tight, 1, NULL, 0, &err), 1);
    ph_risk_subject s = subj(1, HOUR);
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_DENY);
    /* the set of generation 9 was read before 10's change: not put back */
    cr_assert_eq(ph_risk_load(rk, 9, &loose, 1, &e, 1, &err), 0);
    cr_assert_eq(ph_risk_load(rk, 10, &loose, 1, &e, 1, &err), 0, "the same one again");
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_DENY);
    cr_assert_eq(ph_risk_load(rk, 11, &loose, 1, &e, 1, &err), 1);
    cr_assert_eq(check(rk, &s, NULL), PH_RISK_ALLOW);
    s.keys[PH_RISK_DEVICE] = 3;
    ph_risk_decision d;
    cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW);
    cr_assert_str_eq(d.rule, "allow:device", "the lists came with the rules");
    /* a bad set changes nothing */
    ph_risk_rule bad = tight;
    bad.window_s = 0;
    cr_assert_eq(ph_risk_load(rk, 12, &bad, 1, NULL, 0, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "window_s"), "%s", err.msg);
    cr_assert_eq(check(rk, &s, &d), PH_RISK_ALLOW);
    cr_assert_str_eq(d.rule, "allow:device");
    ph_risk_free(rk);
}

Test(risk, values_normalized_and_masked_as_documented)
{
    static const struct {
        int var;
        const char *in, *norm, *masked;
    } ok[] = {
        {PH_RISK_PHONE, "+8613800138000", "8613800138000", "861****8000"},
        {PH_RISK_PHONE, "13800138000", "13800138000", "138****8000"},
        {PH_RISK_PHONE, "12345", "12345", "****"},
        {PH_RISK_IP, "203.0.113.9", "203.0.113.9", "203.0.113.*"},
        {PH_RISK_IP, "2001:DB8:0:1:0:0:0:5", "2001:db8:0:1::5", "2001:db8:0:1::*"},
        {PH_RISK_IP24, "203.0.113.9", "203.0.113.0/24", "203.0.113.*"},
        {PH_RISK_IP24, "203.0.113.0/24", "203.0.113.0/24", "203.0.113.*"},
        {PH_RISK_IP24, "2001:db8:0:1::5", "2001:db8:0:1::/64", "2001:db8:0:1::*"},
        {PH_RISK_USER, "user-12345678", "user-12345678", "us****78"},
        {PH_RISK_DEVICE, "dev1", "dev1", "****"},
        {PH_RISK_ACCOUNT, "13800138000", "13800138000", "138****8000"},
        {PH_RISK_CLIENT, "mall", "mall", "mall"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char norm[160], masked[32];
        ph_err err = {0};
        cr_assert_eq(ph_risk_value(ok[i].var, ok[i].in, norm, sizeof norm, masked, &err), PH_OK,
                     "case %zu: %s", i, err.msg);
        cr_assert_str_eq(norm, ok[i].norm, "case %zu", i);
        cr_assert_str_eq(masked, ok[i].masked, "case %zu", i);
    }
    static const struct {
        int var;
        const char *in, *starts;
    } bad[] = {
        {PH_RISK_PHONE, "138-0013-8000", "phone:"},
        {PH_RISK_PHONE, "1234", "phone:"},
        {PH_RISK_IP, "203.0.113", "ip:"},
        {PH_RISK_IP24, "203.0.113.0/16", "ip24:"},
        {PH_RISK_USER, "", "user:"},
        {PH_RISK_DEVICE, "tab\there", "device:"},
        {PH_RISK_ACCOUNT, "a b", "account:"},
        {9, "x", "variable:"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char norm[160], masked[32];
        ph_err err = {0};
        cr_assert_eq(ph_risk_value(bad[i].var, bad[i].in, norm, sizeof norm, masked, &err),
                     PH_EINVAL, "case %zu", i);
        cr_assert_eq(strncmp(err.msg, bad[i].starts, strlen(bad[i].starts)), 0, "case %zu: %s", i,
                     err.msg);
        if (bad[i].in[0])
            cr_assert_null(strstr(err.msg, bad[i].in), "case %zu quotes the value", i);
    }
}
