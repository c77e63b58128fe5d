/*
 * lmdb_limit.c — the machine's limit for durable issuance: a raw C loop on LMDB
 * doing the writes one perkhub issuance does (core/store/store_apply.c, apply_order),
 * with no HTTP, no JSON parsing, no crypto, no queue and no nested transactions.
 *
 * Per issuance:
 *   - pop the first available code id of the SKU (avail: DUPSORT|DUPFIXED|INTEGERDUP,
 *     cursor MDB_SET_KEY + mdb_cursor_del, as pop_code does);
 *   - rewrite that code's record in codes (INTEGERKEY, ~100 bytes, MDB_RESERVE);
 *   - append the order record (~150 bytes) to orders with MDB_APPEND;
 *   - append the event (~150 bytes of JSON) to events with MDB_APPEND;
 *   - with --full (the default) also what index_order does: order_ref
 *     (client NUL client_order_id -> id, MDB_NOOVERWRITE, increasing ids) and
 *     client_orders (client -> dup order ids). --minimal leaves those two out.
 * BATCH issuances (default 512) per write transaction, committed with the default
 * environment flags (fsync/fdatasync on commit: durable, as perkhubd's store).
 *
 * Usage: lmdb_limit DIR [--codes N] [--batch B] [--seconds S] [--minimal]
 * DIR must not exist or be empty (files are created there). Prints one JSON line, with
 * the process's user+system CPU over the loop alone (not the pre-fill) per issuance: the
 * raw loop's share of bench/run.sh's floor.
 */
