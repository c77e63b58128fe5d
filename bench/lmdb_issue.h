/*
 * lmdb_issue.h — the raw LMDB issuance the bench measures against: the layout and the writes
 * of one perkhub issuance (core/store/store_apply.c, apply_order), shared by bench/lmdb_limit.c
 * (the loop alone: the floor's LMDB half) and bench/http_proto/proto.c (the same writes behind
 * an HTTP route and a writer thread), so both do exactly the same work per order.
 * Bench code, header only (run.sh builds lmdb_limit.c with one gcc line); not part of perkhub.
 *
 * Per issuance (li_issue):
 *   - pop the first available code id of the SKU (avail: DUPSORT|DUPFIXED|INTEGERDUP,
 *     cursor MDB_SET_KEY + mdb_cursor_del, as pop_code does);
 *   - rewrite that code's record in codes (INTEGERKEY, ~100 bytes, MDB_RESERVE);
 *   - append the order record (~150 bytes) to orders with MDB_APPEND;
 *   - with full set, what index_order does: order_ref (client NUL client_order_id -> id,
 *     MDB_NOOVERWRITE) and client_orders (client -> dup order ids);
 *   - append the event (~150 bytes of JSON) to events with MDB_APPEND.
 *
 * Threads: an li_store is used by one writer at a time (LMDB's single write transaction);
 * li_ref_find and li_count_orders may run in read transactions on any thread (MDB_NOTLS).
 * Errors: every function returns 0 or an LMDB error code (mdb_strerror); li_issue returns
 * MDB_NOTFOUND when the SKU is out of stock (nothing written) and MDB_KEYEXIST when the
 * reference is taken (the transaction is then unusable: call li_ref_find first).
 */
#ifndef PH_BENCH_LMDB_ISSUE_H
#define PH_BENCH_LMDB_ISSUE_H

#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

enum { LI_CODE_REC = 100, LI_ORDER_REC = 150, LI_REF_MAX = 200 };

typedef struct li_store {
    MDB_env *env;
    MDB_dbi avail, codes, orders, events, order_ref, client_orders;
    uint64_t order_id, seq;    /* the last order id and event seq written (writer's) */
    uint8_t rec[LI_ORDER_REC]; /* scratch record (writer's) */
} li_store;

/* Creates DIR when missing and opens (creating) the store there with perkhubd's flags: MDB_NOTLS,
 * durable commits (fsync on each). On error the environment is closed. */
static inline int li_open(li_store *s, const char *dir)
{
    MDB_txn *txn;
    int rc;
    memset(s, 0, sizeof *s);
    memset(s->rec, 0xab, sizeof s->rec);
    mkdir(dir, 0700);
    if ((rc = mdb_env_create(&s->env)) != 0)
        return rc;
    if ((rc = mdb_env_set_maxdbs(s->env, 10)) != 0 ||
        (rc = mdb_env_set_mapsize(s->env, (size_t)4 << 30)) != 0 ||
        (rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0600)) != 0 ||
        (rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0) {
        mdb_env_close(s->env);
        s->env = NULL;
        return rc;
    }
    const unsigned dupint = MDB_CREATE | MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP;
    if ((rc = mdb_dbi_open(txn, "avail", dupint, &s->avail)) != 0 ||
        (rc = mdb_dbi_open(txn, "codes", MDB_CREATE | MDB_INTEGERKEY, &s->codes)) != 0 ||
        (rc = mdb_dbi_open(txn, "orders", MDB_CREATE | MDB_INTEGERKEY, &s->orders)) != 0 ||
        (rc = mdb_dbi_open(txn, "events", MDB_CREATE | MDB_INTEGERKEY, &s->events)) != 0 ||
        (rc = mdb_dbi_open(txn, "order_ref", MDB_CREATE, &s->order_ref)) != 0 ||
        (rc = mdb_dbi_open(txn, "client_orders", dupint, &s->client_orders)) != 0)
        mdb_txn_abort(txn);
    else
        rc = mdb_txn_commit(txn);
    if (rc) {
        mdb_env_close(s->env);
        s->env = NULL;
        return rc;
    }
    return 0;
}

/* Pre-fill: NCODES codes appended with their stock entries, like an import (ids 1..NCODES: the
 * store must be empty). */
static inline int li_prefill(li_store *s, const char *sku, uint64_t ncodes)
{
    for (uint64_t id = 1; id <= ncodes;) {
        MDB_txn *txn;
        int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
        if (rc)
            return rc;
        for (unsigned j = 0; j < 100000 && id <= ncodes; j++, id++) {
            MDB_val k = {8, &id}, v = {LI_CODE_REC, s->rec};
            s->rec[1] = 1; /* available */
            MDB_val sk = {strlen(sku), (void *)sku}, sv = {8, &id};
            if ((rc = mdb_put(txn, s->codes, &k, &v, MDB_APPEND)) != 0 ||
                (rc = mdb_put(txn, s->avail, &sk, &sv, MDB_APPENDDUP)) != 0) {
                mdb_txn_abort(txn);
                return rc;
            }
        }
        if ((rc = mdb_txn_commit(txn)) != 0)
            return rc;
    }
    return 0;
}

