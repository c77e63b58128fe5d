/*
 * risk_check.c — bench/risk_check.sh's program: what one ph_risk_check costs
 * with 20 rules in force that all match and never fire, against the engine
 * with no rules, in the same run (alternating rounds). Subjects are drawn from
 * a pool (default 100,000 end users over 1,000 devices and IPs), so most
 * checks find their counters and some create them, as a busy mall's would.
 * Prints ns per check (median over the rounds) and one JSON line last.
 * Exit 0 PASS (added median under --limit-ns), 3 MISS, 1 on a wrong answer.
 *
 * --grow N instead: the worst single checks while the engine grows from
 * nothing to N end users, each check a new one (the groups' tables double
 * again and again): the wall time of every check, its percentiles and max,
 * and the checks over 100 us, 1 ms and 10 ms. One thread: a check's time is an upper
 * bound of how long it held the engine's lock (what every other order would
 * have waited), plus whatever it did outside the lock. The figures are of the
 * thread's CPU time (user and system: page faults and compaction count),
 * which other processes on a shared machine do not inflate; the worst wall
 * time is printed too. With --probe 1 a second thread checks end users
 * already there meanwhile, as other HTTP threads would, and its wall time
 * per check (its waits for the lock included, and whatever else the machine
 * runs) is printed as well.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "risk/risk.h"

static int64_t ns_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* the resident set now, MB (0 when /proc cannot say) */
static long rss_mb(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024) / 1024;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t thread_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* 20 rules over the variables, scopes and measures, limits far away */
static size_t twenty(ph_risk_rule *r)
{
    static const int vars[] = {PH_RISK_USER,   PH_RISK_IP,    PH_RISK_IP24,
                               PH_RISK_DEVICE, PH_RISK_PHONE, PH_RISK_CLIENT};
    for (int i = 0; i < 20; i++) {
        memset(&r[i], 0, sizeof r[i]);
        snprintf(r[i].id, sizeof r[i].id, "bench.%02d", i);
        r[i].version = 1;
        r[i].kind = PH_RISK_VELOCITY;
        r[i].var = vars[i % 6];
        r[i].measure = i % 4 == 3 ? PH_RISK_FEN : PH_RISK_ORDERS;
        /* far above what the run brings each subject, as "never fire"
         * wants; memory per subject follows the orders in its window */
        r[i].limit = r[i].measure == PH_RISK_FEN  ? 1000000000
                     : r[i].var == PH_RISK_CLIENT ? 100000000
                                                  : 100000;
        r[i].window_s = 3600 * (1 + i % 12);
        r[i].action = i % 3 == 0 ? PH_RISK_DENY : i % 3 == 1 ? PH_RISK_REVIEW : PH_RISK_ALLOW;
        r[i].dry_run = i % 5 == 4;
        r[i].enabled = 1;
        r[i].priority = 100 + i;
        int sc = i % 4;
        r[i].scope = sc;
        if (sc == PH_RISK_SKU)
            strcpy(r[i].scope_value, "iqiyi.gold.1m");
        else if (sc == PH_RISK_BRAND)
            strcpy(r[i].scope_value, "iqiyi");
        else if (sc == PH_RISK_TAG)
            strcpy(r[i].scope_value, "campaign=spring");
    }
    /* one related rule, too: no block ever, so it never fires */
    r[19].kind = PH_RISK_RELATED;
    r[19].related = 1u << PH_RISK_DEVICE | 1u << PH_RISK_IP | 1u << PH_RISK_ACCOUNT;
    r[19].action = PH_RISK_REVIEW;
    return 20;
}

