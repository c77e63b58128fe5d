/*
 * risk.c — the engine: rules and lists in force, per-subject windows, recent
 * blocks, and the one decision per order (risk.h).
 *
 * State under rk->mu (a leaf: nothing else is taken or called while it is
 * held, metrics' relaxed atomics aside):
 *   - rules: the enabled rules in force, sorted by priority then id; a rule's
 *     index in this array is its *slot*;
 *   - grp: the velocity rules by variable, up to 16 to a *group* (a variable
 *     with more rules has more groups); a rule is a bit of its group;
 *   - per group an open-addressing table (linear probing, backward-shift
 *     deletion, no tombstones) of subject blocks keyed by the subject key.
 *     A block holds one ring of entries (its first 4 in the block itself;
 *     time, amount, ticket, and the bits
 *     of the group's rules that hold the entry), oldest first, shared by
 *     every rule of the group, and per rule its count, sum, a lower bound of
 *     its oldest entry's time and where its oldest entry may start;
 *   - blk: recent blocks, (variable, key) -> the latest time an order of that
 *     subject was blocked (and the latest denial's, until it is released);
 *   - lst: the list entries in force, (list, variable, key) -> expiry.
 *
 * Why this layout: one order is one entry per variable, not one per rule,
 * and a check finds each variable's rules in one block (a few cache lines)
 * instead of one table probe and two ring ends per rule. With 20 rules over
 * 6 variables and 100,000 subjects that is what a check costs (cache misses,
 * bench/risk_check.sh), not the arithmetic. A rule's window is still its
 * own: the entries carrying its bit, trimmed by its window and its limit
 * exactly as a ring of its own would be (an entry whose last bit goes is
 * dead; dead entries leave from the front, or by compaction before a ring
 * would grow, so dead entries are never most of a ring that grows).
 *
 * The hot path (ph_risk_check with the blocks existing and their rings with
 * room) allocates nothing: a group's table is grown, if it must be, before
 * its block is taken, and a ring before the rules are visited, so every
 * block pointer taken during a check stays valid until it ends.
 *
 * Growing a table never stops the checks for a time that grows with the
 * table (a Spring Festival peak brings millions of subjects): past 31/64 full
 * a table twice the size is wished for (gt_reserve; the sweep wishes for a
 * smaller one after a burst). The operations that end next (checks, replays,
 * sweeps) allocate it and zero it a huge page each *after* letting the lock
 * go (chores_take under the lock, chores_do outside it: the page faults and
 * any compaction for huge pages fall on no lock holder); when whole it goes
 * in force under the lock (a pointer swap) and the group's blocks move to it
 * MIG_SLOTS slots per operation that touches the group, before the
 * operation takes a block of it (gt_step), as Redis's dict rehashes. Blocks
 * are looked up in the new table, then in the part of the old one not moved
 * yet; new blocks go to the new one; the sweep removes a block of the old
 * one by leaving its key behind (ot_remove), so the old table's probe chains
 * stay whole without anything ever moving in it. A drained table is freed
 * outside the lock too. While the new table is being zeroed the current one
 * takes blocks up to 3/4 full; beyond that (no memory, or a burst
 * outrunning the zeroing) it grows at once under the lock as it always did
 * (stats: grown_locked). A rules change (rare, an ops action, already
 * proportional to the counters it carries) still copies or moves tables
 * under the lock; a rules change that keeps a group's rules keeps its
 * tables, a move in progress included.
 */
#include "risk/risk.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/lockcheck.h"
#include "metrics/metrics.h"

#define GROUP_MAX 16 /* rules to a group: the low bits of ent.am */
#define ENT_BITS  ((1ULL << GROUP_MAX) - 1)
/* fen an entry keeps: an order's amount saturates here, and a fen rule's
 * limit is taken as at most AMOUNT_MAX - 1, so a saturated amount takes any
 * window over it as the exact one would (risk.h, "Exactness") */
#define AMOUNT_MAX ((int64_t)((1ULL << (64 - GROUP_MAX)) - 1))
/* a block's base lies this far before its first entry's time, so an entry
 * counted slightly out of order still lies after it (a rebase handles more) */
#define BASE_SLACK  ((int64_t)1 << 24) /* ms: 4.7 hours */
#define INLINE_ENTS 4                  /* entries a block holds itself, before it needs a ring */
#define RING_MIN    8                  /* entries of a ring's first allocation */
#define HUGE_MIN    ((size_t)2 << 20)  /* a huge page */

/* 16 bytes an entry, the bulk of the engine's memory (one per order and
 * variable in the windows): its time as ms after its block's base (entries
 * of one block lie within 30 days of each other, the longest window, and
 * 2^32 ms is 49 days); the low 32 bits of the check's ticket (never 0 for a
 * check; 0: counted by a replay, never released); its amount (saturated at
 * AMOUNT_MAX) << GROUP_MAX | the bits of the group's rules holding it (none:
 * dead). */
typedef struct ent {
    uint32_t dt;
    uint32_t ticket;
    uint64_t am;
} ent;
_Static_assert(sizeof(ent) == 16, "an entry is 16 bytes");

/* One rule's window in a subject's block. Meaningful while n > 0. */
typedef struct win {
    uint64_t sum;   /* of its entries' amounts (exact for a fen rule; wraps unread for others) */
    int64_t old_at; /* <= the time of its oldest entry: nothing to trim while in the window */
    uint32_t n;     /* its entries */
    uint32_t first; /* ring seq: none of its entries lies before it */
} win;

/* A subject's block in a group's table; stride sizeof(sblk) + m * sizeof(win). */
typedef struct sblk {
    uint64_t key;  /* 0: the table slot is empty */
    ent *ring;     /* cap entries; entry seq s at ring[s & (cap - 1)] */
    int64_t base;  /* ms: an entry's time is base + its dt */
    uint32_t head; /* seq of the oldest entry */
    uint32_t len, cap, dead;
    /* the entries while they fit here (ring NULL, cap INLINE_ENTS): most
     * subjects (a person, a phone, a device) have a few orders in a window,
     * and theirs cost no allocation and no cache line but their block's */
    ent inl[INLINE_ENTS];
    win w[];
} sblk;

/* Ring storage: rings of RING_MIN << c entries (c < POOL_CLASSES: up to
 * 4,096 entries, 64 KB) are carved from slabs of one class each, HUGE_MIN bytes aligned to
 * HUGE_MIN (so a ring finds its slab by its address), and kept on a free
 * list per class when a ring grows out of them or its block goes: a growing
 * ring takes a slot, not a malloc and a free. Larger rings are malloc'd. A slab whose
 * rings are all free goes back at the next sweep. */
#define POOL_CLASSES 10
#define SLAB_HDR     64 /* the slab's header; slots stay 64-byte aligned */

typedef struct slab {
    struct slab *next, *prev; /* the pool's slabs */
    uint32_t cls, live;       /* its class; rings handed out */
    size_t top;               /* bytes carved, from SLAB_HDR */
} slab;

typedef struct fring {
    struct fring *next, *prev;
} fring;

typedef struct pool {
    slab *slabs;
    size_t nslabs;
    slab *cur[POOL_CLASSES]; /* being carved */
    fring *free[POOL_CLASSES];
} pool;

/* A table's blocks move to a new one a few slots per operation (gt_step,
 * MIG_SLOTS a time): no operation rehashes a whole table under the lock. */
#define MIG_SLOTS 16

typedef struct group {
    int var;
    uint32_t m;               /* rules (bits) */
    uint32_t slot[GROUP_MAX]; /* bit -> slot */
    size_t stride;
    unsigned char *tab; /* the current table: new blocks go here */
    size_t cap, used;   /* cap a power of 2, or 0 */
    /* the table being drained into tab (NULL: none): its slots before mig
     * have moved; oused blocks are left in it */
    unsigned char *otab;
    size_t ocap, oused, mig;
    /* the table wished for: want slots (0: none), allocated and its pages
     * faulted in outside the lock, a piece per operation (chores_do); prep
     * (NULL until allocated) has its first prep_done bytes zeroed. While a
     * thread works on it (claimed), the thread holds the pointer, not prep */
    size_t want, prep_done;
    unsigned char *prep;
    int claimed;
    unsigned char *retired; /* a drained table, freed outside the lock */
} group;

/* A subject's recent blocks: the latest of the blocks that stand (stored
 * denials, replayed at start; blocks at review) and the latest denial of a
 * check whose order may not be stored yet (`by`: its note id, 0 none), which
 * ph_risk_release takes back when it is not. */
typedef struct blk {
    uint64_t key; /* 0: empty */
    int var;
    int64_t at;   /* INT64_MIN: none */
    int64_t tent; /* meaningful while by != 0 */
    uint64_t by;
} blk;

/* The latest block of the subject that counts now. */
static int64_t blk_latest(const blk *b)
{
    return b->by && b->tent > b->at ? b->tent : b->at;
}

typedef struct lent {
    uint64_t key; /* 0: empty */
    uint8_t list, var;
    int64_t expires_at; /* 0 never */
} lent;

/* A rule in force: what a check reads of it, in one cache line (the rule as
 * given, ~600 bytes of id, scope and note, is read only when it fires). */
typedef struct frule {
    int64_t limit, window_ms, created_at;
    const char *scope_value; /* def's */
    const ph_risk_rule *def; /* the set's copy of the rule */
    uint32_t scope_len;
    uint32_t grp, bit; /* velocity: its group and bit */
    uint8_t kind, var, scope, measure, action, dry_run, related;
} frule;
_Static_assert(sizeof(frule) <= 64, "a rule in force is one cache line");

/* Per group, for one check: the block, the bits of the rules that apply and
 * of those that count this order. */
