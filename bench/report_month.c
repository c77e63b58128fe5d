/*
 * report_month.c — issue 11 item 7: a month's report over N orders (default
 * 10 million) answers in under 100 ms.
 *
 * Builds a store the fast way — the store library itself (build/libphcore.a),
 * commands submitted straight to its writer, no HTTP — with N recharge orders
 * spread evenly over 30 business days, S suppliers, C clients and K SKUs
 * (each order: SUPPLY_CREATE, then one ATTEMPT: 90% succeed with the
 * supplier's charge, 7% fail, 3% stay unknown), so every order goes through
 * the real booking function (ledger entries, summaries, daily aggregates,
 * written with the orders). Then asks ph_store_report for the whole month,
 * grouped by day, supplier, client and SKU, ROUNDS times each, and prints the
 * build time, the writer's CPU per order, and the slowest answer of each
 * grouping, with PASS/MISS against LIMIT_MS. Checks that the month's totals
 * equal what it submitted (exit 1 otherwise: a correctness failure).
 *
 * Usage: report_month DIR [--orders N] [--suppliers S] [--clients C] [--skus K]
 *                         [--rounds R] [--limit-ms MS]
 * DIR must not exist (it is created). Prints human lines, then one JSON line.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "config/config.h"
#include "store/store.h"

#define DAY_MS  86400000LL
#define T0      1764518400000LL /* 2025-11-30T16:00:00Z: 2025-12-01 00:00 at +08:00 */
#define CHUNK   4096            /* orders per submitted list */
#define PRICE   5000            /* fen */
#define COST    4900            /* fen */
#define ACCOUNT "opaque-sealed-account"

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what, const ph_err *err)
{
    fprintf(stderr, "report_month: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

typedef struct names {
    char (*v)[PH_SKU_MAX + 1];
    unsigned n;
} names;

static names make_names(const char *prefix, unsigned n)
{
    names x = {calloc(n, sizeof *x.v), n};
    for (unsigned i = 0; i < n; i++)
        snprintf(x.v[i], sizeof x.v[i], "%s%03u", prefix, i);
    return x;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    uint64_t norders = 10000000;
    unsigned nsup = 4, ncli = 8, nsku = 40, rounds = 5;
    double limit_ms = 100;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--orders") && i + 1 < argc)
            norders = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--suppliers") && i + 1 < argc)
            nsup = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--clients") && i + 1 < argc)
            ncli = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--skus") && i + 1 < argc)
            nsku = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--limit-ms") && i + 1 < argc)
            limit_ms = strtod(argv[++i], NULL);
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else {
            fprintf(stderr, "usage: report_month DIR [--orders N] [--suppliers S] [--clients C] "
                            "[--skus K] [--rounds R] [--limit-ms MS]\n");
            return 2;
        }
    }
    if (!dir || !norders || !nsup || !ncli || !nsku || !rounds)
        return fprintf(stderr, "report_month: DIR and positive counts needed\n"), 2;

    names sup = make_names("sup", nsup), cli = make_names("mall", ncli),
          sku = make_names("bench.topup.", nsku);
    ph_store *s;
    ph_err err = {0};
    ph_store_opts o = {
        .dir = dir, .map_size = 1ull << 34, .report_utc_offset_min = 480, .report_offset_given = 1};
    if (ph_store_open(&o, &s, &err))
        die("open", &err);

    /* the catalog: every SKU a priced recharge product */
    char **pj = calloc(nsku, sizeof *pj);
    for (unsigned i = 0; i < nsku; i++)
        if (asprintf(&pj[i],
                     "{\"sku\":\"%s\",\"delivery\":\"recharge\",\"listed\":true,\"price_fen\":%d}",
                     sku.v[i], PRICE) < 0)
            die("out of memory", NULL);
    ph_cmd pc = {.type = PH_CMD_PUT_PRODUCTS, .now = T0};
    pc.in.products.json = (const char *const *)pj;
    pc.in.products.n = nsku;
    if (ph_store_exec(s, &pc))
        die("put products", &pc.err);
    ph_cmd_clear(&pc);

    ph_cmd *cmds = calloc(CHUNK, sizeof *cmds);
    char(*coid)[32] = calloc(CHUNK, sizeof *coid);
    uint64_t *ids = calloc(CHUNK, sizeof *ids);
    uint64_t succeeded = 0, failed = 0, unknown = 0;
    int64_t revenue = 0, cost = 0, span = 30 * DAY_MS;
    double t_build = mono_s(), c_build = cpu_s();
    for (uint64_t base = 0; base < norders; base += CHUNK) {
        unsigned n = (unsigned)(norders - base < CHUNK ? norders - base : CHUNK);
        for (unsigned i = 0; i < n; i++) {
            uint64_t k = base + i;
            ph_cmd *c = &cmds[i];
            memset(c, 0, sizeof *c);
            c->type = PH_CMD_SUPPLY_CREATE;
            c->now = T0 + (int64_t)(k * (uint64_t)span / norders);
            snprintf(coid[i], sizeof coid[i], "b-%llu", (unsigned long long)k);
            c->in.supply.client = cli.v[k % ncli];
            c->in.supply.client_order_id = coid[i];
            c->in.supply.sku = sku.v[(k / ncli) % nsku];
            c->in.supply.quantity = 1;
            memcpy(c->in.supply.fingerprint, &k, sizeof k);
            c->in.supply.delivery = PH_DELIVERY_RECHARGE;
            c->in.supply.account_sealed = (const uint8_t *)ACCOUNT;
            c->in.supply.account_sealed_len = (uint32_t)strlen(ACCOUNT);
            c->in.supply.account_masked = "138****0000";
            c->in.supply.first = (ph_attempt_target){sup.v[(k / 7) % nsup], "P-1", COST};
            c->next = i + 1 < n ? &cmds[i + 1] : NULL;
        }
        if (ph_store_exec_list(s, cmds))
            die("create", &cmds[0].err);
        for (unsigned i = 0; i < n; i++) {
            if (cmds[i].rc)
                die("create", &cmds[i].err);
            ids[i] = cmds[i].order->id;
            ph_cmd_clear(&cmds[i]);
        }
        for (unsigned i = 0; i < n; i++) {
            uint64_t k = base + i;
            ph_cmd *c = &cmds[i];
            int64_t now = T0 + (int64_t)(k * (uint64_t)span / norders) + 1000;
            unsigned roll = (unsigned)(k % 100);
            memset(c, 0, sizeof *c);
            c->type = PH_CMD_ATTEMPT;
            c->now = now;
            c->in.attempt.order_id = ids[i];
            c->in.attempt.no = 1;
            c->in.attempt.step = -1;
            c->in.attempt.charged = -1;
            c->in.attempt.next_check_at = -1;
            if (roll < 90) {
                c->in.attempt.state = PH_ATTEMPT_SUCCEEDED;
                c->in.attempt.charged = COST - (int64_t)(k % 3); /* the supplier's own figure */
                succeeded++;
                revenue += PRICE;
                cost += c->in.attempt.charged;
            } else if (roll < 97) {
                c->in.attempt.state = PH_ATTEMPT_FAILED;
                c->in.attempt.reason = "out_of_stock";
                failed++;
            } else {
                c->in.attempt.state = PH_ATTEMPT_UNKNOWN;
                c->in.attempt.reason = "timeout";
                unknown++;
            }
            c->next = i + 1 < n ? &cmds[i + 1] : NULL;
        }
        if (ph_store_exec_list(s, cmds))
            die("attempt", &cmds[0].err);
        for (unsigned i = 0; i < n; i++) {
            if (cmds[i].rc)
                die("attempt", &cmds[i].err);
            ph_cmd_clear(&cmds[i]);
        }
        if ((base / CHUNK) % 244 == 243)
            fprintf(stderr, "report_month: %llu orders stored (%.0f s)\n",
                    (unsigned long long)(base + n), mono_s() - t_build);
    }
    double build_s = mono_s() - t_build, build_cpu = cpu_s() - c_build;

    int32_t from = ph_report_day_parse("2025-12-01"), to = ph_report_day_parse("2025-12-30");
    static const char *const by_name[] = {NULL, "day", "supplier", "client", "sku"};
    double worst[5] = {0};
    int ok = 1;
    for (unsigned r = 0; r < rounds; r++) {
        for (int by = PH_REPORT_BY_DAY; by <= PH_REPORT_BY_SKU; by++) {
            ph_report_row *rows;
            size_t n;
            double t = mono_s();
            if (ph_store_report(s, from, to, by, &rows, &n, &err))
                die("report", &err);
            double ms = (mono_s() - t) * 1000;
            if (ms > worst[by])
                worst[by] = ms;
            int64_t rev = 0, co = 0;
            uint64_t su = 0, fa = 0, un = 0;
            for (size_t i = 0; i < n; i++) {
                rev += rows[i].revenue;
                co += rows[i].cost;
                su += rows[i].succeeded;
                fa += rows[i].failed;
                un += rows[i].unknown;
            }
            if (rev != revenue || co != cost || su != succeeded || fa != failed || un != unknown) {
                fprintf(stderr,
                        "report_month: FAIL: by %s: revenue %lld cost %lld %llu/%llu/%llu, "
                        "submitted %lld %lld %llu/%llu/%llu\n",
                        by_name[by], (long long)rev, (long long)co, (unsigned long long)su,
                        (unsigned long long)fa, (unsigned long long)un, (long long)revenue,
                        (long long)cost, (unsigned long long)succeeded, (unsigned long long)failed,
                        (unsigned long long)unknown);
                ok = 0;
            }
            if (r == 0)
                printf("report_month: by %-8s %5zu rows\n", by_name[by], n);
            free(rows);
        }
    }
    double worst_all = 0;
    for (int by = 1; by <= 4; by++)
        worst_all = worst[by] > worst_all ? worst[by] : worst_all;
    printf("report_month: %llu orders over 30 days, %u suppliers x %u clients x %u skus\n",
           (unsigned long long)norders, nsup, ncli, nsku);
    printf("report_month: build %.1f s (%.0f orders/s, 2 commands each), CPU %.1f us per order "
           "(this process: writer and submitter)\n",
           build_s, norders / build_s, build_cpu * 1e6 / norders);
    for (int by = 1; by <= 4; by++)
        printf("report_month: month report by %-8s slowest of %u: %7.2f ms\n", by_name[by], rounds,
               worst[by]);
    printf("report_month: %s month report under %.0f ms (slowest %.2f ms)\n",
           worst_all < limit_ms ? "PASS" : "MISS", limit_ms, worst_all);
    printf(
        "{\"orders\":%llu,\"build_s\":%.2f,\"cpu_us_per_order\":%.2f,\"report_ms\":{\"day\":%.3f,"
        "\"supplier\":%.3f,\"client\":%.3f,\"sku\":%.3f},\"limit_ms\":%.0f,\"verdict\":\"%s\"}\n",
        (unsigned long long)norders, build_s, build_cpu * 1e6 / norders, worst[1], worst[2],
        worst[3], worst[4], limit_ms, worst_all < limit_ms ? "PASS" : "MISS");
    ph_store_close(s);
    for (unsigned i = 0; i < nsku; i++)
        free(pj[i]);
    free(pj);
    free(cmds);
    free(coid);
    free(ids);
    free(sup.v);
    free(cli.v);
    free(sku.v);
    return ok ? 0 : 1;
}
