/*
 * lmdb_limit.c — the machine's limit for durable issuance: a raw C loop on LMDB
 * doing the writes one perkhub issuance does (core/store/store_apply.c, apply_order),
 * with no HTTP, no JSON parsing, no crypto, no queue and no nested transactions.
 * The writes are bench/lmdb_issue.h's li_issue, which bench/http_proto/proto.c's durable
 * mode runs behind HTTP.
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "lmdb_issue.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_) {                                                                                 \
            fprintf(stderr, "lmdb_limit: %s: %s (line %d)\n", #x, mdb_strerror(rc_), __LINE__);    \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

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
    li_store st;
    CHECK(li_open(&st, dir)); /* perkhubd's flags: MDB_NOTLS, durable commits */
    const char *sku = "bench.card";
    const char *client = "bench";

    /* Pre-fill: codes appended with their stock entries, like an import. */
    double t0 = now_s();
    CHECK(li_prefill(&st, sku, ncodes));
    double fill_s = now_s() - t0;

    /* The loop: BATCH issuances per durable commit, until the stock or the time runs out. */
    uint64_t issued = 0, commits = 0;
    double cpu0 = cpu_s();
    t0 = now_s();
    double end = t0 + seconds;
    int out_of_stock = 0;
    while (!out_of_stock && now_s() < end) {
        MDB_txn *txn;
        CHECK(mdb_txn_begin(st.env, NULL, 0, &txn));
        for (unsigned j = 0; j < batch; j++) {
            char ref[32];
            uint64_t id;
            int n = snprintf(ref, sizeof ref, "1-%012llu", (unsigned long long)st.order_id + 1);
            int mrc = li_issue(&st, txn, sku, client, ref, (size_t)n, full, &id);
            if (mrc == MDB_NOTFOUND) {
                out_of_stock = 1;
                break;
            }
            CHECK(mrc);
            issued++;
        }
        CHECK(mdb_txn_commit(txn));
        commits++;
    }
    double loop_s = now_s() - t0;
    double loop_cpu = cpu_s() - cpu0;
    MDB_envinfo info;
    mdb_env_info(st.env, &info);
    mdb_env_close(st.env);

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
