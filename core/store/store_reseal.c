/*
 * store_reseal.c — key rotation in the store (store.h, "key rotation";
 * docs/store.md, "Key rotation"): counting what each key id protects, the
 * re-seal step that moves items to the newest key through the writer, the
 * PH_CMD_RESEAL command, and the progress the daemon publishes.
 *
 * Crypto runs before submission (a step unseals and reseals on its caller's
 * thread, like an import seals), so applying stays a function of the command:
 * the writer only compares bytes and swaps them. It swaps an item only while
 * its stored value is exactly what the step read, so an order that issued the
 * code in between is never disturbed (the same plaintext is read either way),
 * and an item changed in between is simply left for the next pass.
 */
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "crypto/code.h"

/* ---- counting ------------------------------------------------------------------ */

static int use_add(ph_key_use *u, size_t *n, uint16_t id, int account)
{
    size_t i = 0;
    while (i < *n && u[i].id < id)
        i++;
    if (i == *n || u[i].id != id) {
        if (*n == PH_KEY_USE_MAX)
            return -1;
        memmove(&u[i + 1], &u[i], (*n - i) * sizeof *u);
        u[i] = (ph_key_use){.id = id};
        (*n)++;
    }
    if (account)
        u[i].accounts++;
    else
        u[i].codes++;
    return 0;
}

/* The sealed blob of a code record and its length; NULL when malformed. */
static const uint8_t *code_sealed(const MDB_val *v, uint32_t *len)
{
    ph_code_rec r;
    if (v->mv_size < sizeof r)
        return NULL;
    memcpy(&r, v->mv_data, sizeof r);
    if (v->mv_size != sizeof r + r.sealed_len)
        return NULL;
    *len = r.sealed_len;
    return (const uint8_t *)v->mv_data + sizeof r;
}

int ph_store_key_use(ph_store *s, ph_key_use *out, size_t *n, ph_err *err)
{
    MDB_txn *txn;
    MDB_cursor *c = NULL;
    MDB_val k, v;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    *n = 0;
    for (int db = 0; rc == PH_OK && db < 2; db++) {
        if (mdb_cursor_open(txn, s->dbi[db ? DB_SUPPLY : DB_CODES], &c)) {
            rc = ph_err_set(err, PH_EIO, "store: cannot open %s", db ? "supply" : "codes");
            break;
        }
        for (int op = MDB_FIRST; rc == PH_OK && mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
            uint64_t id;
            memcpy(&id, k.mv_data, 8);
            uint16_t kid = 0;
            if (!db) {
                uint32_t len;
                const uint8_t *b = code_sealed(&v, &len);
                if (!b || !(kid = ph_sealed_key_id(b, len)))
                    rc = ph_err_set(err, PH_EIO, "code %llu: malformed record",
                                    (unsigned long long)id);
            } else {
                ph_order o = {0};
                if (ph_supply_decode(&v, &o) != PH_OK)
                    rc = ph_err_set(err, PH_EIO, "order %llu: malformed supply record",
                                    (unsigned long long)id);
                else if (o.account_sealed_len &&
                         !(kid = ph_sealed_key_id(o.account_sealed, o.account_sealed_len)))
                    rc = ph_err_set(err, PH_EIO, "order %llu: malformed sealed account",
                                    (unsigned long long)id);
                if (o.account_sealed)
                    ph_wipe(o.account_sealed, o.account_sealed_len);
                free(o.account_sealed);
                free(o.attempts);
                if (rc == PH_OK && !kid)
                    continue; /* a card-code order: no account */
            }
            if (rc == PH_OK && use_add(out, n, kid, db))
                rc = ph_err_set(err, PH_ELIMIT, "store: data sealed with more than %d key ids",
                                PH_KEY_USE_MAX);
        }
        mdb_cursor_close(c);
    }
    ph_store_read_end(s, txn);
    return rc;
}

/* ---- the step ------------------------------------------------------------------- */

typedef struct items {
    ph_reseal_item *v;
    uint8_t **bufs; /* old and new blobs, 2 per item, owned */
    size_t n, cap;
} items;