typedef struct gscr {
    sblk *b;
    uint64_t apply, count;
} gscr;

struct ph_risk {
    ph_mutex mu;
    ph_metrics *mx;
    frule *rules;
    ph_risk_rule *defs; /* the rules as given, in rules' order (frule.def) */
    size_t nrules;
    group *grp;
    size_t ngrp;
    gscr *scr;    /* ngrp */
    pool pool;    /* the rings of every block */
    size_t cused; /* rule windows holding entries (the stats' counters) */
    blk *blk;
    size_t bcap, bused;
    lent *lst;
    size_t lcap, lused;
    uint64_t next_ticket;
    uint64_t gen; /* of the set ph_risk_load put in force */
    int loaded;
    uint64_t epoch; /* rule sets installed: a table allocated outside the lock is for this one */
    int chores;     /* some group wishes for a table or has one retired */
    uint64_t grown_locked;
    uint64_t checks, by_action[4], dry_run_hits, fail_closed;
};

/* ---- hashing ------------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* ---- ring storage --------------------------------------------------------- */

static int ring_class(uint32_t cap)
{
    int c = 0;
    while (c < POOL_CLASSES && ((uint32_t)RING_MIN << c) != cap)
        c++;
    return c;
}

static void fring_unlink(pool *p, int c, fring *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        p->free[c] = f->next;
    if (f->next)
        f->next->prev = f->prev;
}

static ent *ring_alloc(pool *p, uint32_t cap)
{
    int c = ring_class(cap);
    if (c == POOL_CLASSES)
        return malloc((size_t)cap * sizeof(ent));
    size_t size = (size_t)cap * sizeof(ent);
    slab *s;
    if (p->free[c]) {
        fring *f = p->free[c];
        fring_unlink(p, c, f);
        s = (slab *)((uintptr_t)f & ~(uintptr_t)(HUGE_MIN - 1));
        s->live++;
        return (ent *)f;
    }
    s = p->cur[c];
    if (!s || s->top + size > HUGE_MIN) {
        s = aligned_alloc(HUGE_MIN, HUGE_MIN);
        if (!s)
            return NULL;
        /* small pages: a small mall pays what it carves (huge ones, asked
         * for, cost more in faults and compaction than their TLB hits win
         * back: bench/README.md, risk_check) */
        *s = (slab){p->slabs, NULL, (uint32_t)c, 0, SLAB_HDR};
        if (p->slabs)
            p->slabs->prev = s;
        p->slabs = s;
        p->nslabs++;
        p->cur[c] = s;
    }
    ent *r = (ent *)((char *)s + s->top);
    s->top += size;
    s->live++;
    return r;
}

static void ring_free(pool *p, ent *r, uint32_t cap)
{
    if (!r)
        return;
    int c = ring_class(cap);
    if (c == POOL_CLASSES) {
        free(r);
        return;
    }
    if (!p)
        return; /* the engine goes: its slabs go whole (pool_free) */
    slab *s = (slab *)((uintptr_t)r & ~(uintptr_t)(HUGE_MIN - 1));
    assert(s->cls == (uint32_t)c && s->live);
    s->live--;
    fring *f = (fring *)r;
    *f = (fring){p->free[c], NULL};
    if (f->next)
        f->next->prev = f;
    p->free[c] = f;
}

/* Gives back the slabs whose rings are all free (their slots leave the free
 * list first). */
static void pool_trim(pool *p)
{
    for (slab *s = p->slabs, *next; s; s = next) {
        next = s->next;
        if (s->live)
            continue;
        size_t size = ((size_t)RING_MIN << s->cls) * sizeof(ent);
        for (size_t at = SLAB_HDR; at + size <= s->top; at += size)
            fring_unlink(p, (int)s->cls, (fring *)((char *)s + at));
        if (p->cur[s->cls] == s)
            p->cur[s->cls] = NULL;
        if (s->prev)
            s->prev->next = s->next;
        else
            p->slabs = s->next;
        if (s->next)
            s->next->prev = s->prev;
        p->nslabs--;
        free(s);
    }
}

static void pool_free(pool *p)
{
    for (slab *s = p->slabs, *next; s; s = next) {
        next = s->next;
        free(s);
    }
    memset(p, 0, sizeof *p);
}

/* ---- a subject's block: one ring, the windows of a group's rules --------- */

static int seq_lt(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}

static ent *ent_at(const sblk *b, uint32_t seq)
{
    ent *r = b->ring ? b->ring : (ent *)b->inl;
    return &r[seq & (b->cap - 1)];
}

static uint32_t sb_end(const sblk *b)
{
    return b->head + b->len;
}

static int64_t ent_time(const sblk *b, const ent *e)
{
    return b->base + e->dt;
}

static int64_t ent_amount(const ent *e)
{
    return (int64_t)(e->am >> GROUP_MAX);
}

/* The seq of rule `bit`'s oldest entry (sb_end when none), remembered. */
static uint32_t sb_oldest(sblk *b, uint32_t bit)
{
    win *w = &b->w[bit];
    uint32_t s = w->first, end = sb_end(b);
    if (seq_lt(s, b->head))
        s = b->head;
    if (w->n)
        while (s != end && !(ent_at(b, s)->am >> bit & 1))
            s++;
    else
        s = end;
    w->first = s;
    return s;
}

/* Takes entry e out of rule bit's window. */
static void sb_unhold(size_t *held, sblk *b, uint32_t bit, ent *e)
{
    win *w = &b->w[bit];
    assert(e->am >> bit & 1 && w->n);
    e->am &= ~(1ULL << bit);
    w->sum -= (uint64_t)ent_amount(e);
    if (!--w->n)
        (*held)--;
    if (!(e->am & ENT_BITS))
        b->dead++;
}

/* Dead entries leave from the front; a rule's `first` never lies before it. */
static void sb_drop_front(sblk *b, uint32_t m)
{
    if (!b->dead)
        return; /* not a line of the ring read: its front is most of a check's misses */
    uint32_t k = 0;
    while (k < b->len && !(ent_at(b, b->head + k)->am & ENT_BITS))
        k++;
    if (!k)
        return;
    b->head += k;
    b->len -= k;
    b->dead -= k;
    for (uint32_t j = 0; j < m; j++)
        if (seq_lt(b->w[j].first, b->head))
            b->w[j].first = b->head;
}

/* Drops rule bit's entries that lie outside the window at now: an entry at t
 * is in the window while now - t < window (docs/risk.md, "Windows"). */
static void sb_trim_window(size_t *held, sblk *b, uint32_t bit, int64_t now, int64_t window_ms)
{
    win *w = &b->w[bit];
    if (!w->n || now - w->old_at < window_ms)
        return;
    uint32_t s = sb_oldest(b, bit), end = sb_end(b);
    while (s != end) {
        ent *e = ent_at(b, s);
        if (e->am >> bit & 1) {
            if (now - ent_time(b, e) < window_ms)
                break;
            sb_unhold(held, b, bit, e);
        }
        s++;
    }
    w->first = s;
    if (s != end)
        w->old_at = ent_time(b, ent_at(b, s));
}

/* Drops rule bit's oldest entries while the newer ones reach the limit on
 * their own: any window holding the oldest also holds them, and the rule
 * fires there either way (risk.h, "Exactness"). So memory is bounded by the
 * limit. */
static void sb_trim_limit(size_t *held, sblk *b, uint32_t bit, const frule *r)
{
    win *w = &b->w[bit];
    /* nothing can go while the window is within the limit (a fen entry is
     * more than 0): the ring is not read */
    if (r->measure == PH_RISK_FEN ? (int64_t)w->sum <= r->limit : (int64_t)w->n <= r->limit)
        return;
    uint32_t s = sb_oldest(b, bit), end = sb_end(b);
    for (; s != end && w->n; s++) {
        ent *e = ent_at(b, s);
        if (!(e->am >> bit & 1))
            continue;
        int drop = r->measure == PH_RISK_FEN ? (int64_t)w->sum - ent_amount(e) >= r->limit
                                             : (int64_t)w->n - 1 >= r->limit;
        if (!drop)
            break;
        sb_unhold(held, b, bit, e);
    }
    w->first = s;
    if (w->n && s != end)
        w->old_at = ent_time(b, ent_at(b, s));
}

/* Squeezes the dead entries out (no allocation); every `first` restarts at
 * the head. */
static void sb_compact(sblk *b, uint32_t m)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < b->len; i++) {
        ent *e = ent_at(b, b->head + i);
        if (e->am & ENT_BITS)
            *ent_at(b, b->head + k++) = *e;
    }
    b->len = k;
    b->dead = 0;
    for (uint32_t j = 0; j < m; j++)
        b->w[j].first = b->head;
}

/* Room for one more entry: dead entries squeezed out when they are half the
 * ring, else a ring twice the size. PH_ENOMEM leaves b as it was. */
static int sb_room(pool *p, sblk *b, uint32_t m)
{
    if (b->len < b->cap)
        return PH_OK;
    if (b->dead && b->dead * 2 >= b->len) {
        sb_compact(b, m);
        return PH_OK;
    }
    assert(b->cap >= INLINE_ENTS);
    uint32_t cap = b->ring ? b->cap * 2 : RING_MIN;
    if (!cap)
        return PH_ENOMEM;
    ent *r = ring_alloc(p, cap);
    if (!r)
        return PH_ENOMEM;
    for (uint32_t i = 0; i < b->len; i++)
        r[(b->head + i) & (cap - 1)] = *ent_at(b, b->head + i);
    ring_free(p, b->ring, b->cap);
    b->ring = r;
    b->cap = cap;
    return PH_OK;
}

