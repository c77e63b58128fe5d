/*
 * test_risk_grow.c — the risk engine's tables as they grow and shrink
 * (core/risk/risk.c, gt_step): a group's blocks move to a new table a few
 * slots per operation, the new table allocated outside the lock. Every count
 * stays exact while blocks move: checks of subjects whose blocks have moved
 * and of those that have not, new subjects, releases, the sweep removing
 * blocks from both tables, rule changes in the middle of a move, and threads
 * checking while the sweep runs.
 *
 * The counts are read through dry-run rules of limits 1..4 on one variable:
 * a check's hits say how many of the subject's orders lie in the window
 * (min(n, 4)), checked against a brute-force reference. Every time is an
 * argument: no clock, no sleep.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "risk/risk.h"

#define HOUR     3600000LL
#define WINDOW_S 10
#define MAXT     8 /* the newest times the reference keeps per subject (the probes tell 4) */

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

/* the probes: dry-run rules u1..u4 (limit 1..4) on the user, and p2 (limit 2) on the phone */
static size_t probes(ph_risk_rule *r)
{
    for (int i = 0; i < 4; i++) {
        char id[8];
        snprintf(id, sizeof id, "u%d", i + 1);
        r[i] = vel(id, PH_RISK_USER, i + 1, WINDOW_S, PH_RISK_DENY);
        r[i].dry_run = 1;
    }
    r[4] = vel("p2", PH_RISK_PHONE, 2, WINDOW_S, PH_RISK_DENY);
    r[4].dry_run = 1;
    return 5;
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
    s.keys[PH_RISK_USER] = user * 0x9e3779b97f4a7c15ULL + 1; /* spread over the table */
    s.keys[PH_RISK_PHONE] = user * 40503u + 7;
    s.sku = "iqiyi.gold.1m";
    s.amount = 1500;
    s.now = now;
    return s;
}

/* The brute-force reference: per subject the times of its counted orders. */
typedef struct ref {
    int64_t t[MAXT];
    int n;
} ref;

static int ref_count(const ref *r, int64_t now)
{
    int c = 0;
    for (int i = 0; i < r->n; i++)
        c += now - r->t[i] < WINDOW_S * 1000;
    return c;
}

static void ref_add(ref *r, int64_t now)
{
    int k = 0; /* the times out of the window go first */
    for (int i = 0; i < r->n; i++)
        if (now - r->t[i] < WINDOW_S * 1000)
            r->t[k++] = r->t[i];
    r->n = k;
    if (r->n == MAXT) /* the oldest of more than 4 tells nothing */
        memmove(r->t, r->t + 1, --r->n * sizeof r->t[0]);
    r->t[r->n++] = now;
}

static void ref_drop(ref *r, int64_t at)
{
    for (int i = r->n; i-- > 0;)
        if (r->t[i] == at) {
            memmove(r->t + i, r->t + i + 1, (size_t)(--r->n - i) * sizeof r->t[0]);
            return;
        }
    cr_assert_fail("no entry at %lld", (long long)at);
}

/* The hits the probes give for n orders in the user's window (u1..u4 fire
 * at n >= their limit; `limits` lists those in force) and m in the phone's. */
static size_t want_hits(const int *limits, size_t nl, int n, int m)
{
    size_t h = m >= 2;
    for (size_t i = 0; i < nl; i++)
        h += n >= limits[i];
    return h;
}

/* One order of user u at now, its hits checked against the reference (the
 * phone is the user's: same counts); counted in the reference. */
static void order(ph_risk *rk, ref *refs, uint64_t u, int64_t now, const int *limits, size_t nl,
                  ph_risk_decision *d)
{
    ph_risk_subject s = subj(u, now);
    ph_risk_check(rk, &s, d);
    int n = ref_count(&refs[u], now);
    cr_assert_eq(d->action, PH_RISK_ALLOW);
    cr_assert_eq(d->nhits, want_hits(limits, nl, n, n), "user %llu at %lld: %zu hits, %d orders",
                 (unsigned long long)u, (long long)now, d->nhits, n);
    cr_assert_neq(d->ticket, 0);
    ref_add(&refs[u], now);
}

