/*
 * store_tally.c — the ops page's counts. Orders counted by state and by SKU
 * since a moment (GET /v1/stats/orders): the newest orders read backwards from
 * the end of the `orders` database, in one snapshot; any thread. Codes counted
 * by SKU and state (GET /v1/stats): `code_counts`, kept by the writer in the
 * transaction of every change (store_int.h, "the code counts"), read in
 * O(SKUs) — a scan of every code held one read snapshot open for as long as
 * it took, and LMDB reuses no page freed after a snapshot while it is open
 * (docs/store.md, "Code counts").
 */
#include "store/store_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* ---- code counts ----------------------------------------------------------------- */

/* The record's count of a counted state, NULL for available and issued (and
 * 0, a new code): those are not kept (store_int.h). */
static uint64_t *count_of(ph_code_count_rec *r, int state)
{
    switch (state) {
    case PH_CODE_RESERVED:
        return &r->reserved;
    case PH_CODE_REDEEMED:
        return &r->redeemed;
    case PH_CODE_VOIDED:
        return &r->voided;
    case PH_CODE_EXPIRED:
        return &r->expired;
    default:
        return NULL;
    }
}

static int counted(int state)
{
    return state == PH_CODE_RESERVED || state == PH_CODE_REDEEMED || state == PH_CODE_VOIDED ||
           state == PH_CODE_EXPIRED;
}

static int counts_decode(const MDB_val *k, const MDB_val *v, ph_code_count_rec *r, ph_err *err)
{
    if (v->mv_size != sizeof *r || k->mv_size == 0 || k->mv_size > PH_SKU_MAX)
        return ph_err_set(err, PH_EIO, "code_counts: a malformed record (%zu-byte key, %zu bytes)",
                          k->mv_size, v->mv_size);
    memcpy(r, v->mv_data, sizeof *r);
    if (r->version != 1)
        return ph_err_set(err, PH_EIO, "code_counts: sku %.*s: record version %u", (int)k->mv_size,
                          (const char *)k->mv_data, r->version);
    return PH_OK;
}

/* The record of sku into *r: PH_OK, PH_ENOTFOUND (none yet), PH_EIO. */
static int counts_get(ph_wtxn *w, const char *sku, ph_code_count_rec *r, ph_err *err)
{
    MDB_val k = {strlen(sku), (void *)sku}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_CODE_COUNTS], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return PH_ENOTFOUND;
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read code counts");
    return counts_decode(&k, &v, r, err);
}

static int counts_put(ph_wtxn *w, const char *sku, const ph_code_count_rec *r, ph_err *err)
{
    MDB_val k = {strlen(sku), (void *)sku}, v = {sizeof *r, (void *)r};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_CODE_COUNTS], &k, &v, 0);
    return mrc ? ph_store_lmdb_err(err, mrc, "write code counts") : PH_OK;
}

int store_code_counts_batch(ph_wtxn *w, const ph_batch *b, ph_err *err)
{
    ph_code_count_rec r;
    int rc = counts_get(w, b->sku, &r, err);
    if (rc == PH_ENOTFOUND)
        r = (ph_code_count_rec){.version = 1, .first_batch = b->id}, rc = PH_OK;
    if (rc)
        return rc;
    r.imported += b->count;
    return counts_put(w, b->sku, &r, err);
}

int store_code_counted(ph_wtxn *w, uint64_t batch_id, int from, int to, ph_err *err)
{
    ph_code_count_rec r;
    ph_batch b;
    if (from == to || (!counted(from) && !counted(to)))
        return PH_OK; /* the hot path: available -> issued, a new code, a re-seal */
    int rc = store_batch_load(w->s, w->txn, batch_id, &b, err);
    if (rc == PH_OK && (rc = counts_get(w, b.sku, &r, err)) == PH_ENOTFOUND)
        rc = ph_err_set(err, PH_EIO, "code_counts: sku %s (batch %llu) has no record", b.sku,
                        (unsigned long long)batch_id);
    if (rc)
        return rc;
    uint64_t *dec = count_of(&r, from), *inc = count_of(&r, to);
    if (dec && !*dec)
        return ph_err_set(err, PH_EIO, "code_counts: sku %s: no %s code to take one from", b.sku,
                          ph_code_state_name(from));
    if (dec)
        (*dec)--;
    if (inc)
        (*inc)++;
    return counts_put(w, b.sku, &r, err);
}

/* Orders SKUs by their first batch: the order the scan of the codes met them in. */
typedef struct sku_first {
    ph_sku_stats st;
    uint64_t first;
} sku_first;

static int by_first(const void *a, const void *b)
{
    uint64_t x = ((const sku_first *)a)->first, y = ((const sku_first *)b)->first;
    return x < y ? -1 : x > y;
}

/* The SKU's counts as stats give them: available its `avail` count, issued
 * what is left of imported; at now > 0 its available codes due count as
 * expired (store.h, ph_store_stats_at). */