static double run(ph_risk *rk, long n, uint64_t users, int64_t *clock, int want_rules)
{
    static const char *const tags[] = {"dept=sales", "campaign=spring", "level=3"};
    ph_risk_subject s;
    memset(&s, 0, sizeof s);
    s.sku = "iqiyi.gold.1m";
    s.brand = "iqiyi";
    s.tags = tags;
    s.ntags = 3;
    s.amount = 1500;
    int64_t t0 = ns_now();
    for (long i = 0; i < n; i++) {
        uint64_t u = rnd() % users;
        s.keys[PH_RISK_USER] = u * 2654435761u + 1;
        s.keys[PH_RISK_IP] = u % 1000 + 11;
        s.keys[PH_RISK_IP24] = u % 100 + 13;
        s.keys[PH_RISK_DEVICE] = u % 1000 + 17;
        s.keys[PH_RISK_PHONE] = u * 40503u + 19;
        s.keys[PH_RISK_CLIENT] = 23;
        s.now = (*clock)++ / 10; /* ten checks a millisecond */
        ph_risk_decision d;
        ph_risk_check(rk, &s, &d);
        if (d.action != PH_RISK_ALLOW || (want_rules && !d.ticket) || (!want_rules && d.ticket)) {
            fprintf(stderr, "risk_check: wrong answer: action %d ticket %llu\n", d.action,
                    (unsigned long long)d.ticket);
            exit(1);
        }
    }
    return (double)(ns_now() - t0) / (double)n;
}

static const char *const grow_tags[] = {"dept=sales", "campaign=spring", "level=3"};

static void subject_of(ph_risk_subject *s, uint64_t u, int64_t now)
{
    memset(s, 0, sizeof *s);
    s->sku = "iqiyi.gold.1m";
    s->brand = "iqiyi";
    s->tags = grow_tags;
    s->ntags = 3;
    s->amount = 1500;
    s->keys[PH_RISK_USER] = u * 2654435761u + 1;
    s->keys[PH_RISK_IP] = u % 1000 + 11;
    s->keys[PH_RISK_IP24] = u % 100 + 13;
    s->keys[PH_RISK_DEVICE] = u % 1000 + 17;
    s->keys[PH_RISK_PHONE] = u * 40503u + 19;
    s->keys[PH_RISK_CLIENT] = 23;
    s->now = now;
}

/* the --probe thread: end users already there, checked again and again */
typedef struct prober {
    ph_risk *rk;
    atomic_long grown; /* end users made so far; -1: stop */
    int64_t *lat;
    long n, cap;
} prober;

static void *probe(void *p)
{
    prober *x = p;
    uint64_t r = 88172645463325252ULL;
    long g;
    while ((g = atomic_load(&x->grown)) >= 0) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        ph_risk_subject s;
        subject_of(&s, g ? r % (uint64_t)g : 0, 36000000 + g / 10);
        ph_risk_decision d;
        int64_t t0 = wall_ns();
        ph_risk_check(x->rk, &s, &d);
        if (x->n < x->cap)
            x->lat[x->n++] = wall_ns() - t0;
    }
    return NULL;
}

