/*
 * auth_guard.c — failed-authentication throttling per peer address
 * (auth_guard.h).
 *
 * The table: `cap` entries allocated at create, found through a chained hash
 * index (SipHash-2-4 keyed with random bytes, so a peer choosing its IPv6
 * addresses cannot aim them at one chain), on an LRU list (most recent first:
 * the tail is the entry evicted when the table is full) and, while blocked,
 * on the blocked list (what tick walks). Links are entry indices; NONE ends a
 * list. Beside the table, `filter` counts the blocked entries per slot of
 * their hash: the lock-free first look of ph_auth_guard_refused.
 */
#include "http/auth_guard.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/lockcheck.h"
#include "crypto/crypto.h"
#include "metrics/metrics.h"

#define NBUCKETS     11u /* a tenth of the window each, and one more (auth_guard.h) */
#define NONE         UINT32_MAX
#define FILTER_SLOTS 4096u /* power of two */
#define CAP_MAX      (1u << 24)

typedef struct ag_entry {
    ph_ipaddr addr;
    uint8_t blocked;        /* 1 while on the blocked list */
    uint16_t cnt[NBUCKETS]; /* failures per bucket, saturating */
    uint32_t hash;          /* keyed hash of addr */
    uint32_t hnext;         /* next in its hash chain */
    uint32_t lprev, lnext;  /* LRU list */
    uint32_t bprev, bnext;  /* blocked list */
    int64_t bucket;         /* index (now / bucket_ms) of the newest bucket */
    int64_t until_ms;       /* end of the block, while blocked */
} ag_entry;

struct ph_auth_guard {
    ph_mutex mu;          /* guards everything below but the atomics */
    struct ph_metrics *m; /* borrowed; NULL = not measured */
    uint64_t k0, k1;      /* SipHash key: immutable after create */
    ag_entry *e;          /* cap entries; [0, used) are in the table */
    size_t cap, used;
    uint32_t *heads; /* hash index: hmask + 1 chain heads */
    uint32_t hmask;
    uint32_t lru_head, lru_tail;
    uint32_t blk_head;
    int64_t bucket_ms; /* the bucket length the counts were kept with; 0 before the first */
    atomic_uint nblocked;
    atomic_uint filter[FILTER_SLOTS]; /* blocked entries per hash slot */
};

/* ---- SipHash-2-4 (Aumasson, Bernstein), 64-bit output ---------------------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t siphash24(uint64_t k0, uint64_t k1, const uint8_t *in, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = le64(in + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = whole; i < len; i++)
        b |= (uint64_t)in[i] << (8 * (i - whole));
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint32_t addr_hash(const ph_auth_guard *g, const ph_ipaddr *a)
{
    return (uint32_t)siphash24(g->k0, g->k1, (const uint8_t *)a, sizeof *a);
}

static atomic_uint *filter_slot(ph_auth_guard *g, uint32_t hash)
{
    /* the high bits: the index uses the low ones, so a chain is not a slot */
    return &g->filter[(hash >> 20) & (FILTER_SLOTS - 1)];
}

/* ---- lists ----------------------------------------------------------------- */

static void lru_unlink(ph_auth_guard *g, uint32_t i)
{
    ag_entry *e = &g->e[i];
    if (e->lprev != NONE)
        g->e[e->lprev].lnext = e->lnext;
    else
        g->lru_head = e->lnext;
    if (e->lnext != NONE)
        g->e[e->lnext].lprev = e->lprev;
    else
        g->lru_tail = e->lprev;
    e->lprev = e->lnext = NONE;
}

static void lru_push_front(ph_auth_guard *g, uint32_t i)
{
    ag_entry *e = &g->e[i];
    e->lprev = NONE;
    e->lnext = g->lru_head;
    if (g->lru_head != NONE)
        g->e[g->lru_head].lprev = i;
    g->lru_head = i;
    if (g->lru_tail == NONE)
        g->lru_tail = i;
}

static void lru_touch(ph_auth_guard *g, uint32_t i)
{
    if (g->lru_head == i)
        return;
    lru_unlink(g, i);
    lru_push_front(g, i);
}

/* Publishes the blocked count to the gauge: under mu, so stores follow changes. */
static void gauge_store(ph_auth_guard *g)
{
    PH_ASSERT_HELD(&g->mu);
    if (g->m)
        atomic_store_explicit(&g->m->auth_blocked, atomic_load(&g->nblocked), memory_order_relaxed);
}

static void block(ph_auth_guard *g, uint32_t i, int64_t until_ms)
{
    PH_ASSERT_HELD(&g->mu);
    ag_entry *e = &g->e[i];
    e->until_ms = until_ms;
    if (e->blocked)
        return;
    e->blocked = 1;
    e->bprev = NONE;
    e->bnext = g->blk_head;
    if (g->blk_head != NONE)
        g->e[g->blk_head].bprev = i;
    g->blk_head = i;
    atomic_fetch_add_explicit(filter_slot(g, e->hash), 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&g->nblocked, 1, memory_order_relaxed);
    gauge_store(g);
}

