/*
 * store_agg.c — the analytics aggregates (issue 16): written in the same
 * transaction as the order or grant change they count, never by scanning
 * orders, keyed by UTC day first so a range of days is one cursor walk.
 *
 * What is counted (docs/store.md, "Analytics", says the same):
 * Order figures are kept twice, for every client (kind 'a') and per client
 * (kind 'c', the client's name and NUL first), so that neither view walks
 * the other's rows; grant figures by client ('c'), by tag per client ('t')
 * and over all clients ('g'), and by sku ('s').
 * Counted orders are the mall's (agg_counts): not a replenishment, not a
 * bundle's component order (the bundle itself counts once, under its sku).
 * - agg_sku: a counted order that is succeeded counts once
 *   on its UTC day of creation under (sku, client): orders +1, units +=
 *   quantity, value += the ledger's unit sale price x quantity (the price the
 *   ledger fixed when it first booked the order; unpriced orders add 0 and
 *   count in `unpriced`). An order that stops being succeeded is taken out.
 * - agg_hours: every counted order counts once, when first
 *   written, in the UTC (day, hour) of its creation, under its client.
 * - agg_claims: each grant transition (store_agg_grant) counts on the UTC day
 *   it happened, under the client, each tag (per client) and the sku.
 * - agg_co ("co-redemption"): each holder (end-user key) keeps its last
 *   PH_AGG_CO_SKUS distinct claimed skus with the day of the latest claim of
 *   each. A claim of sku b on day d by that holder adds 1 to (d, a, b, gap)
 *   for every other sku a on the list claimed on a day d - gap with
 *   0 <= gap <= PH_AGG_CO_DAYS (each a at most once per claim, at its latest
 *   claim); then b's entry becomes day d, the entries older than
 *   PH_AGG_CO_DAYS days drop off, and when more than PH_AGG_CO_SKUS remain the
 *   one claimed longest ago goes.
 * Writer thread only, except the reads at the end (any thread).
 */
#include "store/store_int.h"

#include "base/util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS 86400000LL

static int32_t utc_day(int64_t ms)
{
    return ph_ledger_day(ms, 0);
}

static void put_day(uint8_t *p, int32_t day)
{
    uint32_t d = (uint32_t)day ^ 0x80000000u;
    p[0] = (uint8_t)(d >> 24), p[1] = (uint8_t)(d >> 16), p[2] = (uint8_t)(d >> 8),
    p[3] = (uint8_t)d;
}

static int32_t get_day(const uint8_t *p)
{
    uint32_t d = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    return (int32_t)(d ^ 0x80000000u);
}

/* 1..max bytes, no NUL (a key part between NULs). */
static int name_ok(const char *s, size_t max)
{
    size_t n = s ? strnlen(s, max + 1) : 0;
    return n >= 1 && n <= max;
}

/* Adds the n int64 counters d to the fixed-size value at key k of db; a
 * value that comes to all zeros is removed, so every row says something. */
