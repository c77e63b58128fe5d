/*
 * test_auth_guard.c — failed-authentication throttling per peer address
 * (core/http/auth_guard.h) and the addresses and networks it is keyed by
 * (core/base/netaddr.h): counting, the sliding window, the delay's growth, a
 * block and its end, eviction from a full table, exempt networks, IPv4 and
 * IPv6. The clock is the module's argument: every time below is given, none
 * is waited for.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "base/netaddr.h"
#include "config/config.h"
#include "http/auth_guard.h"
#include "metrics/metrics.h"

/* slow after 3, block at 8 for 5 s, a window of 10 s (buckets of 1 s) */
static ph_auth_failures_conf conf(void)
{
    ph_auth_failures_conf c = {.window_s = 10,
                               .slow_after = 3,
                               .delay_ms = 100,
                               .delay_max_ms = 500,
                               .block_after = 8,
                               .block_s = 5};
    return c;
}

static ph_ipaddr ip(const char *text)
{
    ph_cidr c;
    const char *why = ph_cidr_parse(text, &c);
    cr_assert_null(why, "%s: %s", text, why);
    return c.net;
}

static ph_auth_guard *guard(size_t cap, ph_metrics *m)
{
    ph_auth_guard *g = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_auth_guard_create(cap, m, &g, &err), PH_OK, "%s", err.msg);
    return g;
}

static ph_auth_verdict fail_at(ph_auth_guard *g, const ph_auth_failures_conf *c, const char *a,
                               int64_t now)
{
    ph_auth_verdict v;
    ph_ipaddr x = ip(a);
    ph_auth_guard_fail(g, c, &x, now, &v);
    return v;
}

static unsigned refused_at(ph_auth_guard *g, const ph_auth_failures_conf *c, const char *a,
                           int64_t now)
{
    ph_ipaddr x = ip(a);
    return ph_auth_guard_refused(g, c, &x, now);
}

/* The first slow_after failures are answered at once; then the delay starts at
 * delay_ms and doubles per failure up to delay_max_ms; the block_after-th
 * failure blocks the address (its own 401 still delayed) and says so once. */
Test(auth_guard, counts_delays_and_blocks)
{
    ph_auth_failures_conf c = conf();
    ph_metrics *m = ph_metrics_create();
    ph_auth_guard *g = guard(16, m);
    const unsigned want_delay[] = {0, 0, 0, 100, 200, 400, 500, 500};
    int64_t t = 1000000;
    for (unsigned i = 0; i < 8; i++) {
        cr_assert_eq(refused_at(g, &c, "203.0.113.9", t), 0, "failure %u: not refused yet", i + 1);
        ph_auth_verdict v = fail_at(g, &c, "203.0.113.9", t);
        cr_expect_eq(v.failures, i + 1);
        cr_expect_eq(v.delay_ms, want_delay[i], "failure %u: delay %u", i + 1, v.delay_ms);
        cr_expect_eq(v.blocked, i == 7, "failure %u", i + 1);
        t += 10;
    }
    cr_assert_eq(ph_auth_guard_blocked(g), 1);
    cr_expect_eq(atomic_load(&m->auth_blocked), 1, "the gauge follows");
    /* refused with the seconds left, rounded up, until block_s after the 8th */
    int64_t blocked_at = t - 10;
    cr_expect_eq(refused_at(g, &c, "203.0.113.9", blocked_at), 5);
    cr_expect_eq(refused_at(g, &c, "203.0.113.9", blocked_at + 1), 5);
    cr_expect_eq(refused_at(g, &c, "203.0.113.9", blocked_at + 4001), 1);
    cr_expect_eq(refused_at(g, &c, "203.0.113.9", blocked_at + 4999), 1);
    cr_expect_eq(refused_at(g, &c, "198.51.100.1", blocked_at + 1), 0, "another address");
    cr_expect_eq(atomic_load(&m->auth_failures), 8);
    cr_expect_eq(atomic_load(&m->auth_throttled[PH_MX_AUTH_DELAYED]), 5);
    cr_expect_eq(atomic_load(&m->auth_throttled[PH_MX_AUTH_REFUSED]), 4);
    /* the block ends on time, noticed by the next request */
    cr_expect_eq(refused_at(g, &c, "203.0.113.9", blocked_at + 5000), 0);
    cr_expect_eq(ph_auth_guard_blocked(g), 0);
    cr_expect_eq(atomic_load(&m->auth_blocked), 0);
    ph_auth_guard_free(g);
    ph_metrics_free(m);
}

