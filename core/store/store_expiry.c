/*
 * store_expiry.c — the expiry index (DB_EXPIRY): its key, the reads that use
 * it (what is due, how many available codes are past their expiry) and its
 * rebuild from the codes, the migration from schema version 2. The sweep that
 * empties it is a command (PH_CMD_EXPIRE, store_apply.c); the checker
 * (store_check.c) holds it to the codes.
 *
 * Key: SKU bytes, one NUL, the expiry in ms as a big-endian uint64, so each
 * SKU's entries sort by time and "due at now" is a prefix of the SKU's range.
 * Values: the code ids (native uint64, sorted duplicates). Import adds an entry
 * per expiring code, in the same transaction; issuing and voiding leave the
 * entry (no write to this random-by-time index on the hot path, docs/design.md rule
 * 6) and the sweep removes it once it is due, retiring the code only if it is
 * still available.
 */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX (PH_SKU_MAX + 9)

static size_t key_encode(const char *sku, size_t len, uint64_t at, uint8_t *out)
{
    memcpy(out, sku, len);
    out[len] = 0;
    for (int i = 0; i < 8; i++)
        out[len + 1 + i] = (uint8_t)(at >> (56 - 8 * i));
    return len + 9;
}

int ph_expiry_key_decode(const MDB_val *k, size_t *sku_len, int64_t *at)
{
    const uint8_t *p = k->mv_data;
    if (k->mv_size < 10 || k->mv_size > KEY_MAX || p[k->mv_size - 9] != 0)
        return -1;
    *sku_len = k->mv_size - 9;
    if (memchr(p, 0, *sku_len))
        return -1;
    uint64_t t = 0;
    for (int i = 0; i < 8; i++)
        t = t << 8 | p[*sku_len + 1 + i];
    *at = (int64_t)t;
    return 0;
}

int ph_expiry_add(MDB_txn *txn, MDB_dbi dbi, const char *sku, uint64_t id, int64_t expires_at,
                  ph_err *err)
{
    uint8_t key[KEY_MAX];
    size_t len = strlen(sku);
    if (len > PH_SKU_MAX || expires_at <= 0)
        return ph_err_set(err, PH_EINVAL, "expiry index: sku or expiry out of range");
    MDB_val k = {key_encode(sku, len, (uint64_t)expires_at, key), key}, v = {8, &id};
    int mrc = mdb_put(txn, dbi, &k, &v, 0);
    return mrc ? ph_store_lmdb_err(err, mrc, "write expiry index") : PH_OK;
}

int ph_expiry_has(MDB_txn *txn, MDB_dbi dbi, const char *sku, uint64_t id, int64_t expires_at)
{
    uint8_t key[KEY_MAX];
    size_t len = strlen(sku);
    MDB_cursor *cur;
    if (len > PH_SKU_MAX || expires_at <= 0 || mdb_cursor_open(txn, dbi, &cur))
        return 0;
    MDB_val k = {key_encode(sku, len, (uint64_t)expires_at, key), key}, v = {8, &id};
    int found = mdb_cursor_get(cur, &k, &v, MDB_GET_BOTH) == 0;
    mdb_cursor_close(cur);
    return found;
}

int ph_expiry_seek_due(MDB_cursor *cur, const char *sku, size_t len, int64_t now,
                       ph_expiry_margin_fn margin, void *arg, MDB_val *k, MDB_val *v)
{
    /* the margin of the SKU last met, looked up once per SKU */
    char last[PH_SKU_MAX + 1];
    size_t last_len = (size_t)-1;
    int64_t m = 0;
    uint8_t key[KEY_MAX + 1];
    *k = (MDB_val){key_encode(sku, len, 0, key), key};
    int mrc = len ? mdb_cursor_get(cur, k, v, MDB_SET_RANGE) : mdb_cursor_get(cur, k, v, MDB_FIRST);
    while (mrc == 0) {
        size_t n;
        int64_t at;
        if (ph_expiry_key_decode(k, &n, &at))
            return MDB_CORRUPTED;
        if (margin && (n != last_len || memcmp(last, k->mv_data, n))) {
            memcpy(last, k->mv_data, n);
            last_len = n;
            m = margin(arg, last, n);
        }
        if (ph_code_retire_due(at, m, now))
            return 0;
        /* none of this SKU is due: "sku\x01" sorts after all its keys, before the next SKU's */
        memcpy(key, k->mv_data, n);
        key[n] = 1;
        *k = (MDB_val){n + 1, key};
        mrc = mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
    }
    return mrc;
}