static void items_free(items *it)
{
    for (size_t i = 0; i < it->n; i++) {
        ph_wipe(it->bufs[2 * i], it->v[i].len);
        free(it->bufs[2 * i]);
        free(it->bufs[2 * i + 1]);
    }
    free(it->v);
    free(it->bufs);
}

static int items_add(items *it, int kind, uint64_t id, const uint8_t *sealed, uint32_t len)
{
    if (it->n == it->cap) {
        size_t cap = it->cap ? it->cap * 2 : 64;
        ph_reseal_item *v = realloc(it->v, cap * sizeof *v);
        if (v)
            it->v = v;
        uint8_t **b = v ? realloc(it->bufs, 2 * cap * sizeof *b) : NULL;
        if (!b)
            return -1;
        it->bufs = b;
        it->cap = cap;
    }
    uint8_t *old = malloc(len), *neu = malloc(len);
    if (!old || !neu) {
        free(old);
        free(neu);
        return -1;
    }
    memcpy(old, sealed, len);
    it->bufs[2 * it->n] = old;
    it->bufs[2 * it->n + 1] = neu;
    it->v[it->n++] =
        (ph_reseal_item){.kind = kind, .id = id, .len = len, .old_sealed = old, .new_sealed = neu};
    return 0;
}

/* Reads up to limit items sealed with `from` from *pos on, in one snapshot. */
static int collect(ph_store *s, uint16_t from, ph_reseal_pos *pos, size_t limit, items *it,
                   ph_err *err)
{
    MDB_txn *txn;
    MDB_cursor *c = NULL;
    MDB_val k, v;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    size_t looked = 0, budget = limit * 64;
    while (rc == PH_OK && pos->phase < 2 && it->n < limit && looked < budget) {
        int db = pos->phase ? DB_SUPPLY : DB_CODES;
        if (mdb_cursor_open(txn, s->dbi[db], &c)) {
            rc = ph_err_set(err, PH_EIO, "store: cannot open a cursor");
            break;
        }
        k = (MDB_val){8, &pos->next};
        int got = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        for (; rc == PH_OK && got == 0 && it->n < limit && looked < budget;
             got = mdb_cursor_get(c, &k, &v, MDB_NEXT), looked++) {
            uint64_t id;
            memcpy(&id, k.mv_data, 8);
            pos->next = id + 1;
            if (db == DB_CODES) {
                uint32_t len;
                const uint8_t *b = code_sealed(&v, &len);
                if (b && ph_sealed_key_id(b, len) == from &&
                    items_add(it, PH_SEALED_CODE, id, b, len))
                    rc = ph_err_set(err, PH_ENOMEM, "out of memory");
                continue;
            }
            ph_order o = {0};
            if (ph_supply_decode(&v, &o) == PH_OK && o.account_sealed_len &&
                ph_sealed_key_id(o.account_sealed, o.account_sealed_len) == from &&
                items_add(it, PH_SEALED_ACCOUNT, id, o.account_sealed, o.account_sealed_len))
                rc = ph_err_set(err, PH_ENOMEM, "out of memory");
            if (o.account_sealed)
                ph_wipe(o.account_sealed, o.account_sealed_len);
            free(o.account_sealed);
            free(o.attempts);
        }
        mdb_cursor_close(c);
        if (rc == PH_OK && got == MDB_NOTFOUND) {
            pos->phase++;
            pos->next = 0;
        }
    }
    ph_store_read_end(s, txn);
    return rc;
}

/* Reseals one item in place (new_sealed), proving the new value opens to the
 * same plaintext. PH_OK or PH_ECRYPTO (the old value does not open). */