static int add_counters(ph_wtxn *w, int db, MDB_val *k, const int64_t *d, size_t n, ph_err *err)
{
    int64_t a[4] = {0};
    assert(n <= 4);
    MDB_val v;
    int mrc = mdb_get(w->txn, w->s->dbi[db], k, &v);
    if (mrc == 0 && v.mv_size == n * sizeof a[0])
        memcpy(a, v.mv_data, n * sizeof a[0]);
    else if (mrc == 0)
        return ph_err_set(err, PH_EIO, "%s: malformed aggregate", ph_store_db_name(db));
    else if (mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(err, mrc, "read aggregate");
    int zero = 1;
    for (size_t i = 0; i < n; i++) {
        a[i] += d[i];
        zero &= a[i] == 0;
    }
    if (zero)
        mrc = mrc == 0 ? mdb_del(w->txn, w->s->dbi[db], k, NULL) : 0;
    else
        mrc = mdb_put(w->txn, w->s->dbi[db], k, &(MDB_val){n * sizeof a[0], a}, 0);
    return mrc ? ph_store_lmdb_err(err, mrc, "write aggregate") : PH_OK;
}

/* key = be32(day) [byte] part1 [NUL part2]; buf >= AGG_KEY_MAX. */
#define AGG_KEY_MAX (4 + 1 + 2 * (PH_SKU_MAX + 1) + PH_AGG_TAG_MAX + 1)
static size_t agg_key(uint8_t *buf, int32_t day, int kind, const char *p1, const char *p2)
{
    size_t n = 4, l;
    put_day(buf, day);
    if (kind)
        buf[n++] = (uint8_t)kind;
    l = strlen(p1), memcpy(buf + n, p1, l), n += l;
    if (p2) {
        buf[n++] = 0;
        l = strlen(p2), memcpy(buf + n, p2, l), n += l;
    }
    assert(n <= AGG_KEY_MAX);
    return n;
}

/* ---- orders ------------------------------------------------------------------ */

/* Every order figure is kept twice: for all clients (kind 'a': what ops read,
 * one row per day and sku or hour) and per client (kind 'c', client NUL
 * first: what a mall reads), so neither read walks the other's rows. */
static int count_hour(ph_wtxn *w, const char *client, int64_t created_at, int64_t sign, ph_err *err)
{
    uint8_t key[AGG_KEY_MAX + 1];
    int32_t day = utc_day(created_at);
    char hour[2] = {(char)((created_at - (int64_t)day * DAY_MS) / 3600000), 0};
    MDB_val k = {agg_key(key, day, 'a', "", NULL), key};
    key[k.mv_size++] = (uint8_t)hour[0];
    int rc = add_counters(w, DB_AGG_HOURS, &k, &sign, 1, err);
    if (rc == PH_OK) {
        k = (MDB_val){agg_key(key, day, 'c', client, ""), key};
        key[k.mv_size++] = (uint8_t)hour[0];
        rc = add_counters(w, DB_AGG_HOURS, &k, &sign, 1, err);
    }
    return rc;
}

static int count_sku(ph_wtxn *w, const ph_order *o, int64_t price, int64_t sign, ph_err *err)
{
    uint8_t key[AGG_KEY_MAX];
    int32_t day = utc_day(o->created_at);
    int64_t d[4] = {sign, sign * (int64_t)o->quantity,
                    price >= 0 ? sign * price * (int64_t)o->quantity : 0, price >= 0 ? 0 : sign};
    MDB_val k = {agg_key(key, day, 'a', o->sku, NULL), key};
    int rc = add_counters(w, DB_AGG_SKU, &k, d, 4, err);
    if (rc == PH_OK) {
        k = (MDB_val){agg_key(key, day, 'c', o->client, o->sku), key};
        rc = add_counters(w, DB_AGG_SKU, &k, d, 4, err);
    }
    return rc;
}

/* Is o one of the mall's orders, counted here? The one answer for the hook,
 * the migration and the checker. */
int store_agg_counts(const ph_order *o)
{
    return !ph_order_is_replenish(o) && !ph_order_component_of(o, NULL);
}

int store_agg_order(ph_wtxn *w, const ph_order *o, ph_err *err)
{
    if (!store_agg_counts(o))
        return PH_OK;
    int counted = 0;
    int64_t price = -1;
    int rc = store_ledger_counted(w, o->id, &counted, &price, err);
    int fresh = rc == PH_ENOTFOUND;
    if (fresh)
        rc = store_ledger_price(w, o, &price, err);
    if (rc == PH_OK && fresh)
        rc = count_hour(w, o->client, o->created_at, 1, err);
    int was = counted == PH_ORDER_SUCCEEDED, is = o->state == PH_ORDER_SUCCEEDED;
    if (rc == PH_OK && was != is)
        rc = count_sku(w, o, price, is ? 1 : -1, err);
    return rc;
}

int store_agg_migrate(ph_store *s, MDB_txn *txn, ph_err *err)
{
    ph_wtxn w = {.s = s, .txn = txn};
    uint64_t last = ph_store_last_key(txn, s->dbi[DB_ORDERS]);
    int rc = PH_OK;
    /* a store that met an earlier build of version 7 has nothing to redo */
    for (int db = DB_AGG_SKU; rc == PH_OK && db <= DB_AGG_USERS; db++) {
        int mrc = mdb_drop(txn, s->dbi[db], 0);
        if (mrc)
            rc = ph_store_lmdb_err(err, mrc, "clear aggregates");
    }
    for (uint64_t id = 1; rc == PH_OK && id <= last; id++) {
        ph_order *o = NULL;
        rc = ph_order_load(s, txn, id, 0, &o, err);
        if (rc == PH_ENOTFOUND) {
            rc = PH_OK;
            continue;
        }
        int counted = 0;
        int64_t price = -1;
        if (rc == PH_OK && store_agg_counts(o)) {
            rc = count_hour(&w, o->client, o->created_at, 1, err);
            /* the ledger booked every order before (version 4 on, or its own migration) */
            int lc = rc ? rc : store_ledger_counted(&w, id, &counted, &price, err);
            if (lc == PH_ENOTFOUND)
                price = -1, lc = PH_OK;
            rc = lc;
            if (rc == PH_OK && o->state == PH_ORDER_SUCCEEDED)
                rc = count_sku(&w, o, price, 1, err);
        }
        ph_order_free(o);
    }
    uint32_t ver = PH_SCHEMA_VERSION;
    MDB_val k = {6, "schema"}, v = {sizeof ver, &ver};
    int mrc = rc ? 0 : mdb_put(txn, s->dbi[DB_META], &k, &v, 0);
    if (mrc)
        rc = ph_store_lmdb_err(err, mrc, "write meta");
    return rc;
}

/* ---- grants ------------------------------------------------------------------ */

/* DB_AGG_USERS value: n, then n x (int32 day, byte len, sku), latest first. */
typedef struct co_entry {
    int32_t day;
    char sku[PH_SKU_MAX + 1];
} co_entry;

static int co_load(ph_wtxn *w, const uint8_t key[8], co_entry *e, size_t *n, ph_err *err)
{
    MDB_val k = {8, (void *)key}, v;
    *n = 0;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_AGG_USERS], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return PH_OK;
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read holder claims");
    const uint8_t *p = v.mv_data, *end = p + v.mv_size;
    if (v.mv_size < 1 || p[0] > PH_AGG_CO_SKUS + 1)
        return ph_err_set(err, PH_EIO, "agg_users: malformed record");
    size_t cnt = *p++;
    for (size_t i = 0; i < cnt; i++) {
        if (end - p < 5 || p[4] > PH_SKU_MAX || end - p < 5 + p[4])
            return ph_err_set(err, PH_EIO, "agg_users: malformed record");
        memcpy(&e[i].day, p, 4);
        memcpy(e[i].sku, p + 5, p[4]);
        e[i].sku[p[4]] = 0;
        p += 5 + p[4];
    }
    if (p != end)
        return ph_err_set(err, PH_EIO, "agg_users: malformed record");
    *n = cnt;
    return PH_OK;
}