/* at - base, clamped to what an entry holds */
static uint32_t dt_of(int64_t at, int64_t base)
{
    int64_t dt = at - base;
    return dt < 0 ? 0 : dt > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)dt;
}

/* Moves the block's base so that `at` and every entry fit (the entries of a
 * block lie within the longest window, 30 days, of the time a check trims
 * them at; 2^32 ms is 49 days). Only a clock that jumped by more than 49
 * days between two orders of one subject could leave an entry outside: it
 * is clamped to the nearest time that fits. */
static void sb_rebase(sblk *b, int64_t at)
{
    int64_t lo = at, hi = at;
    if (b->len) {
        int64_t first = ent_time(b, ent_at(b, b->head)),
                last = ent_time(b, ent_at(b, sb_end(b) - 1));
        lo = first < lo ? first : lo;
        hi = last > hi ? last : hi;
    }
    int64_t base = lo - BASE_SLACK;
    if (hi - base > (int64_t)UINT32_MAX)
        base = hi - (int64_t)UINT32_MAX;
    for (uint32_t i = 0; i < b->len; i++) {
        ent *e = ent_at(b, b->head + i);
        e->dt = dt_of(ent_time(b, e), base);
    }
    b->base = base;
}

/* Adds an entry held by the rules of `mask`, in time order (checks of
 * different threads may reach the lock slightly out of order); sb_room was
 * called. */
static void sb_add(size_t *held, sblk *b, int64_t at, int64_t amount, uint32_t ticket,
                   uint64_t mask)
{
    assert(b->len < b->cap && mask && mask <= ENT_BITS && amount >= 0);
    if (!b->len)
        b->base = at - BASE_SLACK;
    else if (at < b->base || at - b->base > (int64_t)UINT32_MAX)
        sb_rebase(b, at);
    if (amount > AMOUNT_MAX)
        amount = AMOUNT_MAX;
    uint32_t dt = dt_of(at, b->base);
    uint32_t p = sb_end(b);
    while (p != b->head && ent_at(b, p - 1)->dt > dt) {
        *ent_at(b, p) = *ent_at(b, p - 1);
        p--;
    }
    *ent_at(b, p) = (ent){dt, ticket, (uint64_t)amount << GROUP_MAX | mask};
    b->len++;
    for (uint64_t bits = mask; bits; bits &= bits - 1) {
        win *w = &b->w[__builtin_ctzll(bits)];
        if (!w->n++) {
            (*held)++;
            w->old_at = at;
            w->first = p;
        } else {
            if (at < w->old_at)
                w->old_at = at;
            if (seq_lt(p, w->first))
                w->first = p;
        }
        w->sum += (uint64_t)amount;
    }
}

static void sb_release(pool *p, sblk *b)
{
    ring_free(p, b->ring, b->cap);
    b->ring = NULL;
    b->cap = INLINE_ENTS;
}

/* Back to the block's own entries once they fit there again (the sweep, after
 * a burst): the ring goes back to the pool. */
static void sb_shrink(pool *p, sblk *b)
{
    if (!b->ring || b->len > INLINE_ENTS)
        return;
    ent tmp[INLINE_ENTS];
    for (uint32_t i = 0; i < b->len; i++)
        tmp[(b->head + i) & (INLINE_ENTS - 1)] = *ent_at(b, b->head + i);
    ring_free(p, b->ring, b->cap);
    b->ring = NULL;
    b->cap = INLINE_ENTS;
    memcpy(b->inl, tmp, sizeof tmp);
}

/* ---- a group's table of blocks -------------------------------------------- */

static sblk *gt_at(const group *g, size_t i)
{
    return (sblk *)(g->tab + i * g->stride);
}

static sblk *ot_at(const group *g, size_t i)
{
    return (sblk *)(g->otab + i * g->stride);
}

static size_t gt_home(uint64_t key, size_t cap)
{
    return (size_t)(mix64(key) & (cap - 1));
}

/* The block of key in the current table, else in the part of the table
 * being drained that has not moved yet (a slot before `mig` moved, one with
 * cap 0 was removed: both keep their key, so every probe chain of the
 * drained table stays whole while nothing is ever inserted into it). A key
 * is in one table at most. */
static sblk *gt_find(const group *g, uint64_t key)
{
    if (!g->cap)
        return NULL;
    for (size_t i = gt_home(key, g->cap);; i = (i + 1) & (g->cap - 1)) {
        sblk *b = gt_at(g, i);
        if (!b->key)
            break;
        if (b->key == key)
            return b;
    }
    if (!g->otab)
        return NULL;
    for (size_t i = gt_home(key, g->ocap);; i = (i + 1) & (g->ocap - 1)) {
        sblk *b = ot_at(g, i);
        if (!b->key)
            return NULL;
        if (b->key == key)
            return i < g->mig || !b->cap ? NULL : b;
    }
}

/* The live blocks of both tables, one per call from *pos = 0 on; NULL at
 * the end. Nothing may be inserted or moved meanwhile. */
static sblk *gt_next(const group *g, size_t *pos)
{
    for (; *pos < g->cap; (*pos)++)
        if (gt_at(g, *pos)->key)
            return gt_at(g, (*pos)++);
    for (; g->otab && *pos - g->cap < g->ocap; (*pos)++) {
        size_t i = *pos - g->cap;
        sblk *b = ot_at(g, i);
        if (i >= g->mig && b->key && b->cap)
            return ot_at(g, (*pos)++ - g->cap);
    }
    return NULL;
}

/* Places a block (moved in) into a table known to have room. */
static sblk *gt_place(unsigned char *tab, size_t cap, size_t stride, const sblk *b)
{
    size_t i = gt_home(b->key, cap);
    while (((sblk *)(tab + i * stride))->key)
        i = (i + 1) & (cap - 1);
    sblk *to = (sblk *)(tab + i * stride);
    memcpy(to, b, stride);
    return to;
}

/* What a table of cap slots takes: a large one whole huge pages. */
static size_t gt_bytes(size_t cap, size_t stride)
{
    size_t bytes = cap * stride;
    return bytes < HUGE_MIN ? bytes : (bytes + HUGE_MIN - 1) & ~(size_t)(HUGE_MIN - 1);
}

/* A table of gt_bytes, not zeroed; a large one on huge pages where the
 * kernel gives them on request (THP "madvise"): a check's probes land all
 * over it, and with 4 KB pages each is a TLB miss on top of the cache miss.
 * Zeroing it faults its pages in (and, on huge pages, may wait for the
 * kernel's compaction): calloc would leave a fresh mapping's faults to
 * whoever writes it first, a lock holder moving blocks; so tables checks
 * see are zeroed outside the lock, a huge page per operation (chores_do). */
static unsigned char *gt_alloc_raw(size_t cap, size_t stride)
{
    size_t bytes = gt_bytes(cap, stride);
    if (bytes < HUGE_MIN)
        return malloc(bytes ? bytes : 1);
    unsigned char *tab = aligned_alloc(HUGE_MIN, bytes);
    if (tab)
        (void)madvise(tab, bytes, MADV_HUGEPAGE); /* advice: without it, 4 KB pages */
    return tab;
}

/* A zeroed table, at once: the first table of a group (64 slots), and what
 * a rules change or gt_reserve's fallback builds under the lock. */
static unsigned char *gt_alloc(size_t cap, size_t stride)
{
    unsigned char *tab = gt_alloc_raw(cap, stride);
    if (tab)
        memset(tab, 0, gt_bytes(cap, stride));
    return tab;
}

/* Rehashes every block into a new table at once: only for a table no check
 * sees yet (a rules change building its groups), the first table of 64
 * slots, and the fallback of gt_reserve. No table is being drained. */
static int gt_resize(group *g, size_t cap)
{
    assert(!g->otab);
    unsigned char *tab = gt_alloc(cap, g->stride);
    if (!tab)
        return PH_ENOMEM;
    for (size_t i = 0; i < g->cap; i++)
        if (gt_at(g, i)->key)
            gt_place(tab, cap, g->stride, gt_at(g, i));
    free(g->tab);
    g->tab = tab;
    g->cap = cap;
    return PH_OK;
}

/* Room for one new block at a load of at most 1/2, growing in place: for a
 * group of a rule set not in force yet (rules_install). */
static int gt_reserve_now(group *g)
{
    if (g->cap && (g->used + 1) * 2 <= g->cap)
        return PH_OK;
    return gt_resize(g, g->cap ? g->cap * 2 : 64);
}

/* Starts draining the table into `tab` (cap slots, zeroed): new blocks go to
 * `tab` from now on, the old ones follow MIG_SLOTS slots per operation. */
static void gt_begin(group *g, unsigned char *tab, size_t cap)
{
    assert(!g->otab && g->cap);
    g->otab = g->tab;
    g->ocap = g->cap;
    g->oused = g->used;
    g->mig = 0;
    g->tab = tab;
    g->cap = cap;
    g->used = 0;
}

/* Moves the blocks of up to `slots` slots of the table being drained into
 * the current one; a table drained (or emptied by the sweep) is retired, to
 * be freed outside the lock (chores_take). Every block pointer of the group
 * taken before is void after it. */
static void gt_step(ph_risk *rk, group *g, size_t slots)
{
    if (!g->otab)
        return;
    for (; g->oused && slots && g->mig < g->ocap; slots--) {
        sblk *b = ot_at(g, g->mig++);
        if (!b->key || !b->cap)
            continue;
        assert((g->used + 1) * 4 <= g->cap * 3);
        gt_place(g->tab, g->cap, g->stride, b); /* the old slot keeps its key: chains */
        g->used++;
        g->oused--;
    }
    if (g->oused)
        return;
    free(g->retired); /* not taken yet (not expected: one retirement per operation) */
    g->retired = g->otab;
    g->otab = NULL;
    g->ocap = g->mig = 0;
    rk->chores = 1;
}

