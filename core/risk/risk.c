/*
 * risk.c — the engine: rules and lists in force, per-subject windows, recent
 * blocks, and the one decision per order (risk.h).
 *
 * State under rk->mu (a leaf: nothing else is taken or called while it is
 * held, metrics' relaxed atomics aside):
 *   - rules: the enabled rules in force, sorted by priority then id; a rule's
 *     index in this array is its *slot*;
 *   - ctr: an open-addressing table (linear probing, backward-shift deletion,
 *     no tombstones) of counters keyed by (slot, subject key). A counter holds
 *     the entries (time, amount, ticket) its rule counted for that subject,
 *     oldest first in a ring (a window slides by moving its head, whatever
 *     the limit), two inline and more on the heap;
 *   - blk: recent blocks, (variable, key) -> the latest time an order of that
 *     subject was blocked;
 *   - lst: the list entries in force, (list, variable, key) -> expiry.
 * ph_risk_rules_set builds a new counter table with the surviving counters
 * remapped to their new slots, so a slot is always an index into `rules`.
 *
 * The hot path (ph_risk_check with the counters existing) allocates nothing:
 * the table is grown, if it must be, before the rules are visited, so every
 * counter pointer taken during a check stays valid until it ends.
 */
#include "risk/risk.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/lockcheck.h"
#include "metrics/metrics.h"

#define INLINE_ENTS 2

typedef struct ent {
    int64_t at, amount;
    uint64_t ticket; /* 0: counted by a replay (never released) */
} ent;

typedef struct ctr {
    uint64_t key; /* 0: the slot is empty */
    uint32_t slot;
    uint32_t n, cap; /* cap (a power of 2) 0: the entries are inline */
    uint32_t head;   /* the ring's oldest entry */
    int64_t sum;     /* of the entries' amounts */
    union {
        ent in[INLINE_ENTS];
        ent *heap;
    } e;
} ctr;

typedef struct blk {
    uint64_t key; /* 0: empty */
    int var;
    int64_t at;
} blk;

typedef struct lent {
    uint64_t key; /* 0: empty */
    uint8_t list, var;
    int64_t expires_at; /* 0 never */
} lent;

typedef struct frule {
    ph_risk_rule r;
    int64_t window_ms;
    size_t scope_len;
} frule;

