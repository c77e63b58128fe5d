/*
 * store.c — opening the LMDB environment, the group-commit writer, the record
 * codecs and the read side. Commands are applied in store_apply.c; the
 * invariants are checked in store_check.c.
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

_Static_assert(sizeof(ph_order_rec) == 72, "order record header is 72 bytes");
_Static_assert(sizeof(ph_supply_rec) == 12, "supply record header is 12 bytes");
_Static_assert(sizeof(ph_attempt_rec) == 64, "attempt record is 64 bytes without padding");

static const char *const db_names[DB_COUNT] = {
    "meta",      "products",      "batches", "codes",  "avail",   "code_hash", "orders",
    "order_ref", "client_orders", "events",  "supply", "pending", "expiry",
};

static const unsigned db_flags[DB_COUNT] = {
    [DB_BATCHES] = MDB_INTEGERKEY,
    [DB_CODES] = MDB_INTEGERKEY,
    [DB_AVAIL] = MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP,
    [DB_ORDERS] = MDB_INTEGERKEY,
    [DB_CLIENT_ORDERS] = MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP,
    [DB_EVENTS] = MDB_INTEGERKEY,
    [DB_SUPPLY] = MDB_INTEGERKEY,
    [DB_PENDING] = MDB_INTEGERKEY,
    [DB_EXPIRY] = MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP,
};

const char *ph_code_state_name(int state)
{
    static const char *const names[] = {"?",        "available", "reserved", "issued",
                                        "redeemed", "voided",    "expired"};
    return state >= 1 && state <= 6 ? names[state] : "?";
}

const char *ph_order_state_name(int state)
{
    static const char *const names[] = {"?",         "accepted", "processing",
                                        "succeeded", "failed",   "unknown"};
    return state >= 1 && state <= 5 ? names[state] : "?";
}

const char *ph_attempt_state_name(int state)
{
    static const char *const names[] = {"?",       "sending",   "processing",
                                        "unknown", "succeeded", "failed"};
    return state >= 1 && state <= 5 ? names[state] : "?";
}

int ph_attempt_state_open(int state)
{
    return state == PH_ATTEMPT_SENDING || state == PH_ATTEMPT_PROCESSING ||
           state == PH_ATTEMPT_UNKNOWN;
}

int ph_order_state_final(int state)
{
    return state == PH_ORDER_SUCCEEDED || state == PH_ORDER_FAILED;
}

int ph_order_via_supplier(const ph_order *o)
{
    return o->delivery != 0;
}

int ph_store_lmdb_err(ph_err *err, int mrc, const char *what)
{
    if (mrc == MDB_MAP_FULL)
        return PH_STORE_MAPFULL;
    return ph_err_set(err, PH_EIO, "store: %s: %s", what, mdb_strerror(mrc));
}

/* ---- record codecs ---------------------------------------------------- */

int ph_code_decode(const MDB_val *v, uint64_t id, int copy_sealed, ph_code *out)
{
    ph_code_rec r;
    if (v->mv_size < sizeof r)
        return PH_EIO;
    memcpy(&r, v->mv_data, sizeof r);
    if (r.version != 1 || v->mv_size != sizeof r + r.sealed_len)
        return PH_EIO;
    *out = (ph_code){.id = id,
                     .state = r.state,
                     .batch_id = r.batch_id,
                     .order_id = r.order_id,
                     .expires_at = r.expires_at,
                     .changed_at = r.changed_at,
                     .sealed_len = r.sealed_len};
    if (copy_sealed) {
        out->sealed = malloc(r.sealed_len ? r.sealed_len : 1);
        if (!out->sealed)
            return PH_ENOMEM;
        memcpy(out->sealed, (const uint8_t *)v->mv_data + sizeof r, r.sealed_len);
    }
    return PH_OK;
}