/* Room for one new block in a table checks see. Past 31/64 a table twice
 * the size is wished for: the operations that end next allocate and zero it
 * outside the lock (chores_do), a huge page each, so that it is in force
 * about when the table is half full, where it always grew (zeroing a table
 * of C slots of S bytes takes C * S / 2 MB operations, far fewer than the
 * C / 64 blocks still to come before then), and the blocks then move over a
 * few slots per operation (gt_step). Meanwhile the table takes blocks up to
 * 3/4 full; only
 * beyond that (no memory for the new table, or a burst outrunning its
 * allocation) does it grow here, under the lock, as it always did. PH_ENOMEM
 * leaves it as it was. */
static int gt_reserve(ph_risk *rk, group *g)
{
    if (!g->cap)
        return gt_resize(g, 64); /* 64 slots: a few KB */
    if (!g->otab && !g->want && (g->used + 1) * 64 > g->cap * 31) {
        g->want = g->cap * 2;
        rk->chores = 1;
    }
    if ((g->used + 1) * 4 <= g->cap * 3)
        return PH_OK;
    gt_step(rk, g, SIZE_MAX);
    free(g->retired);
    g->retired = NULL;
    if (!g->claimed) { /* a claimed one is dropped by its thread: the table changed */
        free(g->prep);
        g->prep = NULL;
        g->want = g->prep_done = 0;
    }
    rk->grown_locked++;
    return gt_resize(g, g->cap * 2);
}

/* The block of key, created empty when absent; the caller reserved room. */
static sblk *gt_get(group *g, uint64_t key)
{
    sblk *b = gt_find(g, key);
    if (b)
        return b;
    assert(g->cap && (g->used + 1) * 4 <= g->cap * 3);
    size_t i = gt_home(key, g->cap);
    while (gt_at(g, i)->key)
        i = (i + 1) & (g->cap - 1);
    b = gt_at(g, i);
    memset(b, 0, g->stride);
    b->key = key;
    b->cap = INLINE_ENTS;
    g->used++;
    return b;
}

/* Removes the block at b of the current table, its ring freed
 * (backward-shift deletion keeps every probe chain whole without
 * tombstones). */
static void gt_remove(pool *p, group *g, sblk *b)
{
    size_t mask = g->cap - 1;
    size_t i = (size_t)((unsigned char *)b - g->tab) / g->stride;
    sb_release(p, b);
    memset(b, 0, g->stride);
    g->used--;
    for (size_t j = (i + 1) & mask; gt_at(g, j)->key; j = (j + 1) & mask) {
        size_t h = gt_home(gt_at(g, j)->key, g->cap);
        /* j's block may move to the hole i when its home is not in (i, j] */
        int stays = i <= j ? (h > i && h <= j) : (h > i || h <= j);
        if (stays)
            continue;
        memcpy(gt_at(g, i), gt_at(g, j), g->stride);
        memset(gt_at(g, j), 0, g->stride);
        i = j;
    }
}

/* Removes a block of the table being drained: its slot keeps the key (a
 * chain may pass it) with cap 0, which no live block has. */
static void ot_remove(pool *p, group *g, sblk *b)
{
    sb_release(p, b);
    b->cap = 0;
    b->len = b->head = b->dead = 0;
    g->oused--;
}

static void groups_free(pool *p, group *grp, size_t n)
{
    for (size_t k = 0; grp && k < n; k++) {
        group *g = &grp[k];
        sblk *b;
        for (size_t pos = 0; (b = gt_next(g, &pos));)
            sb_release(p, b);
        free(g->tab);
        free(g->otab);
        free(g->retired);
        free(g->prep);
    }
    free(grp);
}

/* ---- work done outside the lock ------------------------------------------ */

#define CHORE_GONE 8 /* retired tables one operation takes along */

/* What an operation does after letting the lock go: free the tables that
 * were drained, and a piece of one table a group wishes for (its allocation
 * with the first HUGE_MIN bytes, or the next HUGE_MIN bytes zeroed: the
 * page faults, and any compaction the kernel does for a huge page, fall on
 * one operation at a time and on no lock holder). The table goes in force,
 * under the lock for a moment, when it is whole. */
typedef struct chores {
    unsigned char *gone[CHORE_GONE];
    size_t ngone;
    int prep;
    size_t grp, cap, from, stride, off;
    unsigned char *tab; /* NULL: to allocate */
    uint64_t epoch;
} chores;

static void chores_take(ph_risk *rk, chores *c)
{
    PH_ASSERT_HELD(&rk->mu);
    c->ngone = 0;
    c->prep = 0;
    if (!rk->chores)
        return;
    int left = 0;
    for (size_t k = 0; k < rk->ngrp; k++) {
        group *g = &rk->grp[k];
        if (g->retired) {
            if (c->ngone < CHORE_GONE) {
                c->gone[c->ngone++] = g->retired;
                g->retired = NULL;
            } else {
                left = 1;
            }
        }
        if (g->want && !g->claimed) {
            if (!c->prep) {
                c->prep = 1;
                c->grp = k;
                c->cap = g->want;
                c->from = g->cap;
                c->stride = g->stride;
                c->off = g->prep_done;
                c->tab = g->prep;
                c->epoch = rk->epoch;
                g->prep = NULL;
                g->claimed = 1;
            } else {
                left = 1;
            }
        }
    }
    rk->chores = left;
}

/* The lock is not held. The table goes back to its group only if the group
 * is still the one it was wished for, with the table it had; when whole,
 * in force if it has room for what may arrive while the blocks move; else
 * it is freed. */
static void chores_do(ph_risk *rk, chores *c)
{
    for (size_t i = 0; i < c->ngone; i++)
        free(c->gone[i]);
    if (!c->prep)
        return;
    size_t bytes = gt_bytes(c->cap, c->stride), done = c->off;
    unsigned char *tab = c->tab;
    if (!tab)
        tab = gt_alloc_raw(c->cap, c->stride);
    if (tab && done < bytes) {
        /* a large table's bytes are a multiple of HUGE_MIN */
        size_t n = bytes - done < HUGE_MIN ? bytes - done : HUGE_MIN;
        memset(tab + done, 0, n);
        done += n;
    }
    ph_mutex_lock(&rk->mu);
    group *g = rk->epoch == c->epoch && c->grp < rk->ngrp ? &rk->grp[c->grp] : NULL;
    if (g && g->claimed && g->want == c->cap) {
        g->claimed = 0;
        int same = tab && !g->otab && g->cap == c->from && g->stride == c->stride;
        if (same && done < bytes) {
            g->prep = tab; /* the next operation goes on */
            g->prep_done = done;
            rk->chores = 1;
            tab = NULL;
        } else {
            g->want = g->prep_done = 0;
            /* while the blocks move, at most cap / MIG_SLOTS more arrive: the
             * new table stays at most half full */
            if (same && (g->used + g->cap / MIG_SLOTS) * 2 <= c->cap) {
                gt_begin(g, tab, c->cap);
                tab = NULL;
            }
        }
    }
    ph_mutex_unlock(&rk->mu);
    free(tab);
}

/* ---- blocks and lists ---------------------------------------------------- */

static size_t pair_home(int tag, uint64_t key, size_t cap)
{
    return (size_t)(mix64(key + (uint64_t)(tag + 1) * 0x9e3779b97f4a7c15ULL) & (cap - 1));
}

static blk *blk_find(ph_risk *rk, int var, uint64_t key)
{
    if (!rk->bcap)
        return NULL;
    size_t mask = rk->bcap - 1;
    for (size_t i = pair_home(var, key, rk->bcap);; i = (i + 1) & mask) {
        if (!rk->blk[i].key)
            return NULL;
        if (rk->blk[i].key == key && rk->blk[i].var == var)
            return &rk->blk[i];
    }
}

static int blk_rebuild(ph_risk *rk, size_t cap, int64_t keep_after)
{
    blk *tab = calloc(cap, sizeof *tab);
    if (!tab)
        return PH_ENOMEM;
    size_t used = 0;
    for (size_t i = 0; i < rk->bcap; i++) {
        blk *b = &rk->blk[i];
        if (!b->key || blk_latest(b) <= keep_after)
            continue;
        size_t j = pair_home(b->var, b->key, cap);
        while (tab[j].key)
            j = (j + 1) & (cap - 1);
        tab[j] = *b;
        used++;
    }
    free(rk->blk);
    rk->blk = tab;
    rk->bcap = cap;
    rk->bused = used;
    return PH_OK;
}

/* Notes a block of the subject at `at`: one that stands (by 0), or a
 * denial's, which its release may take back (by: its note id). Of two
 * denials' notes, the older stands from then on: only the latest can be
 * taken back (risk.h, "Exactness"). */
static void blk_note(ph_risk *rk, int var, uint64_t key, int64_t at, uint64_t by)
{
    blk *b = blk_find(rk, var, key);
    if (!b) {
        if ((rk->bused + 1) * 2 > rk->bcap &&
            blk_rebuild(rk, rk->bcap ? rk->bcap * 2 : 64, INT64_MIN) != PH_OK)
            return; /* without memory the block is not remembered: fail_closed counts it */
        size_t j = pair_home(var, key, rk->bcap);
        while (rk->blk[j].key)
            j = (j + 1) & (rk->bcap - 1);
        b = &rk->blk[j];
        *b = (blk){key, var, INT64_MIN, INT64_MIN, 0};
        rk->bused++;
    }
    if (!by) {
        if (at > b->at)
            b->at = at;
        return;
    }
    if (b->by && b->tent > b->at)
        b->at = b->tent;
    b->tent = at;
    b->by = by;
}

