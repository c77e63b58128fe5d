/*
 * store_fixture.h — what the store's unit tests share (test_store.c,
 * test_store_supply.c): a fresh LMDB environment under /tmp for every test, the
 * store opened on it, the checker, the test catalog, the test codes' keyed
 * hashes and raw LMDB access for the corruption tests.
 *
 * Every unit test is its own executable built from one file, so this header
 * holds the definitions (static inline: a file need not use them all) and is
 * included once per test. Every helper fails the test (Criterion assertion)
 * instead of returning an error.
 */
#ifndef PH_STORE_FIXTURE_H
#define PH_STORE_FIXTURE_H

#include <criterion/criterion.h>

#include <ftw.h>
#include <semaphore.h>
#include <jansson.h>
#include <lmdb.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store.h"

#define NOW 1700000000000LL /* 2023-11-14T22:13:20.000Z */

/* The test catalog: card-code SKUs, a recharge SKU and a delisted one. */
#define IQ    "iqiyi.gold.1m"
#define TOPUP "phone.topup.30"
#define OLD   "old.card"

static const char *const P_IQ =
    "{\"sku\":\"" IQ "\",\"name\":\"iQiyi Gold, 1 month\",\"brand\":\"iqiyi\","
    "\"delivery\":\"card_code\",\"face_value\":\"30.00\",\"listed\":true}";
static const char *const P_TOPUP =
    "{\"sku\":\"" TOPUP "\",\"name\":\"Phone top-up 30\",\"brand\":\"carrier\","
    "\"delivery\":\"recharge\",\"face_value\":\"30.00\",\"listed\":true}";
static const char *const P_OLD =
    "{\"sku\":\"" OLD "\",\"name\":\"Discontinued card\",\"brand\":\"old\","
    "\"delivery\":\"card_code\",\"face_value\":\"10.00\",\"listed\":false}";

/* ---- one temporary directory per test ------------------------------------------ */

static char g_base[64]; /* mkdtemp directory, removed afterwards */
static char g_dir[96];  /* the LMDB environment: g_base/db (created by the store) */
static ph_store *g_s;   /* the store under test; closed by the teardown */

/* Suite .init: creates g_base, names g_dir; the test opens the store. */
static inline void fixture_setup(void)
{
    snprintf(g_base, sizeof g_base, "/tmp/ph-store-test-XXXXXX");
    cr_assert_not_null(mkdtemp(g_base), "mkdtemp");
    snprintf(g_dir, sizeof g_dir, "%s/db", g_base);
    g_s = NULL;
}

