/*
 * store.c — opening the LMDB environment and the group-commit writer. The
 * record codecs are in store_records.c, the reads in store_read.c; commands
 * are applied in store_apply.c; the invariants are checked in store_check.c.
 */
#include "store/store_int.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <time.h>

#include "config/config.h"
#include "crypto/crypto.h"
#include "base/util.h"
#include "store/cmd_codec.h"
#include "metrics/metrics.h"

_Static_assert(sizeof(ph_order_rec) == 72, "order record header is 72 bytes");
_Static_assert(sizeof(ph_supply_rec) == 12, "supply record header is 12 bytes");
_Static_assert(sizeof(ph_attempt_rec) == 64, "attempt record is 64 bytes without padding");
_Static_assert(sizeof(ph_attempt_tail) == 24, "attempt tail is 24 bytes without padding");
_Static_assert(sizeof(ph_code_count_rec) == 56, "code count record is 56 bytes without padding");

static const char *const db_names[DB_COUNT] = {
    "meta",          "products",      "batches",      "codes",          "avail",
    "code_hash",     "orders",        "order_ref",    "client_orders",  "events",
    "supply",        "pending",       "expiry",       "audit",          "ledger",
    "ledger_orders", "report_days",   "recon_runs",   "recon_lines",    "recon_digest",
    "discrep",       "discrep_att",   "late",         "jobs",           "offer_state",
    "product_state", "alerts",        "alert_state",  "balance",        "replenish",
    "replenish_sku", "replenish_day", "wh_endpoints", "wh_deliveries",  "wh_pending",
    "wh_last",       "wh_attempts",   "risk_rules",   "risk_rule_hist", "risk_lists",
    "order_risk",    "reviews",       "agg_sku",      "agg_hours",      "agg_claims",
    "agg_co",        "agg_users",     "grants",       "grant_tokens",   "grant_expiry",
    "grant_batches", "bundles",       "code_counts",  "supply_att",
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
    [DB_AUDIT] = MDB_INTEGERKEY,
    [DB_LEDGER] = MDB_INTEGERKEY,
    [DB_LEDGER_ORDERS] = MDB_INTEGERKEY,
    [DB_RECON_RUNS] = MDB_INTEGERKEY,
    [DB_DISCREP] = MDB_INTEGERKEY,
    [DB_DISCREP_ATT] = MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP,
    [DB_ALERTS] = MDB_INTEGERKEY,
    [DB_REPLENISH] = MDB_INTEGERKEY,
    [DB_ORDER_RISK] = MDB_INTEGERKEY,
    [DB_REVIEWS] = MDB_INTEGERKEY,
    [DB_GRANTS] = MDB_INTEGERKEY,
    [DB_BUNDLES] = MDB_INTEGERKEY,
};

const char *ph_store_db_name(int db)
{
    return db >= 0 && db < DB_COUNT ? db_names[db] : "?";
}

unsigned ph_store_db_flags(int db)
{
    return db >= 0 && db < DB_COUNT ? db_flags[db] : 0;
}

const char *ph_code_state_name(int state)
{
    static const char *const names[] = {"?",        "available", "reserved", "issued",
                                        "redeemed", "voided",    "expired"};
    return state >= 1 && state <= 6 ? names[state] : "?";
}