/* --grow: n checks of n new end users on a fresh engine, each timed */
static int grow(long n, const ph_risk_rule *rules, size_t nr, int probing)
{
    ph_risk *rk = NULL;
    ph_err err = {0};
    if (ph_risk_new(NULL, &rk, &err) || ph_risk_rules_set(rk, rules, nr, &err)) {
        fprintf(stderr, "risk_check: %s\n", err.msg);
        return 1;
    }
    int64_t *lat = malloc((size_t)n * sizeof *lat);
    if (!lat)
        return 1;
    ph_risk_subject s;
    prober px = {.rk = rk, .cap = 50000000};
    pthread_t pt;
    if (probing) {
        px.lat = malloc((size_t)px.cap * sizeof *px.lat);
        if (!px.lat || pthread_create(&pt, NULL, probe, &px))
            return 1;
    }
    long worst_at = 0;
    int64_t t_all = wall_ns(), worst_wall = 0;
    for (long i = 0; i < n; i++) {
        subject_of(&s, (uint64_t)i, 36000000 + i / 10);
        ph_risk_decision d;
        int64_t w0 = wall_ns(), t0 = thread_ns();
        ph_risk_check(rk, &s, &d);
        lat[i] = thread_ns() - t0;
        w0 = wall_ns() - w0;
        worst_wall = w0 > worst_wall ? w0 : worst_wall;
        if (lat[i] > lat[worst_at])
            worst_at = i;
        if (d.action != PH_RISK_ALLOW || !d.ticket) {
            fprintf(stderr, "risk_check: wrong answer: action %d\n", d.action);
            return 1;
        }
        if (probing)
            atomic_store(&px.grown, i + 1);
    }
    double secs = (double)(wall_ns() - t_all) / 1e9;
    if (probing) {
        atomic_store(&px.grown, -1);
        pthread_join(pt, NULL);
        qsort(px.lat, (size_t)px.n, sizeof *px.lat, cmp_i64);
        long slow = 0;
        for (long i = 0; i < px.n; i++)
            slow += px.lat[i] > 1000000;
        if (px.n)
            printf("probe thread: %ld checks of end users already there, wall us: p50 %.2f, "
                   "p99.99 %.2f, max %.1f; over 1 ms: %ld\n",
                   px.n, (double)px.lat[px.n / 2] / 1e3,
                   (double)px.lat[(size_t)((double)(px.n - 1) * 0.9999)] / 1e3,
                   (double)px.lat[px.n - 1] / 1e3, slow);
        free(px.lat);
    }
    long over100us = 0, over1 = 0, over10 = 0;
    for (long i = 0; i < n; i++) {
        over100us += lat[i] > 100000;
        over1 += lat[i] > 1000000;
        over10 += lat[i] > 10000000;
    }
    ph_risk_stats st;
    ph_risk_stats_get(rk, &st);
    qsort(lat, (size_t)n, sizeof *lat, cmp_i64);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
#define PCT(p) ((double)lat[(size_t)((double)(n - 1) * (p))] / 1e3)
    printf(
        "grow to %ld end users (%zu counters): %.2f s; CPU per check us: p50 %.2f, p99 %.2f, "
        "p99.9 %.2f, p99.99 %.2f, max %.1f (check %ld); over 100 us: %ld, 1 ms: %ld, 10 ms: %ld; "
        "worst wall time %.1f us; peak RSS %ld MB\n",
        n, st.counters, secs, PCT(0.5), PCT(0.99), PCT(0.999), PCT(0.9999),
        (double)lat[n - 1] / 1e3, worst_at, over100us, over1, over10, (double)worst_wall / 1e3,
        ru.ru_maxrss / 1024);
    printf("{\"grow_users\":%ld,\"p50_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,"
           "\"p9999_us\":%.2f,\"max_us\":%.1f,\"over_100us\":%ld,\"over_1ms\":%ld,"
           "\"over_10ms\":%ld,"
           "\"max_wall_us\":%.1f}\n",
           n, PCT(0.5), PCT(0.99), PCT(0.999), PCT(0.9999), (double)lat[n - 1] / 1e3, over100us,
           over1, over10, (double)worst_wall / 1e3);
#undef PCT
    free(lat);
    ph_risk_free(rk);
    return 0;
}