/* Takes back the note of denial `by` where it is still the latest. */
static void blk_unnote(ph_risk *rk, int var, uint64_t key, uint64_t by)
{
    blk *b = blk_find(rk, var, key);
    if (b && b->by == by) {
        b->by = 0;
        b->tent = INT64_MIN;
    }
}

static const lent *lst_find(const ph_risk *rk, int list, int var, uint64_t key)
{
    if (!rk->lcap)
        return NULL;
    size_t mask = rk->lcap - 1;
    for (size_t i = pair_home(list * PH_RISK_VARS + var, key, rk->lcap);; i = (i + 1) & mask) {
        const lent *e = &rk->lst[i];
        if (!e->key)
            return NULL;
        if (e->key == key && e->list == list && e->var == var)
            return e;
    }
}

static int lst_live(const lent *e, int64_t now)
{
    return e && (!e->expires_at || e->expires_at > now);
}

/* ---- lifecycle ----------------------------------------------------------- */
/* ---- lifecycle ----------------------------------------------------------- */

int ph_risk_new(ph_metrics *metrics, ph_risk **out, ph_err *err)
{
    ph_risk *rk = calloc(1, sizeof *rk);
    if (!rk)
        return ph_err_set(err, PH_ENOMEM, "out of memory for the risk engine");
    ph_mutex_init(&rk->mu);
    rk->mx = metrics;
    *out = rk;
    return PH_OK;
}

void ph_risk_free(ph_risk *rk)
{
    if (!rk)
        return;
    groups_free(NULL, rk->grp, rk->ngrp);
    pool_free(&rk->pool);
    free(rk->scr);
    free(rk->blk);
    free(rk->lst);
    free(rk->rules);
    free(rk->defs);
    ph_mutex_destroy(&rk->mu);
    free(rk);
}

static int rule_order(const void *a, const void *b)
{
    const ph_risk_rule *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    return strcmp(x->id, y->id);
}

/* Counters carry over when the rule keeps its id and counts the same thing
 * the same way; a changed variable, scope or measure starts empty (its old
 * entries counted other orders). */
static int same_count(const ph_risk_rule *a, const ph_risk_rule *b)
{
    return a->kind == b->kind && a->var == b->var && a->scope == b->scope &&
           a->measure == b->measure && !strcmp(a->scope_value, b->scope_value);
}

/* A rule set validated and copied, its groups laid out with empty tables,
 * not yet in force. */
typedef struct rule_set {
    frule *fr;
    ph_risk_rule *defs;
    size_t n;
    group *grp;
    size_t ngrp;
    gscr *scr;
} rule_set;

static void rules_discard(rule_set *rs)
{
    free(rs->fr);
    free(rs->defs);
    groups_free(NULL, rs->grp, rs->ngrp); /* its tables are empty */
    free(rs->scr);
    memset(rs, 0, sizeof *rs);
}

/* Velocity rules by variable, in slot order, GROUP_MAX to a group. */
static void rules_group(rule_set *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        frule *f = &rs->fr[i];
        if (f->kind != PH_RISK_VELOCITY)
            continue;
        group *g = NULL;
        for (size_t k = rs->ngrp; k-- > 0;)
            if (rs->grp[k].var == f->var) {
                g = &rs->grp[k];
                break;
            }
        if (!g || g->m == GROUP_MAX) {
            g = &rs->grp[rs->ngrp++];
            g->var = f->var;
        }
        f->grp = (uint32_t)(g - rs->grp);
        f->bit = g->m;
        g->slot[g->m++] = (uint32_t)i;
    }
    /* whole cache lines: a block (on a large, line-aligned table) is never
     * split over one line more than it needs */
    for (size_t k = 0; k < rs->ngrp; k++)
        rs->grp[k].stride = (sizeof(sblk) + rs->grp[k].m * sizeof(win) + 63) & ~(size_t)63;
}

static int rules_prepare(const ph_risk_rule *rules, size_t n, rule_set *out, ph_err *err)
{
    size_t nen = 0, nvel = 0;
    for (size_t i = 0; i < n; i++) {
        const ph_risk_rule *r = &rules[i];
        if (r->kind != PH_RISK_VELOCITY && r->kind != PH_RISK_RELATED)
            return ph_err_set(err, PH_EINVAL, "rule %.64s: kind: unknown", r->id);
        if (r->kind == PH_RISK_VELOCITY && (r->var < 0 || r->var >= PH_RISK_VARS))
            return ph_err_set(err, PH_EINVAL, "rule %.64s: variable: unknown", r->id);
        if (r->window_s < 1 || r->window_s > PH_RISK_WINDOW_MAX)
            return ph_err_set(err, PH_EINVAL, "rule %.64s: window_s: out of range", r->id);
        if (r->limit < 0)
            return ph_err_set(err, PH_EINVAL, "rule %.64s: limit: negative", r->id);
        if (r->action < PH_RISK_ALLOW || r->action > PH_RISK_DENY)
            return ph_err_set(err, PH_EINVAL, "rule %.64s: action: unknown", r->id);
        for (size_t j = i + 1; j < n; j++)
            if (!strncmp(r->id, rules[j].id, PH_RISK_ID_MAX))
                return ph_err_set(err, PH_EINVAL, "rule %.64s: id: given twice", r->id);
        nen += r->enabled != 0;
        nvel += r->enabled && r->kind == PH_RISK_VELOCITY;
    }
    rule_set rs = {0};
    /* line-aligned: a rule in force is read as one line */
    rs.fr = aligned_alloc(64, (nen ? nen : 1) * sizeof *rs.fr);
    rs.defs = calloc(nen ? nen : 1, sizeof *rs.defs);
    rs.grp = calloc(nvel ? nvel : 1, sizeof *rs.grp);
    rs.scr = calloc(nvel ? nvel : 1, sizeof *rs.scr);
    if (!rs.fr || !rs.defs || !rs.grp || !rs.scr) {
        rules_discard(&rs);
        return ph_err_set(err, PH_ENOMEM, "out of memory for the risk rules");
    }
    for (size_t i = 0; i < n; i++) {
        if (!rules[i].enabled)
            continue;
        ph_risk_rule *r = &rs.defs[rs.n++];
        *r = rules[i];
        r->id[PH_RISK_ID_MAX] = 0;
        r->scope_value[PH_RISK_SCOPE_MAX] = 0;
    }
    qsort(rs.defs, rs.n, sizeof *rs.defs, rule_order);
    for (size_t i = 0; i < rs.n; i++) {
        const ph_risk_rule *r = &rs.defs[i];
        int fen = r->kind == PH_RISK_VELOCITY && r->measure == PH_RISK_FEN;
        rs.fr[i] = (frule){.limit = fen && r->limit > AMOUNT_MAX - 1 ? AMOUNT_MAX - 1 : r->limit,
                           .window_ms = r->window_s * 1000,
                           .created_at = r->created_at,
                           .scope_value = r->scope_value,
                           .def = r,
                           .scope_len = (uint32_t)strlen(r->scope_value),
                           .kind = (uint8_t)r->kind,
                           .var = (uint8_t)(r->kind == PH_RISK_VELOCITY ? r->var : 0),
                           .scope = (uint8_t)r->scope,
                           .measure = (uint8_t)r->measure,
                           .action = (uint8_t)r->action,
                           .dry_run = r->dry_run != 0,
                           .related = (uint8_t)r->related};
    }
    rules_group(&rs);
    *out = rs;
    return PH_OK;
}

/* Where an old group's rules go in the new set: per old bit the new group
 * (UINT32_MAX: the rule leaves or counts something else now) and bit. */
typedef struct remap {
    uint32_t grp[GROUP_MAX], bit[GROUP_MAX];
} remap;

/* Copies the entries of old block ob (of a group remapped by rm) into the
 * new set's blocks. PH_ENOMEM: the new set is left partly filled. */
static int block_carry(pool *p, rule_set *rs, const remap *rm, const sblk *ob, size_t *held)
{
    for (uint32_t i = 0; i < ob->len; i++) {
        const ent *e = ent_at(ob, ob->head + i);
        uint64_t bits = e->am & ENT_BITS;
        while (bits) {
            /* the entry's bits bound for one new group at a time (one,
             * unless a variable has more than GROUP_MAX rules) */
            uint32_t to = rm->grp[__builtin_ctzll(bits)];
            uint64_t mask = 0, rest = 0;
            for (uint64_t b = bits; b; b &= b - 1) {
                uint32_t j = (uint32_t)__builtin_ctzll(b);
                if (rm->grp[j] == to && to != UINT32_MAX)
                    mask |= 1ULL << rm->bit[j];
                else if (rm->grp[j] != to)
                    rest |= 1ULL << j;
            }
            bits = rest;
            if (!mask)
                continue;
            group *g = &rs->grp[to];
            sblk *nb = gt_find(g, ob->key);
            if (!nb) {
                if (gt_reserve_now(g) != PH_OK)
                    return PH_ENOMEM;
                nb = gt_get(g, ob->key);
            }
            if (sb_room(p, nb, g->m) != PH_OK)
                return PH_ENOMEM;
            sb_add(held, nb, ent_time(ob, e), ent_amount(e), e->ticket, mask);
        }
    }
    return PH_OK;
}

/* The slots of a table that takes every live block of og at most half
 * full (both of its tables, while one is drained). */
static size_t gt_fit(const group *og)
{
    size_t cap = og->cap;
    while ((og->used + og->oused) * 2 > cap)
        cap *= 2;
    return cap;
}

/* Moves old group og's blocks, rings and all, into new group ng's table
 * `tab` (allocated, gt_fit(og) slots of ng->stride), each kept rule's window
 * to its new bit and every entry's bits renumbered; entries left with no bit
 * are dead. Allocates nothing. */
