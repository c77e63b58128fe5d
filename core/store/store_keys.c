/*
 * store_keys.c — what the store does with the keys when it opens: migrating a
 * store of the previous schema (the code index rebuilt from normalized codes)
 * and the key checks that refuse a wrong key file (store.h, "Keys").
 *
 * All of it runs inside the open's transaction, before the writer starts and
 * before any command: it is a function of (stored data, key file) only, like
 * the writer's commands, so a replica with the same keys does the same.
 */
#include "store/store_int.h"

#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYCHECKS_DONE "keychecks"

size_t ph_store_keycheck_name(uint16_t id, char *buf)
{
    if (id == PH_KEYCHECK_INDEX)
        return (size_t)snprintf(buf, 24, "keycheck:index");
    return (size_t)snprintf(buf, 24, "keycheck:%u", (unsigned)id);
}

static int meta_put(ph_store *s, MDB_txn *txn, const char *key, const void *val, size_t len,
                    ph_err *err)
{
    MDB_val k = {strlen(key), (void *)key}, v = {len, (void *)val};
    int mrc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0);
    return mrc ? ph_err_set(err, PH_EIO, "store: write meta: %s", mdb_strerror(mrc)) : PH_OK;
}

/* The message for a key that is there but is not the one the data needs. */
static int wrong_key(ph_store *s, uint16_t id, const char *dir, const char *what, ph_err *err)
{
    if (id == PH_KEYCHECK_INDEX)
        return ph_err_set(err, PH_ECRYPTO,
                          "key file %s: its index key is not the one that indexed the codes of "
                          "store %s (%s): wrong master_key_file?",
                          ph_keyring_path(s->keys), dir, what);
    return ph_err_set(err, PH_ECRYPTO,
                      "key file %s: key %u is not the key %u that sealed the data of store %s "
                      "(%s): wrong master_key_file?",
                      ph_keyring_path(s->keys), (unsigned)id, (unsigned)id, dir, what);
}

static int missing_key(ph_store *s, uint16_t id, const char *dir, ph_err *err)
{
    return ph_err_set(err, PH_ECRYPTO,
                      "key file %s has no key %u, which sealed data of store %s: wrong "
                      "master_key_file, or a key removed too early?",
                      ph_keyring_path(s->keys), (unsigned)id, dir);
}

/* ---- which key ids the data uses ---------------------------------------------- */

/* One key id the data is sealed with, and the first item sealed with it. */
typedef struct key_use {
    uint16_t id;
    uint64_t code;  /* a code sealed with it, 0 = none */
    uint64_t order; /* an order whose account is sealed with it, 0 = none */
} key_use;

typedef struct key_uses {
    key_use *v;
    size_t n, cap;
} key_uses;

static key_use *use_of(key_uses *u, uint16_t id)
{
    for (size_t i = 0; i < u->n; i++)
        if (u->v[i].id == id)
            return &u->v[i];
    if (u->n == u->cap) {
        key_use *g = ph_grow(u->v, &u->cap, sizeof *g, 8);
        if (!g)
            return NULL;
        u->v = g;
    }
    u->v[u->n] = (key_use){.id = id};
    return &u->v[u->n++];
}

/* The sealed blob of a code record (valid in txn). */
static const uint8_t *code_blob(const MDB_val *v, uint32_t *len)
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

/* Every key id the codes and the recharge accounts are sealed with. */
static int scan_key_uses(ph_store *s, MDB_txn *txn, key_uses *u, ph_err *err)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = PH_OK;
    if (mdb_cursor_open(txn, s->dbi[DB_CODES], &c))
        return ph_err_set(err, PH_EIO, "store: cannot open codes");
    uint16_t last = 0; /* codes come in batches sealed with one key: skip the search */
    for (int op = MDB_FIRST; rc == PH_OK && mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
        uint32_t len;
        const uint8_t *blob = code_blob(&v, &len);
        uint64_t id;
        memcpy(&id, k.mv_data, 8);
        uint16_t kid = blob ? ph_sealed_key_id(blob, len) : 0;
        if (!kid)
            rc = ph_err_set(err, PH_EIO, "code %llu: malformed record or sealed value",
                            (unsigned long long)id);
        else if (kid != last) {
            key_use *ku = use_of(u, kid);
            if (!ku)
                rc = ph_err_set(err, PH_ENOMEM, "out of memory");
            else if (!ku->code)
                ku->code = id;
            last = kid;
        }
    }
    mdb_cursor_close(c);
    if (rc || mdb_cursor_open(txn, s->dbi[DB_SUPPLY], &c))
        return rc ? rc : ph_err_set(err, PH_EIO, "store: cannot open supply records");
    for (int op = MDB_FIRST; rc == PH_OK && mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
        ph_order o = {0};
        memcpy(&o.id, k.mv_data, 8);
        if (ph_supply_decode(&v, &o) != PH_OK)
            rc = ph_err_set(err, PH_EIO, "order %llu: malformed supply record",
                            (unsigned long long)o.id);
        else if (o.account_sealed_len) {
            uint16_t kid = ph_sealed_key_id(o.account_sealed, o.account_sealed_len);
            key_use *ku = kid ? use_of(u, kid) : NULL;
            if (!kid)
                rc = ph_err_set(err, PH_EIO, "order %llu: malformed sealed account",
                                (unsigned long long)o.id);
            else if (!ku)
                rc = ph_err_set(err, PH_ENOMEM, "out of memory");
            else if (!ku->order)
                ku->order = o.id;
        }
        free(o.account_sealed);
        free(o.attempts);
    }
    mdb_cursor_close(c);
    return rc;
}