static int co_save(ph_wtxn *w, const uint8_t key[8], const co_entry *e, size_t n, ph_err *err)
{
    uint8_t buf[1 + PH_AGG_CO_SKUS * (5 + PH_SKU_MAX)], *p = buf;
    assert(n <= PH_AGG_CO_SKUS);
    *p++ = (uint8_t)n;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(e[i].sku);
        memcpy(p, &e[i].day, 4);
        p[4] = (uint8_t)l;
        memcpy(p + 5, e[i].sku, l);
        p += 5 + l;
    }
    MDB_val k = {8, (void *)key};
    int mrc =
        n ? mdb_put(w->txn, w->s->dbi[DB_AGG_USERS], &k, &(MDB_val){(size_t)(p - buf), buf}, 0)
          : mdb_del(w->txn, w->s->dbi[DB_AGG_USERS], &k, NULL);
    if (mrc == MDB_NOTFOUND)
        mrc = 0;
    return mrc ? ph_store_lmdb_err(err, mrc, "write holder claims") : PH_OK;
}

/* A claim of sku on day by holder key: the pairs it makes, then the list. */
static int co_claim(ph_wtxn *w, const uint8_t key[8], const char *sku, int32_t day, ph_err *err)
{
    co_entry e[PH_AGG_CO_SKUS + 1];
    size_t n = 0, keep = 0;
    int rc = co_load(w, key, e + 1, &n, err);
    for (size_t i = 1; rc == PH_OK && i <= n; i++) {
        int32_t gap = day - e[i].day;
        if (strcmp(e[i].sku, sku) == 0 || gap > PH_AGG_CO_DAYS)
            continue; /* b itself is replaced; a claim too old drops off */
        if (gap >= 0) {
            uint8_t k[AGG_KEY_MAX + 2];
            size_t kl = agg_key(k, day, 0, e[i].sku, sku);
            k[kl++] = 0;
            k[kl++] = (uint8_t)gap;
            int64_t one = 1;
            rc = add_counters(w, DB_AGG_CO, &(MDB_val){kl, k}, &one, 1, err);
        }
        e[++keep] = e[i];
    }
    if (rc)
        return rc;
    e[0].day = day;
    snprintf(e[0].sku, sizeof e[0].sku, "%s", sku);
    keep += 1;
    return co_save(w, key, e, keep > PH_AGG_CO_SKUS ? PH_AGG_CO_SKUS : keep, err);
}

int store_agg_grant(ph_wtxn *w, int what, const char *client, const char *const *tags, size_t ntags,
                    const uint8_t user_key[8], const char *sku, int64_t at, ph_err *err)
{
    if (what == PH_AGG_CLAIMED && !user_key)
        return ph_err_set(err, PH_EINVAL, "analytics: a claim needs the holder's key");
    int rc = store_agg_grant_add(w, what, 1, client, tags, ntags, sku, at, err);
    if (rc == PH_OK && what == PH_AGG_CLAIMED)
        rc = co_claim(w, user_key, sku, utc_day(at), err);
    return rc;
}

int store_agg_grant_add(ph_wtxn *w, int what, int delta, const char *client,
                        const char *const *tags, size_t ntags, const char *sku, int64_t at,
                        ph_err *err)
{
    if (what < PH_AGG_GRANTED || what > PH_AGG_GIFTED || (delta != 1 && delta != -1))
        return ph_err_set(err, PH_EINVAL, "analytics: unknown grant transition %d", what);
    if (!name_ok(client, PH_SKU_MAX) || !name_ok(sku, PH_SKU_MAX))
        return ph_err_set(err, PH_EINVAL, "analytics: %s: expected 1-%d bytes",
                          name_ok(client, PH_SKU_MAX) ? "sku" : "client", PH_SKU_MAX);
    if (ntags > PH_AGG_TAGS_MAX)
        return ph_err_set(err, PH_EINVAL, "analytics: tags: at most %d", PH_AGG_TAGS_MAX);
    for (size_t i = 0; i < ntags; i++)
        if (!name_ok(tags[i], PH_AGG_TAG_MAX))
            return ph_err_set(err, PH_EINVAL, "analytics: tag %zu: expected 1-%d bytes", i + 1,
                              PH_AGG_TAG_MAX);
    int32_t day = utc_day(at);
    int64_t d[4] = {0};
    d[what - PH_AGG_GRANTED] = delta;
    uint8_t key[AGG_KEY_MAX];
    MDB_val k = {agg_key(key, day, 'c', client, NULL), key};
    int rc = add_counters(w, DB_AGG_CLAIMS, &k, d, 4, err);
    for (size_t i = 0; rc == PH_OK && i < ntags; i++) {
        k = (MDB_val){agg_key(key, day, 't', client, tags[i]), key};
        rc = add_counters(w, DB_AGG_CLAIMS, &k, d, 4, err);
        if (rc == PH_OK) {
            k = (MDB_val){agg_key(key, day, 'g', tags[i], NULL), key};
            rc = add_counters(w, DB_AGG_CLAIMS, &k, d, 4, err);
        }
    }
    if (rc == PH_OK) {
        k = (MDB_val){agg_key(key, day, 's', sku, NULL), key};
        rc = add_counters(w, DB_AGG_CLAIMS, &k, d, 4, err);
    }
    return rc;
}