static void group_move(group *og, group *ng, const remap *rm, uint32_t to, unsigned char *tab)
{
    ng->tab = tab;
    ng->cap = gt_fit(og);
    ng->used = 0;
    const sblk *ob;
    for (size_t pos = 0; (ob = gt_next(og, &pos));) {
        size_t h = gt_home(ob->key, ng->cap);
        while (gt_at(ng, h)->key)
            h = (h + 1) & (ng->cap - 1);
        sblk *nb = gt_at(ng, h);
        memset(nb, 0, ng->stride);
        memcpy(nb, ob, sizeof *nb);
        for (uint32_t j = 0; j < og->m; j++)
            if (rm->grp[j] == to)
                nb->w[rm->bit[j]] = ob->w[j];
        for (uint32_t k = 0; k < nb->len; k++) {
            ent *e = ent_at(nb, nb->head + k);
            uint64_t bits = e->am & ENT_BITS, nbits = 0;
            for (uint64_t x = bits; x; x &= x - 1) {
                uint32_t j = (uint32_t)__builtin_ctzll(x);
                if (rm->grp[j] == to)
                    nbits |= 1ULL << rm->bit[j];
            }
            if (bits && !nbits)
                nb->dead++;
            e->am = (e->am & ~ENT_BITS) | nbits;
        }
        sb_drop_front(nb, ng->m);
        ng->used++;
    }
    free(og->tab);
    free(og->otab);
    free(og->retired);
    og->tab = og->otab = og->retired = NULL;
    og->cap = og->used = og->ocap = og->oused = og->mig = 0;
}

/* Puts rs in force, the counted entries of the rules that stay carried over
 * to their new groups and bits. A new group fed by one old group only, which
 * feeds no other, takes that group's blocks and rings as they are (its
 * table itself when nothing was renumbered): the usual change (a limit, an
 * action, a rule added or removed on another variable) moves memory, it
 * does not copy it. The other groups' entries are copied. PH_ENOMEM keeps
 * the set in force and leaves rs to the caller. */
static int rules_install(ph_risk *rk, rule_set *rs)
{
    PH_ASSERT_HELD(&rk->mu);
    size_t nold = rk->ngrp, nnew = rs->ngrp;
    remap *rm = calloc(nold ? nold : 1, sizeof *rm);
    uint32_t *target = calloc(nold ? nold : 1, sizeof *target);
    uint32_t *feeds = calloc(nnew ? nnew : 1, sizeof *feeds);
    uint32_t *last = calloc(nnew ? nnew : 1, sizeof *last);
    uint32_t *mover = calloc(nnew ? nnew : 1, sizeof *mover); /* old group + 1; 0: none */
    unsigned char **tabs = calloc(nnew ? nnew : 1, sizeof *tabs);
    int rc = rm && target && feeds && last && mover && tabs ? PH_OK : PH_ENOMEM;
    const uint32_t none = UINT32_MAX, several = UINT32_MAX - 1;
    for (size_t k = 0; rc == PH_OK && k < nold; k++) {
        const group *og = &rk->grp[k];
        target[k] = none;
        for (uint32_t j = 0; j < og->m; j++) {
            const ph_risk_rule *r = rk->rules[og->slot[j]].def;
            rm[k].grp[j] = none;
            for (size_t i = 0; i < rs->n; i++)
                if (!strcmp(r->id, rs->fr[i].def->id) && same_count(r, rs->fr[i].def)) {
                    rm[k].grp[j] = rs->fr[i].grp;
                    rm[k].bit[j] = rs->fr[i].bit;
                }
            uint32_t t = rm[k].grp[j];
            if (t == none)
                continue;
            target[k] = target[k] == none || target[k] == t ? t : several;
            if (last[t] != k + 1) {
                last[t] = (uint32_t)k + 1;
                feeds[t]++;
            }
        }
    }
    for (size_t k = 0; rc == PH_OK && k < nold; k++)
        if (target[k] < several && feeds[target[k]] == 1)
            mover[target[k]] = (uint32_t)k + 1;
    /* what may fail first: the tables of renumbered moves, the copies */
    for (size_t t = 0; rc == PH_OK && t < nnew; t++) {
        if (!mover[t])
            continue;
        const group *og = &rk->grp[mover[t] - 1];
        int same = og->m == rs->grp[t].m;
        for (uint32_t j = 0; same && j < og->m; j++)
            same = rm[mover[t] - 1].bit[j] == j && rm[mover[t] - 1].grp[j] == t;
        if (!same && og->cap && !(tabs[t] = gt_alloc(gt_fit(og), rs->grp[t].stride)))
            rc = PH_ENOMEM;
    }
    size_t held = 0;
    for (size_t k = 0; rc == PH_OK && k < nold; k++) {
        const group *og = &rk->grp[k];
        if (target[k] == none || (target[k] < several && mover[target[k]] == k + 1))
            continue;
        const sblk *ob;
        for (size_t pos = 0; rc == PH_OK && (ob = gt_next(og, &pos));)
            rc = block_carry(&rk->pool, rs, &rm[k], ob, &held);
    }
    if (rc != PH_OK) {
        for (size_t k = 0; rs->grp && k < nnew; k++) {
            group *g = &rs->grp[k];
            for (size_t i = 0; i < g->cap; i++)
                if (gt_at(g, i)->key)
                    sb_release(&rk->pool, gt_at(g, i));
            free(g->tab);
            g->tab = NULL;
            g->cap = g->used = 0;
            if (tabs)
                free(tabs[k]);
        }
    } else {
        for (size_t t = 0; t < nnew; t++) {
            if (!mover[t])
                continue;
            group *og = &rk->grp[mover[t] - 1], *ng = &rs->grp[t];
            if (tabs[t]) {
                group_move(og, ng, &rm[mover[t] - 1], (uint32_t)t, tabs[t]);
            } else {
                /* nothing renumbered: the table itself (and the one being
                 * drained into it, which goes on draining) */
                ng->tab = og->tab;
                ng->cap = og->cap;
                ng->used = og->used;
                ng->otab = og->otab;
                ng->ocap = og->ocap;
                ng->oused = og->oused;
                ng->mig = og->mig;
                ng->retired = og->retired;
                og->tab = og->otab = og->retired = NULL;
                og->cap = og->used = og->ocap = og->oused = og->mig = 0;
                rk->chores |= ng->retired != NULL;
            }
        }
        /* the windows holding entries, as the moved blocks bring them */
        held = 0;
        for (size_t t = 0; t < nnew; t++) {
            const group *g = &rs->grp[t];
            const sblk *b;
            for (size_t pos = 0; (b = gt_next(g, &pos));)
                for (uint32_t j = 0; j < g->m; j++)
                    held += b->w[j].n != 0;
        }
    }
    free(rm);
    free(target);
    free(feeds);
    free(last);
    free(mover);
    free(tabs);
    if (rc != PH_OK)
        return rc;
    groups_free(&rk->pool, rk->grp, rk->ngrp);
    free(rk->scr);
    free(rk->rules);
    free(rk->defs);
    rk->rules = rs->fr;
    rk->defs = rs->defs;
    rk->nrules = rs->n;
    rk->grp = rs->grp;
    rk->ngrp = rs->ngrp;
    rk->scr = rs->scr;
    rk->cused = held;
    rk->epoch++; /* a table being allocated for a group of the old set is not wanted */
    memset(rs, 0, sizeof *rs);
    return PH_OK;
}

int ph_risk_rules_set(ph_risk *rk, const ph_risk_rule *rules, size_t n, ph_err *err)
{
    rule_set rs;
    int rc = rules_prepare(rules, n, &rs, err);
    if (rc)
        return rc;
    ph_mutex_lock(&rk->mu);
    rc = rules_install(rk, &rs);
    ph_mutex_unlock(&rk->mu);
    rules_discard(&rs);
    return rc ? ph_err_set(err, rc, "out of memory for the risk rules") : PH_OK;
}

/* A list table built, not yet in force. */
typedef struct list_set {
    lent *tab;
    size_t cap, used;
} list_set;

static int lists_prepare(const ph_risk_entry *entries, size_t n, list_set *out, ph_err *err)
{
    size_t cap = 16;
    while (cap < n * 2)
        cap *= 2;
    lent *tab = calloc(cap, sizeof *tab);
    if (!tab)
        return ph_err_set(err, PH_ENOMEM, "out of memory for the risk lists");
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        const ph_risk_entry *e = &entries[i];
        if ((e->list != PH_RISK_BLOCK && e->list != PH_RISK_ALLOWLIST) || e->var < 0 ||
            e->var >= PH_RISK_VARS || !e->key) {
            free(tab);
            return ph_err_set(err, PH_EINVAL, "list entry %zu: list, variable or key invalid", i);
        }
        size_t j = pair_home(e->list * PH_RISK_VARS + e->var, e->key, cap);
        for (; tab[j].key; j = (j + 1) & (cap - 1))
            if (tab[j].key == e->key && tab[j].list == e->list && tab[j].var == e->var)
                break;
        if (!tab[j].key)
            used++;
        tab[j] = (lent){e->key, (uint8_t)e->list, (uint8_t)e->var, e->expires_at};
    }
    *out = (list_set){tab, cap, used};
    return PH_OK;
}

/* Swaps ls in; what was in force is left in ls for the caller to free. */
static void lists_install(ph_risk *rk, list_set *ls)
{
    PH_ASSERT_HELD(&rk->mu);
    lent *old = rk->lst;
    rk->lst = ls->tab;
    rk->lcap = ls->cap;
    rk->lused = ls->used;
    ls->tab = old;
}