const char *ph_order_state_name(int state)
{
    static const char *const names[] = {"?",       "accepted", "processing", "succeeded", "failed",
                                        "unknown", "held",     "granted",    "partial"};
    return state >= 1 && state <= PH_ORDER_PARTIAL ? names[state] : "?";
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

int64_t ph_order_stuck_since(const ph_order *o)
{
    const ph_attempt *a = o->nattempts ? &o->attempts[o->nattempts - 1] : NULL;
    return a && ph_attempt_state_open(a->state) ? a->stuck_at : 0;
}

int ph_order_via_supplier(const ph_order *o)
{
    return o->delivery != 0 && o->delivery != PH_DELIVERY_BUNDLE;
}

int ph_store_lmdb_err(ph_err *err, int mrc, const char *what)
{
    if (mrc == MDB_MAP_FULL)
        return PH_STORE_MAPFULL;
    return ph_err_set(err, PH_EIO, "store: %s: %s", what, mdb_strerror(mrc));
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

static void load_ids(ph_store *s, MDB_txn *txn, ph_ids *ids);

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
    uint32_t ver = 0, from;
    if (v.mv_size == sizeof ver)
        memcpy(&ver, v.mv_data, sizeof ver);
    from = ver;
    if (ver >= 2 && ver < PH_SCHEMA_VERSION && (s->read_only || (ver == 2 && !s->keys)))
        return ph_err_set(err, PH_EVERSION,
                          "store: %s holds schema version %u; this perkhubd reads version %d and "
                          "migrates it when it starts on it%s%s",
                          dir, ver, PH_SCHEMA_VERSION, ver == 2 ? " with its key file" : "",
                          s->read_only ? " (--check-store only reads)" : "");
    if (ver == 2) {
        /* version 3 added the expiry index (store_expiry.c), and indexes codes
         * normalized with key checks in meta (store_keys.c): both here, in the
         * open's transaction, so a failure leaves version 2 as it was */
        int rc = ph_expiry_rebuild(s, txn, err);
        if (rc == PH_OK)
            rc = ph_store_migrate(s, txn, dir, err);
        if (rc)
            return rc;
        ver = 3;
    }
    if (ver == 3) {
        /* version 4 added the ledger: every order booked, in this transaction */
        int rc = ph_ledger_migrate(s, txn, err);
        if (rc)
            return rc;
        ver = 4;
    }
    if (ver >= 4 && ver <= 6) {
        /* the databases of versions 5 to 7 were created empty by open_dbs, in
         * this transaction; version 7's order aggregates are back-filled from
         * the orders, which writes the version */
        int rc = store_agg_migrate(s, txn, err);
        if (rc)
            return rc;
        ver = 7;
    }
    if (ver == 7) {
        /* version 8 answers stats from counts the writer keeps: counted once
         * from every code here (code_counts was created empty by open_dbs) */
        int rc = store_code_counts_build(s, txn, err);
        if (rc)
            return rc;
        ver = 8;
    }
    if (ver == 8) {
        /* version 9 added the supplier attempt index, back-filled here */
        int rc = store_satt_migrate(s, txn, err);
        if (rc)
            return rc;
        ver = PH_SCHEMA_VERSION;
    }
    if (from < 9 && ver == PH_SCHEMA_VERSION) {
        /* version 9's release gives a grant back when its supplier order fails
         * for good; the claims the previous one left failed are given back
         * here, as at their failure (store_grant_migrate) */
        ph_ids ids;
        load_ids(s, txn, &ids);
        int rc = store_grant_migrate(s, txn, &ids, err);
        if (rc)
            return rc;
    }
    if (ver != from)
        s->migrated_from = from;
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

static int open_dbs(ph_store *s, const ph_store_opts *opts, ph_err *err)
{
    const char *dir = opts->dir;
    MDB_txn *txn;
    int mrc = mdb_txn_begin(s->env, NULL, s->read_only ? MDB_RDONLY : 0, &txn);
    if (mrc)
        return ph_err_set(err, PH_EIO, "store: %s: %s", dir, mdb_strerror(mrc));
    for (int i = 0; i < DB_COUNT; i++) {
        mrc = mdb_dbi_open(txn, db_names[i], (s->read_only ? 0 : MDB_CREATE) | db_flags[i],
                           &s->dbi[i]);
        if (mrc) {
            uint32_t ver = 0;
            MDB_val sk = {6, "schema"}, sv;
            /* an older store lacks the databases its successors added */
            if (mrc == MDB_NOTFOUND && i > DB_META &&
                mdb_get(txn, s->dbi[DB_META], &sk, &sv) == 0 && sv.mv_size == sizeof ver)
                memcpy(&ver, sv.mv_data, sizeof ver);
            mdb_txn_abort(txn);
            if (ver && ver < PH_SCHEMA_VERSION)
                return ph_err_set(err, PH_EVERSION,
                                  "store: %s holds schema version %u; this perkhubd reads version "
                                  "%d and migrates it when it starts on it (--check-store only "
                                  "reads)",
                                  dir, ver, PH_SCHEMA_VERSION);
            if (mrc == MDB_NOTFOUND)
                return ph_err_set(err, PH_EIO, "store: %s is not a perkhub store (no database %s)",
                                  dir, db_names[i]);
            return ph_err_set(err, PH_EIO, "store: open database %s: %s", db_names[i],
                              mdb_strerror(mrc));
        }
    }
    /* the report offset first: a migration books with it */
    int rc = ph_ledger_open(s, txn, opts, err);
    if (rc == PH_OK)
        rc = check_schema(s, txn, dir, err);
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

int ph_store_exists(const char *dir)
{
    ph_err err;
    return store_exists(dir, &err) == PH_OK;
}

/* A read-only open of a directory where LMDB cannot keep its lock file (it
 * cannot create it, or cannot write the one there): open without it. LMDB
 * itself does so only on a read-only file system (EROFS), not for a directory
 * or lock file this user may not write (EACCES). */
static int needs_lockless(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/lock.mdb", dir) >= (int)sizeof path)
        return 0;
    if (access(path, F_OK) == 0)
        return access(path, W_OK) != 0;
    return access(dir, W_OK) != 0;
}

int ph_store_lockless(ph_store *s)
{
    return s->lockless;
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
    s->metrics = opts->metrics;
    s->read_only = opts->read_only;
    s->repl_hook = opts->repl_hook;
    s->repl_arg = opts->repl_arg;
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    /* a growing map must not starve behind a stream of readers */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->maplock, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->health_mu, NULL);
    pthread_mutex_init(&s->batch_memo.mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (!(s->dir = strdup(opts->dir))) {
        rc = ph_err_set(err, PH_ENOMEM, "out of memory");
        goto fail;
    }
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
    s->lockless = s->read_only && needs_lockless(opts->dir);
    mrc = mdb_env_open(s->env, opts->dir,
                       MDB_NOTLS | (s->read_only ? MDB_RDONLY : 0) | (s->lockless ? MDB_NOLOCK : 0),
                       0600);
    if (mrc)
        goto lmdb_fail;
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    s->map_size = info.me_mapsize;
    if ((rc = open_dbs(s, opts, err)) != PH_OK)
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
    pthread_mutex_destroy(&s->health_mu);
    pthread_mutex_destroy(&s->batch_memo.mu);
    pthread_cond_destroy(&s->cv);
    store_alerts_free(s);
    free(s->dir);
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

uint64_t ph_store_map_used(ph_store *s)
{
    MDB_envinfo info;
    MDB_stat st;
    pthread_rwlock_rdlock(&s->maplock); /* not while the writer resizes the map */
    mdb_env_info(s->env, &info);
    mdb_env_stat(s->env, &st);
    pthread_rwlock_unlock(&s->maplock);
    return ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
}

static int cmp_u16(const void *a, const void *b)
{
    return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

size_t ph_store_key_ids(ph_store *s, uint16_t *out, size_t max)
{
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_val k = {9, "keycheck:"}, v;
    size_t n = 0;
    if (ph_store_read_begin(s, &txn, &(ph_err){0}) != PH_OK)
        return 0;
    if (mdb_cursor_open(txn, s->dbi[DB_META], &c) == 0) {
        for (int op = MDB_SET_RANGE; mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
            if (k.mv_size < 9 || memcmp(k.mv_data, "keycheck:", 9) != 0)
                break;
            char name[24];
            snprintf(name, sizeof name, "%.*s", (int)(k.mv_size - 9), (const char *)k.mv_data + 9);
            unsigned long id = strtoul(name, NULL, 10);
            if (id == 0 || id > 65535) /* "keycheck:index" is the index key's */
                continue;
            if (n < max)
                out[n] = (uint16_t)id;
            n++;
        }
        mdb_cursor_close(c);
    }
    ph_store_read_end(s, txn);
    /* the keys sort as text ("keycheck:10" before "keycheck:2"): sort the ids */
    if (n && max)
        qsort(out, n < max ? n : max, sizeof *out, cmp_u16);
    return n;
}

void ph_store_writer_stats(ph_store *s, ph_writer_stats *out)
{
    out->commits = atomic_load(&s->commits);
    out->commands = atomic_load(&s->commands);
    out->map_grows = atomic_load(&s->map_grows);
}

/* ---- the writer --------------------------------------------------------- */

uint64_t ph_store_last_key(MDB_txn *txn, MDB_dbi dbi)
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
    ids->code = ph_store_last_key(txn, s->dbi[DB_CODES]) + 1;
    ids->order = ph_store_last_key(txn, s->dbi[DB_ORDERS]) + 1;
    ids->batch = ph_store_last_key(txn, s->dbi[DB_BATCHES]) + 1;
    ids->event = ph_store_last_key(txn, s->dbi[DB_EVENTS]) + 1;
    ids->audit = ph_store_last_key(txn, s->dbi[DB_AUDIT]) + 1;
    ids->ledger = ph_store_last_key(txn, s->dbi[DB_LEDGER]) + 1;
}

static void clear_results(ph_cmd *cmd, int keep_dups);

static void cmd_reset(ph_cmd *c)
{
    clear_results(c, 0);
    c->grant_state = 0;
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
 * run without a nested transaction (store_apply_order.c, store_apply_supply.c). */
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
    ph_wtxn w = {.s = s, .txn = txn, .ids = *ids, .cmd = c};
    cmd_reset(c);
    int mrc = direct ? 0 : mdb_txn_begin(s->env, txn, 0, &w.txn);
    if (mrc) {
        *mrc_out = mrc;
        return PH_STORE_BEGIN_FAILED;
    }
    c->rc = ph_store_apply(&w, c);
    if (c->rc == PH_OK && c->audit) /* same transaction as the change, only when it applied */
        c->rc = store_audit_append(&w, c, ids->event);
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

/* meta "repl_seq": the stream sequence of the last batch committed through
 * the replication hook, u64 in host order as every id key. */
static const MDB_val repl_seq_key = {sizeof PH_META_REPL_SEQ - 1, PH_META_REPL_SEQ};

static uint64_t repl_seq_get(ph_store *s, MDB_txn *txn, int *mrc)
{
    return ph_store_meta_repl_seq(txn, s->dbi[DB_META], mrc);
}

uint64_t ph_store_meta_repl_seq(MDB_txn *txn, MDB_dbi meta, int *mrc)
{
    MDB_val k = repl_seq_key, v;
    uint64_t seq = 0;
    *mrc = mdb_get(txn, meta, &k, &v);
    if (*mrc == 0 && v.mv_size == sizeof seq)
        memcpy(&seq, v.mv_data, sizeof seq);
    if (*mrc == MDB_NOTFOUND)
        *mrc = 0;
    return seq;
}

uint64_t ph_store_repl_seq(ph_store *s)
{
    MDB_txn *txn;
    int mrc;
    uint64_t seq = 0;
    if (ph_store_read_begin(s, &txn, NULL) == PH_OK) {
        seq = repl_seq_get(s, txn, &mrc);
        ph_store_read_end(s, txn);
    }
    return seq;
}

/* Replication's seam, just before the commit (ph_store_opts.repl_hook): the
 * hook puts the batch in the stream, or refuses it, and the sequence of its
 * last stream message is written in the batch's own transaction. So a leader
 * never commits a batch the stream lacks, and every node records which
 * stream message its data reached. The value is written once before the
 * hook (prev + 1, a placeholder of the same size): its page is then dirty in
 * this transaction, and the final write, after a publish that cannot be
 * undone, overwrites it in place without needing a page (no MAPFULL redo
 * that would publish the batch twice). */
static int repl_seal(ph_store *s, MDB_txn *txn, const ph_cmd *batch, ph_err *err)
{
    int mrc;
    uint64_t prev = repl_seq_get(s, txn, &mrc), seq = prev + 1;
    MDB_val k = repl_seq_key, v = {sizeof seq, &seq};
    if (mrc || (mrc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0)))
        return ph_store_lmdb_err(err, mrc, "write repl_seq");
    int rc = s->repl_hook(s->repl_arg, batch, prev, &seq, err);
    if (rc != PH_OK)
        return rc;
    assert(seq > prev);
    v = (MDB_val){sizeof seq, &seq};
    if ((mrc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0)))
        return ph_store_lmdb_err(err, mrc, "write repl_seq");
    return PH_OK;
}

/* Applies every command of the batch in one write transaction. Orders and
 * supplier commands run directly in it (they fail before their first write,
 * or the batch is redone with `nested` set); every other command, and every
 * command of a redone batch, runs in a nested transaction that is thrown away
 * when it fails.
 * Returns PH_OK (committed; per-command results set), PH_STORE_MAPFULL (the
 * whole batch must run again after growing the map), PH_STORE_REDO (run it
 * again with nested set) or PH_EIO. */
static int run_batch(ph_store *s, ph_cmd *batch, ph_ids *ids, int nested, int *mrc_out, ph_err *err)
{
    MDB_txn *txn;
    int mrc = *mrc_out = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "begin");
    ph_ids start = *ids;
    for (ph_cmd *c = batch; c; c = c->next) {
        int rc = run_cmd(s, txn, c, ids, !nested && applies_direct(c->type), &mrc);
        if (rc == PH_STORE_MAPFULL || rc == PH_STORE_REDO || rc == PH_STORE_BEGIN_FAILED) {
            mdb_txn_abort(txn);
            *ids = start;
            *mrc_out = rc == PH_STORE_BEGIN_FAILED ? mrc : 0;
            return rc == PH_STORE_BEGIN_FAILED ? ph_store_lmdb_err(err, mrc, "begin nested") : rc;
        }
    }
    int hrc = s->repl_hook ? repl_seal(s, txn, batch, err) : PH_OK;
    if (hrc != PH_OK) {
        mdb_txn_abort(txn);
        *ids = start;
        return hrc; /* PH_STORE_MAPFULL: grown and run again, like any other write */
    }
    mrc = *mrc_out = mdb_txn_commit(txn);
    if (mrc) {
        *ids = start;
        return ph_store_lmdb_err(err, mrc, "commit");
    }
    return PH_OK;
}

/* ---- a full disk -------------------------------------------------------- */

/* Below this much free space a failed write is taken for a full disk: LMDB
 * reports a write cut short by a full file system as EIO, not ENOSPC
 * (mdb_page_flush), and a batch may need a few megabytes of new pages. */
#define PH_STORE_FULL_BELOW (4ull << 20)

void ph_store_health_get(ph_store *s, ph_store_health *out)
{
    pthread_mutex_lock(&s->health_mu);
    *out = s->health;
    pthread_mutex_unlock(&s->health_mu);
}

/* The writer's record of a failure for want of space (condition) or of a
 * commit (PH_STORE_WRITABLE clears it). */
static void health_set(ph_store *s, int condition, uint64_t free_bytes, const char *detail)
{
    pthread_mutex_lock(&s->health_mu);
    if (condition == PH_STORE_WRITABLE) {
        memset(&s->health, 0, sizeof s->health);
    } else {
        s->health.failed_batches =
            s->health.condition == condition ? s->health.failed_batches + 1 : 1;
        s->health.condition = condition;
        s->health.free_bytes = free_bytes;
        snprintf(s->health.detail, sizeof s->health.detail, "%s", detail);
    }
    pthread_mutex_unlock(&s->health_mu);
}

/* After a batch failed with PH_EIO (mrc the LMDB or system error when it was
 * the begin or the commit, else 0): PH_ENOSPC with a message that says the
 * disk is full when it is (ENOSPC, EDQUOT, or an I/O error with less than
 * PH_STORE_FULL_BELOW free in the data directory's file system), else PH_EIO
 * as it was. Records the condition. */
static int classify_failure(ph_store *s, int mrc, ph_err *err)
{
    struct statvfs fs;
    int known = statvfs(s->dir, &fs) == 0;
    uint64_t avail = known ? (uint64_t)fs.f_bavail * fs.f_frsize : 0;
    const char *why;
    if (mrc == ENOSPC)
        why = "no space left on device";
    else if (mrc == EDQUOT)
        why = "disk quota exceeded";
    else if (known && avail < PH_STORE_FULL_BELOW)
        why = "the write failed with too little space left";
    else
        return PH_EIO;
    ph_err_set(err, PH_ENOSPC,
               "disk full: %s (%llu bytes free in the data directory's file system); "
               "nothing of this request was stored",
               why, (unsigned long long)avail);
    health_set(s, PH_STORE_DISK_FULL, avail, err->msg);
    return PH_ENOSPC;
}

static ph_cmd *take_batch(ph_store *s)
{
    pthread_mutex_lock(&s->mu);
    while (!s->head && !s->stopping)
        pthread_cond_wait(&s->cv, &s->mu);
    ph_cmd *first = s->head, *last = first;
    /* a list (ph_store_submit_list) is a batch of its own: nothing joins it */
    unsigned max =
        first && first->list_n && first->list_n < s->max_batch ? first->list_n : s->max_batch;
    for (unsigned n = 1; last && last->next && n < max && !last->next->list_n; n++)
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
            batch->rc = rc == PH_ENOSPC || rc == PH_EUNAVAIL ? rc : PH_EIO;
            batch->err = *err;
            batch->err.code = batch->rc;
        }
        batch->next = NULL;
        if (batch->done)
            batch->done(batch); /* may free batch: do not touch it afterwards */
        batch = next;
    }
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *writer_main(void *arg)
{
    ph_store *s = arg;
    ph_ids ids = {1, 1, 1, 1, 1, 1};
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
        int nested = 0, mrc = 0, map_full = 0;
        /* the batch's duration, for the metrics: a clock read outside applying */
        int64_t t0 = s->metrics ? mono_us() : 0;
        while ((rc = run_batch(s, batch, &ids, nested, &mrc, &err)) == PH_STORE_MAPFULL ||
               rc == PH_STORE_REDO) {
            memset(&s->memo, 0, sizeof s->memo); /* it may name rolled-back ids */
            if (rc == PH_STORE_REDO) {
                nested = 1;
                continue;
            }
            atomic_fetch_add(&s->map_grows, 1);
            uint64_t was = ph_store_map_size(s);
            if ((mrc = grow_map(s)) != 0) {
                /* not the disk: the map is address space, its file grows only by
                 * what is written */
                rc = ph_err_set(&err, PH_EIO,
                                "store: map full: the LMDB map of %llu bytes cannot grow to %llu: "
                                "%s; nothing of this request was stored",
                                (unsigned long long)was, (unsigned long long)was * 2,
                                mdb_strerror(mrc));
                health_set(s, PH_STORE_MAP_FULL, 0, err.msg);
                map_full = 1;
                break;
            }
        }
        if (rc != PH_OK)
            memset(&s->memo, 0, sizeof s->memo); /* it may name rolled-back ids */
        if (rc == PH_EIO && !map_full)
            rc = classify_failure(s, mrc, &err);
        /* a command of a committed batch that met the full disk alone (a spill
         * of dirty pages that found no room) says so too */
        for (ph_cmd *c = batch; rc == PH_OK && c; c = c->next)
            if (c->rc == PH_EIO)
                c->rc = classify_failure(s, 0, &c->err);
        if (rc == PH_OK) {
            health_set(s, PH_STORE_WRITABLE, 0, "");
            uint64_t n = 0;
            for (ph_cmd *c = batch; c; c = c->next)
                n++;
            /* commands first: a reader that sees this commit (ph_store_writer_stats
             * loads commits, then commands) sees its commands too */
            atomic_fetch_add(&s->commands, n);
            atomic_fetch_add(&s->commits, 1);
            /* before any done runs: a done may free its command */
            ph_metrics_batch_observe(s->metrics, batch, s->metrics ? mono_us() - t0 : 0);
        }
        /* committed, not yet acknowledged: where replication will publish it. A
         * failure stops the journal, which a replay then refuses as unclosed. */
        if (rc == PH_OK && s->journal)
            ph_journal_append(s->journal, batch, &(ph_err){0});
        finish_batch(batch, rc, &err);
    }
    return NULL;
}

static int submit(ph_store *s, ph_cmd *first, int list)
{
    if (s->read_only)
        return ph_err_set(&first->err, PH_EINVAL, "store: opened read-only");
    ph_cmd *last = first;
    unsigned n = 1;
    first->list_n = 0;
    for (; last->next; n++) {
        last = last->next;
        last->list_n = 0;
    }
    first->list_n = list ? n : 0;
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

int ph_store_submit(ph_store *s, ph_cmd *cmd)
{
    cmd->next = NULL;
    return submit(s, cmd, 0);
}

int ph_store_submit_list(ph_store *s, ph_cmd *first)
{
    return submit(s, first, 1);
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
    free(cmd->record);
    cmd->record = NULL;
    cmd->discrepancy_id = 0;
    cmd->replayed = 0;
    cmd->recon_run = 0;
    free(cmd->grant_ids);
    cmd->grant_ids = NULL;
    cmd->ngrant_ids = 0;
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