static ph_risk_stats stats(ph_risk *rk)
{
    ph_risk_stats st;
    ph_risk_stats_get(rk, &st);
    return st;
}

static const int all4[] = {1, 2, 3, 4};

/* 40,000 subjects arriving over several doublings of both groups' tables,
 * half the checks on subjects seen before (their blocks in the table being
 * drained or already moved), windows ending as time goes, and a third of the
 * first orders of a window released again. */
Test(risk_grow, counts_stay_exact_while_blocks_move)
{
    ph_risk_rule r[5];
    ph_risk *rk = engine(r, probes(r));
    enum { N = 80000, USERS = 40000 };
    ref *refs = calloc(USERS, sizeof *refs);
    uint64_t seed = 0x2545f4914f6cdd1dULL, next = 0;
    int moves = 0, was = 0, released = 0, during = 0;
    for (int i = 0; i < N; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        uint64_t u = next < USERS && (seed & 1 || !next) ? next++ : (seed >> 8) % next;
        int64_t now = HOUR + i; /* 1 ms apart: a window holds the last 10,000 checks */
        ph_risk_decision d;
        ph_risk_stats st = stats(rk);
        order(rk, refs, u, now, all4, 4, &d);
        during += st.moving != 0;
        if (!d.nhits && i % 3 == 0) {
            /* the first in its window: pushed no entry out, so its release is exact */
            ph_risk_subject s = subj(u, now);
            ph_risk_release(rk, &s, &d);
            ref_drop(&refs[u], now);
            released++;
        }
        st = stats(rk);
        moves += st.moving && !was;
        was = st.moving != 0;
    }
    ph_risk_stats st = stats(rk);
    cr_assert_geq(moves, 8, "the tables grew %d times", moves); /* 64 .. 131,072 slots: 11 */
    cr_assert_gt(during, N / 20, "only %d checks while blocks moved", during);
    cr_assert_gt(released, 1000);
    cr_assert_eq(st.grown_locked, 0, "a table grew under the lock");
    ph_risk_free(rk);
    free(refs);
}

/* Counts new subjects until `groups` groups' blocks are moving (their
 * tables grow at the same subject; one operation works on one new table at
 * a time); returns the next time. */
static int64_t until_moving_n(ph_risk *rk, ref *refs, uint64_t *next, int64_t now, size_t users,
                              size_t groups)
{
    while (stats(rk).moving < groups) {
        cr_assert_lt(*next, users, "no table grew");
        ph_risk_decision d;
        order(rk, refs, (*next)++, now++, all4, 4, &d);
    }
    return now;
}

static int64_t until_moving(ph_risk *rk, ref *refs, uint64_t *next, int64_t now, size_t users)
{
    return until_moving_n(rk, refs, next, now, users, 2);
}

/* The sweep removes blocks from both tables while a group's blocks move: the
 * subjects whose windows ended start again from 0, the others keep their
 * count, the move goes on and ends; a sweep that empties everything mid-move
 * retires the drained table and then the tables shrink back. */