/* ---- proving a key from the data ----------------------------------------------- */

/* Unseals code id; code and card get its plaintext (the caller wipes them). */
static int open_code(ph_store *s, MDB_txn *txn, uint64_t id, char *code, char *card,
                     uint64_t *batch)
{
    MDB_val k = {8, &id}, v;
    uint32_t len;
    const uint8_t *blob;
    ph_code_rec r;
    if (mdb_get(txn, s->dbi[DB_CODES], &k, &v) || !(blob = code_blob(&v, &len)))
        return PH_EIO;
    memcpy(&r, v.mv_data, sizeof r);
    *batch = r.batch_id;
    return ph_code_unseal(s->keys, blob, len, code, card);
}

static int batch_rule(ph_store *s, MDB_txn *txn, uint64_t id, char *rule)
{
    MDB_val k = {8, &id}, v;
    ph_batch b;
    if (mdb_get(txn, s->dbi[DB_BATCHES], &k, &v) || ph_batch_decode(&v, id, &b, NULL))
        return PH_EIO;
    memcpy(rule, b.lookalikes, sizeof b.lookalikes);
    return PH_OK;
}

/* Does key `ku->id` open the first item sealed with it? */
static int prove_key(ph_store *s, MDB_txn *txn, const key_use *ku, const char *dir, ph_err *err)
{
    if (!ph_keyring_has(s->keys, ku->id))
        return missing_key(s, ku->id, dir, err);
    char what[64];
    int rc;
    if (ku->code) {
        char code[PH_CODE_MAX + 1], card[PH_CODE_MAX + 1];
        uint64_t batch;
        rc = open_code(s, txn, ku->code, code, card, &batch);
        ph_wipe(code, sizeof code);
        ph_wipe(card, sizeof card);
        snprintf(what, sizeof what, "code %llu does not unseal", (unsigned long long)ku->code);
    } else {
        ph_order o = {0};
        MDB_val k = {8, (void *)&ku->order}, v;
        uint8_t acc[256];
        size_t n = 0;
        rc = mdb_get(txn, s->dbi[DB_SUPPLY], &k, &v) || ph_supply_decode(&v, &o) ||
                     o.account_sealed_len > sizeof acc + PH_SEAL_OVERHEAD
                 ? PH_EIO
                 : ph_crypto_open(s->keys, o.account_sealed, o.account_sealed_len,
                                  (const uint8_t *)PH_ACCOUNT_AAD, strlen(PH_ACCOUNT_AAD), acc, &n);
        ph_wipe(acc, sizeof acc);
        free(o.account_sealed);
        free(o.attempts);
        snprintf(what, sizeof what, "the account of order %llu does not unseal",
                 (unsigned long long)ku->order);
    }
    return rc ? wrong_key(s, ku->id, dir, what, err) : PH_OK;
}