static int counts_stats(ph_store *s, MDB_txn *txn, MDB_cursor *avail, const MDB_val *k,
                        const ph_code_count_rec *r, int64_t now, ph_sku_stats *out, ph_err *err)
{
    MDB_val sk = *k, v;
    size_t n = 0;
    int mrc = mdb_cursor_get(avail, &sk, &v, MDB_SET);
    if (mrc == 0)
        mrc = mdb_cursor_count(avail, &n);
    if (mrc && mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(err, mrc, "read stock");
    memset(out, 0, sizeof *out);
    memcpy(out->sku, k->mv_data, k->mv_size);
    uint64_t due = now > 0 ? ph_expiry_due_available(s, txn, out->sku, k->mv_size, now) : 0;
    uint64_t kept = n + r->reserved + r->redeemed + r->voided + r->expired;
    if (kept > r->imported || due > n)
        return ph_err_set(err, PH_EIO,
                          "code_counts: sku %s: %llu imported, but %llu available (%llu due), "
                          "%llu reserved, %llu redeemed, %llu voided, %llu expired",
                          out->sku, (unsigned long long)r->imported, (unsigned long long)n,
                          (unsigned long long)due, (unsigned long long)r->reserved,
                          (unsigned long long)r->redeemed, (unsigned long long)r->voided,
                          (unsigned long long)r->expired);
    out->imported = r->imported;
    out->by_state[PH_CODE_AVAILABLE] = n - due;
    out->by_state[PH_CODE_RESERVED] = r->reserved;
    out->by_state[PH_CODE_ISSUED] = r->imported - kept;
    out->by_state[PH_CODE_REDEEMED] = r->redeemed;
    out->by_state[PH_CODE_VOIDED] = r->voided;
    out->by_state[PH_CODE_EXPIRED] = r->expired + due;
    return PH_OK;
}

int store_code_counts_read(ph_store *s, MDB_txn *txn, int64_t now, ph_store_stats *out, ph_err *err)
{
    MDB_cursor *c = NULL, *avail = NULL;
    MDB_stat ms;
    sku_first *list = NULL;
    size_t n = 0;
    memset(out, 0, sizeof *out);
    int mrc = mdb_stat(txn, s->dbi[DB_CODE_COUNTS], &ms);
    if (mrc == 0)
        mrc = mdb_cursor_open(txn, s->dbi[DB_CODE_COUNTS], &c);
    if (mrc == 0)
        mrc = mdb_cursor_open(txn, s->dbi[DB_AVAIL], &avail);
    int rc = mrc ? ph_store_lmdb_err(err, mrc, "read code counts") : PH_OK;
    if (rc == PH_OK && ms.ms_entries && !(list = calloc(ms.ms_entries, sizeof *list)))
        rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    MDB_val k, v;
    for (int op = MDB_FIRST; rc == PH_OK && n < ms.ms_entries && mdb_cursor_get(c, &k, &v, op) == 0;
         op = MDB_NEXT) {
        ph_code_count_rec r;
        if ((rc = counts_decode(&k, &v, &r, err)) == PH_OK &&
            (rc = counts_stats(s, txn, avail, &k, &r, now, &list[n].st, err)) == PH_OK) {
            list[n++].first = r.first_batch;
            out->codes += r.imported;
        }
    }
    if (avail)
        mdb_cursor_close(avail);
    if (c)
        mdb_cursor_close(c);
    if (rc == PH_OK && n && !(out->skus = malloc(n * sizeof *out->skus)))
        rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    if (rc == PH_OK) {
        if (n)
            qsort(list, n, sizeof *list, by_first);
        for (size_t i = 0; i < n; i++)
            out->skus[i] = list[i].st;
        out->nskus = n;
        if (mdb_stat(txn, s->dbi[DB_ORDERS], &ms) == 0)
            out->orders = ms.ms_entries;
        if (mdb_stat(txn, s->dbi[DB_EVENTS], &ms) == 0)
            out->last_event = ms.ms_entries; /* events are numbered 1..n without gaps */
    }
    free(list);
    if (rc) {
        free(out->skus);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

int ph_store_stats_at(ph_store *s, int64_t now, ph_store_stats *out, ph_err *err)
{
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    rc = store_code_counts_read(s, txn, now, out, err);
    ph_store_read_end(s, txn);
    return rc;
}

int ph_store_stats_get(ph_store *s, ph_store_stats *out, ph_err *err)
{
    return ph_store_stats_at(s, ph_now_ms(), out, err);
}

int store_code_counts_build(ph_store *s, MDB_txn *txn, ph_err *err)
{
    ph_store_stats st;
    uint64_t *first = NULL;
    ph_wtxn w = {.s = s, .txn = txn};
    int rc = store_check_count(s, txn, &st, &first, err);
    if (rc)
        return rc;
    /* a store that met an earlier build of version 8 is counted afresh */
    int mrc = mdb_drop(txn, s->dbi[DB_CODE_COUNTS], 0);
    if (mrc)
        rc = ph_store_lmdb_err(err, mrc, "clear code counts");
    for (size_t i = 0; rc == PH_OK && i < st.nskus; i++) {
        const ph_sku_stats *k = &st.skus[i];
        ph_code_count_rec r = {.version = 1,
                               .first_batch = first[i],
                               .imported = k->imported,
                               .reserved = k->by_state[PH_CODE_RESERVED],
                               .redeemed = k->by_state[PH_CODE_REDEEMED],
                               .voided = k->by_state[PH_CODE_VOIDED],
                               .expired = k->by_state[PH_CODE_EXPIRED]};
        rc = counts_put(&w, k->sku, &r, err);
    }
    free(first);
    ph_store_stats_clear(&st);
    uint32_t ver = PH_SCHEMA_VERSION;
    MDB_val k = {6, "schema"}, v = {sizeof ver, &ver};
    if (rc == PH_OK && (mrc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0)) != 0)
        rc = ph_store_lmdb_err(err, mrc, "write meta");
    return rc;
}

/* ---- orders since a moment ------------------------------------------------------- */

/* Order ids are handed out by the writer in the order commands reach it, and
 * created_at is the command's time, taken by its submitter before that: an
 * order can carry an older time than an order before it by as long as a
 * command waits to be applied. The walk backwards goes on this far past the
 * first order older than `since`, so such an order is still counted. */
#define TALLY_SLACK_MS 60000

/* The slot of sku in t->skus (sorted by SKU), inserted with zero counts when
 * absent; NULL when out of memory. */
static ph_order_tally_sku *sku_slot(ph_order_tally *t, size_t *cap, const char *sku)
{
    size_t lo = 0, hi = t->nskus;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->skus[mid].sku, sku);
        if (c == 0)
            return &t->skus[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (t->nskus == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        ph_order_tally_sku *g = realloc(t->skus, ncap * sizeof *g);
        if (!g)
            return NULL;
        t->skus = g;
        *cap = ncap;
    }
    memmove(&t->skus[lo + 1], &t->skus[lo], (t->nskus - lo) * sizeof *t->skus);
    t->nskus++;
    ph_order_tally_sku *s = &t->skus[lo];
    memset(s, 0, sizeof *s);
    memcpy(s->sku, sku, strlen(sku) + 1); /* a decoded order's sku fits PH_SKU_MAX */
    return s;
}

/* Counts one decoded order into t. */
static int tally_add(ph_order_tally *t, size_t *cap, const ph_order *o)
{
    ph_order_tally_sku *s = sku_slot(t, cap, o->sku);
    if (!s)
        return PH_ENOMEM;
    unsigned st = o->state >= 0 && o->state < PH_ORDER_TALLY_STATES ? (unsigned)o->state : 0;
    t->orders++;
    t->by_state[st]++;
    s->orders++;
    s->quantity += o->quantity;
    s->by_state[st]++;
    return PH_OK;
}

int ph_store_order_tally(ph_store *s, int64_t since, size_t max_orders, ph_order_tally *out,
                         ph_err *err)
{
    MDB_txn *txn;
    MDB_cursor *c;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    ph_order_tally t = {.complete = 1};
    size_t cap = 0, visited = 0;
    int64_t oldest = INT64_MAX; /* of the orders counted */
    MDB_stat ms;
    if (mdb_stat(txn, s->dbi[DB_EVENTS], &ms) == 0)
        t.last_event = ms.ms_entries; /* events are numbered 1..n without gaps */
    if (mdb_cursor_open(txn, s->dbi[DB_ORDERS], &c)) {
        ph_store_read_end(s, txn);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    MDB_val k, v;
    for (int mrc = mdb_cursor_get(c, &k, &v, MDB_LAST); mrc == 0;
         mrc = mdb_cursor_get(c, &k, &v, MDB_PREV)) {
        uint64_t id;
        ph_order o;
        memcpy(&id, k.mv_data, sizeof id);
        if (ph_order_decode(&v, id, &o, NULL) != PH_OK) {
            rc = ph_err_set(err, PH_EIO, "order %llu: malformed record", (unsigned long long)id);
            break;
        }
        if (o.created_at < since - TALLY_SLACK_MS)
            break;
        if (visited == max_orders) {
            t.complete = 0; /* the counts cover the newest orders only */
            break;
        }
        visited++;
        /* the mall's orders, as analytics count them: not a replenishment,
         * not a bundle's component (its bundle counts once) */
        if (o.created_at < since || !store_agg_counts(&o))
            continue;
        if (o.created_at < oldest)
            oldest = o.created_at;
        if ((rc = tally_add(&t, &cap, &o)) != PH_OK) {
            ph_err_set(err, rc, "out of memory");
            break;
        }
    }
    mdb_cursor_close(c);
    ph_store_read_end(s, txn);
    if (rc) {
        free(t.skus);
        return rc;
    }
    t.counted_from = t.complete || oldest == INT64_MAX ? since : oldest;
    *out = t;
    return PH_OK;
}

void ph_order_tally_clear(ph_order_tally *t)
{
    free(t->skus);
    memset(t, 0, sizeof *t);
}