static void copy_str(char *dst, size_t cap, const uint8_t *src, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

int ph_order_decode(const MDB_val *v, uint64_t id, ph_order *out, const uint8_t **ids)
{
    ph_order_rec r;
    if (v->mv_size < sizeof r)
        return PH_EIO;
    memcpy(&r, v->mv_data, sizeof r);
    size_t strs = (size_t)r.client_len + r.coid_len + r.sku_len;
    if (r.version != 1 || v->mv_size != sizeof r + strs + (size_t)r.ncodes * 8)
        return PH_EIO;
    const uint8_t *p = (const uint8_t *)v->mv_data + sizeof r;
    memset(out, 0, sizeof *out);
    out->id = id;
    copy_str(out->client, sizeof out->client, p, r.client_len);
    p += r.client_len;
    copy_str(out->client_order_id, sizeof out->client_order_id, p, r.coid_len);
    p += r.coid_len;
    copy_str(out->sku, sizeof out->sku, p, r.sku_len);
    p += r.sku_len;
    out->quantity = r.quantity;
    out->state = r.state;
    out->created_at = r.created_at;
    out->updated_at = r.updated_at;
    out->cost = r.cost;
    memcpy(out->fingerprint, r.fingerprint, 32);
    out->ncodes = r.ncodes;
    out->delivery = (r.flags & PH_ORDER_F_SUPPLY) ? r.delivery : 0;
    if (ids)
        *ids = p;
    return PH_OK;
}

static void json_str(json_t *o, const char *k, char *dst, size_t cap)
{
    const char *s = json_string_value(json_object_get(o, k));
    snprintf(dst, cap, "%s", s ? s : "");
}

int ph_batch_decode(const MDB_val *v, uint64_t id, ph_batch *out, uint64_t *order_id)
{
    json_t *o = json_loadb(v->mv_data, v->mv_size, 0, NULL);
    if (!o)
        return PH_EIO;
    memset(out, 0, sizeof *out);
    out->id = id;
    json_str(o, "supplier", out->supplier, sizeof out->supplier);
    json_str(o, "sku", out->sku, sizeof out->sku);
    json_str(o, "note", out->note, sizeof out->note);
    json_str(o, "void_reason", out->void_reason, sizeof out->void_reason);
    json_str(o, "code_lookalikes", out->lookalikes, sizeof out->lookalikes);
    out->unit_cost = json_integer_value(json_object_get(o, "unit_cost_fen"));
    out->count = (uint32_t)json_integer_value(json_object_get(o, "count"));
    out->first_code = (uint64_t)json_integer_value(json_object_get(o, "first_code"));
    out->created_at = json_integer_value(json_object_get(o, "created_at"));
    out->voided_at = json_integer_value(json_object_get(o, "voided_at"));
    out->voided = out->voided_at != 0;
    if (order_id)
        *order_id = (uint64_t)json_integer_value(json_object_get(o, "order_id"));
    json_decref(o);
    return PH_OK;
}

/* ---- supply records ------------------------------------------------------ */

typedef struct reader {
    const uint8_t *p;
    size_t left;
} reader;

static const uint8_t *take(reader *r, size_t n)
{
    if (n > r->left)
        return NULL;
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

/* Copies n bytes of r into a cap-byte string; fails when they do not fit. */
static int take_str(reader *r, size_t n, char *dst, size_t cap)
{
    const uint8_t *p = take(r, n);
    if (!p || n >= cap)
        return PH_EIO;
    memcpy(dst, p, n);
    dst[n] = 0;
    return PH_OK;
}

static int decode_attempt(reader *r, ph_attempt *a)
{
    ph_attempt_rec ar;
    const uint8_t *p = take(r, sizeof ar);
    if (!p)
        return PH_EIO;
    memcpy(&ar, p, sizeof ar);
    *a = (ph_attempt){.no = ar.no,
                      .state = ar.state,
                      .unit_cost = ar.unit_cost,
                      .charged = ar.charged,
                      .created_at = ar.created_at,
                      .updated_at = ar.updated_at,
                      .next_check_at = ar.next_check_at,
                      .checks = ar.checks,
                      .step = ar.step};
    if (take_str(r, ar.supplier_len, a->supplier, sizeof a->supplier) ||
        take_str(r, ar.product_len, a->product_id, sizeof a->product_id) ||
        take_str(r, ar.ref_len, a->ref, sizeof a->ref) ||
        take_str(r, ar.sorder_len, a->supplier_order_id, sizeof a->supplier_order_id) ||
        take_str(r, ar.reason_len, a->reason, sizeof a->reason) ||
        take_str(r, ar.step_state_len, a->step_state, sizeof a->step_state))
        return PH_EIO;
    return PH_OK;
}

int ph_supply_decode(const MDB_val *v, ph_order *o)
{
    reader r = {v->mv_data, v->mv_size};
    ph_supply_rec h;
    const uint8_t *p = take(&r, sizeof h), *sealed;
    if (!p)
        return PH_EIO;
    memcpy(&h, p, sizeof h);
    if (h.version != 1 || take_str(&r, h.reason_len, o->reason, sizeof o->reason) ||
        take_str(&r, h.masked_len, o->account_masked, sizeof o->account_masked) ||
        !(sealed = take(&r, h.sealed_len)))
        return PH_EIO;
    if (h.sealed_len) {
        if (!(o->account_sealed = malloc(h.sealed_len)))
            return PH_ENOMEM;
        memcpy(o->account_sealed, sealed, h.sealed_len);
        o->account_sealed_len = h.sealed_len;
    }
    if (h.nattempts && !(o->attempts = calloc(h.nattempts, sizeof *o->attempts)))
        return PH_ENOMEM;
    for (o->nattempts = 0; o->nattempts < h.nattempts; o->nattempts++)
        if (decode_attempt(&r, &o->attempts[o->nattempts]))
            return PH_EIO;
    return r.left ? PH_EIO : PH_OK;
}

/* Appends n bytes at *p and advances it. */
static void put_bytes(uint8_t **p, const void *src, size_t n)
{
    memcpy(*p, src, n);
    *p += n;
}

static uint8_t slen(const char *s, size_t cap)
{
    return (uint8_t)strnlen(s, cap - 1);
}

static size_t attempt_size(const ph_attempt *a)
{
    return sizeof(ph_attempt_rec) + slen(a->supplier, sizeof a->supplier) +
           slen(a->product_id, sizeof a->product_id) + slen(a->ref, sizeof a->ref) +
           slen(a->supplier_order_id, sizeof a->supplier_order_id) +
           slen(a->reason, sizeof a->reason) + slen(a->step_state, sizeof a->step_state);
}

static void encode_attempt(uint8_t **p, const ph_attempt *a)
{
    ph_attempt_rec ar;
    memset(&ar, 0, sizeof ar);
    ar.unit_cost = a->unit_cost;
    ar.charged = a->charged;
    ar.created_at = a->created_at;
    ar.updated_at = a->updated_at;
    ar.next_check_at = a->next_check_at;
    ar.no = a->no;
    ar.checks = a->checks;
    ar.step = a->step;
    ar.state = (uint8_t)a->state;
    ar.supplier_len = slen(a->supplier, sizeof a->supplier);
    ar.product_len = slen(a->product_id, sizeof a->product_id);
    ar.ref_len = slen(a->ref, sizeof a->ref);
    ar.sorder_len = slen(a->supplier_order_id, sizeof a->supplier_order_id);
    ar.reason_len = slen(a->reason, sizeof a->reason);
    ar.step_state_len = slen(a->step_state, sizeof a->step_state);
    put_bytes(p, &ar, sizeof ar);
    put_bytes(p, a->supplier, ar.supplier_len);
    put_bytes(p, a->product_id, ar.product_len);
    put_bytes(p, a->ref, ar.ref_len);
    put_bytes(p, a->supplier_order_id, ar.sorder_len);
    put_bytes(p, a->reason, ar.reason_len);
    put_bytes(p, a->step_state, ar.step_state_len);
}

uint8_t *ph_supply_encode(const ph_order *o, size_t *len)
{
    ph_supply_rec h = {.version = 1,
                       .reason_len = slen(o->reason, sizeof o->reason),
                       .masked_len = slen(o->account_masked, sizeof o->account_masked),
                       .nattempts = (uint16_t)o->nattempts,
                       .sealed_len = o->account_sealed_len};
    size_t n = sizeof h + h.reason_len + h.masked_len + h.sealed_len;
    for (size_t i = 0; i < o->nattempts; i++)
        n += attempt_size(&o->attempts[i]);
    uint8_t *buf = malloc(n), *p = buf;
    if (!buf)
        return NULL;
    put_bytes(&p, &h, sizeof h);
    put_bytes(&p, o->reason, h.reason_len);
    put_bytes(&p, o->account_masked, h.masked_len);
    if (h.sealed_len)
        put_bytes(&p, o->account_sealed, h.sealed_len);
    for (size_t i = 0; i < o->nattempts; i++)
        encode_attempt(&p, &o->attempts[i]);
    *len = n;
    return buf;
}

void ph_order_free(ph_order *o)
{
    if (!o)
        return;
    for (size_t i = 0; o->codes && i < o->ncodes; i++)
        free(o->codes[i].sealed);
    free(o->codes);
    if (o->account_sealed)
        ph_wipe(o->account_sealed, o->account_sealed_len);
    free(o->account_sealed);
    free(o->attempts);
    free(o);
}

/* A supplier order's reason, account and attempts, from DB_SUPPLY. */
static int load_supply(ph_store *s, MDB_txn *txn, ph_order *o, ph_err *err)
{
    MDB_val k = {sizeof o->id, &o->id}, v;
    int mrc = mdb_get(txn, s->dbi[DB_SUPPLY], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return ph_err_set(err, PH_EIO, "order %llu: supply record missing",
                          (unsigned long long)o->id);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read supply record");
    int rc = ph_supply_decode(&v, o);
    if (rc == PH_ENOMEM)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    if (rc)
        return ph_err_set(err, PH_EIO, "order %llu: malformed supply record",
                          (unsigned long long)o->id);
    return PH_OK;
}

int ph_order_load(ph_store *s, MDB_txn *txn, uint64_t id, int with_codes, ph_order **out,
                  ph_err *err)
{
    MDB_val k = {sizeof id, &id}, v;
    int mrc = mdb_get(txn, s->dbi[DB_ORDERS], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return ph_err_set(err, PH_ENOTFOUND, "order %llu: not found", (unsigned long long)id);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read order");
    ph_order *o = calloc(1, sizeof *o);
    const uint8_t *ids;
    if (!o)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    if (ph_order_decode(&v, id, o, &ids) != PH_OK) {
        free(o);
        return ph_err_set(err, PH_EIO, "order %llu: malformed record", (unsigned long long)id);
    }
    if (ph_order_via_supplier(o)) {
        int rc = load_supply(s, txn, o, err);
        if (rc) {
            ph_order_free(o);
            return rc;
        }
    }
    if (with_codes && o->ncodes) {
        o->codes = calloc(o->ncodes, sizeof *o->codes);
        if (!o->codes)
            goto nomem;
        for (size_t i = 0; i < o->ncodes; i++) {
            uint64_t cid;
            memcpy(&cid, ids + 8 * i, 8);
            MDB_val ck = {sizeof cid, &cid}, cv;
            if (mdb_get(txn, s->dbi[DB_CODES], &ck, &cv) ||
                ph_code_decode(&cv, cid, 1, &o->codes[i]) != PH_OK) {
                ph_order_free(o);
                return ph_err_set(err, PH_EIO, "order %llu: code %llu unreadable",
                                  (unsigned long long)id, (unsigned long long)cid);
            }
        }
    }
    *out = o;
    return PH_OK;
nomem:
    ph_order_free(o);
    return ph_err_set(err, PH_ENOMEM, "out of memory");
}

/* ---- opening ---------------------------------------------------------- */

/* A new environment: the schema version and this store's identity. The uid is
 * the one random thing the store writes, and only here, never in a command;
 * a replay brings its origin's (opts.uid, already in s->uid). */
static int init_meta(ph_store *s, MDB_txn *txn, ph_err *err)
{
    uint32_t ver = PH_SCHEMA_VERSION;
    uint8_t raw[4];
    if (!s->uid[0] && ph_random_bytes(raw, sizeof raw) != PH_OK)
        return ph_err_set(err, PH_EIO, "store: no randomness for the store uid");
    if (!s->uid[0])
        ph_hex_encode(raw, sizeof raw, s->uid);
    MDB_val k = {6, "schema"}, v = {sizeof ver, &ver};
    int mrc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0);
    if (mrc == 0) {
        k = (MDB_val){3, "uid"};
        v = (MDB_val){8, s->uid};
        mrc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0);
    }
    return mrc ? ph_err_set(err, PH_EIO, "store: write meta: %s", mdb_strerror(mrc)) : PH_OK;
}

static int uid_valid(const MDB_val *v)
{
    if (v->mv_size != 8)
        return 0;
    for (size_t i = 0; i < 8; i++) {
        char c = ((const char *)v->mv_data)[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return 1;
}

static int check_schema(ph_store *s, MDB_txn *txn, const char *dir, ph_err *err)
{
    MDB_val k = {6, "schema"}, v;
    int mrc = mdb_get(txn, s->dbi[DB_META], &k, &v);
    if (mrc == MDB_NOTFOUND && s->read_only)
        return ph_err_set(err, PH_EIO, "store: %s is not a perkhub store (no schema version)", dir);
    if (mrc == MDB_NOTFOUND) {
        int rc = init_meta(s, txn, err);
        return rc ? rc : ph_store_keys_open(s, txn, dir, err);
    }
    if (mrc)
        return ph_err_set(err, PH_EIO, "store: read schema: %s", mdb_strerror(mrc));
    uint32_t ver = 0;
    if (v.mv_size == sizeof ver)
        memcpy(&ver, v.mv_data, sizeof ver);
    if (ver == PH_SCHEMA_VERSION - 1 && (s->read_only || !s->keys))
        return ph_err_set(err, PH_EVERSION,
                          "store: %s holds schema version %u; this perkhubd reads version %d and "
                          "migrates it when it starts on it with its key file%s",
                          dir, ver, PH_SCHEMA_VERSION,
                          s->read_only ? " (--check-store only reads)" : "");
    if (ver == PH_SCHEMA_VERSION - 1) {
        /* version 3 added the expiry index (store_expiry.c), and indexes codes
         * normalized with key checks in meta (store_keys.c): both here, in the
         * open's transaction, so a failure leaves version 2 as it was */
        int rc = ph_expiry_rebuild(s, txn, err);
        if (rc == PH_OK)
            rc = ph_store_migrate(s, txn, dir, err);
        if (rc)
            return rc;
        s->migrated_from = ver;
        ver = PH_SCHEMA_VERSION;
    }
    if (ver != PH_SCHEMA_VERSION)
        return ph_err_set(err, PH_EVERSION,
                          "store: %s holds schema version %u; this perkhubd reads version %d", dir,
                          ver, PH_SCHEMA_VERSION);
    k = (MDB_val){3, "uid"};
    mrc = mdb_get(txn, s->dbi[DB_META], &k, &v);
    if (mrc || !uid_valid(&v))
        return ph_err_set(err, PH_EIO, "store: %s: the store uid is missing or malformed", dir);
    if (s->uid[0] && memcmp(s->uid, v.mv_data, 8))
        return ph_err_set(err, PH_EINVAL, "store: %s has uid %.8s, not the %s asked for", dir,
                          (const char *)v.mv_data, s->uid);
    memcpy(s->uid, v.mv_data, 8);
    s->uid[8] = 0;
    return ph_store_keys_open(s, txn, dir, err);
}

static int open_dbs(ph_store *s, const char *dir, ph_err *err)
{
    MDB_txn *txn;
    int mrc = mdb_txn_begin(s->env, NULL, s->read_only ? MDB_RDONLY : 0, &txn);
    if (mrc)
        return ph_err_set(err, PH_EIO, "store: %s: %s", dir, mdb_strerror(mrc));
    for (int i = 0; i < DB_COUNT; i++) {
        mrc = mdb_dbi_open(txn, db_names[i], (s->read_only ? 0 : MDB_CREATE) | db_flags[i],
                           &s->dbi[i]);
        if (mrc) {
            mdb_txn_abort(txn);
            if (mrc == MDB_NOTFOUND)
                return ph_err_set(err, PH_EIO, "store: %s is not a perkhub store (no database %s)",
                                  dir, db_names[i]);
            return ph_err_set(err, PH_EIO, "store: open database %s: %s", db_names[i],
                              mdb_strerror(mrc));
        }
    }
    int rc = check_schema(s, txn, dir, err);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    mrc = mdb_txn_commit(txn);
    return mrc ? ph_err_set(err, PH_EIO, "store: %s: %s", dir, mdb_strerror(mrc)) : PH_OK;
}

static void *writer_main(void *arg);

/* A read-only open must not make a store where there is none (a mistyped
 * path would otherwise check an empty store and pass). */
static int store_exists(const char *dir, ph_err *err)
{
    char path[4096];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/data.mdb", dir) >= (int)sizeof path)
        return ph_err_set(err, PH_EINVAL, "store: path too long");
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return ph_err_set(err, PH_ENOTFOUND, "no store at %s", dir);
    return PH_OK;
}

/* Nothing but `meta`: what a journal must start from. */
static int store_empty(ph_store *s)
{
    MDB_txn *txn;
    MDB_stat st;
    int empty = 1;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))
        return 0;
    for (int i = 0; i < DB_COUNT && empty; i++)
        if (i != DB_META && (mdb_stat(txn, s->dbi[i], &st) || st.ms_entries))
            empty = 0;
    mdb_txn_abort(txn);
    return empty;
}

int ph_store_open(const ph_store_opts *opts, ph_store **out, ph_err *err)
{
    int rc;
    if (opts->uid && !uid_valid(&(MDB_val){strlen(opts->uid), (void *)opts->uid}))
        return ph_err_set(err, PH_EINVAL, "store: uid '%s' is not 8 lowercase hex", opts->uid);
    if (opts->read_only && (rc = store_exists(opts->dir, err)) != PH_OK)
        return rc;
    if (!opts->read_only && mkdir(opts->dir, 0700) && errno != EEXIST)
        return ph_err_set(err, PH_EIO, "store: cannot create %s: %s", opts->dir, strerror(errno));
    ph_store *s = calloc(1, sizeof *s);
    if (!s)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    s->keys = opts->keys;
    s->read_only = opts->read_only;
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    /* a growing map must not starve behind a stream of readers */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->maplock, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->max_batch = opts->max_batch ? opts->max_batch : 4096;
    if (opts->uid)
        memcpy(s->uid, opts->uid, 9); /* checked above */
    int mrc = mdb_env_create(&s->env);
    if (mrc)
        goto lmdb_fail;
    mdb_env_set_maxdbs(s->env, DB_COUNT);
    mdb_env_set_maxreaders(s->env, 1024);
    mdb_env_set_mapsize(s->env, opts->map_size ? opts->map_size : (64u << 20));
    /* NOTLS: read transactions are not tied to a thread's slot. No NOSYNC, no
     * NOMETASYNC: a commit is durable when it returns (rule 1). */
    mrc = mdb_env_open(s->env, opts->dir, MDB_NOTLS | (s->read_only ? MDB_RDONLY : 0), 0600);
    if (mrc)
        goto lmdb_fail;
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    s->map_size = info.me_mapsize;
    if ((rc = open_dbs(s, opts->dir, err)) != PH_OK)
        goto fail;
    if (s->read_only) {
        s->stopping = 1; /* no writer: ph_store_submit refuses */
        *out = s;
        return PH_OK;
    }
    if (opts->journal_file &&
        (rc = ph_journal_open(opts->journal_file, s->uid, store_empty(s), &s->journal, err)))
        goto fail;
    if (pthread_create(&s->writer, NULL, writer_main, s)) {
        rc = ph_err_set(err, PH_EIO, "store: cannot start the writer thread");
        goto fail;
    }
    s->writer_started = 1;
    *out = s;
    return PH_OK;
lmdb_fail:
    rc = ph_err_set(err, PH_EIO, "store: %s: %s", opts->dir, mdb_strerror(mrc));
fail:
    ph_store_close(s);
    return rc;
}

void ph_store_close(ph_store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->writer_started)
        pthread_join(s->writer, NULL);
    ph_journal_close(s->journal);
    if (s->env)
        mdb_env_close(s->env);
    pthread_rwlock_destroy(&s->maplock);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

uint32_t ph_store_migrated_from(ph_store *s)
{
    return s->migrated_from;
}

const char *ph_store_uid(ph_store *s)
{
    return s->uid;
}

uint64_t ph_store_map_size(ph_store *s)
{
    pthread_rwlock_rdlock(&s->maplock);
    uint64_t n = s->map_size;
    pthread_rwlock_unlock(&s->maplock);
    return n;
}

void ph_store_writer_stats(ph_store *s, ph_writer_stats *out)
{
    out->commits = atomic_load(&s->commits);
    out->commands = atomic_load(&s->commands);
    out->map_grows = atomic_load(&s->map_grows);
}

/* ---- the writer --------------------------------------------------------- */

static uint64_t last_key(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *c;
    MDB_val k, v;
    uint64_t id = 0;
    if (mdb_cursor_open(txn, dbi, &c))
        return 0;
    if (mdb_cursor_get(c, &k, &v, MDB_LAST) == 0 && k.mv_size == sizeof id)
        memcpy(&id, k.mv_data, sizeof id);
    mdb_cursor_close(c);
    return id;
}

static void load_ids(ph_store *s, MDB_txn *txn, ph_ids *ids)
{
    ids->code = last_key(txn, s->dbi[DB_CODES]) + 1;
    ids->order = last_key(txn, s->dbi[DB_ORDERS]) + 1;
    ids->batch = last_key(txn, s->dbi[DB_BATCHES]) + 1;
    ids->event = last_key(txn, s->dbi[DB_EVENTS]) + 1;
}

static void clear_results(ph_cmd *cmd, int keep_dups);

static void cmd_reset(ph_cmd *c)
{
    clear_results(c, 0);
    c->rc = PH_OK;
    c->err.code = 0;
    c->err.msg[0] = 0;
}

/* Doubles the map. Called with no transaction of ours open. */
static int grow_map(ph_store *s)
{
    pthread_rwlock_wrlock(&s->maplock);
    uint64_t want = s->map_size * 2;
    int mrc = mdb_env_set_mapsize(s->env, want);
    if (mrc == 0) {
        MDB_envinfo info;
        mdb_env_info(s->env, &info);
        s->map_size = info.me_mapsize;
    }
    pthread_rwlock_unlock(&s->maplock);
    return mrc;
}

/* Positive, never returned to callers: a command applied directly failed after
 * writing; the batch must run again with nested transactions. */
#define PH_STORE_REDO 2

/* The commands that set ph_wtxn.wrote before their first write, so they can
 * run without a nested transaction (store_apply.c). */
static int applies_direct(int type)
{
    return type == PH_CMD_ORDER || type == PH_CMD_SUPPLY_CREATE || type == PH_CMD_ATTEMPT;
}

/* Applies one command inside txn: directly when `direct` (applies_direct),
 * else in a nested transaction. Returns the command's rc (its result and ids
 * kept only on PH_OK), PH_STORE_REDO, or PH_STORE_BEGIN_FAILED with *mrc set
 * when the nested transaction could not begin. */
#define PH_STORE_BEGIN_FAILED 3
static int run_cmd(ph_store *s, MDB_txn *txn, ph_cmd *c, ph_ids *ids, int direct, int *mrc_out)
{
    ph_wtxn w = {.s = s, .txn = txn, .ids = *ids};
    cmd_reset(c);
    int mrc = direct ? 0 : mdb_txn_begin(s->env, txn, 0, &w.txn);
    if (mrc) {
        *mrc_out = mrc;
        return PH_STORE_BEGIN_FAILED;
    }
    c->rc = ph_store_apply(&w, c);
    if (direct) {
        /* an LMDB error may have marked the batch's transaction failed even
         * before the first write: redo that too, where a nested one takes it */
        if (c->rc != PH_OK && c->rc != PH_STORE_MAPFULL && (w.wrote || c->rc == PH_EIO))
            return PH_STORE_REDO;
    } else if (c->rc == PH_OK && (mrc = mdb_txn_commit(w.txn)) != 0) {
        c->rc = ph_store_lmdb_err(&c->err, mrc, "commit nested");
    } else if (c->rc != PH_OK) {
        mdb_txn_abort(w.txn);
    }
    if (c->rc == PH_OK)
        *ids = w.ids;
    else if (c->rc != PH_STORE_MAPFULL)
        clear_results(c, 1); /* a failed command reports only rc, err and dup lines */
    return c->rc;
}

/* Applies every command of the batch in one write transaction. Orders and
 * supplier commands run directly in it (they fail before their first write,
 * or the batch is redone with `nested` set); every other command, and every
 * command of a redone batch, runs in a nested transaction that is thrown away
 * when it fails.
 * Returns PH_OK (committed; per-command results set), PH_STORE_MAPFULL (the
 * whole batch must run again after growing the map), PH_STORE_REDO (run it
 * again with nested set) or PH_EIO. */
static int run_batch(ph_store *s, ph_cmd *batch, ph_ids *ids, int nested, ph_err *err)
{
    MDB_txn *txn;
    int mrc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "begin");
    ph_ids start = *ids;
    for (ph_cmd *c = batch; c; c = c->next) {
        int rc = run_cmd(s, txn, c, ids, !nested && applies_direct(c->type), &mrc);
        if (rc == PH_STORE_MAPFULL || rc == PH_STORE_REDO || rc == PH_STORE_BEGIN_FAILED) {
            mdb_txn_abort(txn);
            *ids = start;
            return rc == PH_STORE_BEGIN_FAILED ? ph_store_lmdb_err(err, mrc, "begin nested") : rc;
        }
    }
    mrc = mdb_txn_commit(txn);
    if (mrc) {
        *ids = start;
        return ph_store_lmdb_err(err, mrc, "commit");
    }
    return PH_OK;
}

static ph_cmd *take_batch(ph_store *s)
{
    pthread_mutex_lock(&s->mu);
    while (!s->head && !s->stopping)
        pthread_cond_wait(&s->cv, &s->mu);
    ph_cmd *first = s->head, *last = first;
    for (unsigned n = 1; last && last->next && n < s->max_batch; n++)
        last = last->next;
    if (last) {
        s->head = last->next;
        if (!s->head)
            s->tail = NULL;
        last->next = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    return first;
}

static void finish_batch(ph_cmd *batch, int rc, const ph_err *err)
{
    while (batch) {
        ph_cmd *next = batch->next;
        if (rc != PH_OK) {
            ph_cmd_clear(batch);
            batch->rc = PH_EIO;
            batch->err = *err;
            batch->err.code = PH_EIO;
        }
        batch->next = NULL;
        if (batch->done)
            batch->done(batch); /* may free batch: do not touch it afterwards */
        batch = next;
    }
}

static void *writer_main(void *arg)
{
    ph_store *s = arg;
    ph_ids ids = {1, 1, 1, 1};
    MDB_txn *txn;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0) {
        load_ids(s, txn, &ids);
        mdb_txn_abort(txn);
    }
    for (;;) {
        ph_cmd *batch = take_batch(s);
        if (!batch)
            break; /* stopping and drained */
        ph_err err = {0};
        int rc;
        int nested = 0;
        while ((rc = run_batch(s, batch, &ids, nested, &err)) == PH_STORE_MAPFULL ||
               rc == PH_STORE_REDO) {
            memset(&s->memo, 0, sizeof s->memo); /* it may name rolled-back ids */
            if (rc == PH_STORE_REDO) {
                nested = 1;
                continue;
            }
            atomic_fetch_add(&s->map_grows, 1);
            int mrc = grow_map(s);
            if (mrc) {
                rc = ph_err_set(&err, PH_EIO, "store: cannot grow the map: %s", mdb_strerror(mrc));
                break;
            }
        }
        if (rc != PH_OK)
            memset(&s->memo, 0, sizeof s->memo); /* it may name rolled-back ids */
        if (rc == PH_OK) {
            uint64_t n = 0;
            for (ph_cmd *c = batch; c; c = c->next)
                n++;
            atomic_fetch_add(&s->commits, 1);
            atomic_fetch_add(&s->commands, n);
        }
        /* committed, not yet acknowledged: where replication will publish it. A
         * failure stops the journal, which a replay then refuses as unclosed. */
        if (rc == PH_OK && s->journal)
            ph_journal_append(s->journal, batch, &(ph_err){0});
        finish_batch(batch, rc, &err);
    }
    return NULL;
}

int ph_store_submit(ph_store *s, ph_cmd *cmd)
{
    cmd->next = NULL;
    if (s->read_only)
        return ph_err_set(&cmd->err, PH_EINVAL, "store: opened read-only");
    return ph_store_submit_list(s, cmd);
}

int ph_store_submit_list(ph_store *s, ph_cmd *first)
{
    ph_cmd *last = first;
    while (last->next)
        last = last->next;
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return ph_err_set(&first->err, PH_ESHUTDOWN, "store: shutting down");
    }
    if (s->tail)
        s->tail->next = first;
    else
        s->head = first;
    s->tail = last;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return PH_OK;
}