/* A failure counts for at least window_s and at most a tenth more: with
 * buckets of 1 s, one at 0.999 s still counts at 10.999 s and one at 0 s is
 * gone at 11 s. */
Test(auth_guard, sliding_window)
{
    ph_auth_failures_conf c = conf();
    ph_auth_guard *g = guard(16, NULL);
    int64_t base = 5000000; /* a bucket boundary */
    cr_assert_eq(fail_at(g, &c, "192.0.2.1", base).failures, 1);
    cr_assert_eq(fail_at(g, &c, "192.0.2.1", base + 999).failures, 2);
    cr_expect_eq(fail_at(g, &c, "192.0.2.1", base + 5000).failures, 3, "inside the window");
    cr_expect_eq(fail_at(g, &c, "192.0.2.1", base + 10999).failures, 4,
                 "10.999 s later: both first ones still count (window 10 s + a tenth)");
    cr_expect_eq(fail_at(g, &c, "192.0.2.1", base + 11000).failures, 3,
                 "11 s after the first two they are gone");
    cr_expect_eq(fail_at(g, &c, "192.0.2.1", base + 40000).failures, 1, "all gone");
    ph_auth_guard_free(g);
}

/* The count that blocks must be in the window: failures spread wider than the
 * window never block, however many. */
Test(auth_guard, slow_failures_never_block)
{
    ph_auth_failures_conf c = conf();
    ph_auth_guard *g = guard(16, NULL);
    for (int i = 0; i < 100; i++) {
        ph_auth_verdict v = fail_at(g, &c, "192.0.2.7", (int64_t)i * 4000);
        cr_assert_leq(v.failures, 3, "failure %d counted %u", i, v.failures);
        cr_assert_eq(v.delay_ms, 0);
        cr_assert_eq(v.blocked, 0);
    }
    ph_auth_guard_free(g);
}

/* A block ends at block_s whether or not the address comes back: the timer's
 * tick ends it, and the gauge with it. A failure after the block while the
 * window still holds block_after failures blocks it again (and says so). */
Test(auth_guard, block_expiry_and_tick)
{
    ph_auth_failures_conf c = conf();
    c.window_s = 60;
    ph_metrics *m = ph_metrics_create();
    ph_auth_guard *g = guard(16, m);
    int64_t t = 0;
    for (int i = 0; i < 8; i++)
        fail_at(g, &c, "2001:db8::1", t);
    cr_assert_eq(ph_auth_guard_tick(g, t + 4999), 1, "still blocked");
    cr_assert_eq(ph_auth_guard_tick(g, t + 5000), 0, "ended by the tick");
    cr_expect_eq(atomic_load(&m->auth_blocked), 0);
    cr_expect_eq(refused_at(g, &c, "2001:db8::1", t + 5000), 0);
    ph_auth_verdict v = fail_at(g, &c, "2001:db8::1", t + 6000);
    cr_expect_eq(v.failures, 9);
    cr_expect_eq(v.blocked, 1, "blocked again: the window still holds 9 failures");
    cr_expect_eq(v.delay_ms, 500);
    cr_expect_eq(refused_at(g, &c, "2001:db8::1", t + 6000), 5);
    ph_auth_guard_free(g);
    ph_metrics_free(m);
}

/* A full table takes the entry seen least recently; a refusal counts as
 * being seen. An evicted address starts again at 1, its block forgotten. */
Test(auth_guard, eviction_of_the_oldest)
{
    ph_auth_failures_conf c = conf();
    ph_auth_guard *g = guard(2, NULL);
    fail_at(g, &c, "10.0.0.1", 0);
    fail_at(g, &c, "10.0.0.1", 1);
    fail_at(g, &c, "10.0.0.2", 2);
    fail_at(g, &c, "10.0.0.1", 3); /* 10.0.0.1 is now the most recent */
    fail_at(g, &c, "10.0.0.3", 4); /* evicts 10.0.0.2 */
    cr_expect_eq(fail_at(g, &c, "10.0.0.1", 5).failures, 4, "kept");
    cr_expect_eq(fail_at(g, &c, "10.0.0.2", 6).failures, 1, "evicted: counted afresh");
    ph_auth_guard_free(g);

    g = guard(1, NULL);
    for (int i = 0; i < 8; i++)
        fail_at(g, &c, "10.9.9.9", 100);
    cr_assert_eq(refused_at(g, &c, "10.9.9.9", 100), 5);
    cr_assert_eq(ph_auth_guard_blocked(g), 1);
    fail_at(g, &c, "10.9.9.8", 200); /* the only entry goes */
    cr_expect_eq(ph_auth_guard_blocked(g), 0, "its block went with it");
    cr_expect_eq(refused_at(g, &c, "10.9.9.9", 300), 0);
    ph_auth_guard_free(g);
}

