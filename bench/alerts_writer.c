/*
 * alerts_writer.c — issue 12's "alert and replenishment checks add under 1 µs
 * of perkhubd CPU per order", measured where the checks run: the store's
 * writer, which judges every stock order in its transaction
 * (store_alerts.c), with no HTTP, load generator or other process sharing
 * the measured CPU. bench/alerts_cpu.sh measures the same end to end over
 * HTTP (three perkhubd at once, with an A/A control); instruction counts
 * (callgrind) put the whole difference between its daemons in the check, 2.1k
 * instructions per order; here it takes 2.8k (these codes have an expiry, so
 * the look for due codes meets the SKU's entries).
 *
 * Two stores built with the store library (build/libphcore.a), each with
 * PRODUCTS card-code products (each with one supplier offer, whose stock the
 * check adds) and CODES codes of the ordered one; in `rules`
 * every product carries a low_stock rule and min_validity_days (thresholds far
 * below the stock: every order pays the whole check and none fires, the
 * steady state). Then ROUNDS rounds, each ORDERS stock orders (quantity 1, in
 * lists of 256: the writer's batches) on one store, then the other (the order
 * swaps each round); the process's CPU (getrusage: the writer thread does the
 * work, the caller waits) per order for each. Prints each round, the median
 * of the per-round differences rules − plain and PASS when it is under LIMIT
 * µs, MISS otherwise; one JSON line last. Exit 0 PASS, 3 MISS, 1 failure.
 *
 * Usage: alerts_writer DIR [--orders N] [--rounds R] [--products P] [--limit-us L]
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "config/config.h"
#include "store/store.h"

#define T0    1764518400000LL /* 2025-11-30T16:00:00Z */
#define CHUNK 256
#define SKU   "bench.card"

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what, const ph_err *err)
{
    fprintf(stderr, "alerts_writer: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

/* A store at dir with `products` card products (SKU first), rules or not,
 * and `codes` codes of SKU that expire in a year. */
static ph_store *make_store(const char *dir, unsigned products, int rules, uint64_t codes)
{
    ph_store *s;
    ph_err err = {0};
    ph_store_opts o = {.dir = dir, .map_size = 1ull << 32};
    if (ph_store_open(&o, &s, &err))
        die("open", &err);
    char **pj = calloc(products, sizeof *pj);
    for (unsigned i = 0; i < products; i++) {
        char sku[64];
        snprintf(sku, sizeof sku, i ? "bench.rule%u" : SKU, i);
        if (asprintf(&pj[i],
                     "{\"sku\":\"%s\",\"delivery\":\"card_code\",\"listed\":true,"
                     "\"price_fen\":3000,\"offers\":[{\"supplier\":\"acme\","
                     "\"supplier_sku\":\"B-1\",\"cost_fen\":1980}]%s%s}",
                     sku, rules & 1 ? ",\"low_stock\":{\"below\":10,\"margin\":5}" : "",
                     rules & 2 ? ",\"min_validity_days\":1" : "") < 0)
            die("out of memory", NULL);
    }
    ph_cmd pc = {.type = PH_CMD_PUT_PRODUCTS, .now = T0};
    pc.in.products.json = (const char *const *)pj;
    pc.in.products.n = products;
    if (ph_store_exec(s, &pc))
        die("put products", &pc.err);
    ph_cmd_clear(&pc);
    for (unsigned i = 0; i < products; i++)
        free(pj[i]);
    free(pj);
    /* codes in batches of 100,000: opaque sealed bytes (no keys: never opened),
     * distinct hashes ascending, so by_hash is the identity */
    const uint64_t per = 100000;
    ph_import_code *ic = calloc(per, sizeof *ic);
    uint32_t *by = calloc(per, sizeof *by);
    static const uint8_t sealed[32] = "opaque-sealed-card-code-bytes..";
    for (uint64_t base = 0; base < codes; base += per) {
        uint64_t n = codes - base < per ? codes - base : per;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t k = base + i;
            memset(ic[i].hash, 0, 32);
            for (int b = 0; b < 8; b++)
                ic[i].hash[b] = (uint8_t)(k >> (56 - 8 * b));
            ic[i].line = (uint32_t)(i + 2);
            ic[i].expires_at = T0 + 3650LL * 86400000; /* ten years */
            ic[i].sealed = sealed;
            ic[i].sealed_len = sizeof sealed;
            by[i] = (uint32_t)i;
        }
        ph_cmd c = {.type = PH_CMD_IMPORT, .now = T0};
        c.in.import.supplier = "acme";
        c.in.import.sku = SKU;
        c.in.import.note = "bench";
        c.in.import.unit_cost = 1980;
        c.in.import.codes = ic;
        c.in.import.ncodes = n;
        c.in.import.by_hash = by;
        if (ph_store_exec(s, &c))
            die("import", &c.err);
        ph_cmd_clear(&c);
    }
    free(ic);
    free(by);
    return s;
}

/* n stock orders on s, numbered from *next; the CPU they took (s). */
static double orders(ph_store *s, uint64_t n, uint64_t *next, int64_t now)
{
    static ph_cmd cmds[CHUNK];
    static char coid[CHUNK][32];
    double c0 = cpu_s();
    for (uint64_t done = 0; done < n;) {
        unsigned m = (unsigned)(n - done < CHUNK ? n - done : CHUNK);
        for (unsigned i = 0; i < m; i++) {
            uint64_t k = (*next)++;
            ph_cmd *c = &cmds[i];
            memset(c, 0, sizeof *c);
            c->type = PH_CMD_ORDER;
            c->now = now;
            snprintf(coid[i], sizeof coid[i], "o-%llu", (unsigned long long)k);
            c->in.order.client = "mall";
            c->in.order.client_order_id = coid[i];
            c->in.order.sku = SKU;
            c->in.order.quantity = 1;
            memcpy(c->in.order.fingerprint, &k, sizeof k);
            c->next = i + 1 < m ? &cmds[i + 1] : NULL;
        }
        if (ph_store_exec_list(s, cmds))
            die("order", &cmds[0].err);
        for (unsigned i = 0; i < m; i++) {
            if (cmds[i].rc)
                die("order", &cmds[i].err);
            ph_cmd_clear(&cmds[i]);
        }
        done += m;
    }
    return cpu_s() - c0;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    uint64_t n = 100000;
    unsigned rounds = 5, products = 100;
    double limit_us = 1.0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--orders") && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--products") && i + 1 < argc)
            products = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--limit-us") && i + 1 < argc)
            limit_us = strtod(argv[++i], NULL);
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else
            return fprintf(stderr, "usage: alerts_writer DIR [--orders N] [--rounds R] "
                                   "[--products P] [--limit-us L]\n"),
                   2;
    }
    if (!dir || !n || !rounds || !products || rounds > 64)
        return fprintf(stderr, "alerts_writer: DIR and positive counts needed\n"), 2;
    char pd[4096], rd[4096];
    snprintf(pd, sizeof pd, "%s/plain", dir);
    snprintf(rd, sizeof rd, "%s/rules", dir);
    if (mkdir(dir, 0700) || mkdir(pd, 0700) || mkdir(rd, 0700))
        return fprintf(stderr, "alerts_writer: cannot make %s (it must not exist)\n", dir), 1;
    uint64_t codes = n * (rounds + 1) + 1000;
    /* ALERTS_WRITER_KINDS: 1 low_stock only, 2 min_validity_days only, 3 both (default) */
    const char *kinds = getenv("ALERTS_WRITER_KINDS");
    int rules = kinds ? atoi(kinds) & 3 : 3;
    ph_store *st[2] = {make_store(pd, products, 0, codes), make_store(rd, products, rules, codes)};
    uint64_t next[2] = {0, 0};
    int64_t now = T0 + 1000;
    for (int k = 0; k < 2; k++) /* warm-up: page cache, memo, the rules table */
        orders(st[k], n / 10, &next[k], now);
    double us[2][64], diff[64];
    for (unsigned r = 0; r < rounds; r++) {
        for (int j = 0; j < 2; j++) {
            int k = (r % 2) ? 1 - j : j;
            us[k][r] = orders(st[k], n, &next[k], now + r) * 1e6 / (double)n;
        }
        diff[r] = us[1][r] - us[0][r];
        printf("alerts_writer: round %u: plain %.2f µs/order, rules %.2f µs/order, "
               "difference %+.3f µs\n",
               r + 1, us[0][r], us[1][r], diff[r]);
    }
    double sorted[64];
    memcpy(sorted, diff, rounds * sizeof *diff);
    qsort(sorted, rounds, sizeof *sorted, by_value);
    double med =
        rounds % 2 ? sorted[rounds / 2] : (sorted[rounds / 2 - 1] + sorted[rounds / 2]) / 2;
    /* the stores must have issued what was ordered, and fired nothing */
    uint64_t avail[2];
    for (int k = 0; k < 2; k++) {
        char *json;
        ph_err err = {0};
        if (ph_store_product_get_at(st[k], SKU, now, &json, &avail[k], &err))
            die("product", &err);
        free(json);
        if (avail[k] != codes - next[k])
            return fprintf(stderr, "alerts_writer: store %d holds %llu codes, expected %llu\n", k,
                           (unsigned long long)avail[k], (unsigned long long)(codes - next[k])),
                   1;
    }
    const char *verdict = med < limit_us ? "PASS" : "MISS";
    printf("alerts_writer: %u products with rules, %llu orders per round: median difference "
           "%+.3f µs per order (limit %.1f) %s\n",
           products, (unsigned long long)n, med, limit_us, verdict);
    printf("{\"products_with_rules\":%u,\"orders_per_round\":%llu,\"rounds\":%u,"
           "\"median_diff_us\":%.3f,\"limit_us\":%.1f,\"verdict\":\"%s\"}\n",
           products, (unsigned long long)n, rounds, med, limit_us, verdict);
    ph_store_close(st[0]);
    ph_store_close(st[1]);
    return med < limit_us ? 0 : 3;
}