Test(risk_grow, sweep_removes_blocks_while_they_move)
{
    ph_risk_rule r[5];
    ph_risk *rk = engine(r, probes(r));
    enum { USERS = 20000 };
    ref *refs = calloc(USERS, sizeof *refs);
    uint64_t next = 0;
    int64_t now = HOUR;
    /* four growths, then users 1 ms apart until the next one starts */
    for (int g = 0; g < 4; g++) {
        now = until_moving(rk, refs, &next, now, USERS);
        while (stats(rk).moving) {
            cr_assert_lt(next, USERS);
            ph_risk_decision d;
            order(rk, refs, next++, now++, all4, 4, &d);
        }
    }
    now = until_moving(rk, refs, &next, now, USERS);
    uint64_t made = next;
    cr_assert_gt(made, 400);
    /* the older half of the subjects' windows end */
    int64_t at = HOUR + (int64_t)made / 2 + WINDOW_S * 1000;
    ph_risk_sweep(rk, at);
    ph_risk_stats st = stats(rk);
    cr_assert_eq(st.moving, 2, "the sweep ended the move of %zu groups", 2 - st.moving);
    size_t live = 0;
    for (uint64_t u = 0; u < made; u++)
        live += ref_count(&refs[u], at) != 0;
    cr_assert_lt(live, made);
    cr_assert_eq(st.counters, live * 5, "%zu windows held, %zu live subjects", st.counters, live);
    /* every subject again, the oldest first: the move goes on meanwhile */
    for (uint64_t u = 0; u < made; u++) {
        ph_risk_decision d;
        order(rk, refs, u, at, all4, 4, &d);
    }
    cr_assert_eq(stats(rk).moving, 0);
    for (uint64_t u = 0; u < made; u += 7) {
        ph_risk_decision d;
        order(rk, refs, u, at + 1, all4, 4, &d);
    }
    /* a third growth, then every window ends in the middle of its move */
    now = at + 2;
    now = until_moving(rk, refs, &next, now, USERS);
    ph_risk_sweep(rk, now + WINDOW_S * 1000);
    st = stats(rk);
    cr_assert_eq(st.counters, 0);
    cr_assert_geq(st.moving, 1, "the sweep's smaller tables are moving in");
    now += WINDOW_S * 1000;
    for (uint64_t u = 0; u < next; u += 3) {
        ph_risk_decision d;
        order(rk, refs, u, now, all4, 4, &d);
    }
    cr_assert_eq(stats(rk).moving, 0);
    cr_assert_eq(stats(rk).grown_locked, 0);
    ph_risk_free(rk);
    free(refs);
}

/* Rules change while blocks move: a rule added on another variable (the
 * user group's tables are kept as they are, the move goes on), then a user
 * rule removed (the others renumbered: every block of both tables copied
 * into one). */