/* ---- reads --------------------------------------------------------------------- */

int32_t ph_agg_week_start(int32_t day)
{
    /* day 0, 1970-01-01, was a Thursday: Monday is 3 days before */
    int32_t m = (day + 3) % 7;
    return day - (m < 0 ? m + 7 : m);
}

/* Sums by name: open addressing over rows appended in first-seen order. */
typedef struct sum_row {
    char name[140]; /* NUL-terminated; a binary key (the check's) has NULs inside: len says */
    uint8_t len;
    uint8_t seen; /* the check's: met in the database */
    int64_t v[4];
} sum_row;
typedef struct sum_map {
    sum_row *rows;
    size_t n, cap;
    uint32_t *slot; /* row index + 1; 0 empty */
    size_t nslots;
} sum_map;

static uint64_t fnv(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

static void sum_clear(sum_map *m)
{
    m->n = 0;
    if (m->slot)
        memset(m->slot, 0, m->nslots * sizeof *m->slot);
}

static void sum_free(sum_map *m)
{
    free(m->rows);
    free(m->slot);
    memset(m, 0, sizeof *m);
}

static int sum_rehash(sum_map *m, size_t nslots)
{
    uint32_t *s = calloc(nslots, sizeof *s);
    if (!s)
        return PH_ENOMEM;
    for (size_t i = 0; i < m->n; i++) {
        size_t h = fnv(m->rows[i].name, m->rows[i].len) & (nslots - 1);
        while (s[h])
            h = (h + 1) & (nslots - 1);
        s[h] = (uint32_t)i + 1;
    }
    free(m->slot);
    m->slot = s;
    m->nslots = nslots;
    return PH_OK;
}

/* Adds d to the row of name (len bytes, < 80), creating it. */
static int sum_add(sum_map *m, const char *name, size_t len, const int64_t d[4])
{
    assert(len < sizeof m->rows[0].name);
    if ((m->n + 1) * 2 > m->nslots && sum_rehash(m, m->nslots ? m->nslots * 2 : 256))
        return PH_ENOMEM;
    size_t h = fnv(name, len) & (m->nslots - 1);
    for (; m->slot[h]; h = (h + 1) & (m->nslots - 1)) {
        sum_row *r = &m->rows[m->slot[h] - 1];
        if (r->len == len && memcmp(r->name, name, len) == 0) {
            for (int i = 0; i < 4; i++)
                r->v[i] += d[i];
            return PH_OK;
        }
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 128;
        sum_row *g = realloc(m->rows, cap * sizeof *g);
        if (!g)
            return PH_ENOMEM;
        m->rows = g;
        m->cap = cap;
    }
    sum_row *r = &m->rows[m->n];
    memcpy(r->name, name, len);
    r->name[len] = 0;
    r->len = (uint8_t)len;
    r->seen = 0;
    memcpy(r->v, d, sizeof r->v);
    m->slot[h] = (uint32_t)++m->n;
    return PH_OK;
}

static int range_ok(int32_t from_day, int32_t to_day, ph_err *err)
{
    if (from_day > to_day)
        return ph_err_set(err, PH_EINVAL, "from: after to");
    if ((int64_t)to_day - from_day >= PH_AGG_RANGE_DAYS)
        return ph_err_set(err, PH_EINVAL, "to: at most %d days after from", PH_AGG_RANGE_DAYS - 1);
    return PH_OK;
}

/* Walks the rows of db from from_day..to_day whose key goes on, after the
 * day, with the kind byte and then the pfx_len bytes of pfx, calling fn with
 * the day, the rest of the key and the counters. */
typedef int (*walk_fn)(void *ctx, int32_t day, const uint8_t *rest, size_t len, const int64_t *v);
static int walk(ph_store *s, int db, int32_t from_day, int32_t to_day, int kind, const char *pfx,
                size_t pfx_len, size_t nv, walk_fn fn, void *ctx, ph_err *err)
{
    if (pfx_len > PH_SKU_MAX + 1)
        return ph_err_set(err, PH_EINVAL, "client: over %d bytes", PH_SKU_MAX);
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    int mrc = mdb_cursor_open(txn, s->dbi[db], &cur);
    if (mrc) {
        ph_store_read_end(s, txn);
        return ph_store_lmdb_err(err, mrc, "open aggregates");
    }
    uint8_t start[5 + PH_SKU_MAX + 1];
    int32_t day = from_day;
    size_t fixed = 5 + pfx_len;
    if (pfx_len)
        memcpy(start + 5, pfx, pfx_len);
    while (rc == PH_OK && day <= to_day) {
        /* each day's rows of a kind and prefix are contiguous: one seek a day */
        put_day(start, day);
        start[4] = (uint8_t)kind;
        MDB_val k = {fixed, start}, v;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        int32_t next = to_day + 1;
        for (; rc == PH_OK && mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            const uint8_t *kb = k.mv_data;
            int32_t d = k.mv_size >= 4 ? get_day(kb) : INT32_MIN;
            if (d != day || k.mv_size < fixed || memcmp(kb + 4, start + 4, fixed - 4)) {
                next = d > day ? d : day + 1; /* the next day that has rows */
                break;
            }
            if (v.mv_size != nv * sizeof(int64_t)) {
                rc = ph_err_set(err, PH_EIO, "%s: malformed aggregate", ph_store_db_name(db));
                break;
            }
            int64_t a[4];
            memcpy(a, v.mv_data, nv * sizeof a[0]);
            rc = fn(ctx, d, kb + fixed, k.mv_size - (size_t)fixed, a);
            if (rc)
                ph_err_set(err, rc, rc == PH_ENOMEM ? "out of memory" : "%s: malformed aggregate",
                           ph_store_db_name(db));
        }
        if (mrc && mrc != MDB_NOTFOUND && rc == PH_OK)
            rc = ph_store_lmdb_err(err, mrc, "read aggregates");
        if (mrc == MDB_NOTFOUND)
            break;
        day = next;
    }
    mdb_cursor_close(cur);
    ph_store_read_end(s, txn);
    return rc;
}

/* ---- top ---- */

typedef struct top_ctx {
    int32_t from_day, period_days, cur;
    int by;
    size_t n;
    const char *client;
    sum_map m;
    ph_agg_top_row *out;
    size_t nout, cap;
} top_ctx;

static int cmp_fig(const sum_row *x, const sum_row *y, int pick, int other)
{
    if (x->v[pick] != y->v[pick])
        return x->v[pick] > y->v[pick] ? -1 : 1;
    if (x->v[other] != y->v[other])
        return x->v[other] > y->v[other] ? -1 : 1;
    return strcmp(x->name, y->name);
}
static int cmp_orders(const void *a, const void *b)
{
    return cmp_fig(a, b, 0, 2);
}
static int cmp_value(const void *a, const void *b)
{
    return cmp_fig(a, b, 2, 0);
}

/* The period's best n rows to the answer; the map is emptied. */
static int top_flush(top_ctx *t)
{
    if (!t->m.n)
        return PH_OK;
    qsort(t->m.rows, t->m.n, sizeof *t->m.rows, t->by == PH_AGG_BY_VALUE ? cmp_value : cmp_orders);
    size_t take = t->m.n < t->n ? t->m.n : t->n;
    if (t->nout + take > t->cap) {
        size_t cap = (t->nout + take) * 2;
        ph_agg_top_row *g = realloc(t->out, cap * sizeof *g);
        if (!g)
            return PH_ENOMEM;
        t->out = g;
        t->cap = cap;
    }
    for (size_t i = 0; i < take; i++) {
        const sum_row *r = &t->m.rows[i];
        ph_agg_top_row *o = &t->out[t->nout++];
        memset(o, 0, sizeof *o);
        o->period = t->cur;
        size_t sl = strlen(r->name);
        assert(sl <= PH_SKU_MAX); /* top_row admits no longer name */
        memcpy(o->sku, r->name, sl + 1);
        o->orders = (uint64_t)r->v[0];
        o->units = (uint64_t)r->v[1];
        o->value = r->v[2];
        o->unpriced = (uint64_t)r->v[3];
    }
    sum_clear(&t->m);
    return PH_OK;
}

static int top_row(void *ctx, int32_t day, const uint8_t *rest, size_t len, const int64_t *v)
{
    top_ctx *t = ctx;
    size_t sl = strnlen((const char *)rest, len); /* rest: the sku */
    if (sl == 0 || sl > PH_SKU_MAX || sl != len)
        return PH_EIO;
    int32_t period = t->period_days == 7   ? ph_agg_week_start(day)
                     : t->period_days == 1 ? day
                                           : t->from_day; /* 0: the whole range */
    if (period != t->cur) {
        int rc = top_flush(t);
        if (rc)
            return rc;
        t->cur = period;
    }
    return sum_add(&t->m, (const char *)rest, sl, v);
}

int ph_store_agg_top(ph_store *s, int32_t from_day, int32_t to_day, int period_days, int by,
                     size_t n, const char *client, ph_agg_top_row **rows, size_t *nrows,
                     ph_err *err)
{
    *rows = NULL;
    *nrows = 0;
    int rc = range_ok(from_day, to_day, err);
    if (rc)
        return rc;
    if (period_days != 0 && period_days != 1 && period_days != 7)
        return ph_err_set(err, PH_EINVAL, "period: expected day, week or range");
    if (by != PH_AGG_BY_ORDERS && by != PH_AGG_BY_VALUE)
        return ph_err_set(err, PH_EINVAL, "by: expected orders or value");
    if (n < 1 || n > 100)
        return ph_err_set(err, PH_EINVAL, "n: expected 1-100");
    top_ctx t = {.from_day = from_day,
                 .period_days = period_days,
                 .cur = INT32_MIN,
                 .by = by,
                 .n = n,
                 .client = client};
    rc = walk(s, DB_AGG_SKU, from_day, to_day, client ? 'c' : 'a', client,
              client ? strlen(client) + 1 : 0, 4, top_row, &t, err);
    if (rc == PH_OK && (rc = top_flush(&t)) != PH_OK)
        ph_err_set(err, rc, "out of memory");
    sum_free(&t.m);
    if (rc) {
        free(t.out);
        return rc;
    }
    *rows = t.out;
    *nrows = t.nout;
    return PH_OK;
}

/* ---- hours ---- */

static int hours_row(void *ctx, int32_t day, const uint8_t *rest, size_t len, const int64_t *v)
{
    uint64_t *out = ctx;
    (void)day;
    if (len != 1 || rest[0] > 23) /* rest: the hour byte */
        return PH_EIO;
    out[rest[0]] += (uint64_t)v[0];
    return PH_OK;
}

int ph_store_agg_hours(ph_store *s, int32_t from_day, int32_t to_day, const char *client,
                       uint64_t out[24], ph_err *err)
{
    memset(out, 0, 24 * sizeof out[0]);
    int rc = range_ok(from_day, to_day, err);
    if (rc)
        return rc;
    return walk(s, DB_AGG_HOURS, from_day, to_day, client ? 'c' : 'a', client,
                client ? strlen(client) + 1 : 0, 1, hours_row, out, err);
}

/* ---- claims ---- */

typedef struct claims_ctx {
    int by;
    const char *client;
    sum_map m;
} claims_ctx;

static int claims_row(void *ctx, int32_t day, const uint8_t *rest, size_t len, const int64_t *v)
{
    claims_ctx *c = ctx;
    (void)day;
    const char *name = (const char *)rest;
    if (c->by == PH_AGG_BY_CLIENT && c->client) {
        /* the prefix was the client's name: its row only, not a longer name's */
        if (len)
            return PH_OK;
        name = c->client;
        len = strlen(name);
    }
    if (len == 0 || len >= sizeof(((ph_agg_claim_row *)0)->name) || strnlen(name, len) != len)
        return PH_EIO;
    return sum_add(&c->m, name, len, v);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const sum_row *)a)->name, ((const sum_row *)b)->name);
}