/* The commands a submitter waits for: each one's done counts it off. */
typedef struct exec_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t left;
} exec_wait;

static void exec_done(ph_cmd *cmd)
{
    exec_wait *w = cmd->arg;
    pthread_mutex_lock(&w->mu);
    if (--w->left == 0)
        pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void exec_wait_all(exec_wait *w)
{
    pthread_mutex_lock(&w->mu);
    while (w->left)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

int ph_store_exec(ph_store *s, ph_cmd *cmd)
{
    exec_wait w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .left = 1};
    cmd->done = exec_done;
    cmd->arg = &w;
    int rc = ph_store_submit(s, cmd);
    if (rc == PH_OK) {
        exec_wait_all(&w);
        rc = cmd->rc;
    } else {
        cmd->rc = rc;
    }
    cmd->done = NULL;
    cmd->arg = NULL;
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
}

int ph_store_exec_list(ph_store *s, ph_cmd *first)
{
    exec_wait w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    for (ph_cmd *c = first; c; c = c->next) {
        c->done = exec_done;
        c->arg = &w;
        w.left++;
    }
    int rc = ph_store_submit_list(s, first);
    if (rc == PH_OK)
        exec_wait_all(&w);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
}

static void clear_results(ph_cmd *cmd, int keep_dups)
{
    ph_order_free(cmd->order);
    cmd->order = NULL;
    cmd->replayed = 0;
    free(cmd->affected);
    cmd->affected = NULL;
    cmd->naffected = 0;
    if (!keep_dups) {
        free(cmd->dup_lines);
        cmd->dup_lines = NULL;
        cmd->ndup = 0;
    }
}

void ph_cmd_clear(ph_cmd *cmd)
{
    clear_results(cmd, 0);
}

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
}