#define _POSIX_C_SOURCE 200809L
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_) {                                                                                 \
            fprintf(stderr, "lmdb_limit: %s: %s (line %d)\n", #x, mdb_strerror(rc_), __LINE__);    \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

enum { CODE_REC = 100, ORDER_REC = 150 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* user + system CPU of this process so far, in seconds */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    uint64_t ncodes = 200000;
    unsigned batch = 512;
    double seconds = 10;
    int full = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--codes") && i + 1 < argc)
            ncodes = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--minimal"))
            full = 0;
        else if (!strcmp(argv[i], "--full"))
            full = 1;
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else {
            fprintf(stderr, "usage: lmdb_limit DIR [--codes N] [--batch B] [--seconds S] "
                            "[--minimal|--full]\n");
            return 2;
        }
    }
    if (!dir || !ncodes || !batch) {
        fprintf(stderr, "usage: lmdb_limit DIR [--codes N] [--batch B] [--seconds S]\n");
        return 2;
    }
    mkdir(dir, 0700);

    MDB_env *env;
    CHECK(mdb_env_create(&env));
    CHECK(mdb_env_set_maxdbs(env, 10));
    CHECK(mdb_env_set_mapsize(env, (size_t)4 << 30));
    CHECK(mdb_env_open(env, dir, MDB_NOTLS, 0600)); /* perkhubd's flags: durable commits */

    MDB_txn *txn;
    MDB_dbi avail, codes, orders, events, order_ref, client_orders;
    CHECK(mdb_txn_begin(env, NULL, 0, &txn));
    CHECK(mdb_dbi_open(txn, "avail", MDB_CREATE | MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP,
                       &avail));
    CHECK(mdb_dbi_open(txn, "codes", MDB_CREATE | MDB_INTEGERKEY, &codes));
    CHECK(mdb_dbi_open(txn, "orders", MDB_CREATE | MDB_INTEGERKEY, &orders));
    CHECK(mdb_dbi_open(txn, "events", MDB_CREATE | MDB_INTEGERKEY, &events));
    CHECK(mdb_dbi_open(txn, "order_ref", MDB_CREATE, &order_ref));
    CHECK(mdb_dbi_open(txn, "client_orders",
                       MDB_CREATE | MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP, &client_orders));
    CHECK(mdb_txn_commit(txn));

    const char *sku = "bench.card";
    const char *client = "bench";
    uint8_t rec[ORDER_REC];
    memset(rec, 0xab, sizeof rec);

    /* Pre-fill: codes appended with their stock entries, like an import. */
    double t0 = now_s();
    for (uint64_t id = 1; id <= ncodes;) {
        CHECK(mdb_txn_begin(env, NULL, 0, &txn));
        for (unsigned j = 0; j < 100000 && id <= ncodes; j++, id++) {
            MDB_val k = {8, &id}, v = {CODE_REC, rec};
            rec[1] = 1; /* available */
            CHECK(mdb_put(txn, codes, &k, &v, MDB_APPEND));
            MDB_val sk = {strlen(sku), (void *)sku}, sv = {8, &id};
            CHECK(mdb_put(txn, avail, &sk, &sv, MDB_APPENDDUP));
        }
        CHECK(mdb_txn_commit(txn));
    }
    double fill_s = now_s() - t0;

    /* The loop: BATCH issuances per durable commit, until the stock or the time runs out. */
    uint64_t issued = 0, commits = 0, order_id = 0, seq = 0;
    MDB_stat before;
    mdb_env_stat(env, &before);
    double cpu0 = cpu_s();
    t0 = now_s();
    double end = t0 + seconds;
    int out_of_stock = 0;
    while (!out_of_stock && now_s() < end) {
        CHECK(mdb_txn_begin(env, NULL, 0, &txn));
        MDB_cursor *cur;
        for (unsigned j = 0; j < batch; j++) {
            CHECK(mdb_cursor_open(txn, avail, &cur));
            MDB_val k = {strlen(sku), (void *)sku}, v;
            int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
            if (mrc == MDB_NOTFOUND) {
                mdb_cursor_close(cur);
                out_of_stock = 1;
                break;
            }
            CHECK(mrc);
            uint64_t code_id;
            memcpy(&code_id, v.mv_data, 8);
            CHECK(mdb_cursor_del(cur, 0));
            mdb_cursor_close(cur);

            order_id++;
            /* the code: read, then rewrite in place with its new state and order */
            MDB_val ck = {8, &code_id}, cv;
            CHECK(mdb_get(txn, codes, &ck, &cv));
            memcpy(rec, cv.mv_data, CODE_REC);
            rec[1] = 3; /* issued */
            memcpy(rec + 16, &order_id, 8);
            cv = (MDB_val){CODE_REC, NULL};
            CHECK(mdb_put(txn, codes, &ck, &cv, MDB_RESERVE));
            memcpy(cv.mv_data, rec, CODE_REC);

            /* the order */
            MDB_val ok = {8, &order_id}, ov = {ORDER_REC, NULL};
            CHECK(mdb_put(txn, orders, &ok, &ov, MDB_APPEND | MDB_RESERVE));
            memset(ov.mv_data, 0x5a, ORDER_REC);
            memcpy((uint8_t *)ov.mv_data + ORDER_REC - 8, &code_id, 8);

            if (full) {
                char ref[64];
                int n = snprintf(ref, sizeof ref, "%s%c1-%012llu", client, 0,
                                 (unsigned long long)order_id);
                MDB_val rk = {(size_t)n, ref}, rv = {8, &order_id};
                CHECK(mdb_put(txn, order_ref, &rk, &rv, MDB_NOOVERWRITE));
                MDB_val cck = {strlen(client), (void *)client}, ccv = {8, &order_id};
                CHECK(mdb_put(txn, client_orders, &cck, &ccv, 0));
            }

            /* the event: ~150 bytes of JSON like order.succeeded */
            char ev[256];
            seq++;
            int n = snprintf(ev, sizeof ev,
                             "{\"seq\":%llu,\"at\":\"2026-11-24T21:00:00.000Z\",\"type\":"
                             "\"order.succeeded\",\"order_id\":%llu,\"client\":\"%s\","
                             "\"client_order_id\":\"1-%012llu\",\"sku\":\"%s\",\"quantity\":1,"
                             "\"cost_fen\":1980}",
                             (unsigned long long)seq, (unsigned long long)order_id, client,
                             (unsigned long long)order_id, sku);
            MDB_val ek = {8, &seq}, evv = {(size_t)n, ev};
            CHECK(mdb_put(txn, events, &ek, &evv, MDB_APPEND));
            issued++;
        }
        CHECK(mdb_txn_commit(txn));
        commits++;
    }
    double loop_s = now_s() - t0;
    double loop_cpu = cpu_s() - cpu0;
    MDB_envinfo info;
    mdb_env_info(env, &info);
    mdb_env_close(env);

    printf("{\"issuances\":%llu,\"seconds\":%.3f,\"issuances_per_s\":%.0f,\"commits\":%llu,"
           "\"commits_per_s\":%.1f,\"batch\":%u,\"codes\":%llu,\"fill_seconds\":%.3f,"
           "\"mode\":\"%s\",\"out_of_stock\":%s,\"last_pgno\":%zu,\"cpu_seconds\":%.3f,"
           "\"cpu_us_per_issuance\":%.2f}\n",
           (unsigned long long)issued, loop_s, issued / loop_s, (unsigned long long)commits,
           commits / loop_s, batch, (unsigned long long)ncodes, fill_s, full ? "full" : "minimal",
           out_of_stock ? "true" : "false", info.me_last_pgno, loop_cpu,
           issued ? loop_cpu * 1e6 / (double)issued : 0.0);
    return 0;
}