static void unblock(ph_auth_guard *g, uint32_t i)
{
    PH_ASSERT_HELD(&g->mu);
    ag_entry *e = &g->e[i];
    if (!e->blocked)
        return;
    if (e->bprev != NONE)
        g->e[e->bprev].bnext = e->bnext;
    else
        g->blk_head = e->bnext;
    if (e->bnext != NONE)
        g->e[e->bnext].bprev = e->bprev;
    e->bprev = e->bnext = NONE;
    e->blocked = 0;
    e->until_ms = 0;
    assert(atomic_load(filter_slot(g, e->hash)) > 0 && atomic_load(&g->nblocked) > 0);
    atomic_fetch_sub_explicit(filter_slot(g, e->hash), 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&g->nblocked, 1, memory_order_relaxed);
    gauge_store(g);
}

/* ---- the table ------------------------------------------------------------- */

static uint32_t find(ph_auth_guard *g, const ph_ipaddr *a, uint32_t hash)
{
    PH_ASSERT_HELD(&g->mu);
    for (uint32_t i = g->heads[hash & g->hmask]; i != NONE; i = g->e[i].hnext)
        if (g->e[i].hash == hash && memcmp(&g->e[i].addr, a, sizeof *a) == 0)
            return i;
    return NONE;
}

static void chain_remove(ph_auth_guard *g, uint32_t i)
{
    uint32_t *at = &g->heads[g->e[i].hash & g->hmask];
    while (*at != i) {
        assert(*at != NONE);
        at = &g->e[*at].hnext;
    }
    *at = g->e[i].hnext;
}

/* The entry for a, made when it is not in the table: a free one, else the
 * least recently seen one, forgotten (its block too). */
static uint32_t find_or_add(ph_auth_guard *g, const ph_ipaddr *a, uint32_t hash, int64_t bucket)
{
    uint32_t i = find(g, a, hash);
    if (i != NONE)
        return i;
    if (g->used < g->cap) {
        i = (uint32_t)g->used++;
    } else {
        i = g->lru_tail;
        assert(i != NONE);
        unblock(g, i);
        chain_remove(g, i);
        lru_unlink(g, i);
    }
    ag_entry *e = &g->e[i];
    memset(e, 0, sizeof *e);
    e->addr = *a;
    e->hash = hash;
    e->bucket = bucket;
    e->bprev = e->bnext = NONE;
    e->hnext = g->heads[hash & g->hmask];
    g->heads[hash & g->hmask] = i;
    lru_push_front(g, i);
    return i;
}

/* The counts follow the configured window: a new bucket length restarts them
 * (blocks keep their end). */
static void window_follow(ph_auth_guard *g, const ph_auth_failures_conf *c, int64_t now_ms)
{
    PH_ASSERT_HELD(&g->mu);
    int64_t bms = (int64_t)c->window_s * 100; /* a tenth of the window */
    if (bms == g->bucket_ms)
        return;
    g->bucket_ms = bms;
    for (size_t i = 0; i < g->used; i++) {
        memset(g->e[i].cnt, 0, sizeof g->e[i].cnt);
        g->e[i].bucket = now_ms / bms;
    }
}

/* Moves e's newest bucket to `bucket`, emptying the ones it passes. A clock
 * that went back (only a caller's mistake: it is monotonic) counts into the
 * newest bucket. */
static void buckets_advance(ag_entry *e, int64_t bucket)
{
    if (bucket <= e->bucket)
        return;
    int64_t gap = bucket - e->bucket;
    if (gap >= NBUCKETS)
        memset(e->cnt, 0, sizeof e->cnt);
    else
        for (int64_t b = e->bucket + 1; b <= bucket; b++)
            e->cnt[b % NBUCKETS] = 0;
    e->bucket = bucket;
}

static unsigned buckets_sum(const ag_entry *e)
{
    unsigned n = 0;
    for (unsigned b = 0; b < NBUCKETS; b++)
        n += e->cnt[b];
    return n;
}

static int exempt(const ph_auth_failures_conf *c, const ph_ipaddr *a)
{
    for (size_t i = 0; i < c->nexempt && i < PH_AUTH_EXEMPT_MAX; i++)
        if (ph_cidr_contains(&c->exempt_nets[i], a))
            return 1;
    return 0;
}

/* The hold of the n-th failure of the window (n > slow_after): delay_ms,
 * doubled per failure past the first delayed one, at most delay_max_ms. */
static unsigned delay_for(const ph_auth_failures_conf *c, unsigned n)
{
    uint64_t d = c->delay_ms;
    for (unsigned k = n - c->slow_after - 1; k > 0 && d < c->delay_max_ms; k--)
        d *= 2;
    return d < c->delay_max_ms ? (unsigned)d : c->delay_max_ms;
}

/* ---- the calls --------------------------------------------------------------- */