static int batch_load(ph_store *s, MDB_txn *txn, uint64_t id, ph_batch *out, ph_err *err)
{
    MDB_val k = {sizeof id, &id}, v;
    int mrc = mdb_get(txn, s->dbi[DB_BATCHES], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return ph_err_set(err, PH_ENOTFOUND, "batch %llu: not found", (unsigned long long)id);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read batch");
    if (ph_batch_decode(&v, id, out, NULL) != PH_OK)
        return ph_err_set(err, PH_EIO, "batch %llu: malformed record", (unsigned long long)id);
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
    int rc = batch_load(s, txn, out->code.batch_id, &out->batch, err);
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
    if (rc)
        ph_code_info_clear(out);
    return rc;
}

/* One try of ph_store_code_find_typed: PH_OK found (under this rule),
 * PH_ENOTFOUND not, or an error. */
static int find_under(ph_store *s, MDB_txn *txn, const char *rule, ph_code_hash_fn hash_fn,
                      void *arg, ph_code_info *out, ph_err *err)
{
    uint8_t hash[32];
    if (hash_fn(arg, rule, hash) != 0)
        return ph_err_set(err, PH_ENOTFOUND, "code: not found");
    int rc = code_find_in(s, txn, hash, out, err);
    if (rc == PH_OK && strcmp(out->batch.lookalikes, rule) != 0)
        rc = ph_err_set(err, PH_ENOTFOUND, "code: not found"); /* the rule is not its product's */
    if (rc)
        ph_code_info_clear(out);
    return rc;
}

int ph_store_code_find_typed(ph_store *s, ph_code_hash_fn hash_fn, void *arg, ph_code_info *out,
                             ph_err *err)
{
    memset(out, 0, sizeof *out);
    MDB_txn *txn;
    MDB_cursor *c;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    rc = find_under(s, txn, "", hash_fn, arg, out, err);
    /* then every rule a batch was hashed with (meta "rule:<rule>", a handful) */
    if (rc == PH_ENOTFOUND && mdb_cursor_open(txn, s->dbi[DB_META], &c) == 0) {
        MDB_val k = {5, "rule:"}, v;
        for (int op = MDB_SET_RANGE; rc == PH_ENOTFOUND && mdb_cursor_get(c, &k, &v, op) == 0;
             op = MDB_NEXT) {
            char rule[PH_LOOKALIKES_MAX + 1];
            if (k.mv_size < 5 || memcmp(k.mv_data, "rule:", 5) != 0)
                break;
            if (k.mv_size - 5 > PH_LOOKALIKES_MAX)
                continue;
            memcpy(rule, (const char *)k.mv_data + 5, k.mv_size - 5);
            rule[k.mv_size - 5] = 0;
            rc = find_under(s, txn, rule, hash_fn, arg, out, err);
        }
        mdb_cursor_close(c);
    }
    ph_store_read_end(s, txn);
    return rc;
}

int ph_store_batch_get(ph_store *s, uint64_t id, ph_batch *out, uint64_t counts[7], ph_err *err)
{
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    rc = batch_load(s, txn, id, out, err);
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
static uint64_t issuable_count(ph_store *s, MDB_txn *txn, const char *sku, size_t len, int64_t now)
{
    uint64_t n = avail_count(s, txn, sku, len),
             due = ph_expiry_due_available(s, txn, sku, len, now);
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
    else
        *available = issuable_count(s, txn, sku, k.mv_size, now);
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
        av[cnt++] = issuable_count(s, txn, k.mv_data, k.mv_size, now);
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