int ph_store_agg_claims(ph_store *s, int32_t from_day, int32_t to_day, int by, const char *client,
                        ph_agg_claim_row **rows, size_t *nrows, ph_err *err)
{
    *rows = NULL;
    *nrows = 0;
    int rc = range_ok(from_day, to_day, err);
    if (rc)
        return rc;
    if (by < PH_AGG_BY_CLIENT || by > PH_AGG_BY_SKU)
        return ph_err_set(err, PH_EINVAL, "by: expected client, tag or sku");
    if (by == PH_AGG_BY_SKU && client)
        return ph_err_set(err, PH_EINVAL, "by: sku is for ops only");
    claims_ctx c = {.by = by, .client = client};
    /* by tag: every client's ('g', tag) or one's ('t', client NUL tag) */
    int kind = by == PH_AGG_BY_CLIENT ? 'c' : by == PH_AGG_BY_SKU ? 's' : client ? 't' : 'g';
    size_t pl = !client ? 0 : strlen(client) + (by == PH_AGG_BY_TAG);
    rc = walk(s, DB_AGG_CLAIMS, from_day, to_day, kind, client, pl, 4, claims_row, &c, err);
    ph_agg_claim_row *out = NULL;
    if (rc == PH_OK && c.m.n) {
        qsort(c.m.rows, c.m.n, sizeof *c.m.rows, cmp_name);
        out = calloc(c.m.n, sizeof *out);
        if (!out)
            rc = PH_ENOMEM;
        for (size_t i = 0; out && i < c.m.n; i++) {
            assert(c.m.rows[i].len < sizeof out[i].name); /* claims_row admits no longer */
            memcpy(out[i].name, c.m.rows[i].name, c.m.rows[i].len + 1u);
            out[i].granted = (uint64_t)c.m.rows[i].v[0];
            out[i].claimed = (uint64_t)c.m.rows[i].v[1];
            out[i].expired = (uint64_t)c.m.rows[i].v[2];
            out[i].gifted = (uint64_t)c.m.rows[i].v[3];
        }
    }
    if (rc == PH_ENOMEM)
        ph_err_set(err, rc, "out of memory");
    if (rc == PH_OK) {
        *rows = out;
        *nrows = out ? c.m.n : 0;
    }
    sum_free(&c.m);
    return rc;
}

