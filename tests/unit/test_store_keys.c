/*
 * The store and the keys (store.h, "Keys"; store_keys.c): key checks recorded
 * at creation and verified at every open, derived from the data for a store
 * that has none, the migration of a version 2 store (its code index rebuilt
 * from normalized codes), the writer refusing to issue a code it cannot
 * unseal, and the read-only open of `perkhubd --check-store`.
 *
 * Unlike test_store.c these tests seal real codes (crypto/code.h) with real
 * keyrings, because what is tested is what the keys open.
 */
#include "store_fixture.h"

#include "crypto/code.h"
#include "store/store_int.h"

TestSuite(store_keys, .init = fixture_setup, .fini = fixture_teardown);

static ph_keyring *ring(uint8_t index_byte, uint8_t key_byte)
{
    uint8_t ik[PH_KEY_LEN], k1[PH_KEY_LEN];
    memset(ik, index_byte, sizeof ik);
    memset(k1, key_byte, sizeof k1);
    ph_keyring *kr = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_keyring_from_raw(ik, 1, k1, &kr, &err), PH_OK, "%s", err.msg);
    return kr;
}

/* Opens g_dir with keys; returns the rc and leaves g_s open on success. */
static int open_keyed(const ph_keyring *kr, ph_err *err)
{
    ph_store_opts o = {.dir = g_dir, .keys = kr};
    ph_store_close(g_s);
    g_s = NULL;
    return ph_store_open(&o, &g_s, err);
}

static void products(void)
{
    const char *json[] = {P_IQ};
    ph_err err = {0};
    cr_assert_eq(put_products(json, 1, &err), PH_OK, "%s", err.msg);
}

/* Imports codes sealed with `seal_with`, hashed under `hash_with` — normalized
 * (as this version does) or, with raw set, hashed as imported (as version 2
 * did). */
static void import_until(const ph_keyring *seal_with, const ph_keyring *hash_with, int raw,
                         const char *const *codes, size_t n, int64_t expires_at)
{
    ph_import_code ic[8];
    uint8_t blobs[8][256];
    uint32_t by_hash[8];
    cr_assert(n <= 8);
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        uint8_t unused[32];
        cr_assert_eq(
            ph_code_seal(seal_with, codes[i], strlen(codes[i]), NULL, 0, blobs[i], &len, unused),
            PH_OK);
        ic[i] = (ph_import_code){.line = (uint32_t)i + 2,
                                 .expires_at = expires_at,
                                 .sealed_len = (uint32_t)len,
                                 .sealed = blobs[i]};
        if (raw)
            ph_crypto_index(hash_with, codes[i], strlen(codes[i]), ic[i].hash);
        else
            cr_assert_eq(ph_code_hash(hash_with, codes[i], strlen(codes[i]), NULL, ic[i].hash),
                         PH_OK);
        by_hash[i] = (uint32_t)i;
    }
    for (size_t i = 0; i < n; i++) /* by hash: a few codes, a plain sort */
        for (size_t j = i + 1; j < n; j++)
            if (memcmp(ic[by_hash[j]].hash, ic[by_hash[i]].hash, 32) < 0) {
                uint32_t t = by_hash[i];
                by_hash[i] = by_hash[j];
                by_hash[j] = t;
            }
    ph_cmd c = {.type = PH_CMD_IMPORT, .now = NOW};
    c.in.import.supplier = "acme";
    c.in.import.sku = IQ;
    c.in.import.unit_cost = 1980;
    c.in.import.codes = ic;
    c.in.import.ncodes = n;
    c.in.import.by_hash = by_hash;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
}

static void import(const ph_keyring *seal_with, const ph_keyring *hash_with, int raw,
                   const char *const *codes, size_t n)
{
    import_until(seal_with, hash_with, raw, codes, n, 0);
}

static int order(const char *coid, ph_cmd *c)
{
    memset(c, 0, sizeof *c);
    c->type = PH_CMD_ORDER;
    c->now = NOW + 1000;
    c->in.order.client = "mall";
    c->in.order.client_order_id = coid;
    c->in.order.sku = IQ;
    c->in.order.quantity = 1;
    fingerprint(IQ, 1, c->in.order.fingerprint);
    return ph_store_exec(g_s, c);
}

static uint64_t available(void)
{
    ph_store_stats st;
    ph_err err = {0};
    cr_assert_eq(ph_store_stats_get(g_s, &st, &err), PH_OK, "%s", err.msg);
    uint64_t n = st.nskus ? st.skus[0].by_state[PH_CODE_AVAILABLE] : 0;
    ph_store_stats_clear(&st);
    return n;
}

