/*
 * store_supply_att.c — the supplier attempt index (`supply_att`, schema 9):
 * every attempt of a supplier order found by its supplier and creation time,
 * and by its supplier and the supplier's order id (docs/store.md, "The
 * supplier attempt index").
 *
 * Why: reconciliation (store_recon.c, ph_store_recon_prepare) must find the
 * attempts a statement names and the successes of its period without reading
 * every attempt of the store. A line's reference needs no index (it is
 * "<uid>-<order id>-<attempt no>", so its order is one read, as for
 * callbacks); a supplier order id and a period do.
 *
 *   't' supplier NUL be64(created_at) be64(order id) be32(no) -> ""
 *   'o' supplier NUL supplier_order_id NUL be64(order id) be32(no) -> ""
 *
 * Written by the writer with every supply record (store_apply_supply.c,
 * put_supply), in the same transaction, from the difference between the
 * record as it was and as it is: an attempt's `t` key when it is added (its
 * supplier and time never change, so the key lands near the supplier's
 * newest), its `o` key when its supplier order id becomes known or changes.
 * Back-filled from `supply` at the open that migrates a version 8 store (or older).
 * --check-store (invariant 39) proves it equals what a walk of `supply` finds.
 *
 * Thread safety: the maintenance and the back-fill run in the writer's (or
 * the open's) transaction; the reads take the caller's read transaction.
 */
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>

#include "crypto/wipe_alloc.h"

static void be_put(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t be_get(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | p[i];
    return v;
}

size_t store_satt_time_key(const char *supplier, int64_t at, uint64_t order_id, uint32_t no,
                           uint8_t *buf)
{
    size_t n = strlen(supplier);
    buf[0] = 't';
    memcpy(buf + 1, supplier, n + 1);
    n += 2;
    be_put(buf + n, (uint64_t)at, 8);
    if (order_id == 0 && no == 0)
        return n + 8; /* a seek: the time's first key */
    be_put(buf + n + 8, order_id, 8);
    be_put(buf + n + 16, no, 4);
    return n + 20;
}

size_t store_satt_soid_key(const char *supplier, const char *soid, uint64_t order_id, uint32_t no,
                           uint8_t *buf)
{
    size_t n = strlen(supplier), m = strlen(soid);
    buf[0] = 'o';
    memcpy(buf + 1, supplier, n + 1);
    memcpy(buf + n + 2, soid, m + 1);
    n += m + 3;
    if (order_id == 0 && no == 0)
        return n; /* a seek: the prefix of that supplier order id */
    be_put(buf + n, order_id, 8);
    be_put(buf + n + 8, no, 4);
    return n + 12;
}

void store_satt_ref_of(const uint8_t *tail, ph_recon_ref *at)
{
    at->order_id = be_get(tail, 8);
    at->no = (uint32_t)be_get(tail + 8, 4);
}

/* What ph_supply_decode allocated in o (ph_order_free, for an order on the stack). */
static void supply_clear(ph_order *o)
{
    if (o->account_sealed)
        ph_wipe(o->account_sealed, o->account_sealed_len);
    free(o->account_sealed);
    free(o->attempts);
}

static int satt_put(ph_wtxn *w, const uint8_t *key, size_t len, int add, ph_err *err)
{
    MDB_val k = {len, (void *)key}, v = {0, ""};
    int mrc = add ? mdb_put(w->txn, w->s->dbi[DB_SUPPLY_ATT], &k, &v, 0)
                  : mdb_del(w->txn, w->s->dbi[DB_SUPPLY_ATT], &k, NULL);
    return mrc ? ph_store_lmdb_err(err, mrc, "write supply_att") : PH_OK;
}

/* Adds (add = 1) or removes attempt a's keys: its time key when `time`, its
 * supplier order id's when it has one. */
static int satt_keys(ph_wtxn *w, uint64_t id, const ph_attempt *a, int time, int add, ph_err *err)
{
    uint8_t key[SATT_KEY_MAX];
    int rc = PH_OK;
    if (time)
        rc = satt_put(w, key, store_satt_time_key(a->supplier, a->created_at, id, a->no, key), add,
                      err);
    if (rc == PH_OK && a->supplier_order_id[0])
        rc =
            satt_put(w, key, store_satt_soid_key(a->supplier, a->supplier_order_id, id, a->no, key),
                     add, err);
    return rc;
}

int store_satt_update(ph_wtxn *w, const ph_order *old, const ph_order *o, ph_err *err)
{
    size_t nold = old ? old->nattempts : 0;
    int rc = PH_OK;
    for (size_t i = 0; i < nold && rc == PH_OK; i++) {
        const ph_attempt *b = &old->attempts[i];
        const ph_attempt *a = i < o->nattempts ? &o->attempts[i] : NULL;
        int moved = !a || strcmp(a->supplier, b->supplier) || a->created_at != b->created_at ||
                    a->no != b->no;
        if (moved || strcmp(a->supplier_order_id, b->supplier_order_id)) {
            /* what never happens to an attempt still leaves the index true */
            if ((rc = satt_keys(w, old->id, b, moved, 0, err)) == PH_OK && a)
                rc = satt_keys(w, o->id, a, moved, 1, err);
        }
    }
    for (size_t i = nold; i < o->nattempts && rc == PH_OK; i++)
        rc = satt_keys(w, o->id, &o->attempts[i], 1, 1, err);
    return rc;
}

int store_satt_put_supply(ph_wtxn *w, const ph_order *o, int is_new, ph_err *err)
{
    if (is_new)
        return store_satt_update(w, NULL, o, err);
    uint64_t id = o->id;
    MDB_val k = {8, &id}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_SUPPLY], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return store_satt_update(w, NULL, o, err);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read supply record");
    ph_order old = {.id = id};
    int rc = ph_supply_decode(&v, &old);
    if (rc)
        return rc == PH_ENOMEM ? ph_err_set(err, PH_ENOMEM, "out of memory")
                               : ph_err_set(err, PH_EIO, "order %llu: malformed supply record",
                                            (unsigned long long)id);
    rc = store_satt_update(w, &old, o, err);
    supply_clear(&old);
    return rc;
}