int ph_risk_list_set(ph_risk *rk, const ph_risk_entry *entries, size_t n, ph_err *err)
{
    list_set ls;
    int rc = lists_prepare(entries, n, &ls, err);
    if (rc)
        return rc;
    ph_mutex_lock(&rk->mu);
    lists_install(rk, &ls);
    ph_mutex_unlock(&rk->mu);
    free(ls.tab);
    return PH_OK;
}

int ph_risk_load(ph_risk *rk, uint64_t gen, const ph_risk_rule *rules, size_t nrules,
                 const ph_risk_entry *entries, size_t nentries, ph_err *err)
{
    rule_set rs;
    list_set ls;
    int rc = rules_prepare(rules, nrules, &rs, err);
    if (rc)
        return rc;
    if ((rc = lists_prepare(entries, nentries, &ls, err))) {
        rules_discard(&rs);
        return rc;
    }
    ph_mutex_lock(&rk->mu);
    int applied = 0;
    /* a set read before the one in force (two changes racing): not put back */
    if (!rk->loaded || gen > rk->gen) {
        rc = rules_install(rk, &rs);
        if (rc == PH_OK) {
            lists_install(rk, &ls);
            rk->gen = gen;
            rk->loaded = 1;
            applied = 1;
        }
    }
    ph_mutex_unlock(&rk->mu);
    rules_discard(&rs);
    free(ls.tab);
    if (rc)
        return ph_err_set(err, rc, "out of memory for the risk rules");
    return applied;
}

/* ---- one order ----------------------------------------------------------- */

/* Precomputed per check so each rule's scope costs a length compare and, on
 * a length match, one memcmp. */
typedef struct subj_view {
    size_t sku_len, brand_len;
    size_t tag_len[PH_RISK_TAGS_MAX];
    size_t ntags;
} subj_view;

static void view_of(const ph_risk_subject *s, subj_view *v)
{
    v->sku_len = s->sku ? strlen(s->sku) : 0;
    v->brand_len = s->brand ? strlen(s->brand) : 0;
    v->ntags = s->ntags < PH_RISK_TAGS_MAX ? s->ntags : PH_RISK_TAGS_MAX;
    for (size_t i = 0; i < v->ntags; i++)
        v->tag_len[i] = s->tags[i] ? strlen(s->tags[i]) : 0;
}

static int scope_match(const frule *f, const ph_risk_subject *s, const subj_view *v)
{
    size_t n = f->scope_len;
    const char *want = f->scope_value;
    switch (f->scope) {
    case PH_RISK_ANY:
        return 1;
    case PH_RISK_SKU:
        return s->sku && v->sku_len == n && !memcmp(s->sku, want, n);
    case PH_RISK_BRAND:
        return s->brand && v->brand_len == n && !memcmp(s->brand, want, n);
    case PH_RISK_TAG:
        for (size_t i = 0; i < v->ntags; i++)
            if (v->tag_len[i] == n && !memcmp(s->tags[i], want, n))
                return 1;
        return 0;
    }
    return 0;
}

/* Whether velocity rule f counts this order at all: the rule existed when
 * the order was placed, its variable was given, its scope matches. */
static int velocity_applies(const frule *f, const ph_risk_subject *s, const subj_view *v)
{
    return f->kind == PH_RISK_VELOCITY && s->now >= f->created_at && s->keys[f->var] &&
           scope_match(f, s, v);
}

static int related_fires(ph_risk *rk, const frule *f, const ph_risk_subject *s)
{
    for (int var = 0; var < PH_RISK_VARS; var++) {
        if (!(f->related & (1u << var)) || !s->keys[var])
            continue;
        const blk *b = blk_find(rk, var, s->keys[var]);
        /* a block before the rule existed is not its business */
        int64_t at = b ? blk_latest(b) : INT64_MIN;
        if (b && at >= f->created_at && s->now - at < f->window_ms)
            return 1;
    }
    return 0;
}

/* by: 0, a block that stands; else a denial's note id (blk_note) */
static void note_blocked_locked(ph_risk *rk, const ph_risk_subject *s, int64_t at, uint64_t by)
{
    for (int var = 0; var < PH_RISK_VARS; var++)
        if (s->keys[var] && var != PH_RISK_CLIENT) /* the mall itself is not a suspect */
            blk_note(rk, var, s->keys[var], at, by);
}

static void count_add(atomic_uint_fast64_t *a)
{
    atomic_fetch_add_explicit(a, 1, memory_order_relaxed);
}

static void hit_add(ph_risk_decision *d, const frule *f)
{
    if (d->nhits >= PH_RISK_HITS_MAX)
        return;
    ph_risk_hit *h = &d->hits[d->nhits++];
    memcpy(h->rule, f->def->id, sizeof h->rule);
    h->action = f->action;
    h->dry_run = f->dry_run;
}

/* The list decision: 1 allow-listed, 2 block-listed, 0 neither. */
static int list_says(const ph_risk *rk, const ph_risk_subject *s, int *var_out)
{
    if (!rk->lused)
        return 0;
    for (int list = PH_RISK_ALLOWLIST; list >= PH_RISK_BLOCK; list--)
        for (int var = 0; var < PH_RISK_VARS; var++)
            if (s->keys[var] && lst_live(lst_find(rk, list, var, s->keys[var]), s->now)) {
                *var_out = var;
                return list == PH_RISK_ALLOWLIST ? 1 : 2;
            }
    return 0;
}

/* Finds (or, with `create`, makes) the block of each group some rule of
 * which applies to this order, its windows trimmed to now and its ring with
 * room for the order: rk->scr[g] (b NULL: no memory, those rules fail
 * closed). Two passes, so the groups' table lines are asked for all at once
 * instead of one miss after another. Returns whether any rule applies. */
static int collect(ph_risk *rk, const ph_risk_subject *s, const subj_view *v, int create,
                   int *failed)
{
    int any = 0;
    for (size_t k = 0; k < rk->ngrp; k++)
        rk->scr[k] = (gscr){NULL, 0, 0};
    for (size_t i = 0; i < rk->nrules; i++) {
        const frule *f = &rk->rules[i];
        if (!velocity_applies(f, s, v))
            continue;
        gscr *x = &rk->scr[f->grp];
        x->apply |= 1ULL << f->bit;
        /* a zero-fen order adds nothing to a sum and cannot take it over */
        if (f->measure != PH_RISK_FEN || s->amount > 0)
            x->count |= 1ULL << f->bit;
        any = 1;
    }
    for (size_t k = 0; any && k < rk->ngrp; k++) {
        const group *g = &rk->grp[k];
        if (rk->scr[k].apply && g->cap) {
            const char *home = (const char *)gt_at(g, gt_home(s->keys[g->var], g->cap));
            for (size_t off = 0; off < g->stride; off += 64)
                __builtin_prefetch(home + off);
            if (g->otab)
                __builtin_prefetch(ot_at(g, gt_home(s->keys[g->var], g->ocap)));
        }
    }
    for (size_t k = 0; any && k < rk->ngrp; k++) {
        gscr *x = &rk->scr[k];
        if (!x->apply)
            continue;
        group *g = &rk->grp[k];
        uint64_t key = s->keys[g->var];
        /* before the block is taken: the step moves blocks of this group.
         * Every operation that may add a block moves MIG_SLOTS slots, so a
         * table is drained before the new one is half full */
        gt_step(rk, g, MIG_SLOTS);
        sblk *b = gt_find(g, key);
        if (!b && create && gt_reserve(rk, g) == PH_OK)
            b = gt_get(g, key);
        if (b) {
            for (uint32_t j = 0; j < g->m; j++)
                sb_trim_window(&rk->cused, b, j, s->now, rk->rules[g->slot[j]].window_ms);
            sb_drop_front(b, g->m);
            if (sb_room(&rk->pool, b, g->m) != PH_OK)
                b = NULL;
            else
                __builtin_prefetch(ent_at(b, sb_end(b)));
        }
        x->b = b;
        if (!b)
            *failed = 1;
    }
    return any;
}

/* Counts the order in the blocks collected, each window trimmed to its
 * rule's limit. */
static void count_in(ph_risk *rk, const ph_risk_subject *s, uint32_t ticket)
{
    for (size_t k = 0; k < rk->ngrp; k++) {
        gscr *x = &rk->scr[k];
        if (!x->b || !x->count)
            continue;
        sb_add(&rk->cused, x->b, s->now, s->amount, ticket, x->count);
        for (uint64_t bits = x->count; bits; bits &= bits - 1) {
            uint32_t j = (uint32_t)__builtin_ctzll(bits);
            sb_trim_limit(&rk->cused, x->b, j, &rk->rules[rk->grp[k].slot[j]]);
        }
        sb_drop_front(x->b, rk->grp[k].m);
    }
}

/* A ticket or a note id: never 0, nor 0 in its low 32 bits (an entry keeps
 * those; 0 is a replay's). */
static uint64_t next_id(ph_risk *rk)
{
    PH_ASSERT_HELD(&rk->mu);
    do
        rk->next_ticket++;
    while (!(uint32_t)rk->next_ticket);
    return rk->next_ticket;
}