/* Finds a code as a lookup would (normalized, no look-alikes). */
static int find(const ph_keyring *kr, const char *typed, ph_code_info *info)
{
    uint8_t h[32];
    ph_err err = {0};
    cr_assert_eq(ph_code_hash(kr, typed, strlen(typed), NULL, h), PH_OK);
    return ph_store_code_find(g_s, h, info, &err);
}

static const char *const CODES[] = {"IQY-15D7-2D61-C76F", "iqy-0000-0002"};

Test(store_keys, a_wrong_key_or_index_key_is_refused_naming_the_key)
{
    ph_keyring *a = ring(1, 2), *other_key = ring(1, 3), *other_index = ring(9, 2);
    ph_err err = {0};
    cr_assert_eq(open_keyed(a, &err), PH_OK, "%s", err.msg);
    products();
    import(a, a, 0, CODES, 2);
    assert_check();

    cr_assert_eq(open_keyed(other_key, &err), PH_ECRYPTO, "another key 1 was accepted");
    cr_assert(strstr(err.msg, "key 1") && strstr(err.msg, "<raw keys>"), "%s", err.msg);
    cr_assert_null(g_s);
    cr_assert_eq(open_keyed(other_index, &err), PH_ECRYPTO, "another index key was accepted");
    cr_assert(strstr(err.msg, "index key"), "%s", err.msg);

    cr_assert_eq(open_keyed(a, &err), PH_OK, "%s", err.msg);
    ph_code_info info;
    cr_assert_eq(find(a, "iqy 15d7 2d61 c76f", &info), PH_OK);
    ph_code_info_clear(&info);
    assert_check();
    ph_keyring_free(a);
    ph_keyring_free(other_key);
    ph_keyring_free(other_index);
}