int ph_auth_guard_create(size_t capacity, struct ph_metrics *m, ph_auth_guard **out, ph_err *err)
{
    if (capacity == 0 || capacity > CAP_MAX)
        return ph_err_set(err, PH_EINVAL, "auth guard: capacity %zu is not 1..%u", capacity,
                          CAP_MAX);
    ph_auth_guard *g = calloc(1, sizeof *g);
    uint32_t nheads = 1;
    while (nheads < capacity * 2)
        nheads <<= 1;
    if (g) {
        g->e = calloc(capacity, sizeof *g->e);
        g->heads = malloc(nheads * sizeof *g->heads);
    }
    if (!g || !g->e || !g->heads) {
        if (g) {
            free(g->e);
            free(g->heads);
        }
        free(g);
        return ph_err_set(err, PH_ENOMEM, "auth guard: out of memory for %zu addresses", capacity);
    }
    memset(g->heads, 0xff, nheads * sizeof *g->heads); /* NONE */
    uint8_t key[16];
    if (ph_random_bytes(key, sizeof key) != PH_OK) {
        free(g->e);
        free(g->heads);
        free(g);
        return ph_err_set(err, PH_ECRYPTO, "auth guard: no random bytes for its hash key");
    }
    g->k0 = le64(key);
    g->k1 = le64(key + 8);
    g->hmask = nheads - 1;
    g->cap = capacity;
    g->m = m;
    g->lru_head = g->lru_tail = g->blk_head = NONE;
    ph_mutex_init(&g->mu);
    if (m)
        atomic_store_explicit(&m->auth_blocked, 0, memory_order_relaxed);
    *out = g;
    return PH_OK;
}

void ph_auth_guard_free(ph_auth_guard *g)
{
    if (!g)
        return;
    ph_mutex_destroy(&g->mu);
    free(g->e);
    free(g->heads);
    free(g);
}

unsigned ph_auth_guard_refused(ph_auth_guard *g, const ph_auth_failures_conf *c, const ph_ipaddr *a,
                               int64_t now_ms)
{
    uint32_t hash = addr_hash(g, a);
    /* the common case, a good client while no address near its hash is
     * blocked: no lock */
    if (!atomic_load_explicit(filter_slot(g, hash), memory_order_relaxed))
        return 0;
    unsigned left = 0;
    ph_mutex_lock(&g->mu);
    uint32_t i = find(g, a, hash);
    if (i != NONE && g->e[i].blocked) {
        if (g->e[i].until_ms <= now_ms || exempt(c, a)) {
            unblock(g, i); /* its time is up, or a reload exempted it */
        } else {
            left = (unsigned)((g->e[i].until_ms - now_ms + 999) / 1000);
            lru_touch(g, i);
        }
    }
    ph_mutex_unlock(&g->mu);
    if (left)
        ph_metrics_auth(g->m, 0, PH_MX_AUTH_REFUSED);
    return left;
}

void ph_auth_guard_fail(ph_auth_guard *g, const ph_auth_failures_conf *c, const ph_ipaddr *a,
                        int64_t now_ms, ph_auth_verdict *v)
{
    memset(v, 0, sizeof *v);
    assert(c->window_s > 0 && c->block_after > c->slow_after);
    if (exempt(c, a)) {
        ph_metrics_auth(g->m, 1, -1);
        return;
    }
    uint32_t hash = addr_hash(g, a);
    ph_mutex_lock(&g->mu);
    window_follow(g, c, now_ms);
    int64_t bucket = now_ms / g->bucket_ms;
    uint32_t i = find_or_add(g, a, hash, bucket);
    ag_entry *e = &g->e[i];
    buckets_advance(e, bucket);
    uint16_t *slot = &e->cnt[e->bucket % NBUCKETS];
    if (*slot < UINT16_MAX)
        (*slot)++;
    v->failures = buckets_sum(e);
    lru_touch(g, i);
    if (e->blocked && e->until_ms <= now_ms)
        unblock(g, i);
    if (v->failures >= c->block_after) {
        v->blocked = !e->blocked;
        block(g, i, now_ms + (int64_t)c->block_s * 1000);
    }
    if (v->failures > c->slow_after)
        v->delay_ms = delay_for(c, v->failures);
    ph_mutex_unlock(&g->mu);
    ph_metrics_auth(g->m, 1, v->delay_ms ? PH_MX_AUTH_DELAYED : -1);
}

unsigned ph_auth_guard_tick(ph_auth_guard *g, int64_t now_ms)
{
    ph_mutex_lock(&g->mu);
    for (uint32_t i = g->blk_head, next; i != NONE; i = next) {
        next = g->e[i].bnext;
        if (g->e[i].until_ms <= now_ms)
            unblock(g, i);
    }
    unsigned n = atomic_load(&g->nblocked);
    ph_mutex_unlock(&g->mu);
    return n;
}

unsigned ph_auth_guard_blocked(ph_auth_guard *g)
{
    return atomic_load_explicit(&g->nblocked, memory_order_relaxed);
}