int main(int argc, char **argv)
{
    long n = 200000;
    int rounds = 7;
    uint64_t users = 100000;
    double limit = 1000;
    long grow_to = 0;
    int probing = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--checks"))
            n = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds"))
            rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--users"))
            users = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--limit-ns"))
            limit = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--grow"))
            grow_to = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--probe"))
            probing = atoi(argv[i + 1]);
    }
    if (n < 1 || rounds < 1 || rounds > 64 || users < 1) {
        fprintf(stderr, "usage: risk_check [--checks N] [--rounds R] [--users U] [--limit-ns L] "
                        "[--grow N [--probe 1]]\n");
        return 1;
    }
    ph_risk_rule rules[20];
    size_t nr = twenty(rules);
    if (grow_to > 0)
        return grow(grow_to, rules, nr, probing);
    ph_risk *with = NULL, *without = NULL;
    ph_err err = {0};
    if (ph_risk_new(NULL, &with, &err) || ph_risk_new(NULL, &without, &err) ||
        ph_risk_rules_set(with, rules, nr, &err)) {
        fprintf(stderr, "risk_check: %s\n", err.msg);
        return 1;
    }
    int64_t clock_with = 36000000, clock_without = 36000000;
    /* warm: every subject's counters exist, as in a running mall */
    run(with, n, users, &clock_with, 1);
    run(without, n, users, &clock_without, 0);
    double a[64], b[64], diff[64];
    for (int r = 0; r < rounds; r++) {
        b[r] = run(without, n, users, &clock_without, 0);
        a[r] = run(with, n, users, &clock_with, 1);
        diff[r] = a[r] - b[r];
        /* the daemon's risk.sweep job, once a minute: it holds the engine's lock */
        int64_t s0 = ns_now();
        ph_risk_sweep(with, clock_with / 10);
        double sweep_ms = (double)(ns_now() - s0) / 1e6;
        printf("round %d: %.0f ns per check with %zu rules, %.0f ns without, +%.0f ns; "
               "sweep %.1f ms; RSS %ld MB\n",
               r + 1, a[r], nr, b[r], diff[r], sweep_ms, rss_mb());
    }
    ph_risk_stats st;
    ph_risk_stats_get(with, &st);
    /* rule changes with every counter held: what the checks wait for
     * meanwhile. Limits moved (every rule keeps its counts as they are), then
     * the first user rule removed (the others of its variable renumbered) */
    for (size_t i = 0; i < nr; i++) {
        rules[i].limit += 1;
        rules[i].version++;
    }
    double change_ms[2];
    for (int c = 0; c < 2; c++) {
        struct timespec c0, c1;
        clock_gettime(CLOCK_MONOTONIC, &c0);
        if (ph_risk_rules_set(with, rules + c, nr - (size_t)c, &err)) {
            fprintf(stderr, "risk_check: %s\n", err.msg);
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &c1);
        change_ms[c] =
            (double)(c1.tv_sec - c0.tv_sec) * 1e3 + (double)(c1.tv_nsec - c0.tv_nsec) / 1e6;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    qsort(a, (size_t)rounds, sizeof a[0], cmp_d);
    qsort(b, (size_t)rounds, sizeof b[0], cmp_d);
    qsort(diff, (size_t)rounds, sizeof diff[0], cmp_d);
    double med = diff[rounds / 2];
    int pass = med < limit;
    printf("rule changes with every counter held: %.1f ms (limits), %.1f ms (a user rule "
           "removed); peak RSS %ld MB\n",
           change_ms[0], change_ms[1], ru.ru_maxrss / 1024);
    printf("median: %.0f ns per check with %zu rules, %.0f ns without: +%.0f ns (limit %.0f): "
           "%s (%zu counters held)\n",
           a[rounds / 2], nr, b[rounds / 2], med, limit, pass ? "PASS" : "MISS", st.counters);
    printf("{\"rules\":%zu,\"checks_per_round\":%ld,\"rounds\":%d,\"users\":%llu,"
           "\"ns_with\":%.0f,\"ns_without\":%.0f,\"ns_added\":%.0f,\"limit_ns\":%.0f,"
           "\"counters\":%zu,\"rule_change_ms\":[%.1f,%.1f],\"maxrss_mb\":%ld,"
           "\"verdict\":\"%s\"}\n",
           nr, n, rounds, (unsigned long long)users, a[rounds / 2], b[rounds / 2], med, limit,
           st.counters, change_ms[0], change_ms[1], ru.ru_maxrss / 1024, pass ? "PASS" : "MISS");
    ph_risk_free(with);
    ph_risk_free(without);
    return pass ? 0 : 3;
}