/* A table much larger than one chain, filled past capacity with addresses of
 * one /64: every lookup still finds its own entry (the chains and the LRU
 * stay consistent through thousands of evictions). */
Test(auth_guard, many_addresses)
{
    ph_auth_failures_conf c = conf();
    ph_auth_guard *g = guard(1024, NULL);
    char a[64];
    for (unsigned i = 0; i < 5000; i++) {
        snprintf(a, sizeof a, "2001:db8:1:2::%x", i);
        cr_assert_eq(fail_at(g, &c, a, i).failures, 1, "%s", a);
    }
    for (unsigned i = 5000 - 1024; i < 5000; i++) { /* the last 1024 are all kept */
        snprintf(a, sizeof a, "2001:db8:1:2::%x", i);
        cr_assert_eq(fail_at(g, &c, a, 6000).failures, 2, "%s", a);
    }
    ph_auth_guard_free(g);
}

/* Exempt networks (a mall's NAT): never counted, never refused, in either
 * family; an address a reload exempts while it is blocked is let through. */
Test(auth_guard, exempt_networks)
{
    ph_auth_failures_conf c = conf();
    cr_assert_null(ph_cidr_parse("10.0.0.0/8", &c.exempt_nets[0]));
    cr_assert_null(ph_cidr_parse("2001:db8::/32", &c.exempt_nets[1]));
    c.nexempt = 2;
    ph_metrics *m = ph_metrics_create();
    ph_auth_guard *g = guard(16, m);
    for (int i = 0; i < 50; i++) {
        ph_auth_verdict v = fail_at(g, &c, "10.200.1.2", i);
        cr_assert_eq(v.failures, 0);
        cr_assert_eq(v.delay_ms, 0);
        v = fail_at(g, &c, "2001:db8:ffff::1", i);
        cr_assert_eq(v.failures + v.delay_ms, 0);
    }
    cr_expect_eq(refused_at(g, &c, "10.200.1.2", 60), 0);
    cr_expect_eq(ph_auth_guard_blocked(g), 0);
    cr_expect_eq(atomic_load(&m->auth_failures), 100, "failures are counted all the same");
    cr_expect_eq(atomic_load(&m->auth_throttled[PH_MX_AUTH_DELAYED]), 0);
    /* just outside: throttled */
    for (int i = 0; i < 8; i++)
        fail_at(g, &c, "2001:db9::1", 100);
    cr_expect_eq(refused_at(g, &c, "2001:db9::1", 100), 5);
    /* blocked, then exempted by a new configuration */
    ph_auth_failures_conf wider = c;
    cr_assert_null(ph_cidr_parse("2001:db8::/31", &wider.exempt_nets[1]));
    cr_expect_eq(refused_at(g, &c, "2001:db9::1", 101), 5);
    cr_expect_eq(refused_at(g, &wider, "2001:db9::1", 102), 0);
    cr_expect_eq(ph_auth_guard_blocked(g), 0);
    ph_auth_guard_free(g);
    ph_metrics_free(m);
}

/* IPv4 and IPv6 are counted apart, but an IPv4-mapped IPv6 peer is its IPv4
 * address (what a dual-stack socket reports). */