/* ---- co-redemption ---- */

/* Sums (d, x, y, gap <= within) for every day of the range: one seek a day. */
static int co_sum(MDB_cursor *cur, int32_t from_day, int32_t to_day, const char *x, const char *y,
                  int within, uint64_t *out, ph_err *err)
{
    uint8_t k0[AGG_KEY_MAX + 2];
    for (int32_t day = from_day; day <= to_day; day++) {
        size_t kl = agg_key(k0, day, 0, x, y);
        k0[kl++] = 0;
        MDB_val k = {kl, k0}, v;
        int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (k.mv_size != kl + 1 || memcmp(k.mv_data, k0, kl) != 0)
                break;
            if (v.mv_size != 8)
                return ph_err_set(err, PH_EIO, "agg_co: malformed aggregate");
            if (((const uint8_t *)k.mv_data)[kl] <= within) {
                int64_t c;
                memcpy(&c, v.mv_data, 8);
                *out += (uint64_t)c;
            }
        }
        if (mrc && mrc != MDB_NOTFOUND)
            return ph_store_lmdb_err(err, mrc, "read aggregates");
    }
    return PH_OK;
}

static int claims_of(MDB_txn *txn, MDB_dbi dbi, int32_t from_day, int32_t to_day, const char *sku,
                     uint64_t *out, ph_err *err)
{
    uint8_t key[AGG_KEY_MAX];
    for (int32_t day = from_day; day <= to_day; day++) {
        MDB_val k = {agg_key(key, day, 's', sku, NULL), key}, v;
        int mrc = mdb_get(txn, dbi, &k, &v);
        if (mrc == MDB_NOTFOUND)
            continue;
        if (mrc)
            return ph_store_lmdb_err(err, mrc, "read aggregates");
        if (v.mv_size != sizeof(ph_agg_claim_rec))
            return ph_err_set(err, PH_EIO, "agg_claims: malformed aggregate");
        ph_agg_claim_rec r;
        memcpy(&r, v.mv_data, sizeof r);
        *out += r.claimed;
    }
    return PH_OK;
}