struct ph_risk {
    ph_mutex mu;
    ph_metrics *mx;
    frule *rules;
    size_t nrules, nvelocity;
    ctr **scratch; /* nrules: the counter of each rule in one check (NULL: none) */
    ctr *ctr;
    size_t ccap, cused; /* ccap a power of 2, or 0 */
    blk *blk;
    size_t bcap, bused;
    lent *lst;
    size_t lcap, lused;
    uint64_t next_ticket;
    uint64_t gen; /* of the set ph_risk_load put in force */
    int loaded;
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

static size_t ctr_home(uint32_t slot, uint64_t key, size_t cap)
{
    return (size_t)(mix64(key ^ ((uint64_t)slot * 0x9e3779b97f4a7c15ULL)) & (cap - 1));
}

/* The i-th oldest entry. */
static ent *ent_at(ctr *c, uint32_t i)
{
    if (c->cap)
        return &c->e.heap[(c->head + i) & (c->cap - 1)];
    return &c->e.in[(c->head + i) & (INLINE_ENTS - 1)];
}

static void ctr_release(ctr *c)
{
    if (c->cap)
        free(c->e.heap);
    memset(c, 0, sizeof *c);
}

/* Looks (slot, key) up; NULL when absent. */
static ctr *ctr_find(ph_risk *rk, uint32_t slot, uint64_t key)
{
    if (!rk->ccap)
        return NULL;
    size_t mask = rk->ccap - 1;
    for (size_t i = ctr_home(slot, key, rk->ccap);; i = (i + 1) & mask) {
        ctr *c = &rk->ctr[i];
        if (!c->key)
            return NULL;
        if (c->key == key && c->slot == slot)
            return c;
    }
}

/* Places a counter (moved in) into a table known to have room. */
static ctr *ctr_place(ctr *tab, size_t cap, const ctr *c)
{
    size_t mask = cap - 1;
    size_t i = ctr_home(c->slot, c->key, cap);
    while (tab[i].key)
        i = (i + 1) & mask;
    tab[i] = *c;
    return &tab[i];
}

/* Room for `more` new counters at a load of at most 1/2: grows the table
 * (the only allocation that moves counters). PH_ENOMEM leaves it as it was. */
static int ctr_reserve(ph_risk *rk, size_t more)
{
    if (rk->ccap && (rk->cused + more) * 2 <= rk->ccap)
        return PH_OK;
    size_t cap = rk->ccap ? rk->ccap : 64;
    while ((rk->cused + more) * 2 > cap)
        cap *= 2;
    ctr *tab = calloc(cap, sizeof *tab);
    if (!tab)
        return PH_ENOMEM;
    for (size_t i = 0; i < rk->ccap; i++)
        if (rk->ctr[i].key)
            ctr_place(tab, cap, &rk->ctr[i]);
    free(rk->ctr);
    rk->ctr = tab;
    rk->ccap = cap;
    return PH_OK;
}

/* Removes the counter at c (backward-shift deletion keeps every probe chain
 * whole without tombstones). */
static void ctr_remove(ph_risk *rk, ctr *c)
{
    size_t mask = rk->ccap - 1;
    size_t i = (size_t)(c - rk->ctr);
    ctr_release(&rk->ctr[i]);
    rk->cused--;
    for (size_t j = (i + 1) & mask; rk->ctr[j].key; j = (j + 1) & mask) {
        size_t h = ctr_home(rk->ctr[j].slot, rk->ctr[j].key, rk->ccap);
        /* j's entry may move to the hole i when its home is not in (i, j] */
        int stays = i <= j ? (h > i && h <= j) : (h > i || h <= j);
        if (stays)
            continue;
        rk->ctr[i] = rk->ctr[j];
        memset(&rk->ctr[j], 0, sizeof rk->ctr[j]);
        i = j;
    }
}

/* The counter of (slot, key), created empty when absent; the caller reserved
 * room (ctr_reserve), so this never allocates. */
static ctr *ctr_get(ph_risk *rk, uint32_t slot, uint64_t key)
{
    ctr *c = ctr_find(rk, slot, key);
    if (c)
        return c;
    assert(rk->ccap && (rk->cused + 1) * 2 <= rk->ccap);
    ctr fresh;
    memset(&fresh, 0, sizeof fresh);
    fresh.key = key;
    fresh.slot = slot;
    rk->cused++;
    return ctr_place(rk->ctr, rk->ccap, &fresh);
}

/* Room for one more entry in c. PH_ENOMEM leaves c as it was. */
static int ctr_room(ctr *c)
{
    uint32_t have = c->cap ? c->cap : INLINE_ENTS;
    if (c->n < have)
        return PH_OK;
    uint32_t cap = have * 2;
    ent *e = malloc(cap * sizeof *e);
    if (!e)
        return PH_ENOMEM;
    for (uint32_t i = 0; i < c->n; i++)
        e[i] = *ent_at(c, i);
    if (c->cap)
        free(c->e.heap);
    c->e.heap = e;
    c->cap = cap;
    c->head = 0;
    return PH_OK;
}

static void ent_drop_front(ctr *c, uint32_t k)
{
    for (uint32_t i = 0; i < k; i++)
        c->sum -= ent_at(c, i)->amount;
    c->head = (c->head + k) & ((c->cap ? c->cap : INLINE_ENTS) - 1);
    c->n -= k;
}

/* Drops the entries that lie outside the window at now: an entry at t is in
 * the window while now - t < window (docs/risk.md, "Windows"). */
static void ctr_trim_window(ctr *c, int64_t now, int64_t window_ms)
{
    uint32_t k = 0;
    while (k < c->n && now - ent_at(c, k)->at >= window_ms)
        k++;
    ent_drop_front(c, k);
}

/* Drops the oldest entries while the newer ones reach the limit on their own:
 * any window holding the oldest also holds them, and the rule fires there
 * either way (risk.h, "Exactness"). So memory is bounded by the limit. */
static void ctr_trim_limit(ctr *c, const ph_risk_rule *r)
{
    uint32_t k = 0;
    if (r->measure == PH_RISK_FEN) {
        int64_t rest = c->sum;
        while (k < c->n && rest - ent_at(c, k)->amount >= r->limit) {
            rest -= ent_at(c, k)->amount;
            k++;
        }
    } else {
        while (k < c->n && (int64_t)(c->n - k - 1) >= r->limit)
            k++;
    }
    ent_drop_front(c, k);
}

/* Adds an entry in time order (checks of different threads may reach the
 * lock slightly out of order); ctr_room was called. */
static void ctr_add(ctr *c, int64_t at, int64_t amount, uint64_t ticket)
{
    uint32_t i = c->n;
    while (i > 0 && ent_at(c, i - 1)->at > at) {
        *ent_at(c, i) = *ent_at(c, i - 1);
        i--;
    }
    *ent_at(c, i) = (ent){at, amount, ticket};
    c->n++;
    c->sum += amount;
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
        if (!b->key || b->at <= keep_after)
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

static void blk_note(ph_risk *rk, int var, uint64_t key, int64_t at)
{
    blk *b = blk_find(rk, var, key);
    if (b) {
        if (at > b->at)
            b->at = at;
        return;
    }
    if ((rk->bused + 1) * 2 > rk->bcap &&
        blk_rebuild(rk, rk->bcap ? rk->bcap * 2 : 64, INT64_MIN) != PH_OK)
        return; /* without memory the block is not remembered: fail_closed counts it */
    size_t j = pair_home(var, key, rk->bcap);
    while (rk->blk[j].key)
        j = (j + 1) & (rk->bcap - 1);
    rk->blk[j] = (blk){key, var, at};
    rk->bused++;
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
    for (size_t i = 0; i < rk->ccap; i++)
        if (rk->ctr[i].key)
            ctr_release(&rk->ctr[i]);
    free(rk->ctr);
    free(rk->blk);
    free(rk->lst);
    free(rk->rules);
    free(rk->scratch);
    ph_mutex_destroy(&rk->mu);
    free(rk);
}

static int rule_order(const void *a, const void *b)
{
    const frule *x = a, *y = b;
    if (x->r.priority != y->r.priority)
        return x->r.priority < y->r.priority ? -1 : 1;
    return strcmp(x->r.id, y->r.id);
}

/* Counters carry over when the rule keeps its id and counts the same thing
 * the same way; a changed variable, scope or measure starts empty (its old
 * entries counted other orders). */
static int same_count(const ph_risk_rule *a, const ph_risk_rule *b)
{
    return a->kind == b->kind && a->var == b->var && a->scope == b->scope &&
           a->measure == b->measure && !strcmp(a->scope_value, b->scope_value);
}

/* A rule set validated and copied, not yet in force. */
typedef struct rule_set {
    frule *fr;
    ctr **scratch;
    size_t n, nvel;
} rule_set;

static int rules_prepare(const ph_risk_rule *rules, size_t n, rule_set *out, ph_err *err)
{
    size_t nen = 0;
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
    }
    frule *fr = calloc(nen ? nen : 1, sizeof *fr);
    ctr **scratch = calloc(nen ? nen : 1, sizeof *scratch);
    if (!fr || !scratch) {
        free(fr);
        free(scratch);
        return ph_err_set(err, PH_ENOMEM, "out of memory for the risk rules");
    }
    size_t k = 0, nvel = 0;
    for (size_t i = 0; i < n; i++) {
        if (!rules[i].enabled)
            continue;
        fr[k].r = rules[i];
        fr[k].r.id[PH_RISK_ID_MAX] = 0;
        fr[k].r.scope_value[PH_RISK_SCOPE_MAX] = 0;
        fr[k].window_ms = rules[i].window_s * 1000;
        fr[k].scope_len = strlen(fr[k].r.scope_value);
        nvel += rules[i].kind == PH_RISK_VELOCITY;
        k++;
    }
    qsort(fr, nen, sizeof *fr, rule_order);
    *out = (rule_set){fr, scratch, nen, nvel};
    return PH_OK;
}

static void rules_discard(rule_set *rs)
{
    free(rs->fr);
    free(rs->scratch);
}

/* Puts rs in force, the counters of the rules that stay carried over to
 * their new slots (a new table: one allocation). PH_ENOMEM keeps the set in
 * force and leaves rs to the caller. */
static int rules_install(ph_risk *rk, rule_set *rs)
{
    PH_ASSERT_HELD(&rk->mu);
    /* old slot -> new slot (UINT32_MAX: dropped) */
    uint32_t *map = calloc(rk->nrules ? rk->nrules : 1, sizeof *map);
    ctr *tab = NULL;
    size_t cap = 0, used = 0;
    for (size_t i = 0; map && i < rk->nrules; i++) {
        map[i] = UINT32_MAX;
        for (size_t j = 0; j < rs->n; j++)
            if (!strcmp(rk->rules[i].r.id, rs->fr[j].r.id) &&
                same_count(&rk->rules[i].r, &rs->fr[j].r))
                map[i] = (uint32_t)j;
    }
    if (map && rk->ccap) {
        cap = rk->ccap;
        tab = calloc(cap, sizeof *tab);
    }
    if (!map || (rk->ccap && !tab)) {
        free(map);
        return PH_ENOMEM;
    }
    for (size_t i = 0; i < rk->ccap; i++) {
        ctr *c = &rk->ctr[i];
        if (!c->key)
            continue;
        if (map[c->slot] == UINT32_MAX) {
            ctr_release(c);
            continue;
        }
        c->slot = map[c->slot];
        ctr_place(tab, cap, c);
        used++;
    }
    free(map);
    free(rk->ctr);
    rk->ctr = tab;
    rk->ccap = cap;
    rk->cused = used;
    free(rk->rules);
    free(rk->scratch);
    rk->rules = rs->fr;
    rk->scratch = rs->scratch;
    rk->nrules = rs->n;
    rk->nvelocity = rs->nvel;
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
    const char *want = f->r.scope_value;
    switch (f->r.scope) {
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
    return f->r.kind == PH_RISK_VELOCITY && s->now >= f->r.created_at && s->keys[f->r.var] &&
           scope_match(f, s, v);
}

static int related_fires(ph_risk *rk, const frule *f, const ph_risk_subject *s)
{
    for (int var = 0; var < PH_RISK_VARS; var++) {
        if (!(f->r.related & (1u << var)) || !s->keys[var])
            continue;
        const blk *b = blk_find(rk, var, s->keys[var]);
        /* a block before the rule existed is not its business */
        if (b && b->at >= f->r.created_at && s->now - b->at < f->window_ms)
            return 1;
    }
    return 0;
}

static void note_blocked_locked(ph_risk *rk, const ph_risk_subject *s, int64_t at)
{
    for (int var = 0; var < PH_RISK_VARS; var++)
        if (s->keys[var] && var != PH_RISK_CLIENT) /* the mall itself is not a suspect */
            blk_note(rk, var, s->keys[var], at);
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
    memcpy(h->rule, f->r.id, sizeof h->rule);
    h->action = f->r.action;
    h->dry_run = f->r.dry_run;
}

/* Counts the order in the counters collected, each trimmed to its rule. */
static void count_in(ph_risk *rk, const ph_risk_subject *s, uint64_t ticket)
{
    for (size_t i = 0; i < rk->nrules; i++) {
        ctr *c = rk->scratch[i];
        if (!c)
            continue;
        const ph_risk_rule *r = &rk->rules[i].r;
        /* a zero-fen order adds nothing to a sum and cannot take it over */
        if (r->measure == PH_RISK_FEN && s->amount <= 0)
            continue;
        ctr_add(c, s->now, r->measure == PH_RISK_FEN ? s->amount : 1, ticket);
        ctr_trim_limit(c, r);
    }
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

/* Sets scratch[i] to the counter of each velocity rule that counts this
 * order (created when absent, if `create`), NULL for the others; returns how
 * many. Two passes, so the table's cache lines and then the counters' oldest
 * entries are asked for all at once instead of one miss after another: with
 * a table larger than the caches this is most of a check's time. */
static int collect(ph_risk *rk, const ph_risk_subject *s, const subj_view *v, int create)
{
    int n = 0;
    for (size_t i = 0; i < rk->nrules; i++) {
        const frule *f = &rk->rules[i];
        rk->scratch[i] = NULL;
        if (!velocity_applies(f, s, v))
            continue;
        /* marked, resolved below */
        rk->scratch[i] = (ctr *)rk;
        n++;
        if (rk->ccap) {
            const ctr *home = &rk->ctr[ctr_home((uint32_t)i, s->keys[f->r.var], rk->ccap)];
            __builtin_prefetch(home);
            __builtin_prefetch((const char *)home + sizeof *home - 1);
        }
    }
    for (size_t i = 0; n && i < rk->nrules; i++) {
        if (!rk->scratch[i])
            continue;
        ctr *c = create ? ctr_get(rk, (uint32_t)i, s->keys[rk->rules[i].r.var]) : NULL;
        rk->scratch[i] = c;
        if (c && c->cap && c->n)
            __builtin_prefetch(&c->e.heap[c->head]);
    }
    return n;
}

void ph_risk_check(ph_risk *rk, const ph_risk_subject *s, ph_risk_decision *d)
{
    /* not a memset: the hits are written as they are found (~700 bytes) */
    d->action = PH_RISK_ALLOW;
    d->rule[0] = 0;
    d->nhits = 0;
    d->ticket = 0;
    subj_view v;
    view_of(s, &v);
    int failed = 0;

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
    /* room for every counter this check may create, so none moves below */
    int room = rk->nvelocity ? ctr_reserve(rk, rk->nvelocity) : PH_OK;
    int nc = collect(rk, s, &v, room == PH_OK);
    for (size_t i = 0; i < rk->nrules; i++) {
        frule *f = &rk->rules[i];
        int fires = 0;
        if (f->r.kind == PH_RISK_RELATED) {
            if (decided || s->now < f->r.created_at || !scope_match(f, s, &v))
                continue;
            fires = related_fires(rk, f, s);
        } else {
            if (!velocity_applies(f, s, &v))
                continue;
            ctr *c = rk->scratch[i];
            if (c)
                ctr_trim_window(c, s->now, f->window_ms);
            if (!c || ctr_room(c) != PH_OK) {
                /* without memory the counter is taken as full (fail closed) */
                rk->scratch[i] = NULL;
                failed = 1;
                fires = 1;
            } else {
                if (f->r.measure == PH_RISK_FEN)
                    fires = s->amount > 0 && c->sum + s->amount > f->r.limit;
                else
                    fires = (int64_t)c->n + 1 > f->r.limit;
            }
            if (decided)
                continue;
        }
        if (!fires)
            continue;
        hit_add(d, f);
        if (f->r.dry_run) {
            rk->dry_run_hits++;
            if (rk->mx)
                count_add(&rk->mx->risk_dry_run_hits);
            continue;
        }
        d->action = f->r.action;
        memcpy(d->rule, f->r.id, sizeof f->r.id);
        decided = 1;
    }
    if (d->action == PH_RISK_DENY) {
        note_blocked_locked(rk, s, s->now);
    } else if (nc) {
        d->ticket = ++rk->next_ticket;
        count_in(rk, s, d->ticket);
    }
    rk->by_action[d->action]++;
    if (failed)
        rk->fail_closed++;
    ph_mutex_unlock(&rk->mu);

    if (rk->mx) {
        count_add(&rk->mx->risk_checks);
        count_add(&rk->mx->risk_decisions[d->action]);
        if (failed)
            count_add(&rk->mx->risk_fail_closed);
    }
}

void ph_risk_release(ph_risk *rk, const ph_risk_subject *s, const ph_risk_decision *d)
{
    if (!d->ticket)
        return;
    subj_view v;
    view_of(s, &v);
    ph_mutex_lock(&rk->mu);
    for (size_t i = 0; i < rk->nrules; i++) {
        frule *f = &rk->rules[i];
        if (!velocity_applies(f, s, &v))
            continue;
        ctr *c = ctr_find(rk, (uint32_t)i, s->keys[f->r.var]);
        if (!c)
            continue;
        for (uint32_t k = 0; k < c->n; k++) {
            if (ent_at(c, k)->ticket != d->ticket)
                continue;
            c->sum -= ent_at(c, k)->amount;
            for (uint32_t m = k; m + 1 < c->n; m++)
                *ent_at(c, m) = *ent_at(c, m + 1);
            c->n--;
            break;
        }
    }
    ph_mutex_unlock(&rk->mu);
}

void ph_risk_replay(ph_risk *rk, const ph_risk_subject *s, int action)
{
    ph_mutex_lock(&rk->mu);
    if (action == PH_RISK_DENY) {
        note_blocked_locked(rk, s, s->now);
        ph_mutex_unlock(&rk->mu);
        return;
    }
    subj_view v;
    view_of(s, &v);
    int room = rk->nvelocity ? ctr_reserve(rk, rk->nvelocity) : PH_OK;
    if (collect(rk, s, &v, room == PH_OK) && room != PH_OK)
        rk->fail_closed++;
    for (size_t i = 0; i < rk->nrules; i++) {
        ctr *c = rk->scratch[i];
        if (!c)
            continue;
        ctr_trim_window(c, s->now, rk->rules[i].window_ms);
        if (ctr_room(c) != PH_OK) {
            rk->scratch[i] = NULL;
            rk->fail_closed++;
        }
    }
    count_in(rk, s, 0);
    ph_mutex_unlock(&rk->mu);
}

void ph_risk_note_blocked(ph_risk *rk, const ph_risk_subject *s, int64_t at)
{
    ph_mutex_lock(&rk->mu);
    note_blocked_locked(rk, s, at);
    ph_mutex_unlock(&rk->mu);
}

static int64_t related_reach(const ph_risk *rk)
{
    int64_t w = 0;
    for (size_t i = 0; i < rk->nrules; i++)
        if (rk->rules[i].r.kind == PH_RISK_RELATED && rk->rules[i].window_ms > w)
            w = rk->rules[i].window_ms;
    return w;
}

void ph_risk_sweep(ph_risk *rk, int64_t now)
{
    ph_mutex_lock(&rk->mu);
    for (size_t i = 0; i < rk->ccap;) {
        ctr *c = &rk->ctr[i];
        if (c->key) {
            ctr_trim_window(c, now, rk->rules[c->slot].window_ms);
            if (!c->n) {
                /* the shift may bring an unvisited counter into i: look again */
                ctr_remove(rk, c);
                continue;
            }
        }
        i++;
    }
    /* the counters may now fit a smaller table (after a promotion's burst) */
    if (rk->ccap > 64 && rk->cused * 8 < rk->ccap) {
        size_t cap = 64;
        while (rk->cused * 4 > cap)
            cap *= 2;
        ctr *tab = calloc(cap, sizeof *tab);
        if (tab) {
            for (size_t i = 0; i < rk->ccap; i++)
                if (rk->ctr[i].key)
                    ctr_place(tab, cap, &rk->ctr[i]);
            free(rk->ctr);
            rk->ctr = tab;
            rk->ccap = cap;
        }
    }
    if (rk->bcap) {
        size_t cap = 64;
        int64_t reach = related_reach(rk);
        size_t live = 0;
        for (size_t i = 0; i < rk->bcap; i++)
            live += rk->blk[i].key && now - rk->blk[i].at < reach;
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
    ph_mutex_unlock(&rk->mu);
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
    ph_mutex_unlock(&rk->mu);
}