void ph_risk_check(ph_risk *rk, const ph_risk_subject *s, ph_risk_decision *d)
{
    /* not a memset: the hits are written as they are found (~700 bytes) */
    d->action = PH_RISK_ALLOW;
    d->rule[0] = 0;
    d->nhits = 0;
    d->ticket = 0;
    d->noted = 0;
    subj_view v;
    view_of(s, &v);
    int failed = 0;
    int64_t amount = s->amount > AMOUNT_MAX ? AMOUNT_MAX : s->amount; /* as an entry keeps it */

    ph_mutex_lock(&rk->mu);
    rk->checks++;
    int decided = 0, lvar = 0;
    int l = list_says(rk, s, &lvar);
    if (l) {
        d->action = l == 1 ? PH_RISK_ALLOW : PH_RISK_DENY;
        snprintf(d->rule, sizeof d->rule, "%s:%s", l == 1 ? "allow" : "block",
                 ph_risk_var_name(lvar));
        decided = 1;
    }
    int counts = collect(rk, s, &v, 1, &failed);
    for (size_t i = 0; i < rk->nrules; i++) {
        frule *f = &rk->rules[i];
        int fires = 0;
        if (f->kind == PH_RISK_RELATED) {
            if (decided || s->now < f->created_at || !scope_match(f, s, &v))
                continue;
            fires = related_fires(rk, f, s);
        } else {
            const gscr *x = &rk->scr[f->grp];
            if (!(x->apply >> f->bit & 1))
                continue;
            if (!x->b) {
                fires = 1; /* without memory the window is taken as full (fail closed) */
            } else {
                const win *w = &x->b->w[f->bit];
                if (f->measure == PH_RISK_FEN)
                    fires = s->amount > 0 && (int64_t)w->sum + amount > f->limit;
                else
                    fires = (int64_t)w->n + 1 > f->limit;
            }
            if (decided)
                continue;
        }
        if (!fires)
            continue;
        hit_add(d, f);
        if (f->dry_run) {
            rk->dry_run_hits++;
            if (rk->mx)
                count_add(&rk->mx->risk_dry_run_hits);
            continue;
        }
        d->action = f->action;
        memcpy(d->rule, f->def->id, sizeof f->def->id);
        decided = 1;
    }
    if (d->action == PH_RISK_DENY) {
        /* the order stands blocked unless it is not stored (ph_risk_release) */
        d->noted = next_id(rk);
        note_blocked_locked(rk, s, s->now, d->noted);
    } else if (counts) {
        d->ticket = next_id(rk);
        count_in(rk, s, (uint32_t)d->ticket);
    }
    rk->by_action[d->action]++;
    if (failed)
        rk->fail_closed++;
    chores c;
    chores_take(rk, &c);
    ph_mutex_unlock(&rk->mu);
    chores_do(rk, &c);

    if (rk->mx) {
        count_add(&rk->mx->risk_checks);
        count_add(&rk->mx->risk_decisions[d->action]);
        if (failed)
            count_add(&rk->mx->risk_fail_closed);
    }
}

void ph_risk_release(ph_risk *rk, const ph_risk_subject *s, const ph_risk_decision *d)
{
    if (!d->ticket && !d->noted)
        return;
    ph_mutex_lock(&rk->mu);
    for (int var = 0; d->noted && var < PH_RISK_VARS; var++)
        if (s->keys[var] && var != PH_RISK_CLIENT)
            blk_unnote(rk, var, s->keys[var], d->noted);
    for (size_t k = 0; d->ticket && k < rk->ngrp; k++) {
        group *g = &rk->grp[k];
        if (!s->keys[g->var])
            continue;
        sblk *b = gt_find(g, s->keys[g->var]);
        if (!b)
            continue;
        /* the newest first (a release follows its check closely), down to
         * the check's time: the entries lie in time order */
        for (uint32_t i = b->len; i-- > 0;) {
            ent *e = ent_at(b, b->head + i);
            if (ent_time(b, e) < s->now)
                break;
            if (e->ticket != (uint32_t)d->ticket || ent_time(b, e) != s->now || !(e->am & ENT_BITS))
                continue;
            for (uint64_t bits = e->am & ENT_BITS; bits; bits &= bits - 1)
                sb_unhold(&rk->cused, b, (uint32_t)__builtin_ctzll(bits), e);
            break;
        }
        sb_drop_front(b, g->m);
    }
    ph_mutex_unlock(&rk->mu);
}

void ph_risk_replay(ph_risk *rk, const ph_risk_subject *s, int action)
{
    ph_mutex_lock(&rk->mu);
    if (action == PH_RISK_DENY) {
        note_blocked_locked(rk, s, s->now, 0);
        ph_mutex_unlock(&rk->mu);
        return;
    }
    subj_view v;
    view_of(s, &v);
    int failed = 0;
    collect(rk, s, &v, 1, &failed);
    if (failed)
        rk->fail_closed++;
    count_in(rk, s, 0);
    chores c;
    chores_take(rk, &c);
    ph_mutex_unlock(&rk->mu);
    chores_do(rk, &c);
}

void ph_risk_note_blocked(ph_risk *rk, const ph_risk_subject *s, int64_t at)
{
    ph_mutex_lock(&rk->mu);
    note_blocked_locked(rk, s, at, 0);
    ph_mutex_unlock(&rk->mu);
}

static int64_t related_reach(const ph_risk *rk)
{
    int64_t w = 0;
    for (size_t i = 0; i < rk->nrules; i++)
        if (rk->rules[i].kind == PH_RISK_RELATED && rk->rules[i].window_ms > w)
            w = rk->rules[i].window_ms;
    return w;
}

void ph_risk_sweep(ph_risk *rk, int64_t now)
{
    ph_mutex_lock(&rk->mu);
    for (size_t k = 0; k < rk->ngrp; k++) {
        group *g = &rk->grp[k];
        for (size_t i = 0; i < g->cap;) {
            sblk *b = gt_at(g, i);
            if (b->key) {
                for (uint32_t j = 0; j < g->m; j++)
                    sb_trim_window(&rk->cused, b, j, now, rk->rules[g->slot[j]].window_ms);
                sb_drop_front(b, g->m);
                if (!b->len) {
                    /* the shift may bring an unvisited block into i: look again */
                    gt_remove(&rk->pool, g, b);
                    continue;
                }
                if (b->dead && b->dead * 2 >= b->len)
                    sb_compact(b, g->m);
                sb_shrink(&rk->pool, b);
            }
            i++;
        }
        /* the part of a table being drained that has not moved yet: a
         * block that goes leaves its key behind (ot_remove) */
        for (size_t i = g->mig; g->otab && i < g->ocap; i++) {
            sblk *b = ot_at(g, i);
            if (!b->key || !b->cap)
                continue;
            for (uint32_t j = 0; j < g->m; j++)
                sb_trim_window(&rk->cused, b, j, now, rk->rules[g->slot[j]].window_ms);
            sb_drop_front(b, g->m);
            if (!b->len) {
                ot_remove(&rk->pool, g, b);
                continue;
            }
            if (b->dead && b->dead * 2 >= b->len)
                sb_compact(b, g->m);
            sb_shrink(&rk->pool, b);
        }
        gt_step(rk, g, 0); /* retires a table the sweep emptied */
        /* the blocks may now fit a smaller table (after a promotion's burst):
         * one a quarter of the size at least, so that what arrives while
         * the blocks move leaves it at most half full (chores_do) */
        if (!g->otab && !g->want && g->cap > 64 && g->used * 8 < g->cap) {
            size_t cap = 64;
            while (cap < g->used * 4 || cap < g->cap / 4)
                cap *= 2;
            if (cap < g->cap) {
                g->want = cap;
                rk->chores = 1;
            }
        }
    }
    pool_trim(&rk->pool);
    if (rk->bcap) {
        size_t cap = 64;
        int64_t reach = related_reach(rk);
        size_t live = 0;
        for (size_t i = 0; i < rk->bcap; i++)
            live += rk->blk[i].key && now - blk_latest(&rk->blk[i]) < reach;
        while (live * 2 > cap)
            cap *= 2;
        (void)blk_rebuild(rk, cap, now - reach); /* without memory: kept as they are */
    }
    if (rk->lused) {
        size_t live = 0;
        for (size_t i = 0; i < rk->lcap; i++)
            live += rk->lst[i].key && lst_live(&rk->lst[i], now);
        if (live < rk->lused) {
            size_t cap = 16;
            while (cap < live * 2)
                cap *= 2;
            lent *tab = calloc(cap, sizeof *tab);
            if (tab) {
                for (size_t i = 0; i < rk->lcap; i++) {
                    const lent *e = &rk->lst[i];
                    if (!e->key || !lst_live(e, now))
                        continue;
                    size_t j = pair_home(e->list * PH_RISK_VARS + e->var, e->key, cap);
                    while (tab[j].key)
                        j = (j + 1) & (cap - 1);
                    tab[j] = *e;
                }
                free(rk->lst);
                rk->lst = tab;
                rk->lcap = cap;
                rk->lused = live;
            }
        }
    }
    chores c;
    chores_take(rk, &c);
    ph_mutex_unlock(&rk->mu);
    chores_do(rk, &c);
}

int64_t ph_risk_reach_ms(ph_risk *rk)
{
    ph_mutex_lock(&rk->mu);
    int64_t w = 0;
    for (size_t i = 0; i < rk->nrules; i++)
        if (rk->rules[i].window_ms > w)
            w = rk->rules[i].window_ms;
    ph_mutex_unlock(&rk->mu);
    return w;
}

void ph_risk_stats_get(ph_risk *rk, ph_risk_stats *out)
{
    memset(out, 0, sizeof *out);
    ph_mutex_lock(&rk->mu);
    out->rules = rk->nrules;
    out->entries = rk->lused;
    out->counters = rk->cused;
    out->checks = rk->checks;
    memcpy(out->by_action, rk->by_action, sizeof out->by_action);
    out->dry_run_hits = rk->dry_run_hits;
    out->fail_closed = rk->fail_closed;
    for (size_t k = 0; k < rk->ngrp; k++)
        out->moving += rk->grp[k].otab != NULL;
    out->grown_locked = rk->grown_locked;
    ph_mutex_unlock(&rk->mu);
}