int ph_store_agg_co(ph_store *s, int32_t from_day, int32_t to_day, const char *a, const char *b,
                    int within_d, ph_agg_co *out, ph_err *err)
{
    memset(out, 0, sizeof *out);
    int rc = range_ok(from_day, to_day, err);
    if (rc)
        return rc;
    if (!name_ok(a, PH_SKU_MAX) || !name_ok(b, PH_SKU_MAX))
        return ph_err_set(err, PH_EINVAL, "%s: expected a sku", name_ok(a, PH_SKU_MAX) ? "b" : "a");
    if (strcmp(a, b) == 0)
        return ph_err_set(err, PH_EINVAL, "b: expected a sku other than a");
    if (within_d < 0 || within_d > PH_AGG_CO_DAYS)
        return ph_err_set(err, PH_EINVAL, "within_d: expected 0-%d", PH_AGG_CO_DAYS);
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    if ((rc = ph_store_read_begin(s, &txn, err)) != PH_OK)
        return rc;
    int mrc = mdb_cursor_open(txn, s->dbi[DB_AGG_CO], &cur);
    if (mrc)
        rc = ph_store_lmdb_err(err, mrc, "open aggregates");
    if (rc == PH_OK)
        rc = co_sum(cur, from_day, to_day, a, b, within_d, &out->a_then_b, err);
    if (rc == PH_OK)
        rc = co_sum(cur, from_day, to_day, b, a, within_d, &out->b_then_a, err);
    if (rc == PH_OK)
        rc = claims_of(txn, s->dbi[DB_AGG_CLAIMS], from_day, to_day, a, &out->claims_a, err);
    if (rc == PH_OK)
        rc = claims_of(txn, s->dbi[DB_AGG_CLAIMS], from_day, to_day, b, &out->claims_b, err);
    if (cur)
        mdb_cursor_close(cur);
    ph_store_read_end(s, txn);
    return rc;
}

/* ---- --check-store ------------------------------------------------------------------ */

static sum_row *sum_find(sum_map *m, const uint8_t *key, size_t len)
{
    if (!m->nslots)
        return NULL;
    for (size_t h = fnv((const char *)key, len) & (m->nslots - 1); m->slot[h];
         h = (h + 1) & (m->nslots - 1)) {
        sum_row *r = &m->rows[m->slot[h] - 1];
        if (r->len == len && memcmp(r->name, key, len) == 0)
            return r;
    }
    return NULL;
}

/* The order figures recomputed from the orders and their ledger summaries,
 * keyed like the databases. */
static int recompute_orders(ph_store *s, MDB_txn *txn, sum_map *sku, sum_map *hours, ph_err *err)
{
    ph_wtxn w = {.s = s, .txn = txn}; /* reads only (store_ledger_counted) */
    uint64_t last = ph_store_last_key(txn, s->dbi[DB_ORDERS]);
    int rc = PH_OK;
    for (uint64_t id = 1; rc == PH_OK && id <= last; id++) {
        ph_order *o = NULL;
        rc = ph_order_load(s, txn, id, 0, &o, err);
        if (rc == PH_ENOTFOUND) {
            rc = PH_OK;
            continue;
        }
        if (rc == PH_OK && store_agg_counts(o)) {
            uint8_t key[AGG_KEY_MAX + 1];
            int32_t day = utc_day(o->created_at);
            uint8_t hour = (uint8_t)((o->created_at - (int64_t)day * DAY_MS) / 3600000);
            int64_t one[4] = {1, 0, 0, 0};
            size_t kl = agg_key(key, day, 'a', "", NULL);
            key[kl++] = hour;
            rc = sum_add(hours, (const char *)key, kl, one);
            kl = agg_key(key, day, 'c', o->client, "");
            key[kl++] = hour;
            if (rc == PH_OK)
                rc = sum_add(hours, (const char *)key, kl, one);
            int counted = 0;
            int64_t price = -1;
            if (rc == PH_OK && o->state == PH_ORDER_SUCCEEDED) {
                int lc = store_ledger_counted(&w, id, &counted, &price, err);
                rc = lc == PH_ENOTFOUND
                         ? ph_err_set(err, PH_EIO, "order %llu: not booked", (unsigned long long)id)
                         : lc;
            }
            if (rc == PH_OK && o->state == PH_ORDER_SUCCEEDED) {
                int64_t q = (int64_t)o->quantity,
                        d[4] = {1, q, price >= 0 ? price * q : 0, price >= 0 ? 0 : 1};
                kl = agg_key(key, day, 'a', o->sku, NULL);
                rc = sum_add(sku, (const char *)key, kl, d);
                kl = agg_key(key, day, 'c', o->client, o->sku);
                if (rc == PH_OK)
                    rc = sum_add(sku, (const char *)key, kl, d);
            }
            if (rc == PH_ENOMEM)
                ph_err_set(err, rc, "out of memory");
        }
        ph_order_free(o);
    }
    return rc;
}