uint64_t ph_expiry_due_available(ph_store *s, MDB_txn *txn, const char *sku, size_t len,
                                 int64_t now)
{
    MDB_cursor *cur;
    uint8_t key[KEY_MAX];
    uint64_t n = 0;
    if (len == 0 || len > PH_SKU_MAX || mdb_cursor_open(txn, s->dbi[DB_EXPIRY], &cur))
        return 0;
    MDB_val k = {key_encode(sku, len, 0, key), key}, v;
    for (int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        size_t kl;
        int64_t at;
        if (ph_expiry_key_decode(&k, &kl, &at) || kl != len || memcmp(k.mv_data, sku, len) ||
            at > now)
            break;
        uint64_t id;
        memcpy(&id, v.mv_data, 8);
        MDB_val ck = {8, &id}, cv;
        ph_code code;
        if (mdb_get(txn, s->dbi[DB_CODES], &ck, &cv) == 0 &&
            ph_code_decode(&cv, id, 0, &code) == PH_OK && code.state == PH_CODE_AVAILABLE)
            n++;
    }
    mdb_cursor_close(cur);
    return n;
}

/* A reader's margin: the product's min_validity_days, from its stored JSON. */
typedef struct reader_margin {
    ph_store *s;
    MDB_txn *txn;
} reader_margin;

static int64_t product_margin(void *arg, const char *sku, size_t len)
{
    reader_margin *rm = arg;
    MDB_val k = {len, (void *)sku}, v;
    return mdb_get(rm->txn, rm->s->dbi[DB_PRODUCTS], &k, &v) ? 0 : store_product_min_validity(&v);
}

int ph_store_expiry_due(ph_store *s, int64_t now)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    ph_err err;
    if (ph_store_read_begin(s, &txn, &err))
        return 0;
    int due = 0;
    if (mdb_cursor_open(txn, s->dbi[DB_EXPIRY], &cur) == 0) {
        reader_margin rm = {s, txn};
        due = ph_expiry_seek_due(cur, "", 0, now, product_margin, &rm, &k, &v) == 0;
        mdb_cursor_close(cur);
    }
    ph_store_read_end(s, txn);
    return due;
}

int ph_expiry_rebuild(ph_store *s, MDB_txn *txn, ph_err *err)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int mrc = mdb_drop(txn, s->dbi[DB_EXPIRY], 0);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "empty expiry index");
    if ((mrc = mdb_cursor_open(txn, s->dbi[DB_CODES], &cur)) != 0)
        return ph_store_lmdb_err(err, mrc, "open codes");
    ph_batch b = {0};
    int rc = PH_OK;
    for (int op = MDB_FIRST; rc == PH_OK && (mrc = mdb_cursor_get(cur, &k, &v, op)) == 0;
         op = MDB_NEXT) {
        uint64_t id;
        ph_code code;
        memcpy(&id, k.mv_data, 8);
        if (ph_code_decode(&v, id, 0, &code) != PH_OK) {
            rc = ph_err_set(err, PH_EIO, "code %llu: malformed record", (unsigned long long)id);
            break;
        }
        if (code.state != PH_CODE_AVAILABLE || code.expires_at <= 0)
            continue;
        if (b.id != code.batch_id) { /* a batch's codes are consecutive: one read per batch */
            MDB_val bk = {8, &code.batch_id}, bv;
            if (mdb_get(txn, s->dbi[DB_BATCHES], &bk, &bv) ||
                ph_batch_decode(&bv, code.batch_id, &b, NULL)) {
                rc = ph_err_set(err, PH_EIO, "code %llu: batch %llu missing or malformed",
                                (unsigned long long)id, (unsigned long long)code.batch_id);
                break;
            }
        }
        rc = ph_expiry_add(txn, s->dbi[DB_EXPIRY], b.sku, id, code.expires_at, err);
    }
    mdb_cursor_close(cur);
    if (rc == PH_OK && mrc != MDB_NOTFOUND)
        rc = ph_store_lmdb_err(err, mrc, "read codes");
    return rc;
}