/* The order_ref key: client NUL reference. Returns its length (0 when it would not fit). */
static inline size_t li_ref_key(char out[LI_REF_MAX], const char *client, const char *ref,
                                size_t ref_len)
{
    size_t cl = strlen(client);
    if (cl + 1 + ref_len > LI_REF_MAX)
        return 0;
    memcpy(out, client, cl);
    out[cl] = '\0';
    memcpy(out + cl + 1, ref, ref_len);
    return cl + 1 + ref_len;
}

/* The order id stored under (client, ref) in *id; MDB_NOTFOUND when there is none. */
static inline int li_ref_find(li_store *s, MDB_txn *txn, const char *client, const char *ref,
                              size_t ref_len, uint64_t *id)
{
    char key[LI_REF_MAX];
    MDB_val k = {li_ref_key(key, client, ref, ref_len), key}, v;
    if (k.mv_size == 0)
        return MDB_BAD_VALSIZE;
    int rc = mdb_get(txn, s->order_ref, &k, &v);
    if (rc == 0 && v.mv_size == 8)
        memcpy(id, v.mv_data, 8);
    return rc;
}

/* One issuance of a code of SKU to (client, ref) in TXN; the new order's id in *id. */
static inline int li_issue(li_store *s, MDB_txn *txn, const char *sku, const char *client,
                           const char *ref, size_t ref_len, int full, uint64_t *id)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, s->avail, &cur);
    if (rc)
        return rc;
    MDB_val k = {strlen(sku), (void *)sku}, v;
    if ((rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY)) != 0) {
        mdb_cursor_close(cur);
        return rc; /* MDB_NOTFOUND: out of stock, nothing written */
    }
    uint64_t code_id;
    memcpy(&code_id, v.mv_data, 8);
    rc = mdb_cursor_del(cur, 0);
    mdb_cursor_close(cur);
    if (rc)
        return rc;

    uint64_t order_id = s->order_id + 1;
    /* the code: read, then rewrite in place with its new state and order */
    MDB_val ck = {8, &code_id}, cv;
    if ((rc = mdb_get(txn, s->codes, &ck, &cv)) != 0)
        return rc;
    memcpy(s->rec, cv.mv_data, LI_CODE_REC);
    s->rec[1] = 3; /* issued */
    memcpy(s->rec + 16, &order_id, 8);
    cv = (MDB_val){LI_CODE_REC, NULL};
    if ((rc = mdb_put(txn, s->codes, &ck, &cv, MDB_RESERVE)) != 0)
        return rc;
    memcpy(cv.mv_data, s->rec, LI_CODE_REC);

    /* the order */
    MDB_val ok = {8, &order_id}, ov = {LI_ORDER_REC, NULL};
    if ((rc = mdb_put(txn, s->orders, &ok, &ov, MDB_APPEND | MDB_RESERVE)) != 0)
        return rc;
    memset(ov.mv_data, 0x5a, LI_ORDER_REC);
    memcpy((uint8_t *)ov.mv_data + LI_ORDER_REC - 8, &code_id, 8);

    if (full) {
        char key[LI_REF_MAX];
        MDB_val rk = {li_ref_key(key, client, ref, ref_len), key}, rv = {8, &order_id};
        if (rk.mv_size == 0)
            return MDB_BAD_VALSIZE;
        if ((rc = mdb_put(txn, s->order_ref, &rk, &rv, MDB_NOOVERWRITE)) != 0)
            return rc;
        MDB_val cck = {strlen(client), (void *)client}, ccv = {8, &order_id};
        if ((rc = mdb_put(txn, s->client_orders, &cck, &ccv, 0)) != 0)
            return rc;
    }

    /* the event: ~150 bytes of JSON like order.succeeded */
    char ev[512];
    uint64_t seq = s->seq + 1;
    int n = snprintf(ev, sizeof ev,
                     "{\"seq\":%llu,\"at\":\"2026-11-24T21:00:00.000Z\",\"type\":"
                     "\"order.succeeded\",\"order_id\":%llu,\"client\":\"%s\","
                     "\"client_order_id\":\"%.*s\",\"sku\":\"%s\",\"quantity\":1,"
                     "\"cost_fen\":1980}",
                     (unsigned long long)seq, (unsigned long long)order_id, client, (int)ref_len,
                     ref, sku);
    if (n < 0 || (size_t)n >= sizeof ev)
        return MDB_BAD_VALSIZE;
    MDB_val ek = {8, &seq}, evv = {(size_t)n, ev};
    if ((rc = mdb_put(txn, s->events, &ek, &evv, MDB_APPEND)) != 0)
        return rc;
    s->order_id = order_id;
    s->seq = seq;
    *id = order_id;
    return 0;
}

/* The number of orders the store holds (committed), through a read transaction. */
static inline int li_count_orders(li_store *s, uint64_t *n)
{
    MDB_txn *txn;
    MDB_stat st;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return rc;
    rc = mdb_stat(txn, s->orders, &st);
    mdb_txn_abort(txn);
    if (rc == 0)
        *n = st.ms_entries;
    return rc;
}

#endif