/* Every row of db equals its recomputed figures, and every non-zero recomputed
 * row is in db. */
static int compare_db(ph_store *s, MDB_txn *txn, int db, size_t nv, sum_map *m, ph_err *err)
{
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(txn, s->dbi[db], &cur);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "open aggregates");
    MDB_val k, v;
    int rc = PH_OK;
    const char *name = ph_store_db_name(db);
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == PH_OK && mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        int64_t a[4] = {0};
        if (k.mv_size < 5 || v.mv_size != nv * sizeof a[0]) {
            rc = ph_err_set(err, PH_EIO, "%s: a malformed row", name);
            break;
        }
        memcpy(a, v.mv_data, v.mv_size);
        sum_row *r = sum_find(m, k.mv_data, k.mv_size);
        char day[40];
        ph_time_format((int64_t)get_day(k.mv_data) * DAY_MS, day, sizeof day);
        if (!r)
            rc = ph_err_set(err, PH_EIO, "%s: a row of %.10s counts orders there are none of", name,
                            day);
        else if (memcmp(a, r->v, nv * sizeof a[0]))
            rc =
                ph_err_set(err, PH_EIO, "%s: a row of %.10s says %lld orders, the orders make %lld",
                           name, day, (long long)a[0], (long long)r->v[0]);
        else
            r->seen = 1;
    }
    if (rc == PH_OK && mrc != MDB_NOTFOUND)
        rc = ph_store_lmdb_err(err, mrc, "read aggregates");
    mdb_cursor_close(cur);
    for (size_t i = 0; rc == PH_OK && i < m->n; i++)
        if (!m->rows[i].seen && (m->rows[i].v[0] || m->rows[i].v[1])) {
            char day[40];
            ph_time_format((int64_t)get_day((const uint8_t *)m->rows[i].name) * DAY_MS, day,
                           sizeof day);
            rc = ph_err_set(err, PH_EIO, "%s: the orders of %.10s have no row", name, day);
        }
    return rc;
}

/* The grant figures cannot be recomputed here (their transitions are their
 * own records'): each row well-formed and not all zeros; every holder's
 * list decodes. */
static int check_shapes(ph_store *s, MDB_txn *txn, ph_err *err)
{
    static const struct {
        int db;
        size_t size;
    } dbs[] = {{DB_AGG_CLAIMS, sizeof(ph_agg_claim_rec)}, {DB_AGG_CO, 8}};
    int rc = PH_OK;
    for (size_t i = 0; rc == PH_OK && i < 2; i++) {
        MDB_cursor *cur;
        int mrc = mdb_cursor_open(txn, s->dbi[dbs[i].db], &cur);
        if (mrc)
            return ph_store_lmdb_err(err, mrc, "open aggregates");
        MDB_val k, v;
        for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == PH_OK && mrc == 0;
             mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            static const uint8_t zero[sizeof(ph_agg_claim_rec)];
            if (k.mv_size < 6 || v.mv_size != dbs[i].size || !memcmp(v.mv_data, zero, v.mv_size))
                rc = ph_err_set(err, PH_EIO, "%s: a malformed or empty row",
                                ph_store_db_name(dbs[i].db));
        }
        mdb_cursor_close(cur);
    }
    MDB_cursor *cur;
    int mrc = rc ? 0 : mdb_cursor_open(txn, s->dbi[DB_AGG_USERS], &cur);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "open aggregates");
    if (rc)
        return rc;
    ph_wtxn w = {.s = s, .txn = txn}; /* co_load reads only */
    MDB_val k, v;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == PH_OK && mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        co_entry e[PH_AGG_CO_SKUS + 1];
        size_t n;
        if (k.mv_size != 8 || (rc = co_load(&w, k.mv_data, e, &n, err)) != PH_OK || n == 0 ||
            n > PH_AGG_CO_SKUS)
            rc = ph_err_set(err, PH_EIO, "agg_users: a malformed holder record");
    }
    mdb_cursor_close(cur);
    return rc;
}

int store_agg_check(ph_store *s, MDB_txn *txn, ph_err *err)
{
    sum_map sku = {0}, hours = {0};
    int rc = recompute_orders(s, txn, &sku, &hours, err);
    if (rc == PH_OK)
        rc = compare_db(s, txn, DB_AGG_SKU, 4, &sku, err);
    if (rc == PH_OK)
        rc = compare_db(s, txn, DB_AGG_HOURS, 1, &hours, err);
    sum_free(&sku);
    sum_free(&hours);
    return rc ? rc : check_shapes(s, txn, err);
}