static inline int fixture_rm_entry(const char *path, const struct stat *sb, int flag,
                                   struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Suite .fini: closes g_s (if open) and removes g_base with all in it. */
static inline void fixture_teardown(void)
{
    ph_store_close(g_s);
    g_s = NULL;
    nftw(g_base, fixture_rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Opens a store on dir (map_size 0: the default); the caller closes it. */
static inline ph_store *open_at(const char *dir, uint64_t map_size)
{
    ph_store_opts o = {.dir = dir, .map_size = map_size};
    ph_store *s = NULL;
    ph_err err = {0};
    int rc = ph_store_open(&o, &s, &err);
    cr_assert_eq(rc, PH_OK, "open %s: %s", dir, err.msg);
    cr_assert_not_null(s);
    return s;
}

/* Closes g_s and opens it again on g_dir: what a restart sees. */
static inline void reopen(void)
{
    ph_store_close(g_s);
    g_s = open_at(g_dir, 0);
}

/* ph_store_check on g_s passes, and the stats the writer's code counts give
 * (ph_store_stats_at at 0: no code counted due) are the scan's, SKU for SKU
 * in the same order (the check's invariant 38, seen through the public read). */
static inline void assert_check(void)
{
    ph_err err = {0};
    ph_store_stats st, kept;
    int rc = ph_store_check(g_s, &st, &err);
    cr_assert_eq(rc, PH_OK, "ph_store_check: %s", err.msg);
    cr_assert_eq(ph_store_stats_at(g_s, 0, &kept, &err), PH_OK, "stats: %s", err.msg);
    cr_assert_eq(kept.nskus, st.nskus, "stats list %zu skus, the scan %zu", kept.nskus, st.nskus);
    cr_assert_eq(kept.codes, st.codes);
    cr_assert_eq(kept.orders, st.orders);
    cr_assert_eq(kept.last_event, st.last_event);
    for (size_t i = 0; i < st.nskus; i++) {
        cr_assert_str_eq(kept.skus[i].sku, st.skus[i].sku, "sku %zu", i);
        cr_assert_eq(kept.skus[i].imported, st.skus[i].imported, "%s imported", st.skus[i].sku);
        for (int state = 0; state < 7; state++)
            cr_assert_eq(kept.skus[i].by_state[state], st.skus[i].by_state[state],
                         "%s: %llu %s kept, the scan counts %llu", st.skus[i].sku,
                         (unsigned long long)kept.skus[i].by_state[state],
                         ph_code_state_name(state), (unsigned long long)st.skus[i].by_state[state]);
    }
    ph_store_stats_clear(&kept);
    ph_store_stats_clear(&st);
}

/* sku's codes as GET /v1/stats counts them now (at 0: none counted due) are
 * these, in PH_CODE_* order (available, reserved, issued, redeemed, voided,
 * expired) with imported their sum; then assert_check (the scan agrees). */
static inline void assert_counts(const char *sku, uint64_t available, uint64_t reserved,
                                 uint64_t issued, uint64_t redeemed, uint64_t voided,
                                 uint64_t expired)
{
    const uint64_t want[7] = {0, available, reserved, issued, redeemed, voided, expired};
    ph_store_stats st;
    ph_err err = {0};
    cr_assert_eq(ph_store_stats_at(g_s, 0, &st, &err), PH_OK, "stats: %s", err.msg);
    size_t i = 0;
    while (i < st.nskus && strcmp(st.skus[i].sku, sku))
        i++;
    cr_assert_lt(i, st.nskus, "stats have no sku %s", sku);
    uint64_t sum = 0;
    for (int state = 1; state < 7; state++) {
        cr_assert_eq(st.skus[i].by_state[state], want[state], "%s: %llu %s, not %llu", sku,
                     (unsigned long long)st.skus[i].by_state[state], ph_code_state_name(state),
                     (unsigned long long)want[state]);
        sum += want[state];
    }
    cr_assert_eq(st.skus[i].imported, sum, "%s: imported %llu, not %llu", sku,
                 (unsigned long long)st.skus[i].imported, (unsigned long long)sum);
    ph_store_stats_clear(&st);
    assert_check();
}

/* PUT_PRODUCTS of json[0..n) on g_s at NOW: its rc, and its error in *err
 * (err may be NULL). */
static inline int put_products(const char *const *json, size_t n, ph_err *err)
{
    ph_cmd c = {.type = PH_CMD_PUT_PRODUCTS, .now = NOW};
    c.in.products.json = json;
    c.in.products.n = n;
    int rc = ph_store_exec(g_s, &c);
    if (err)
        *err = c.err;
    ph_cmd_clear(&c);
    return rc;
}

/* ---- the test codes and requests --------------------------------------------------- */

/* Test code n is "CODE-<n>"; its keyed hash here is SHA-256 of that text. */
static inline void code_hash(unsigned n, uint8_t out[32])
{
    char buf[32];
    int len = snprintf(buf, sizeof buf, "CODE-%u", n);
    SHA256((const unsigned char *)buf, (size_t)len, out);
}

/* A request's fingerprint: SHA-256 of "<sku>|<qty>". */
static inline void fingerprint(const char *sku, uint32_t qty, uint8_t out[32])
{
    char buf[128];
    int len = snprintf(buf, sizeof buf, "%s|%u", sku, qty);
    SHA256((const unsigned char *)buf, (size_t)len, out);
}

/* ---- events ------------------------------------------------------------------------ */

/* The sequence number of the newest event in g_s. */
static inline uint64_t last_event(void)
{
    ph_store_stats st;
    ph_err err = {0};
    cr_assert_eq(ph_store_stats_get(g_s, &st, &err), PH_OK, "%s", err.msg);
    uint64_t n = st.last_event;
    ph_store_stats_clear(&st);
    return n;
}

/* Every event with seq > after, parsed, as a JSON array (caller json_decref's).
 * Asserts that none holds a code ("CODE-"), a sealed blob ("sealed-") or any
 * of `also` (NULL-terminated; may be NULL), and that each is JSON. */
static inline json_t *events_after_without(uint64_t after, const char *const *also)
{
    char **list = NULL;
    size_t n = 0;
    ph_err err = {0};
    cr_assert_eq(ph_store_event_list(g_s, after, 1000000, &list, &n, &err), PH_OK, "%s", err.msg);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        cr_assert_null(strstr(list[i], "CODE-"), "event leaks a code: %s", list[i]);
        cr_assert_null(strstr(list[i], "sealed-"), "event leaks a sealed blob: %s", list[i]);
        for (size_t k = 0; also && also[k]; k++)
            cr_assert_null(strstr(list[i], also[k]), "event holds '%s': %s", also[k], list[i]);
        json_t *ev = json_loads(list[i], 0, NULL);
        cr_assert_not_null(ev, "event is not JSON: %s", list[i]);
        json_array_append_new(arr, ev);
    }
    ph_store_event_list_free(list, n);
    return arr;
}

/* Field key of a parsed event (borrowed); asserts it is there with that type. */
static inline json_int_t ev_int(json_t *ev, const char *key)
{
    json_t *v = json_object_get(ev, key);
    cr_assert(json_is_integer(v), "event has no integer %s", key);
    return json_integer_value(v);
}

static inline const char *ev_str(json_t *ev, const char *key)
{
    const char *s = json_string_value(json_object_get(ev, key));
    cr_assert_not_null(s, "event has no string %s", key);
    return s;
}

/* ---- raw LMDB, for writing what the store never would -------------------------- */

/* Opens g_dir's environment (close g_s first) and begins a write transaction
 * in *txn; raw_commit commits it and closes the environment. */
static inline MDB_env *raw_open(MDB_txn **txn)
{
    MDB_env *env;
    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 32);
    int mrc = mdb_env_open(env, g_dir, 0, 0600);
    cr_assert_eq(mrc, 0, "raw open: %s", mdb_strerror(mrc));
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, txn), 0);
    return env;
}

