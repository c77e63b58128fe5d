/*
 * store_read.c — the read side of store.h: read transactions, and orders,
 * codes, batches, products and events looked up or paged, each call in its own
 * snapshot. Any thread.
 */
#include "store/store_int.h"

#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crypto/crypto.h"
#include "base/util.h"
#include "store/cmd_codec.h"

/* ---- reads ---------------------------------------------------------------- */

int ph_store_read_begin(ph_store *s, MDB_txn **txn, ph_err *err)
{
    pthread_rwlock_rdlock(&s->maplock);
    int mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
    if (mrc) {
        pthread_rwlock_unlock(&s->maplock);
        return ph_err_set(err, PH_EIO, "store: begin read: %s", mdb_strerror(mrc));
    }
    return PH_OK;
}

void ph_store_read_end(ph_store *s, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->maplock);
}

int store_read_text(ph_store *s, int db, const MDB_val *k, const char *what, char **text,
                    ph_err *err)
{
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    MDB_val key = *k, v;
    int mrc = mdb_get(txn, s->dbi[db], &key, &v);
    if (mrc == MDB_NOTFOUND)
        rc = ph_err_set(err, PH_ENOTFOUND, "%s: not found", what);
    else if (mrc)
        rc = ph_store_lmdb_err(err, mrc, what);
    else if (!(*text = malloc(v.mv_size + 1)))
        rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    else {
        memcpy(*text, v.mv_data, v.mv_size);
        (*text)[v.mv_size] = 0;
    }
    ph_store_read_end(s, txn);
    return rc;
}

int ph_store_order_get(ph_store *s, uint64_t id, int with_codes, ph_order **out, ph_err *err)
{
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    rc = ph_order_load(s, txn, id, with_codes, out, err);
    ph_store_read_end(s, txn);
    return rc;
}

/* Builds the order_ref key: client NUL client_order_id. buf >= 2 + both maxima. */
size_t ph_store_ref_key(const char *client, const char *coid, char *buf)
{
    size_t a = strlen(client), b = strlen(coid);
    memcpy(buf, client, a);
    buf[a] = 0;
    memcpy(buf + a + 1, coid, b);
    return a + 1 + b;
}

int ph_store_order_find(ph_store *s, const char *client, const char *client_order_id,
                        int with_codes, ph_order **out, ph_err *err)
{
    if (strlen(client) > PH_SKU_MAX || strlen(client_order_id) > PH_ORDER_ID_MAX)
        return ph_err_set(err, PH_ENOTFOUND, "client_order_id: not found");
    char key[PH_SKU_MAX + PH_ORDER_ID_MAX + 2];
    MDB_val k = {ph_store_ref_key(client, client_order_id, key), key}, v;
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    int mrc = mdb_get(txn, s->dbi[DB_ORDER_REF], &k, &v);
    if (mrc == MDB_NOTFOUND || (mrc == 0 && v.mv_size != 8)) {
        rc = ph_err_set(err, PH_ENOTFOUND, "client_order_id '%s': not found", client_order_id);
    } else if (mrc) {
        rc = ph_store_lmdb_err(err, mrc, "read order ref");
    } else {
        uint64_t id;
        memcpy(&id, v.mv_data, 8);
        rc = ph_order_load(s, txn, id, with_codes, out, err);
    }
    ph_store_read_end(s, txn);
    return rc;
}

void ph_order_list_free(ph_order **list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        ph_order_free(list[i]);
    free(list);
}

/* One page of a database keyed by native uint64 ids (dup NULL), or of the
 * duplicates of key dup, sorted native uint64 values: the entries with that id
 * > after, ascending, at most limit, each turned into one list element by take
 * (which sets *slot or fails). On PH_OK *out (limit or 1 slots) and *n are the
 * caller's, freed with free_list; on failure nothing is left allocated. */
typedef int (*page_take_fn)(ph_store *s, MDB_txn *txn, const MDB_val *k, const MDB_val *v,
                            void **slot, ph_err *err);