static int reseal_one(const ph_keyring *kr, ph_reseal_item *item, uint8_t *neu)
{
    const char *aad = item->kind == PH_SEALED_CODE ? PH_CODE_AAD : PH_ACCOUNT_AAD;
    size_t alen = strlen(aad), ptlen = 0, n2 = 0, outlen = 0;
    if (item->len <= PH_SEAL_OVERHEAD)
        return PH_ECRYPTO;
    uint8_t *pt = malloc(item->len), *back = malloc(item->len);
    int rc = pt && back ? PH_OK : PH_ENOMEM;
    if (rc == PH_OK)
        rc =
            ph_crypto_open(kr, item->old_sealed, item->len, (const uint8_t *)aad, alen, pt, &ptlen);
    if (rc == PH_OK)
        rc = ph_crypto_seal(kr, pt, ptlen, (const uint8_t *)aad, alen, neu, &outlen);
    if (rc == PH_OK &&
        (outlen != item->len ||
         ph_crypto_open(kr, neu, outlen, (const uint8_t *)aad, alen, back, &n2) != PH_OK ||
         n2 != ptlen || memcmp(pt, back, ptlen) != 0))
        rc = PH_ECRYPTO;
    if (pt)
        ph_wipe(pt, item->len);
    if (back)
        ph_wipe(back, item->len);
    free(pt);
    free(back);
    return rc;
}

int ph_store_reseal_step(ph_store *s, uint16_t from, ph_reseal_pos *pos, size_t limit,
                         const ph_audit *audit, ph_reseal_step_result *res, ph_err *err)
{
    *res = (ph_reseal_step_result){0};
    if (!s->keys)
        return ph_err_set(err, PH_EINVAL, "store: re-sealing needs the keys");
    uint16_t to = ph_keyring_active_id(s->keys);
    if (from == to || !limit)
        return ph_err_set(err, PH_EINVAL, "store: re-seal from key %u: nothing to move",
                          (unsigned)from);
    items it = {0};
    int rc = collect(s, from, pos, limit, &it, err);
    /* items that do not open are left out of the command: damaged, not ours to fix */
    size_t keep = 0;
    ph_reseal_item *kept = rc == PH_OK ? malloc((it.n + 1) * sizeof *kept) : NULL;
    if (rc == PH_OK && !kept)
        rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    for (size_t i = 0; rc == PH_OK && i < it.n; i++) {
        int r = reseal_one(s->keys, &it.v[i], it.bufs[2 * i + 1]);
        if (r == PH_ENOMEM)
            rc = ph_err_set(err, PH_ENOMEM, "out of memory");
        else if (r != PH_OK)
            res->unreadable++;
        else
            kept[keep++] = it.v[i];
    }
    if (rc == PH_OK && (keep || audit)) {
        ph_cmd cmd = {.type = PH_CMD_RESEAL, .now = ph_now_ms(), .audit = audit};
        cmd.in.reseal.key_id = to;
        cmd.in.reseal.items = kept;
        cmd.in.reseal.n = keep;
        rc = ph_store_exec(s, &cmd);
        if (rc != PH_OK)
            *err = cmd.err;
        res->moved = cmd.resealed;
        res->skipped = cmd.reseal_skipped;
        ph_cmd_clear(&cmd);
    }
    free(kept);
    items_free(&it);
    return rc;
}

/* ---- the command ------------------------------------------------------------------ */

static int reseal_account(ph_wtxn *w, ph_cmd *c, const ph_reseal_item *it, int *done)
{
    MDB_val k = {8, (void *)&it->id}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_SUPPLY], &k, &v);
    *done = 0;
    if (mrc == MDB_NOTFOUND)
        return PH_OK;
    if (mrc)
        return ph_store_lmdb_err(&c->err, mrc, "read supply record");
    ph_order o = {0};
    int rc = ph_supply_decode(&v, &o);
    if (rc != PH_OK)
        rc = ph_err_set(&c->err, rc, "order %llu: malformed supply record",
                        (unsigned long long)it->id);
    else if (o.account_sealed_len == it->len &&
             memcmp(o.account_sealed, it->old_sealed, it->len) == 0) {
        memcpy(o.account_sealed, it->new_sealed, it->len);
        size_t len;
        uint8_t *buf = ph_supply_encode(&o, &len);
        MDB_val nv = {len, buf};
        if (!buf)
            rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
        else if ((mrc = mdb_put(w->txn, w->s->dbi[DB_SUPPLY], &k, &nv, 0)))
            rc = ph_store_lmdb_err(&c->err, mrc, "write supply record");
        else
            *done = 1;
        if (buf)
            ph_wipe(buf, len);
        free(buf);
    }
    if (o.account_sealed)
        ph_wipe(o.account_sealed, o.account_sealed_len);
    free(o.account_sealed);
    free(o.attempts);
    return rc;
}