static inline MDB_dbi raw_dbi(MDB_txn *txn, const char *name, unsigned flags)
{
    MDB_dbi dbi;
    int mrc = mdb_dbi_open(txn, name, flags, &dbi);
    cr_assert_eq(mrc, 0, "raw dbi %s: %s", name, mdb_strerror(mrc));
    return dbi;
}

static inline void raw_commit(MDB_env *env, MDB_txn *txn)
{
    int mrc = mdb_txn_commit(txn);
    cr_assert_eq(mrc, 0, "raw commit: %s", mdb_strerror(mrc));
    mdb_env_close(env);
}

/* A private copy (caller frees, or raw_put_free) of the record under the
 * integer key id in dbi; its size into *len. Asserts that it exists. */
static inline uint8_t *raw_copy(MDB_txn *txn, MDB_dbi dbi, uint64_t id, size_t *len)
{
    MDB_val k = {8, &id}, v;
    cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0, "no record %llu", (unsigned long long)id);
    uint8_t *rec = malloc(v.mv_size);
    memcpy(rec, v.mv_data, v.mv_size);
    *len = v.mv_size;
    return rec;
}

/* Stores rec[0..len) under the integer key id in dbi, then frees rec. */
static inline void raw_put_free(MDB_txn *txn, MDB_dbi dbi, uint64_t id, uint8_t *rec, size_t len)
{
    MDB_val k = {8, &id}, v = {len, rec};
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    free(rec);
}

/* ---- a held writer: commands queue behind one whose done blocks on a gate, so
 * the next ones land in one batch (the "skip the nested transaction" tests). */

typedef struct held_cmd {
    ph_cmd c; /* first: done gets the command back as the holder */
    sem_t *gate;
    sem_t done;
} held_cmd;

static inline void held_done(ph_cmd *c)
{
    held_cmd *h = (held_cmd *)c;
    if (h->gate)
        sem_wait(h->gate); /* holds the writer: the next commands queue into one batch */
    sem_post(&h->done);
}

/* Submits h->c (filled by the caller); with a gate, the writer stops in its done. */
static inline void submit_held(held_cmd *h, sem_t *gate)
{
    h->c.done = held_done;
    h->gate = gate;
    sem_init(&h->done, 0, 0);
    cr_assert_eq(ph_store_submit(g_s, &h->c), PH_OK);
}

#endif
