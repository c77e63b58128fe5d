/*
 * recon_match.c — a supplier's statement of N lines matched against a store
 * of M attempts: the time follows N and the statement's period, not M.
 *
 * Builds a store the fast way — the store library itself (build/libphcore.a),
 * commands straight to its writer — with M recharge orders spread over D
 * days (30) and S suppliers (SUPPLY_CREATE, then one ATTEMPT with a supplier order
 * id: 90% succeed, 10% fail). Then one day's statement of supplier 0: a line
 * per success of that day (every other one named by our reference, the rest
 * by the supplier's order id only), plus lines naming attempts of the two
 * days around it (billed across the period's edges), capped at N lines.
 * Times ph_store_recon_prepare (the snapshot that finds what each line names
 * and the day's successes) and the RECON command in the writer, ROUNDS times
 * (prepare) and once (the command), and checks every line was matched and no
 * success is reported unbilled (exit 1 otherwise: a correctness failure).
 * Prints PASS/MISS for prepare + command under LIMIT_MS (250): a day's
 * statement (some 9,000 lines at the defaults) matched in a quarter second,
 * whatever the store holds — grow M with D to keep the day the same size.
 *
 * Usage: recon_match DIR [--attempts M] [--suppliers S] [--lines N] [--days D]
 *                        [--rounds R] [--limit-ms MS]
 * DIR must not exist (it is created). Prints human lines, then one JSON line.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "store/store.h"

#define DAY_MS  86400000LL
#define T0      1764518400000LL /* 2025-11-30T16:00:00Z: 2025-12-01 00:00 at +08:00 */
#define CHUNK   4096
#define COST    4900
#define ACCOUNT "opaque-sealed-account"
#define DAY     15 /* the statement's day */

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const ph_err *err)
{
    fprintf(stderr, "recon_match: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    uint64_t natt = 1000000, maxlines = 200000;
    unsigned nsup = 4, rounds = 3, days = 30;
    double limit_ms = 250;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--attempts") && i + 1 < argc)
            natt = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--suppliers") && i + 1 < argc)
            nsup = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--lines") && i + 1 < argc)
            maxlines = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--days") && i + 1 < argc)
            days = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--limit-ms") && i + 1 < argc)
            limit_ms = strtod(argv[++i], NULL);
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else {
            fprintf(stderr, "usage: recon_match DIR [--attempts M] [--suppliers S] [--lines N] "
                            "[--days D] [--rounds R] [--limit-ms MS]\n");
            return 2;
        }
    }
    if (!dir || !natt || !nsup || !rounds || !maxlines || maxlines > 200000 || days <= DAY + 1)
        return fprintf(stderr, "recon_match: DIR and positive counts needed (lines <= 200000, "
                               "days > 16)\n"),
               2;

    ph_store *s;
    ph_err err = {0};
    ph_store_opts o = {.dir = dir, .map_size = 1ull << 34};
    if (ph_store_open(&o, &s, &err))
        die("open", &err);
    const char *pj = "{\"sku\":\"bench.topup\",\"delivery\":\"recharge\",\"listed\":true}";
    ph_cmd pc = {.type = PH_CMD_PUT_PRODUCTS, .now = T0};
    pc.in.products.json = &pj;
    pc.in.products.n = 1;
    if (ph_store_exec(s, &pc))
        die("put products", &pc.err);
    ph_cmd_clear(&pc);

    char(*sups)[16] = calloc(nsup, sizeof *sups);
    for (unsigned i = 0; i < nsup; i++)
        snprintf(sups[i], sizeof sups[i], "sup%u", i);
    ph_cmd *cmds = calloc(CHUNK, sizeof *cmds);
    char(*coid)[32] = calloc(CHUNK, sizeof *coid);
    char(*soid)[32] = calloc(CHUNK, sizeof *soid);
    uint64_t *ids = calloc(CHUNK, sizeof *ids);
    ph_recon_line *lines = calloc(maxlines, sizeof *lines);
    size_t nlines = 0, want_matched = 0;
    int64_t span = days * DAY_MS, from = T0 + DAY * DAY_MS, to = from + DAY_MS;
    char uid[16];
    snprintf(uid, sizeof uid, "%s", ph_store_uid(s));
    double t_build = mono_s();
    for (uint64_t base = 0; base < natt; base += CHUNK) {
        unsigned n = (unsigned)(natt - base < CHUNK ? natt - base : CHUNK);
        for (unsigned i = 0; i < n; i++) {
            uint64_t k = base + i;
            ph_cmd *c = &cmds[i];
            memset(c, 0, sizeof *c);
            c->type = PH_CMD_SUPPLY_CREATE;
            c->now = T0 + (int64_t)(k * (uint64_t)span / natt);
            snprintf(coid[i], sizeof coid[i], "b-%llu", (unsigned long long)k);
            c->in.supply.client = "mall";
            c->in.supply.client_order_id = coid[i];
            c->in.supply.sku = "bench.topup";
            c->in.supply.quantity = 1;
            memcpy(c->in.supply.fingerprint, &k, sizeof k);
            c->in.supply.delivery = PH_DELIVERY_RECHARGE;
            c->in.supply.account_sealed = (const uint8_t *)ACCOUNT;
            c->in.supply.account_sealed_len = (uint32_t)strlen(ACCOUNT);
            c->in.supply.account_masked = "138****0000";
            c->in.supply.first = (ph_attempt_target){sups[k % nsup], "P-1", COST};
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
            int64_t created = T0 + (int64_t)(k * (uint64_t)span / natt);
            ph_cmd *c = &cmds[i];
            memset(c, 0, sizeof *c);
            c->type = PH_CMD_ATTEMPT;
            c->now = created + 1000;
            c->in.attempt.order_id = ids[i];
            c->in.attempt.no = 1;
            c->in.attempt.step = -1;
            c->in.attempt.charged = COST;
            c->in.attempt.next_check_at = -1;
            snprintf(soid[i], sizeof soid[i], "SO%llu", (unsigned long long)k);
            c->in.attempt.supplier_order_id = soid[i];
            int ok = k % 10 != 9;
            c->in.attempt.state = ok ? PH_ATTEMPT_SUCCEEDED : PH_ATTEMPT_FAILED;
            c->in.attempt.reason = ok ? NULL : "out_of_stock";
            if (!c->in.attempt.state || !ok)
                c->in.attempt.charged = -1;
            c->next = i + 1 < n ? &cmds[i + 1] : NULL;
            /* supplier 0's successes of the day, and of the days around it
             * (billed in this statement all the same) */
            if (ok && k % nsup == 0 && created >= from - DAY_MS && created < to + DAY_MS &&
                nlines < maxlines && (created >= from && created < to ? 1 : k % 50 == 0)) {
                ph_recon_line *l = &lines[nlines++];
                l->line = (uint32_t)nlines + 1;
                l->amount = COST;
                l->time = -1;
                l->charged = 1;
                if (nlines % 2)
                    snprintf(l->ref, sizeof l->ref, "%s-%llu-1", uid, (unsigned long long)ids[i]);
                else
                    snprintf(l->supplier_order_id, sizeof l->supplier_order_id, "%s", soid[i]);
                want_matched++;
            }
        }
        if (ph_store_exec_list(s, cmds))
            die("attempt", &cmds[0].err);
        for (unsigned i = 0; i < n; i++) {
            if (cmds[i].rc)
                die("attempt", &cmds[i].err);
            ph_cmd_clear(&cmds[i]);
        }
    }
    double build_s = mono_s() - t_build;

    ph_recon_ref *cand = calloc(nlines + 1, sizeof *cand), *ub = NULL;
    size_t nub = 0;
    double worst = 0, first = 0, best = 0;
    for (unsigned r = 0; r < rounds; r++) {
        free(ub);
        double t = mono_s();
        if (ph_store_recon_prepare(s, "sup0", from, to, lines, nlines, cand, &ub, &nub, &err))
            die("prepare", &err);
        double ms = (mono_s() - t) * 1000;
        worst = ms > worst ? ms : worst;
        best = !r || ms < best ? ms : best;
        if (!r)
            first = ms;
    }
    int ok = 1;
    size_t named = 0;
    for (size_t i = 0; i < nlines; i++)
        named += cand[i].order_id != 0;
    if (named != want_matched || nub) {
        fprintf(stderr, "recon_match: FAIL: %zu of %zu lines named, %zu successes unbilled\n",
                named, want_matched, nub);
        ok = 0;
    }
    ph_cmd c = {.type = PH_CMD_RECON, .now = to + DAY_MS};
    c.in.recon.supplier = "sup0";
    c.in.recon.client = "ops";
    c.in.recon.source = "csv";
    c.in.recon.from = from;
    c.in.recon.to = to;
    memset(c.in.recon.sha256, 1, 32);
    c.in.recon.lines = lines;
    c.in.recon.cand = cand;
    c.in.recon.nlines = nlines;
    c.in.recon.unbilled = ub;
    c.in.recon.nunbilled = nub;
    double t = mono_s();
    if (ph_store_exec(s, &c))
        die("recon", &c.err);
    double cmd_ms = (mono_s() - t) * 1000;
    ph_cmd_clear(&c);

    double total = worst + cmd_ms;
    printf("recon_match: %llu attempts over %u days, %u suppliers (build %.1f s)\n",
           (unsigned long long)natt, days, nsup, build_s);
    printf("recon_match: statement of %zu lines (one day of sup0 and the days around it)\n",
           nlines);
    printf("recon_match: prepare slowest of %u: %.1f ms (first %.1f, fastest %.1f); RECON in the "
           "writer: %.1f ms\n",
           rounds, worst, first, best, cmd_ms);
    printf("recon_match: %s statement matched under %.0f ms (%.1f ms)\n",
           total < limit_ms ? "PASS" : "MISS", limit_ms, total);
    printf("{\"attempts\":%llu,\"lines\":%zu,\"prepare_ms\":%.2f,\"recon_ms\":%.2f,"
           "\"limit_ms\":%.0f,\"verdict\":\"%s\"}\n",
           (unsigned long long)natt, nlines, worst, cmd_ms, limit_ms,
           total < limit_ms ? "PASS" : "MISS");
    ph_store_close(s);
    free(ub);
    free(cand);
    free(lines);
    free(cmds);
    free(coid);
    free(soid);
    free(ids);
    free(sups);
    return ok ? 0 : 1;
}