static int reseal_code(ph_wtxn *w, ph_cmd *c, const ph_reseal_item *it, int *done)
{
    ph_code_rec rec;
    const uint8_t *sealed;
    MDB_val k = {8, (void *)&it->id}, v;
    *done = 0;
    if (mdb_get(w->txn, w->s->dbi[DB_CODES], &k, &v) == MDB_NOTFOUND)
        return PH_OK;
    int rc = store_get_code(w, it->id, &rec, &sealed, &c->err);
    if (rc != PH_OK || rec.sealed_len != it->len || memcmp(sealed, it->old_sealed, it->len) != 0)
        return rc;
    rc = store_put_code(w, it->id, &rec, it->new_sealed, 0, &c->err);
    *done = rc == PH_OK;
    return rc;
}

int store_apply_reseal(ph_wtxn *w, ph_cmd *c)
{
    uint16_t to = c->in.reseal.key_id;
    char name[24];
    if (c->in.reseal.n) {
        MDB_val k = {ph_store_keycheck_name(to, name), name}, v;
        if (!to || mdb_get(w->txn, w->s->dbi[DB_META], &k, &v) != 0)
            return ph_err_set(&c->err, PH_ESTATE,
                              "reseal: key %u has no check value in this store (not the key it "
                              "was opened with)",
                              (unsigned)to);
    }
    for (size_t i = 0; i < c->in.reseal.n; i++) {
        const ph_reseal_item *it = &c->in.reseal.items[i];
        if ((it->kind != PH_SEALED_CODE && it->kind != PH_SEALED_ACCOUNT) || !it->old_sealed ||
            !it->new_sealed || ph_sealed_key_id(it->new_sealed, it->len) != to)
            return ph_err_set(&c->err, PH_EINVAL,
                              "reseal: items[%zu]: not a sealed item moving to key %u", i,
                              (unsigned)to);
    }
    for (size_t i = 0; i < c->in.reseal.nforget; i++)
        if (!c->in.reseal.forget[i] || c->in.reseal.forget[i] == to)
            return ph_err_set(&c->err, PH_EINVAL, "reseal: forget[%zu]: key %u cannot be forgotten",
                              i, (unsigned)c->in.reseal.forget[i]);
    for (size_t i = 0; i < c->in.reseal.n; i++) {
        const ph_reseal_item *it = &c->in.reseal.items[i];
        int done = 0;
        int rc = it->kind == PH_SEALED_CODE ? reseal_code(w, c, it, &done)
                                            : reseal_account(w, c, it, &done);
        if (rc != PH_OK)
            return rc;
        if (done)
            c->resealed++;
        else
            c->reseal_skipped++;
    }
    for (size_t i = 0; i < c->in.reseal.nforget; i++) {
        MDB_val k = {ph_store_keycheck_name(c->in.reseal.forget[i], name), name};
        int mrc = mdb_del(w->txn, w->s->dbi[DB_META], &k, NULL);
        if (mrc && mrc != MDB_NOTFOUND)
            return ph_store_lmdb_err(&c->err, mrc, "drop key check");
    }
    return PH_OK;
}

/* ---- progress ---------------------------------------------------------------------- */

void ph_store_reseal_status_set(ph_store *s, const ph_reseal_status *st)
{
    pthread_mutex_lock(&s->health_mu);
    s->reseal = *st;
    pthread_mutex_unlock(&s->health_mu);
}

void ph_store_reseal_status_get(ph_store *s, ph_reseal_status *out)
{
    pthread_mutex_lock(&s->health_mu);
    *out = s->reseal;
    pthread_mutex_unlock(&s->health_mu);
}