/* Does the index key make the index entry of the first code? */
static int prove_index(ph_store *s, MDB_txn *txn, const char *dir, ph_err *err)
{
    MDB_cursor *c;
    MDB_val k, v;
    uint64_t id = 0;
    if (mdb_cursor_open(txn, s->dbi[DB_CODES], &c))
        return ph_err_set(err, PH_EIO, "store: cannot open codes");
    if (mdb_cursor_get(c, &k, &v, MDB_FIRST) == 0)
        memcpy(&id, k.mv_data, 8);
    mdb_cursor_close(c);
    if (!id)
        return PH_OK; /* no code: nothing the index key could get wrong yet */
    char code[PH_CODE_MAX + 1], card[PH_CODE_MAX + 1], rule[PH_LOOKALIKES_MAX + 1];
    uint64_t batch = 0, found = 0;
    uint8_t hash[32];
    int rc = open_code(s, txn, id, code, card, &batch);
    if (rc == PH_OK && (rc = batch_rule(s, txn, batch, rule)) == PH_OK)
        rc = ph_code_hash(s->keys, code, strlen(code), rule, hash);
    ph_wipe(code, sizeof code);
    ph_wipe(card, sizeof card);
    if (rc) /* the sealing key was proven first: this is damage, not a wrong file */
        return ph_err_set(err, PH_EIO, "store %s: code %llu cannot be read back", dir,
                          (unsigned long long)id);
    k = (MDB_val){32, hash};
    if (mdb_get(txn, s->dbi[DB_CODE_HASH], &k, &v) == 0 && v.mv_size == 8)
        memcpy(&found, v.mv_data, 8);
    if (found != id) {
        char what[64];
        snprintf(what, sizeof what, "code %llu is not found by its hash", (unsigned long long)id);
        return wrong_key(s, PH_KEYCHECK_INDEX, dir, what, err);
    }
    return PH_OK;
}

/* ---- the checks ------------------------------------------------------------------ */

/* 1 recorded and equal, 0 not recorded; PH_ECRYPTO (message set) when it differs
 * or the key is missing from the file, PH_EIO. */
static int check_recorded(ph_store *s, MDB_txn *txn, uint16_t id, const char *dir, int *missing,
                          ph_err *err)
{
    char name[24];
    MDB_val k = {ph_store_keycheck_name(id, name), name}, v;
    int mrc = mdb_get(txn, s->dbi[DB_META], &k, &v);
    *missing = 0;
    if (mrc == MDB_NOTFOUND)
        return 0;
    if (mrc)
        return ph_err_set(err, PH_EIO, "store: read key check: %s", mdb_strerror(mrc));
    uint8_t want[PH_HASH_LEN];
    if (ph_keyring_check_value(s->keys, id, want) == PH_ENOTFOUND) {
        *missing = 1;
        return 1;
    }
    if (v.mv_size != PH_HASH_LEN || !ph_ct_equal(v.mv_data, want, PH_HASH_LEN))
        return wrong_key(s, id, dir, "its check value differs", err);
    return 1;
}

static int record_check(ph_store *s, MDB_txn *txn, uint16_t id, ph_err *err)
{
    char name[24];
    uint8_t val[PH_HASH_LEN];
    ph_store_keycheck_name(id, name);
    if (ph_keyring_check_value(s->keys, id, val) != PH_OK)
        return ph_err_set(err, PH_EIO, "store: no key %u to record", (unsigned)id);
    return meta_put(s, txn, name, val, sizeof val, err);
}

static int keychecks_done(ph_store *s, MDB_txn *txn)
{
    MDB_val k = {strlen(KEYCHECKS_DONE), KEYCHECKS_DONE}, v;
    return mdb_get(txn, s->dbi[DB_META], &k, &v) == 0;
}

/* Every recorded check verifies (a key the file lacks is collected in
 * *missing, refused later only if the data still uses it). */