Test(auth_guard, families)
{
    ph_auth_failures_conf c = conf();
    ph_auth_guard *g = guard(16, NULL);
    fail_at(g, &c, "192.0.2.5", 0);
    cr_expect_eq(fail_at(g, &c, "::c000:205", 1).failures, 1, "::192.0.2.5 is IPv6");
    cr_expect_eq(fail_at(g, &c, "::ffff:192.0.2.5", 2).failures, 2, "v4-mapped is IPv4");
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:192.0.2.5", &s6.sin6_addr);
    ph_ipaddr a;
    cr_assert_eq(ph_ipaddr_from_sockaddr((struct sockaddr *)&s6, &a), 0);
    ph_auth_verdict v;
    ph_auth_guard_fail(g, &c, &a, 3, &v);
    cr_expect_eq(v.failures, 3);
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "192.0.2.5", &s4.sin_addr);
    cr_assert_eq(ph_ipaddr_from_sockaddr((struct sockaddr *)&s4, &a), 0);
    ph_auth_guard_fail(g, &c, &a, 4, &v);
    cr_expect_eq(v.failures, 4);
    struct sockaddr su = {.sa_family = AF_UNIX};
    cr_expect_eq(ph_ipaddr_from_sockaddr(&su, &a), -1);
    cr_expect_eq(ph_ipaddr_from_sockaddr(NULL, &a), -1);
    ph_auth_guard_free(g);
}

/* A reload that changes window_s restarts the counts; a block keeps its end. */
Test(auth_guard, window_change_restarts_counts)
{
    ph_auth_failures_conf c = conf();
    ph_auth_guard *g = guard(16, NULL);
    for (int i = 0; i < 8; i++)
        fail_at(g, &c, "192.0.2.77", 0);
    fail_at(g, &c, "192.0.2.78", 0);
    fail_at(g, &c, "192.0.2.78", 0);
    ph_auth_failures_conf wide = c;
    wide.window_s = 30;
    cr_expect_eq(fail_at(g, &wide, "192.0.2.78", 10).failures, 1);
    cr_expect_eq(refused_at(g, &wide, "192.0.2.77", 10), 5, "the block stays");
    ph_auth_guard_free(g);
}

Test(auth_guard, create_refuses_nonsense)
{
    ph_auth_guard *g = NULL;
    ph_err err = {0};
    cr_expect_eq(ph_auth_guard_create(0, NULL, &g, &err), PH_EINVAL);
    cr_expect_null(g);
    ph_auth_guard_free(NULL);
}

/* Pool threads failing and checking at once, the timer ticking, on a table
 * small enough to evict all the time: the counts stay consistent (run under
 * TSan in the TSan tree). Every block ends by the far future. */
typedef struct hammer {
    ph_auth_guard *g;
    const ph_auth_failures_conf *c;
    unsigned seed;
    atomic_int *stop;
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    char a[32];
    for (unsigned i = 0; i < 20000; i++) {
        unsigned x = (h->seed + i * 2654435761u) >> 8;
        snprintf(a, sizeof a, "198.18.%u.%u", (x >> 8) % 4, x % 64);
        ph_ipaddr ad = ip(a);
        ph_auth_verdict v;
        if (i % 3)
            ph_auth_guard_fail(h->g, h->c, &ad, (int64_t)i, &v);
        else
            ph_auth_guard_refused(h->g, h->c, &ad, (int64_t)i);
    }
    return NULL;
}

static void *ticker_main(void *arg)
{
    hammer *h = arg;
    for (int64_t t = 0; !atomic_load(h->stop); t += 50)
        ph_auth_guard_tick(h->g, t);
    return NULL;
}