/* Walks every supply record: fn(arg, order) for each, decoded. */
typedef int (*supply_fn)(void *arg, const ph_order *o);

static int walk_supply(ph_store *s, MDB_txn *txn, supply_fn fn, void *arg, ph_err *err)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int mrc = mdb_cursor_open(txn, s->dbi[DB_SUPPLY], &cur), rc = PH_OK;
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "open supply");
    for (int op = MDB_FIRST; rc == PH_OK && (mrc = mdb_cursor_get(cur, &k, &v, op)) == 0;
         op = MDB_NEXT) {
        ph_order o = {0};
        if (k.mv_size != 8 || ph_supply_decode(&v, &o) != PH_OK) {
            rc = ph_err_set(err, PH_EIO, "supply: malformed record");
            break;
        }
        memcpy(&o.id, k.mv_data, 8);
        rc = fn(arg, &o);
        supply_clear(&o);
    }
    if (rc == PH_OK && mrc != MDB_NOTFOUND)
        rc = ph_store_lmdb_err(err, mrc, "read supply");
    mdb_cursor_close(cur);
    return rc;
}

typedef struct fill_arg {
    ph_wtxn *w;
    ph_err *err;
} fill_arg;

static int fill_one(void *arg, const ph_order *o)
{
    fill_arg *f = arg;
    return store_satt_update(f->w, NULL, o, f->err);
}

int store_satt_migrate(ph_store *s, MDB_txn *txn, ph_err *err)
{
    ph_wtxn w = {.s = s, .txn = txn};
    int mrc = mdb_drop(txn, s->dbi[DB_SUPPLY_ATT], 0);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "clear supply_att");
    fill_arg f = {&w, err};
    int rc = walk_supply(s, txn, fill_one, &f, err);
    uint32_t ver = PH_SCHEMA_VERSION;
    MDB_val k = {6, "schema"}, v = {sizeof ver, &ver};
    if (rc == PH_OK && (mrc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0)))
        rc = ph_store_lmdb_err(err, mrc, "write meta");
    return rc;
}

/* ---- the invariant (--check-store, 39) ------------------------------------------ */

typedef struct check_arg {
    MDB_txn *txn;
    MDB_dbi dbi;
    uint64_t want; /* keys the attempts call for */
    ph_err *err;
} check_arg;

static int has_key(check_arg *c, const uint8_t *key, size_t len)
{
    MDB_val k = {len, (void *)key}, v;
    return mdb_get(c->txn, c->dbi, &k, &v) == 0;
}

static int check_one(void *arg, const ph_order *o)
{
    check_arg *c = arg;
    uint8_t key[SATT_KEY_MAX];
    for (size_t i = 0; i < o->nattempts; i++) {
        const ph_attempt *a = &o->attempts[i];
        c->want++;
        if (!has_key(c, key, store_satt_time_key(a->supplier, a->created_at, o->id, a->no, key)))
            return ph_err_set(c->err, PH_EIO,
                              "supply_att: order %llu attempt %u has no entry by supplier and time",
                              (unsigned long long)o->id, a->no);
        if (!a->supplier_order_id[0])
            continue;
        c->want++;
        if (!has_key(c, key,
                     store_satt_soid_key(a->supplier, a->supplier_order_id, o->id, a->no, key)))
            return ph_err_set(
                c->err, PH_EIO,
                "supply_att: order %llu attempt %u has no entry by its supplier order id",
                (unsigned long long)o->id, a->no);
    }
    return PH_OK;
}

int store_satt_check(ph_store *s, MDB_txn *txn, ph_err *err)
{
    /* every attempt has its keys, and the index holds as many keys as the
     * attempts call for: so no key names an attempt that is not there */
    check_arg c = {txn, s->dbi[DB_SUPPLY_ATT], 0, err};
    int rc = walk_supply(s, txn, check_one, &c, err);
    if (rc)
        return rc;
    MDB_stat st;
    int mrc = mdb_stat(txn, s->dbi[DB_SUPPLY_ATT], &st);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "stat supply_att");
    if (st.ms_entries != c.want)
        return ph_err_set(err, PH_EIO,
                          "supply_att: %llu entries but the attempts in supply call for %llu",
                          (unsigned long long)st.ms_entries, (unsigned long long)c.want);
    return PH_OK;
}