Test(risk_grow, rule_changes_while_blocks_move)
{
    ph_risk_rule r[6];
    size_t n = probes(r);
    ph_risk *rk = engine(r, n);
    ph_err err = {0};
    enum { USERS = 20000 };
    ref *refs = calloc(USERS, sizeof *refs);
    uint64_t next = 0;
    int64_t now = HOUR;
    for (int g = 0; g < 4; g++) /* a table of some size */
        now = until_moving(rk, refs, &next, now, USERS);
    for (uint64_t u = 0; u < next; u += 2) { /* two orders for some */
        ph_risk_decision d;
        order(rk, refs, u, now, all4, 4, &d);
    }
    now = until_moving(rk, refs, &next, now + 1, USERS);
    r[n] = vel("ip", PH_RISK_IP, 1000, 60, PH_RISK_REVIEW);
    cr_assert_eq(ph_risk_rules_set(rk, r, n + 1, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(stats(rk).moving, 2, "the tables were kept, moving");
    for (uint64_t u = 0; u < next; u += 3) {
        ph_risk_decision d;
        order(rk, refs, u, now, all4, 4, &d);
    }
    now = until_moving(rk, refs, &next, now + 1, USERS);
    /* u2 goes: u3 and u4 take bits 1 and 2 */
    r[1] = r[n];
    cr_assert_eq(ph_risk_rules_set(rk, r, n, &err), PH_OK, "%s", err.msg);
    static const int three[] = {1, 3, 4};
    cr_assert_eq(stats(rk).moving, 1, "the user group's blocks were copied into one table");
    for (uint64_t u = 0; u < next; u++) {
        ph_risk_decision d;
        order(rk, refs, u, now, three, 3, &d);
    }
    ph_risk_free(rk);
    free(refs);
}

/* A rule change that regroups a variable's rules while their blocks move:
 * 17 rules on the user (two groups), the first removed, so the 17th joins
 * the first group: the entries of both old groups, from both tables of
 * each, are copied into the new group. */
Test(risk_grow, regrouping_while_blocks_move)
{
    ph_risk_rule r[18];
    size_t n = probes(r);
    for (int i = 0; i < 13; i++) { /* f00..f12 sort before u1..u4: u4 is the 17th */
        char id[8];
        snprintf(id, sizeof id, "f%02d", i);
        r[n] = vel(id, PH_RISK_USER, 1000, WINDOW_S, PH_RISK_DENY);
        r[n++].dry_run = 1;
    }
    ph_risk *rk = engine(r, n);
    ph_err err = {0};
    enum { USERS = 20000 };
    ref *refs = calloc(USERS, sizeof *refs);
    uint64_t next = 0;
    int64_t now = HOUR;
    for (int g = 0; g < 4; g++)
        now = until_moving_n(rk, refs, &next, now, USERS, 3);
    for (uint64_t u = 0; u < next; u += 2) {
        ph_risk_decision d;
        order(rk, refs, u, now, all4, 4, &d);
    }
    now = until_moving_n(rk, refs, &next, now + 1, USERS, 3);
    r[5] = r[--n]; /* f00 goes */
    cr_assert_eq(ph_risk_rules_set(rk, r, n, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(stats(rk).moving, 1, "only the phone's blocks still move");
    for (uint64_t u = 0; u < next; u++) {
        ph_risk_decision d;
        order(rk, refs, u, now, all4, 4, &d);
    }
    ph_risk_free(rk);
    free(refs);
}

/* Threads check their own subjects while the tables grow and move and a
 * sweep runs: a deny limit of 3 lets exactly 3 orders of each through. */
typedef struct worker {
    ph_risk *rk;
    uint64_t base;
    int denied_early, allowed_late;
} worker;

enum { PER_THREAD = 3000, THREADS = 4 };

static void *work(void *p)
{
    worker *w = p;
    for (int round = 0; round < 4; round++)
        for (uint64_t j = 0; j < PER_THREAD; j++) {
            ph_risk_subject s = subj(w->base + j, HOUR + round);
            ph_risk_decision d;
            ph_risk_check(w->rk, &s, &d);
            if (round < 3)
                w->denied_early += d.action != PH_RISK_ALLOW;
            else
                w->allowed_late += d.action != PH_RISK_DENY;
        }
    return NULL;
}

typedef struct sweeper {
    ph_risk *rk;
    pthread_mutex_t mu;
    int stop, sweeps;
} sweeper;

static void *sweep_loop(void *p)
{
    sweeper *x = p;
    for (;;) {
        pthread_mutex_lock(&x->mu);
        int stop = x->stop;
        pthread_mutex_unlock(&x->mu);
        if (stop)
            return NULL;
        ph_risk_sweep(x->rk, HOUR + 4); /* every window is an hour: nothing ends */
        x->sweeps++;
    }
}

Test(risk_grow, threads_grow_the_tables_while_the_sweep_runs)
{
    ph_risk_rule r[2] = {vel("three", PH_RISK_USER, 3, 3600, PH_RISK_DENY),
                         vel("phone", PH_RISK_PHONE, 100, 3600, PH_RISK_REVIEW)};
    ph_risk *rk = engine(r, 2);
    pthread_t t[THREADS], sw;
    worker w[THREADS];
    sweeper x = {.rk = rk};
    pthread_mutex_init(&x.mu, NULL);
    cr_assert_eq(pthread_create(&sw, NULL, sweep_loop, &x), 0);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){rk, (uint64_t)i * 1000000, 0, 0};
        cr_assert_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(w[i].denied_early, 0, "thread %d: %d of the first 3 orders refused", i,
                     w[i].denied_early);
        cr_assert_eq(w[i].allowed_late, 0, "thread %d: %d fourth orders let through", i,
                     w[i].allowed_late);
    }
    pthread_mutex_lock(&x.mu);
    x.stop = 1;
    pthread_mutex_unlock(&x.mu);
    pthread_join(sw, NULL);
    cr_assert_gt(x.sweeps, 0);
    ph_risk_stats st = stats(rk);
    cr_assert_eq(st.counters, (size_t)THREADS * PER_THREAD * 2);
    pthread_mutex_destroy(&x.mu);
    ph_risk_free(rk);
}