static int verify_recorded(ph_store *s, MDB_txn *txn, const char *dir, key_uses *missing,
                           ph_err *err)
{
    MDB_cursor *c;
    MDB_val k = {9, "keycheck:"}, v;
    int rc = PH_OK;
    if (mdb_cursor_open(txn, s->dbi[DB_META], &c))
        return ph_err_set(err, PH_EIO, "store: cannot open meta");
    for (int op = MDB_SET_RANGE; rc == PH_OK && mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
        if (k.mv_size < 9 || memcmp(k.mv_data, "keycheck:", 9) != 0)
            break;
        char name[24];
        snprintf(name, sizeof name, "%.*s", (int)(k.mv_size - 9), (const char *)k.mv_data + 9);
        int index = strcmp(name, "index") == 0;
        unsigned long id = index ? PH_KEYCHECK_INDEX : strtoul(name, NULL, 10);
        int gone = 0;
        if ((!index && id == 0) || id > 65535)
            continue; /* not a name this store writes */
        if ((rc = check_recorded(s, txn, (uint16_t)id, dir, &gone, err)) < 0)
            break;
        rc = PH_OK;
        if (gone && !use_of(missing, (uint16_t)id))
            rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    mdb_cursor_close(c);
    return rc;
}

int ph_store_keys_open(ph_store *s, MDB_txn *txn, const char *dir, ph_err *err)
{
    if (!s->keys) {
        /* whatever this open writes may be sealed with keys nobody checked */
        MDB_val k = {strlen(KEYCHECKS_DONE), KEYCHECKS_DONE};
        int mrc = s->read_only ? 0 : mdb_del(txn, s->dbi[DB_META], &k, NULL);
        return mrc && mrc != MDB_NOTFOUND
                   ? ph_err_set(err, PH_EIO, "store: write meta: %s", mdb_strerror(mrc))
                   : PH_OK;
    }
    key_uses missing = {0}, used = {0};
    int rc = verify_recorded(s, txn, dir, &missing, err);
    int done = keychecks_done(s, txn);
    if (rc == PH_OK && (!done || missing.n))
        rc = scan_key_uses(s, txn, &used, err);
    for (size_t i = 0; rc == PH_OK && i < missing.n; i++)
        for (size_t j = 0; rc == PH_OK && j < used.n; j++)
            if (used.v[j].id == missing.v[i].id)
                rc = missing_key(s, missing.v[i].id, dir, err);
    /* key ids the data uses without a check: prove each on the data, then record */
    for (size_t i = 0; rc == PH_OK && !done && i < used.n; i++) {
        int gone;
        int r = check_recorded(s, txn, used.v[i].id, dir, &gone, err);
        if (r < 0)
            rc = r;
        else if (r == 0 && (rc = prove_key(s, txn, &used.v[i], dir, err)) == PH_OK && !s->read_only)
            rc = record_check(s, txn, used.v[i].id, err);
    }
    int gone, r;
    if (rc == PH_OK && (r = check_recorded(s, txn, PH_KEYCHECK_INDEX, dir, &gone, err)) <= 0) {
        rc = r < 0 ? r : prove_index(s, txn, dir, err);
        if (rc == PH_OK && !s->read_only)
            rc = record_check(s, txn, PH_KEYCHECK_INDEX, err);
    }
    /* the key new data will be sealed with */
    uint16_t active = ph_keyring_active_id(s->keys);
    if (rc == PH_OK && !s->read_only && (r = check_recorded(s, txn, active, dir, &gone, err)) <= 0)
        rc = r < 0 ? r : record_check(s, txn, active, err);
    if (rc == PH_OK && !s->read_only && !done)
        rc = meta_put(s, txn, KEYCHECKS_DONE, "complete", 8, err);
    free(missing.v);
    free(used.v);
    return rc;
}

int ph_store_keys_complete(ph_store *s, MDB_txn *txn, ph_err *err)
{
    if (!keychecks_done(s, txn))
        return PH_OK; /* never opened with keys (its blobs may be opaque test data), or
                         written without them since: the next keyed open derives them */
    key_uses used = {0};
    int rc = scan_key_uses(s, txn, &used, err);
    MDB_stat ms;
    mdb_stat(txn, s->dbi[DB_CODES], &ms);
    for (size_t i = 0; rc == PH_OK && i <= used.n; i++) {
        if (i == used.n && !ms.ms_entries)
            break;
        uint16_t id = i < used.n ? used.v[i].id : PH_KEYCHECK_INDEX;
        char name[24];
        MDB_val k = {ph_store_keycheck_name(id, name), name}, v;
        if (mdb_get(txn, s->dbi[DB_META], &k, &v) || v.mv_size != PH_HASH_LEN)
            rc = ph_err_set(err, PH_EIO,
                            id ? "data is sealed with key %u but the store has no check value for "
                                 "it (start perkhubd with its key file once to record it)"
                               : "the code index has no check value for its key%.0u (start "
                                 "perkhubd with its key file once to record it)",
                            (unsigned)id);
    }
    free(used.v);
    return rc;
}

/* ---- migration from version 2 ------------------------------------------------------ */

typedef struct rehashed {
    uint8_t hash[32];
    uint64_t id;
} rehashed;

static int cmp_rehashed(const void *a, const void *b)
{
    const rehashed *x = a, *y = b;
    int c = memcmp(x->hash, y->hash, 32);
    return c ? c : (x->id < y->id ? -1 : x->id > y->id);
}

/* Unseals every code (proving each key and, on the old index, the index key),
 * hashes its normalized form, and replaces the index. Batches of version 2
 * have no look-alike rule: their codes are normalized by case, spaces and
 * dashes only. */
int ph_store_migrate(ph_store *s, MDB_txn *txn, const char *dir, ph_err *err)
{
    MDB_stat ms;
    MDB_cursor *c;
    MDB_val k, v;
    mdb_stat(txn, s->dbi[DB_CODES], &ms);
    rehashed *list = malloc((ms.ms_entries + 1) * sizeof *list);
    size_t n = 0;
    int rc = PH_OK;
    if (!list || mdb_cursor_open(txn, s->dbi[DB_CODES], &c)) {
        free(list);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    for (int op = MDB_FIRST; rc == PH_OK && n < ms.ms_entries && mdb_cursor_get(c, &k, &v, op) == 0;
         op = MDB_NEXT) {
        uint64_t id;
        uint32_t len;
        const uint8_t *blob = code_blob(&v, &len);
        char code[PH_CODE_MAX + 1], card[PH_CODE_MAX + 1];
        memcpy(&id, k.mv_data, 8);
        uint16_t kid = blob ? ph_sealed_key_id(blob, len) : 0;
        char what[64];
        snprintf(what, sizeof what, "code %llu does not unseal", (unsigned long long)id);
        if (!kid)
            rc = ph_err_set(err, PH_EIO, "code %llu: malformed record", (unsigned long long)id);
        else if (!ph_keyring_has(s->keys, kid))
            rc = missing_key(s, kid, dir, err);
        else if (ph_code_unseal(s->keys, blob, len, code, card) != PH_OK)
            rc = wrong_key(s, kid, dir, what, err);
        else if (n == 0) {
            /* version 2 hashed the code as it was imported */
            uint8_t old[32];
            uint64_t found = 0;
            ph_crypto_index(s->keys, code, strlen(code), old);
            MDB_val hk = {32, old}, hv;
            if (mdb_get(txn, s->dbi[DB_CODE_HASH], &hk, &hv) == 0 && hv.mv_size == 8)
                memcpy(&found, hv.mv_data, 8);
            if (found != id) {
                snprintf(what, sizeof what, "code %llu is not found by its hash",
                         (unsigned long long)id);
                rc = wrong_key(s, PH_KEYCHECK_INDEX, dir, what, err);
            }
        }
        if (rc == PH_OK && ph_code_hash(s->keys, code, strlen(code), NULL, list[n].hash) != PH_OK)
            rc = ph_err_set(err, PH_EINVAL,
                            "store %s: code %llu is only dashes and spaces and cannot be indexed "
                            "normalized; void it with the previous perkhubd first",
                            dir, (unsigned long long)id);
        list[n++].id = id;
        ph_wipe(code, sizeof code);
        ph_wipe(card, sizeof card);
    }
    mdb_cursor_close(c);
    if (rc == PH_OK) {
        qsort(list, n, sizeof *list, cmp_rehashed);
        for (size_t i = 1; rc == PH_OK && i < n; i++)
            if (memcmp(list[i - 1].hash, list[i].hash, 32) == 0)
                rc = ph_err_set(err, PH_EDUP,
                                "store %s: codes %llu and %llu are the same code once normalized "
                                "(case, spaces, dashes); this perkhubd indexes them as one: void "
                                "one of them with the previous perkhubd, then start again",
                                dir, (unsigned long long)list[i - 1].id,
                                (unsigned long long)list[i].id);
    }
    int mrc = rc ? 0 : mdb_drop(txn, s->dbi[DB_CODE_HASH], 0);
    for (size_t i = 0; rc == PH_OK && mrc == 0 && i < n; i++) {
        k = (MDB_val){32, list[i].hash};
        v = (MDB_val){8, &list[i].id};
        mrc = mdb_put(txn, s->dbi[DB_CODE_HASH], &k, &v, MDB_APPEND);
    }
    ph_wipe(list, (ms.ms_entries + 1) * sizeof *list);
    free(list);
    if (rc == PH_OK && mrc)
        rc = ph_err_set(err, PH_EIO, "store: rebuild the code index: %s", mdb_strerror(mrc));
    uint32_t ver = PH_SCHEMA_VERSION;
    MDB_val mk = {strlen(KEYCHECKS_DONE), KEYCHECKS_DONE};
    if (rc == PH_OK &&
        ((mrc = mdb_del(txn, s->dbi[DB_META], &mk, NULL)) == 0 || mrc == MDB_NOTFOUND))
        rc = meta_put(s, txn, "schema", &ver, sizeof ver, err);
    else if (rc == PH_OK)
        rc = ph_err_set(err, PH_EIO, "store: write meta: %s", mdb_strerror(mrc));
    return rc;
}