static int page_u64(ph_store *s, int db, const char *dup, uint64_t after, size_t limit,
                    page_take_fn take, void (*free_list)(void **list, size_t n), void ***out,
                    size_t *n, ph_err *err)
{
    MDB_txn *txn;
    MDB_cursor *c;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    if (after == UINT64_MAX)
        limit = 0;
    void **list = calloc(limit ? limit : 1, sizeof *list);
    size_t cnt = 0;
    if (!list || mdb_cursor_open(txn, s->dbi[db], &c)) {
        free(list);
        ph_store_read_end(s, txn);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    uint64_t want = after + 1;
    MDB_val k = {8, &want}, v;
    MDB_cursor_op seek = MDB_SET_RANGE, step = MDB_NEXT;
    if (dup) {
        k = (MDB_val){strlen(dup), (void *)dup};
        v = (MDB_val){8, &want};
        seek = MDB_GET_BOTH_RANGE;
        step = MDB_NEXT_DUP;
    }
    for (MDB_cursor_op op = seek; cnt < limit && mdb_cursor_get(c, &k, &v, op) == 0; op = step) {
        if ((rc = take(s, txn, &k, &v, &list[cnt], err)) != PH_OK)
            break;
        cnt++;
    }
    mdb_cursor_close(c);
    ph_store_read_end(s, txn);
    if (rc) {
        free_list(list, cnt);
        return rc;
    }
    *out = list;
    *n = cnt;
    return PH_OK;
}

/* Orders keyed by their id (`orders`, `pending`); each is loaded in full. */
static int take_order_key(ph_store *s, MDB_txn *txn, const MDB_val *k, const MDB_val *v,
                          void **slot, ph_err *err)
{
    (void)v;
    uint64_t id;
    memcpy(&id, k->mv_data, 8);
    return ph_order_load(s, txn, id, 0, (ph_order **)slot, err);
}

/* A client's orders: their ids are the values under the client's name. */
static int take_order_value(ph_store *s, MDB_txn *txn, const MDB_val *k, const MDB_val *v,
                            void **slot, ph_err *err)
{
    (void)k;
    uint64_t id;
    memcpy(&id, v->mv_data, 8);
    return ph_order_load(s, txn, id, 0, (ph_order **)slot, err);
}

static void free_orders(void **list, size_t n)
{
    ph_order_list_free((ph_order **)list, n);
}

int ph_store_order_list(ph_store *s, const char *client, uint64_t after, size_t limit,
                        ph_order ***out, size_t *n, ph_err *err)
{
    if (client)
        return page_u64(s, DB_CLIENT_ORDERS, client, after, limit, take_order_value, free_orders,
                        (void ***)out, n, err);
    return page_u64(s, DB_ORDERS, NULL, after, limit, take_order_key, free_orders, (void ***)out, n,
                    err);
}

/* Batches keyed by their id. */
static int take_batch(ph_store *s, MDB_txn *txn, const MDB_val *k, const MDB_val *v, void **slot,
                      ph_err *err)
{
    (void)s;
    (void)txn;
    uint64_t id;
    memcpy(&id, k->mv_data, 8);
    ph_batch *b = malloc(sizeof *b);
    if (!b)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    if (ph_batch_decode(v, id, b, NULL) != PH_OK) {
        free(b);
        return ph_err_set(err, PH_EIO, "batch %llu: malformed record", (unsigned long long)id);
    }
    *slot = b;
    return PH_OK;
}

void ph_batch_list_free(ph_batch **list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        free(list[i]);
    free(list);
}

static void free_batches(void **list, size_t n)
{
    ph_batch_list_free((ph_batch **)list, n);
}

int ph_store_batch_list(ph_store *s, uint64_t after, size_t limit, ph_batch ***out, size_t *n,
                        ph_err *err)
{
    return page_u64(s, DB_BATCHES, NULL, after, limit, take_batch, free_batches, (void ***)out, n,
                    err);
}

int ph_store_pending_list(ph_store *s, uint64_t after, size_t limit, ph_order ***out, size_t *n,
                          ph_err *err)
{
    return page_u64(s, DB_PENDING, NULL, after, limit, take_order_key, free_orders, (void ***)out,
                    n, err);
}

void ph_code_info_clear(ph_code_info *info)
{
    free(info->code.sealed);
    info->code.sealed = NULL;
    ph_order_free(info->order);
    info->order = NULL;
    ph_order_free(info->decoy);
    info->decoy = NULL;
}

int store_batch_load(ph_store *s, MDB_txn *txn, uint64_t id, ph_batch *out, ph_err *err)
{
    MDB_val k = {sizeof id, &id}, v;
    int mrc = mdb_get(txn, s->dbi[DB_BATCHES], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return ph_err_set(err, PH_ENOTFOUND, "batch %llu: not found", (unsigned long long)id);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read batch");
    /* the memo (store_int.h): the same bytes decode to the same batch */
    ph_batch_memo *m = &s->batch_memo;
    size_t slot = (size_t)(id % PH_BATCH_MEMO);
    int memo = v.mv_size > 0 && v.mv_size <= PH_BATCH_MEMO_RAW;
    if (memo) {
        pthread_mutex_lock(&m->mu);
        int hit = m->e[slot].len == v.mv_size && m->e[slot].batch.id == id &&
                  memcmp(m->e[slot].raw, v.mv_data, v.mv_size) == 0;
        if (hit)
            *out = m->e[slot].batch;
        pthread_mutex_unlock(&m->mu);
        if (hit)
            return PH_OK;
    }
    if (ph_batch_decode(&v, id, out, NULL) != PH_OK)
        return ph_err_set(err, PH_EIO, "batch %llu: malformed record", (unsigned long long)id);
    if (memo) {
        pthread_mutex_lock(&m->mu);
        m->e[slot].len = v.mv_size;
        memcpy(m->e[slot].raw, v.mv_data, v.mv_size);
        m->e[slot].batch = *out;
        pthread_mutex_unlock(&m->mu);
    }
    return PH_OK;
}

/* The code with this hash, its batch and its order, inside txn. On failure out
 * may hold parts: the caller clears it. */
static int code_find_in(ph_store *s, MDB_txn *txn, const uint8_t hash[32], ph_code_info *out,
                        ph_err *err)
{
    MDB_val k = {32, (void *)hash}, v;
    int mrc = mdb_get(txn, s->dbi[DB_CODE_HASH], &k, &v);
    uint64_t id = 0;
    if (mrc == MDB_NOTFOUND || (mrc == 0 && v.mv_size != 8))
        return ph_err_set(err, PH_ENOTFOUND, "code: not found");
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read code index");
    memcpy(&id, v.mv_data, 8);
    k = (MDB_val){8, &id};
    if (mdb_get(txn, s->dbi[DB_CODES], &k, &v) || ph_code_decode(&v, id, 1, &out->code))
        return ph_err_set(err, PH_EIO, "code %llu: unreadable", (unsigned long long)id);
    int rc = store_batch_load(s, txn, out->code.batch_id, &out->batch, err);
    if (rc == PH_OK && out->code.order_id)
        rc = ph_order_load(s, txn, out->code.order_id, 0, &out->order, err);
    return rc;
}

int ph_store_code_find(ph_store *s, const uint8_t hash[32], ph_code_info *out, ph_err *err)
{
    memset(out, 0, sizeof *out);
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    rc = code_find_in(s, txn, hash, out, err);
    ph_store_read_end(s, txn);
    out->found = rc == PH_OK;
    if (rc)
        ph_code_info_clear(out);
    return rc;
}

int ph_store_codes_stored(ph_store *s, const ph_import_code *codes, const uint32_t *order, size_t n,
                          uint8_t *stored, ph_err *err)
{
    MDB_txn *txn;
    MDB_cursor *c;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    if (mdb_cursor_open(txn, s->dbi[DB_CODE_HASH], &c)) {
        ph_store_read_end(s, txn);
        return ph_err_set(err, PH_EIO, "store: cannot open a cursor");
    }
    /* A merge of the sorted hashes with the index: after a seek from `prev`,
     * `next` is the first stored hash >= prev (NULL: none), so a hash in
     * (prev, next] is answered by comparing it with next, without a seek. A
     * hash out of order (<= prev) is sought again. */
    const uint8_t *prev = NULL, *next = NULL;
    for (size_t i = 0; i < n; i++) {
        size_t at = order ? order[i] : i;
        const uint8_t *h = codes[at].hash;
        if (!prev || memcmp(h, prev, 32) < 0 || (next && memcmp(h, next, 32) > 0)) {
            MDB_val k = {32, (void *)h}, v;
            int mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
            if (mrc && mrc != MDB_NOTFOUND) {
                rc = ph_store_lmdb_err(err, mrc, "read code index");
                break;
            }
            int whole = mrc == 0 && k.mv_size == 32; /* else damage: seek the next one too */
            prev = whole || mrc == MDB_NOTFOUND ? h : NULL;
            next = whole ? k.mv_data : NULL;
        }
        stored[at] = next && memcmp(h, next, 32) == 0;
    }
    mdb_cursor_close(c); /* a read-only transaction's cursors are closed by hand */
    ph_store_read_end(s, txn);
    return rc;
}

/* A real id in 1..n picked by 8 bytes of a keyed hash (0 when n is 0): what a
 * lookup that misses reads instead, as unpredictable to a caller as the hash. */
static uint64_t decoy_id(const uint8_t hash[32], int part, uint64_t n)
{
    uint64_t x;
    memcpy(&x, hash + 8 * part, 8);
    return n ? 1 + x % n : 0;
}

/* The state of a typed lookup in its snapshot. */
typedef struct typed_find {
    ph_store *s;
    MDB_txn *txn;
    MDB_cursor *codes;
    uint64_t last_code;
    uint8_t first_hash[32]; /* the hash without look-alikes: picks the decoy order */
    int tries;
} typed_find;

/* One rule of ph_store_code_find_typed: hash, look up the index, then read and
 * decode a code record and its batch whether the index had the hash or not
 * (the code found, or a decoy picked by the hash). While nothing is found yet
 * the records read go into out (a decoy until a hit replaces it); once found,
 * they are read and dropped. PH_OK, or PH_EIO / PH_ENOMEM for a found code
 * that cannot be read. */
static int find_under(typed_find *f, const char *rule, ph_code_hash_fn hash_fn, void *arg,
                      ph_code_info *out, ph_err *err)
{
    uint8_t hash[32] = {0};
    int hashed = hash_fn(arg, rule, hash) == 0;
    if (f->tries++ == 0)
        memcpy(f->first_hash, hash, sizeof hash);
    MDB_val k = {32, hash}, v;
    uint64_t id = 0;
    int mrc = mdb_get(f->txn, f->s->dbi[DB_CODE_HASH], &k, &v);
    if (mrc == 0 && hashed && v.mv_size == 8)
        memcpy(&id, v.mv_data, 8);
    else if (mrc && mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(err, mrc, "read code index");
    uint64_t want = id ? id : decoy_id(hash, 1, f->last_code), key = want;
    ph_code code = {0};
    ph_batch batch = {0};
    int readable = 0;
    k = (MDB_val){8, &key};
    /* the same cursor step for a hit and a decoy: a decoy's id always exists
     * (codes are never deleted), a hit's lands on itself */
    if (want && mdb_cursor_get(f->codes, &k, &v, MDB_SET_RANGE) == 0 && k.mv_size == 8) {
        memcpy(&key, k.mv_data, 8);
        readable = key == want && ph_code_decode(&v, key, 1, &code) == PH_OK;
        readable = readable && store_batch_load(f->s, f->txn, code.batch_id, &batch, NULL) == PH_OK;
    }
    if (id && !readable) {
        free(code.sealed);
        return ph_err_set(err, PH_EIO, "code %llu: unreadable", (unsigned long long)id);
    }
    int hit = id && strcmp(batch.lookalikes, rule) == 0; /* else the rule is not its product's */
    if (out->found) {
        free(code.sealed); /* found under an earlier rule: this one only costs the same */
        return PH_OK;
    }
    free(out->code.sealed);
    out->code = code;
    out->batch = batch;
    out->found = hit;
    return PH_OK;
}

/* The order read by every typed lookup: the code's own when it was found and
 * issued, else a decoy (in out->decoy) picked by the hash. */
static int find_order(typed_find *f, ph_code_info *out, ph_err *err)
{
    if (out->found && out->code.order_id)
        return ph_order_load(f->s, f->txn, out->code.order_id, 0, &out->order, err);
    uint64_t id = decoy_id(f->first_hash, 2, ph_store_last_key(f->txn, f->s->dbi[DB_ORDERS]));
    if (id && ph_order_load(f->s, f->txn, id, 0, &out->decoy, NULL) != PH_OK)
        out->decoy = NULL;
    return PH_OK;
}

int ph_store_code_find_typed(ph_store *s, ph_code_hash_fn hash_fn, void *arg, ph_code_info *out,
                             ph_err *err)
{
    memset(out, 0, sizeof *out);
    typed_find f = {.s = s};
    MDB_cursor *c;
    int rc = ph_store_read_begin(s, &f.txn, err);
    if (rc)
        return rc;
    if (mdb_cursor_open(f.txn, s->dbi[DB_CODES], &f.codes)) {
        ph_store_read_end(s, f.txn);
        return ph_err_set(err, PH_EIO, "store: cannot open a cursor");
    }
    if (mdb_cursor_open(f.txn, s->dbi[DB_META], &c)) {
        mdb_cursor_close(f.codes); /* a read-only transaction's cursors are closed by hand */
        ph_store_read_end(s, f.txn);
        return ph_err_set(err, PH_EIO, "store: cannot open a cursor");
    }
    f.last_code = ph_store_last_key(f.txn, s->dbi[DB_CODES]);
    rc = find_under(&f, "", hash_fn, arg, out, err);
    /* then every rule a batch was hashed with (meta "rule:<rule>", a handful),
     * all of them whatever was found */
    MDB_val k = {5, "rule:"}, v;
    for (int op = MDB_SET_RANGE; rc == PH_OK && mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
        char rule[PH_LOOKALIKES_MAX + 1];
        if (k.mv_size < 5 || memcmp(k.mv_data, "rule:", 5) != 0)
            break;
        if (k.mv_size - 5 > PH_LOOKALIKES_MAX)
            continue;
        memcpy(rule, (const char *)k.mv_data + 5, k.mv_size - 5);
        rule[k.mv_size - 5] = 0;
        rc = find_under(&f, rule, hash_fn, arg, out, err);
    }
    if (rc == PH_OK)
        rc = find_order(&f, out, err);
    mdb_cursor_close(c);
    mdb_cursor_close(f.codes);
    ph_store_read_end(s, f.txn);
    if (rc)
        ph_code_info_clear(out);
    return rc;
}

int ph_store_batch_get(ph_store *s, uint64_t id, ph_batch *out, uint64_t counts[7], ph_err *err)
{
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    rc = store_batch_load(s, txn, id, out, err);
    memset(counts, 0, 7 * sizeof counts[0]);
    MDB_cursor *c;
    if (rc == PH_OK && mdb_cursor_open(txn, s->dbi[DB_CODES], &c) == 0) {
        uint64_t cid = out->first_code;
        MDB_val k = {8, &cid}, v;
        int op = MDB_SET_KEY;
        for (uint32_t i = 0; i < out->count && mdb_cursor_get(c, &k, &v, op) == 0; i++) {
            ph_code code;
            if (ph_code_decode(&v, 0, 0, &code) == PH_OK && code.state >= 1 && code.state <= 6)
                counts[code.state]++;
            op = MDB_NEXT;
        }
        mdb_cursor_close(c);
    }
    ph_store_read_end(s, txn);
    return rc;
}

static uint64_t avail_count(ph_store *s, MDB_txn *txn, const char *sku, size_t len)
{
    MDB_cursor *c;
    MDB_val k = {len, (void *)sku}, v;
    size_t n = 0;
    if (mdb_cursor_open(txn, s->dbi[DB_AVAIL], &c))
        return 0;
    if (mdb_cursor_get(c, &k, &v, MDB_SET_KEY) == 0)
        mdb_cursor_count(c, &n);
    mdb_cursor_close(c);
    return n;
}

static char *dup_val(const MDB_val *v)
{
    char *s = malloc(v->mv_size + 1);
    if (s) {
        memcpy(s, v->mv_data, v->mv_size);
        s[v->mv_size] = 0;
    }
    return s;
}

/* Codes of the SKU that can be issued at now: the stock list's count (kept by
 * LMDB in the duplicate tree's header) less those past their expiry that the
 * sweep has not retired yet. */
static uint64_t issuable_count(ph_store *s, MDB_txn *txn, const char *sku, size_t len, int64_t now,
                               const MDB_val *product)
{
    uint64_t n = avail_count(s, txn, sku, len),
             due = ph_expiry_due_available(s, txn, sku, len,
                                           now + store_product_min_validity(product));
    return n > due ? n - due : 0;
}

int ph_store_product_get(ph_store *s, const char *sku, char **json, uint64_t *available,
                         ph_err *err)
{
    return ph_store_product_get_at(s, sku, ph_now_ms(), json, available, err);
}

int ph_store_product_get_at(ph_store *s, const char *sku, int64_t now, char **json,
                            uint64_t *available, ph_err *err)
{
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    MDB_val k = {strlen(sku), (void *)sku}, v;
    int mrc = k.mv_size ? mdb_get(txn, s->dbi[DB_PRODUCTS], &k, &v) : MDB_NOTFOUND;
    if (mrc == MDB_NOTFOUND)
        rc = ph_err_set(err, PH_ENOTFOUND, "sku: no such product");
    else if (mrc)
        rc = ph_store_lmdb_err(err, mrc, "read product");
    else if (!(*json = dup_val(&v)))
        rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    else if ((rc = store_sync_decorate(s, txn, sku, json, err)) != PH_OK) {
        free(*json);
        *json = NULL;
    } else
        *available = issuable_count(s, txn, sku, k.mv_size, now, &v);
    ph_store_read_end(s, txn);
    return rc;
}

void ph_store_product_list_free(char **json, uint64_t *available, size_t n)
{
    for (size_t i = 0; json && i < n; i++)
        free(json[i]);
    free(json);
    free(available);
}

int ph_store_product_list(ph_store *s, char ***json, uint64_t **available, size_t *n, ph_err *err)
{
    return ph_store_product_list_at(s, ph_now_ms(), json, available, n, err);
}

int ph_store_product_list_at(ph_store *s, int64_t now, char ***json, uint64_t **available,
                             size_t *n, ph_err *err)
{
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_stat st;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    mdb_stat(txn, s->dbi[DB_PRODUCTS], &st);
    char **js = calloc(st.ms_entries + 1, sizeof *js);
    uint64_t *av = calloc(st.ms_entries + 1, sizeof *av);
    size_t cnt = 0;
    MDB_val k, v;
    if (!js || !av || mdb_cursor_open(txn, s->dbi[DB_PRODUCTS], &c)) {
        rc = ph_err_set(err, PH_ENOMEM, "out of memory");
        goto out;
    }
    for (int op = MDB_FIRST; cnt < st.ms_entries && mdb_cursor_get(c, &k, &v, op) == 0;
         op = MDB_NEXT) {
        if (!(js[cnt] = dup_val(&v))) {
            rc = ph_err_set(err, PH_ENOMEM, "out of memory");
            break;
        }
        char sku[PH_SKU_MAX + 1];
        snprintf(sku, sizeof sku, "%.*s", (int)k.mv_size, (const char *)k.mv_data);
        if ((rc = store_sync_decorate(s, txn, sku, &js[cnt], err)) != PH_OK) {
            free(js[cnt]);
            js[cnt] = NULL;
            break;
        }
        av[cnt++] = issuable_count(s, txn, k.mv_data, k.mv_size, now, &v);
    }
    mdb_cursor_close(c);
out:
    ph_store_read_end(s, txn);
    if (rc) {
        ph_store_product_list_free(js, av, cnt);
        return rc;
    }
    *json = js;
    *available = av;
    *n = cnt;
    return PH_OK;
}

void ph_store_event_list_free(char **list, size_t n)
{
    ph_store_product_list_free(list, NULL, n);
}

/* Events: each value is the event's JSON text. */
static int take_event(ph_store *s, MDB_txn *txn, const MDB_val *k, const MDB_val *v, void **slot,
                      ph_err *err)
{
    (void)s;
    (void)txn;
    (void)k;
    if (!(*slot = dup_val(v)))
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    return PH_OK;
}

static void free_events(void **list, size_t n)
{
    ph_store_event_list_free((char **)list, n);
}

int ph_store_event_list(ph_store *s, uint64_t after, size_t limit, char ***out, size_t *n,
                        ph_err *err)
{
    return page_u64(s, DB_EVENTS, NULL, after, limit, take_event, free_events, (void ***)out, n,
                    err);
}

/* Is the event about an order of `client`? The name is an identifier (no
 * byte JSON escapes), so an event whose text lacks it as a JSON string,
 * quotes included ("mall" is inside "othermall"), cannot match and is passed
 * over without parsing: a mall paging through other clients' events costs a
 * substring search per event, not a parse. An event that does not parse
 * matches nothing (--check-store names it). */
static int event_of_client(const MDB_val *v, const char *client)
{
    char quoted[PH_SKU_MAX + 3];
    int len = snprintf(quoted, sizeof quoted, "\"%s\"", client);
    if (len < 0 || (size_t)len >= sizeof quoted)
        return 0; /* longer than any client name: no event names it */
    if (!memmem(v->mv_data, v->mv_size, quoted, (size_t)len))
        return 0;
    json_t *ev = json_loadb(v->mv_data, v->mv_size, 0, NULL);
    const char *c = json_string_value(json_object_get(ev, "client"));
    int ok = json_is_integer(json_object_get(ev, "order_id")) && c && !strcmp(c, client);
    json_decref(ev);
    return ok;
}

int ph_store_event_scan(ph_store *s, const char *client, uint64_t after, size_t limit, size_t scan,
                        char ***out, size_t *n, uint64_t *next_after, int *more, ph_err *err)
{
    *out = NULL;
    *n = 0;
    *next_after = after;
    *more = 0;
    if (!scan)
        scan = 10000;
    if (!client && scan > limit)
        scan = limit; /* every event examined is taken */
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    int mrc = mdb_cursor_open(txn, s->dbi[DB_EVENTS], &cur);
    if (mrc) {
        ph_store_read_end(s, txn);
        return ph_err_set(err, PH_EIO, "store: read events: %s", mdb_strerror(mrc));
    }
    size_t cap = 0, seen = 0;
    char **list = NULL;
    uint64_t from = after + 1;
    MDB_val k = {8, &from}, v;
    for (mrc = after == UINT64_MAX ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (*n == limit || seen == scan) {
            *more = 1;
            break;
        }
        if (k.mv_size != 8) {
            rc = ph_err_set(err, PH_EIO, "store: events: malformed key");
            break;
        }
        memcpy(next_after, k.mv_data, 8);
        seen++;
        if (client && !event_of_client(&v, client))
            continue;
        char **g = *n == cap ? ph_grow(list, &cap, sizeof *g, 16) : list;
        char *txt = g ? dup_val(&v) : NULL;
        if (g)
            list = g;
        if (!txt) {
            rc = ph_err_set(err, PH_ENOMEM, "out of memory");
            break;
        }
        list[(*n)++] = txt;
    }
    if (rc == PH_OK && mrc && mrc != MDB_NOTFOUND)
        rc = ph_err_set(err, PH_EIO, "store: read events: %s", mdb_strerror(mrc));
    mdb_cursor_close(cur);
    ph_store_read_end(s, txn);
    if (rc) {
        ph_store_event_list_free(list, *n);
        *n = 0;
        *next_after = after;
        *more = 0;
        return rc;
    }
    *out = list;
    return PH_OK;
}

/* ---- paged lists of JSON records ------------------------------------------------ */

int store_json_list(ph_store *s, int db, uint64_t after, size_t limit,
                    int (*keep)(const MDB_val *v, const void *arg), const void *arg,
                    const char *what, char ***out, size_t *n, uint64_t *next_after, ph_err *err)
{
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    MDB_cursor *cur;
    char **list = calloc(limit ? limit : 1, sizeof *list);
    size_t got = 0, scanned = 0;
    uint64_t key = after + 1, last = 0;
    MDB_val k = {8, &key}, v;
    int mrc = list ? mdb_cursor_open(txn, s->dbi[db], &cur) : ENOMEM;
    if (mrc == ENOMEM) {
        rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    } else if (mrc) {
        rc = ph_store_lmdb_err(err, mrc, what);
    } else {
        for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
             !mrc && got < limit && scanned < PH_LIST_SCAN_MAX;
             mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), scanned++) {
            memcpy(&last, k.mv_data, 8);
            if (keep && !keep(&v, arg))
                continue;
            if (!(list[got] = malloc(v.mv_size + 1))) {
                rc = ph_err_set(err, PH_ENOMEM, "out of memory");
                break;
            }
            memcpy(list[got], v.mv_data, v.mv_size);
            list[got++][v.mv_size] = 0;
        }
        if (rc == PH_OK && mrc && mrc != MDB_NOTFOUND)
            rc = ph_store_lmdb_err(err, mrc, what);
        /* stopped on a limit with the cursor already on the next record (mrc 0):
         * go on after the last one looked at */
        *next_after = rc == PH_OK && !mrc ? last : 0;
        mdb_cursor_close(cur);
    }
    ph_store_read_end(s, txn);
    if (rc) {
        ph_store_event_list_free(list, got);
        return rc;
    }
    *out = list;
    *n = got;
    return PH_OK;
}