Test(auth_guard, concurrent_callers)
{
    ph_auth_failures_conf c = conf();
    c.block_s = 1;
    ph_metrics *m = ph_metrics_create();
    ph_auth_guard *g = guard(64, m);
    atomic_int stop = 0;
    hammer hs[4], tk = {g, &c, 0, &stop};
    pthread_t t[4], ticker;
    cr_assert_eq(pthread_create(&ticker, NULL, ticker_main, &tk), 0);
    for (unsigned i = 0; i < 4; i++) {
        hs[i] = (hammer){g, &c, i * 7919u, &stop};
        cr_assert_eq(pthread_create(&t[i], NULL, hammer_main, &hs[i]), 0);
    }
    for (unsigned i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    atomic_store(&stop, 1);
    pthread_join(ticker, NULL);
    cr_expect_eq(atomic_load(&m->auth_failures), 4 * (20000 - 6667));
    cr_expect_eq(ph_auth_guard_tick(g, INT64_MAX / 2), 0, "every block ends");
    cr_expect_eq(atomic_load(&m->auth_blocked), 0);
    ph_auth_guard_free(g);
    ph_metrics_free(m);
}

/* ---- netaddr -------------------------------------------------------------------- */

Test(netaddr, cidr_parse)
{
    ph_cidr c;
    cr_assert_null(ph_cidr_parse("10.0.0.0/8", &c));
    cr_expect_eq(c.net.family, 4);
    cr_expect_eq(c.prefix, 8);
    cr_assert_null(ph_cidr_parse("203.0.113.9", &c));
    cr_expect_eq(c.prefix, 32, "a host");
    cr_assert_null(ph_cidr_parse("::1", &c));
    cr_expect_eq(c.net.family, 6);
    cr_expect_eq(c.prefix, 128);
    cr_assert_null(ph_cidr_parse("0.0.0.0/0", &c));
    cr_assert_null(ph_cidr_parse("::/0", &c));
    cr_assert_null(ph_cidr_parse("::ffff:10.0.0.0/104", &c));
    cr_expect_eq(c.net.family, 4, "v4-mapped: the IPv4 network");
    cr_expect_eq(c.prefix, 8);
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"", "empty"},
        {"10.0.0.0/33", "prefix above 32 for an IPv4 address"},
        {"2001:db8::/129", "prefix above 128 for an IPv6 address"},
        {"10.0.0.1/8", "bits set past the prefix (write the network's first address, or a host "
                       "without a prefix)"},
        {"10.0.0.0/", "the prefix after '/' is not a number"},
        {"10.0.0.0/-1", "the prefix after '/' is not a number"},
        {"10.0.0.0/8/8", "the prefix after '/' is not a number"},
        {"10.0.0", "not an IPv4 address"},
        {"mall-nat", "not an IPv4 address"},
        {"2001:db8::g/32", "not an IPv6 address"},
        {"::ffff:10.0.0.0/8", "a prefix below 96 for an IPv4-mapped address (::ffff:a.b.c.d)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = ph_cidr_parse(bad[i].text, &c);
        cr_assert_not_null(why, "%s", bad[i].text);
        cr_expect_str_eq(why, bad[i].why, "%s", bad[i].text);
        cr_expect_eq(c.net.family, 0, "%s: zeroed", bad[i].text);
    }
}

Test(netaddr, cidr_contains)
{
    static const struct {
        const char *net, *addr;
        int in;
    } rows[] = {
        {"10.0.0.0/8", "10.255.255.255", 1},
        {"10.0.0.0/8", "11.0.0.0", 0},
        {"172.16.0.0/12", "172.31.0.1", 1},
        {"172.16.0.0/12", "172.32.0.1", 0},
        {"192.168.1.0/20", "192.168.0.0", 0}, /* host bits: refused at parse, see below */
        {"192.168.16.0/20", "192.168.31.255", 1},
        {"192.168.16.0/20", "192.168.32.0", 0},
        {"0.0.0.0/0", "198.51.100.1", 1},
        {"0.0.0.0/0", "2001:db8::1", 0},
        {"::/0", "2001:db8::1", 1},
        {"::/0", "198.51.100.1", 0},
        {"2001:db8::/33", "2001:db8:7fff::1", 1},
        {"2001:db8::/33", "2001:db8:8000::1", 0},
        {"203.0.113.9", "203.0.113.9", 1},
        {"203.0.113.9", "203.0.113.8", 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        ph_cidr c;
        if (ph_cidr_parse(rows[i].net, &c)) {
            cr_expect_eq(rows[i].in, 0, "%s does not parse", rows[i].net);
            continue;
        }
        ph_ipaddr a = ip(rows[i].addr);
        cr_expect_eq(ph_cidr_contains(&c, &a), rows[i].in, "%s in %s", rows[i].addr, rows[i].net);
    }
}

Test(netaddr, format)
{
    char buf[PH_IPADDR_TEXT];
    ph_ipaddr a = ip("::ffff:127.0.0.2");
    cr_expect_str_eq(ph_ipaddr_format(&a, buf, sizeof buf), "127.0.0.2");
    a = ip("2001:db8::1");
    cr_expect_str_eq(ph_ipaddr_format(&a, buf, sizeof buf), "2001:db8::1");
    ph_ipaddr none = {0};
    cr_expect_str_eq(ph_ipaddr_format(&none, buf, sizeof buf), "-");
}