/* A key file without the key the data needs (rotated away too early). */
Test(store_keys, a_key_file_missing_a_used_key_is_refused)
{
    char keyfile[128];
    snprintf(keyfile, sizeof keyfile, "%s/two.key", g_base);
    FILE *f = fopen(keyfile, "w");
    cr_assert(f);
    fprintf(f, "index %s\nkey 2 %s\n",
            "0101010101010101010101010101010101010101010101010101010101010101",
            "0202020202020202020202020202020202020202020202020202020202020202");
    fclose(f);
    chmod(keyfile, 0600);
    ph_keyring *a = ring(1, 2), *only2 = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_keyring_load(keyfile, 0, &only2, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(open_keyed(a, &err), PH_OK, "%s", err.msg);
    products();
    import(a, a, 0, CODES, 1);
    cr_assert_eq(open_keyed(only2, &err), PH_ECRYPTO, "a key file without key 1 was accepted");
    cr_assert(strstr(err.msg, "no key 1") && strstr(err.msg, "two.key"), "%s", err.msg);
    ph_keyring_free(a);
    ph_keyring_free(only2);
}

/* Written without keys (a tool, a test): the first keyed open proves the keys
 * on the data before it records their checks. */
Test(store_keys, checks_are_derived_from_the_data_of_a_store_without_them)
{
    ph_keyring *a = ring(1, 2), *b = ring(1, 3);
    ph_err err = {0};
    g_s = open_at(g_dir, 0);
    products();
    import(a, a, 0, CODES, 2);
    cr_assert_eq(open_keyed(b, &err), PH_ECRYPTO,
                 "a wrong key was taken on a store without checks");
    cr_assert(strstr(err.msg, "key 1"), "%s", err.msg);
    cr_assert_eq(open_keyed(a, &err), PH_OK, "%s", err.msg);
    assert_check();
    /* recorded now: the wrong key is refused by its check */
    cr_assert_eq(open_keyed(b, &err), PH_ECRYPTO);
    cr_assert(strstr(err.msg, "check value"), "%s", err.msg);
    ph_keyring_free(a);
    ph_keyring_free(b);
}

Test(store_keys, an_order_never_issues_a_code_it_cannot_unseal)
{
    ph_keyring *a = ring(1, 2), *b = ring(1, 3);
    ph_err err = {0};
    cr_assert_eq(open_keyed(a, &err), PH_OK, "%s", err.msg);
    products();
    /* planted: sealed under another key with the same id, indexed correctly */
    const char *planted[] = {"PLANTED-1"};
    import(b, a, 0, planted, 1);
    import(a, a, 0, CODES, 1);
    uint64_t before = last_event();

    ph_cmd c;
    cr_assert_eq(order("o-1", &c), PH_ECRYPTO, "an unreadable code was issued");
    cr_assert(strstr(c.err.msg, "does not unseal") && strstr(c.err.msg, "stays available"), "%s",
              c.err.msg);
    cr_assert_null(strstr(c.err.msg, "PLANTED"), "%s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(available(), 2, "the code left the stock");
    cr_assert_eq(last_event(), before, "a failed order wrote events");
    ph_order *o = NULL;
    cr_assert_eq(ph_store_order_find(g_s, "mall", "o-1", 0, &o, &err), PH_ENOTFOUND);

    /* the keyed check names it too */
    ph_store_stats st;
    cr_assert_eq(ph_store_check(g_s, &st, &err), PH_EIO);
    cr_assert(strstr(err.msg, "code 1") && strstr(err.msg, "unseal"), "%s", err.msg);
    ph_keyring_free(a);
    ph_keyring_free(b);
}

/* Writes g_dir back to what version 2 looked like: schema 2, no key checks. */
static void make_version_2(void)
{
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi meta = raw_dbi(txn, "meta", 0);
    uint32_t ver = 2;
    MDB_val k = {6, "schema"}, v = {sizeof ver, &ver};
    cr_assert_eq(mdb_put(txn, meta, &k, &v, 0), 0);
    const char *gone[] = {"keychecks", "keycheck:index", "keycheck:1"};
    for (size_t i = 0; i < 3; i++) {
        k = (MDB_val){strlen(gone[i]), (void *)gone[i]};
        mdb_del(txn, meta, &k, NULL);
    }
    raw_commit(env, txn);
}

static uint32_t schema_of(void)
{
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi meta = raw_dbi(txn, "meta", 0);
    MDB_val k = {6, "schema"}, v;
    uint32_t ver = 0;
    cr_assert_eq(mdb_get(txn, meta, &k, &v), 0);
    memcpy(&ver, v.mv_data, sizeof ver);
    raw_commit(env, txn);
    return ver;
}

Test(store_keys, a_version_2_store_is_migrated_and_found_normalized)
{
    ph_keyring *a = ring(1, 2), *b = ring(1, 3);
    ph_err err = {0};
    g_s = open_at(g_dir, 0);
    products();
    import(a, a, 1, CODES, 2); /* indexed as version 2 did: the code as imported */
    make_version_2();

    ph_store_opts keyless = {.dir = g_dir};
    cr_assert_eq(ph_store_open(&keyless, &g_s, &err), PH_EVERSION, "migrated without keys");
    cr_assert(strstr(err.msg, "version 2"), "%s", err.msg);
    cr_assert_eq(open_keyed(b, &err), PH_ECRYPTO, "migrated with a wrong key");
    cr_assert(strstr(err.msg, "key 1"), "%s", err.msg);
    cr_assert_eq(schema_of(), 2, "a refused migration changed the store");

    cr_assert_eq(open_keyed(a, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_store_migrated_from(g_s), 2);
    ph_code_info info;
    cr_assert_eq(find(a, "iqy-15d7-2d61-c76f", &info), PH_OK, "not found in lower case");
    char code[PH_CODE_MAX + 1], card[PH_CODE_MAX + 1];
    cr_assert_eq(ph_code_unseal(a, info.code.sealed, info.code.sealed_len, code, card), PH_OK);
    cr_assert_str_eq(code, "IQY-15D7-2D61-C76F", "the shown code changed");
    ph_code_info_clear(&info);
    cr_assert_eq(find(a, "IQY00000002", &info), PH_OK, "not found without dashes");
    ph_code_info_clear(&info);
    assert_check();
    ph_store_close(g_s);
    g_s = NULL;
    cr_assert_eq(schema_of(), PH_SCHEMA_VERSION);
    cr_assert_eq(open_keyed(b, &err), PH_ECRYPTO, "the migration recorded no key check");
    cr_assert_eq(open_keyed(a, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_store_migrated_from(g_s), 0, "migrated twice");
    ph_keyring_free(a);
    ph_keyring_free(b);
}

/* Version 3 also added the expiry index: the same migration builds it from the
 * codes, so codes that expire are retired by the sweep and not counted as
 * issuable once past their expiry. */
Test(store_keys, a_version_2_store_gets_its_expiry_index_at_migration)
{
    ph_keyring *a = ring(1, 2);
    ph_err err = {0};
    g_s = open_at(g_dir, 0);
    products();
    import_until(a, a, 1, CODES, 2, NOW + 1000);
    make_version_2();
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi ex = raw_dbi(txn, "expiry", MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP);
    cr_assert_eq(mdb_drop(txn, ex, 0), 0); /* version 2 had no expiry index */
    raw_commit(env, txn);

    cr_assert_eq(open_keyed(a, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_store_migrated_from(g_s), 2);
    assert_check();
    cr_assert_eq(ph_store_expiry_due(g_s, NOW + 999), 0);
    cr_assert_eq(ph_store_expiry_due(g_s, NOW + 1000), 1, "the index was not rebuilt");
    char *json = NULL;
    uint64_t avail = 9;
    cr_assert_eq(ph_store_product_get_at(g_s, IQ, NOW + 1000, &json, &avail, &err), PH_OK);
    free(json);
    cr_assert_eq(avail, 0, "expired codes counted as issuable after the migration");
    ph_keyring_free(a);
}

Test(store_keys, a_migration_refuses_two_codes_equal_once_normalized)
{
    ph_keyring *a = ring(1, 2);
    ph_err err = {0};
    const char *twins[] = {"AB-12", "ab12"};
    g_s = open_at(g_dir, 0);
    products();
    import(a, a, 1, twins, 2);
    make_version_2();
    cr_assert_eq(open_keyed(a, &err), PH_EDUP);
    cr_assert(strstr(err.msg, "codes 1 and 2"), "%s", err.msg);
    cr_assert_eq(schema_of(), 2);
    ph_keyring_free(a);
}

Test(store_keys, check_store_opens_read_only_and_creates_nothing)
{
    char missing[128];
    snprintf(missing, sizeof missing, "%s/dtaa", g_base);
    ph_store_opts ro = {.dir = missing, .read_only = 1};
    ph_err err = {0};
    cr_assert_eq(ph_store_open(&ro, &g_s, &err), PH_ENOTFOUND);
    cr_assert(strstr(err.msg, "no store at") && strstr(err.msg, missing), "%s", err.msg);
    struct stat st;
    cr_assert_neq(stat(missing, &st), 0, "a read-only open created %s", missing);

    ph_keyring *a = ring(1, 2);
    cr_assert_eq(open_keyed(a, &err), PH_OK, "%s", err.msg);
    products();
    import(a, a, 0, CODES, 2);
    ph_store_close(g_s);
    g_s = NULL;
    ro.dir = g_dir;
    ro.keys = a;
    cr_assert_eq(ph_store_open(&ro, &g_s, &err), PH_OK, "%s", err.msg);
    assert_check();
    ph_cmd c;
    cr_assert_eq(order("ro-1", &c), PH_EINVAL, "a read-only store took a command");
    ph_cmd_clear(&c);
    ph_cmd l = {.type = PH_CMD_EXPIRE, .now = NOW};
    cr_assert_eq(ph_store_exec_list(g_s, &l), PH_EINVAL, "a read-only store took a list");
    cr_assert(strstr(l.err.msg, "read-only"), "%s", l.err.msg);
    ph_cmd_clear(&l);
    ph_keyring_free(a);
}

/* Invariants 15 and 16 of docs/store.md, as --check-store sees them. */
Test(store_keys, check_finds_a_missing_key_check_and_an_unnormalized_index_entry)
{
    ph_keyring *a = ring(1, 2);
    ph_err err = {0};
    cr_assert_eq(open_keyed(a, &err), PH_OK, "%s", err.msg);
    products();
    import(a, a, 0, CODES, 2);
    ph_store_close(g_s);
    g_s = NULL;

    /* the code index entry of code 1 made from the code as typed, not normalized */
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi hashes = raw_dbi(txn, "code_hash", 0);
    uint8_t norm[32], raw[32];
    uint64_t id = 1;
    cr_assert_eq(ph_code_hash(a, CODES[0], strlen(CODES[0]), NULL, norm), PH_OK);
    ph_crypto_index(a, CODES[0], strlen(CODES[0]), raw);
    MDB_val k = {32, norm}, v = {8, &id};
    cr_assert_eq(mdb_del(txn, hashes, &k, NULL), 0);
    k.mv_data = raw;
    cr_assert_eq(mdb_put(txn, hashes, &k, &v, 0), 0);
    raw_commit(env, txn);
    ph_store_opts ro = {.dir = g_dir, .read_only = 1};
    cr_assert_eq(ph_store_open(&ro, &g_s, &err), PH_OK, "%s", err.msg);
    assert_check(); /* without keys the entry cannot be recomputed */
    ph_store_close(g_s);
    g_s = NULL;
    ro.keys = a;
    cr_assert_eq(ph_store_open(&ro, &g_s, &err), PH_OK, "%s", err.msg);
    ph_store_stats st;
    cr_assert_eq(ph_store_check(g_s, &st, &err), PH_EIO, "an unnormalized entry passed");
    cr_assert(strstr(err.msg, "code 1") && strstr(err.msg, "normalized"), "%s", err.msg);
    ph_store_close(g_s);
    g_s = NULL;

    /* a key check lost while the store says its checks are complete */
    env = raw_open(&txn);
    MDB_dbi meta = raw_dbi(txn, "meta", 0);
    k = (MDB_val){10, "keycheck:1"};
    cr_assert_eq(mdb_del(txn, meta, &k, NULL), 0);
    raw_commit(env, txn);
    ro.keys = NULL;
    cr_assert_eq(ph_store_open(&ro, &g_s, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_store_check(g_s, &st, &err), PH_EIO, "a missing key check passed");
    cr_assert(strstr(err.msg, "key 1") && strstr(err.msg, "no check value"), "%s", err.msg);
    ph_keyring_free(a);
}

/* Rotation: a new key appended to the file is recorded at the next start and
 * then held to; the old key stays required while data is sealed with it. */
static ph_keyring *file_ring(const char *name, const char *key1, const char *key2)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", g_base, name);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, "index %s\n", "0101010101010101010101010101010101010101010101010101010101010101");
    if (key1)
        fprintf(f, "key 1 %s\n", key1);
    if (key2)
        fprintf(f, "key 2 %s\n", key2);
    fclose(f);
    chmod(path, 0600);
    ph_keyring *kr = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_keyring_load(path, 0, &kr, &err), PH_OK, "%s", err.msg);
    return kr;
}

#define K_ONE  "0202020202020202020202020202020202020202020202020202020202020202"
#define K_TWO  "0303030303030303030303030303030303030303030303030303030303030303"
#define K_TWO2 "0404040404040404040404040404040404040404040404040404040404040404"

Test(store_keys, a_rotated_key_is_recorded_and_then_held_to)
{
    ph_keyring *one = ring(1, 2), *both = file_ring("both.key", K_ONE, K_TWO),
               *other2 = file_ring("other2.key", K_ONE, K_TWO2),
               *only2 = file_ring("only2.key", NULL, K_TWO);
    ph_err err = {0};
    cr_assert_eq(open_keyed(one, &err), PH_OK, "%s", err.msg);
    products();
    import(one, one, 0, CODES, 1);
    cr_assert_eq(open_keyed(both, &err), PH_OK, "%s", err.msg);
    const char *later[] = {"LATER-1"};
    import(both, both, 0, later, 1); /* sealed with key 2 */
    assert_check();
    cr_assert_eq(open_keyed(other2, &err), PH_ECRYPTO, "another key 2 was accepted");
    cr_assert(strstr(err.msg, "key 2") && strstr(err.msg, "other2.key"), "%s", err.msg);
    cr_assert_eq(open_keyed(only2, &err), PH_ECRYPTO, "key 1 removed while code 1 needs it");
    cr_assert(strstr(err.msg, "no key 1") && strstr(err.msg, "only2.key"), "%s", err.msg);
    cr_assert_eq(open_keyed(both, &err), PH_OK, "%s", err.msg);
    ph_cmd c;
    cr_assert_eq(order("rot-1", &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(order("rot-2", &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    ph_keyring_free(one);
    ph_keyring_free(both);
    ph_keyring_free(other2);
    ph_keyring_free(only2);
}

/* The key ids come ascending as numbers, though `meta` sorts their check
 * values as text ("keycheck:10" before "keycheck:2"). */
Test(store_keys, key_ids_come_in_numeric_order)
{
    g_s = open_at(g_dir, 0);
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi meta = raw_dbi(txn, "meta", 0);
    static const char *const keys[] = {"keycheck:10", "keycheck:2", "keycheck:300"};
    for (size_t i = 0; i < 3; i++) {
        MDB_val k = {strlen(keys[i]), (void *)keys[i]},
                v = {32, (void *)"0123456789abcdef0123456789abcdef"};
        cr_assert_eq(mdb_put(txn, meta, &k, &v, 0), 0);
    }
    raw_commit(env, txn);
    ph_store_opts o = {.dir = g_dir, .read_only = 1};
    ph_err err = {0};
    cr_assert_eq(ph_store_open(&o, &g_s, &err), PH_OK, "%s", err.msg);
    uint16_t ids[8];
    cr_assert_eq(ph_store_key_ids(g_s, ids, 8), 3);
    cr_assert_eq(ids[0], 2);
    cr_assert_eq(ids[1], 10);
    cr_assert_eq(ids[2], 300);
    cr_assert_eq(ph_store_key_ids(g_s, ids, 0), 3, "counts without room");
}
