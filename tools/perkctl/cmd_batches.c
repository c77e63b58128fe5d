/*
 * cmd_batches.c — `perkctl import` and `perkctl void`: the two things ops do
 * with batches of card codes bought from a supplier.
 */
#include "perkctl.h"

#include <errno.h>
#include <string.h>
#include <stdint.h>
#include <sys/stat.h>

/* "imported batch 3: 100000 codes of iqiyi.gold.1m from acme". */
static void print_imported(const json_t *answer)
{
    const json_t *batch = json_object_get(answer, "batch");
    const json_t *n = json_object_get(batch, "count");
    char id[32], count[32], sku[32], supplier[32];
    pk_line(stdout, "imported batch %s: %s code%s of %s from %s",
            pk_field(batch, "id", id, sizeof id), pk_field(batch, "count", count, sizeof count),
            json_is_integer(n) && json_integer_value(n) == 1 ? "" : "s",
            pk_field(batch, "sku", sku, sizeof sku),
            pk_field(batch, "supplier", supplier, sizeof supplier));
}

/* After "perkctl: invalid_csv: ...": every bad line the server listed, then
 * the total, which can exceed what was listed. The server never puts the code
 * itself in a reason, so these lines are safe on stderr. */
static void print_bad_lines(const json_t *answer)
{
    const char *error = json_string_value(json_object_get(answer, "error"));
    if (!error || strcmp(error, "invalid_csv") != 0)
        return;
    const json_t *lines = json_object_get(answer, "lines"), *l;
    size_t i;
    json_array_foreach(lines, i, l)
    {
        char no[32], reason[64];
        pk_line(stderr, "line %s: %s", pk_field(l, "line", no, sizeof no),
                pk_field(l, "reason", reason, sizeof reason));
    }
    size_t listed = json_array_size(lines);
    const json_t *count = json_object_get(answer, "error_count");
    long long total = json_is_integer(count) ? json_integer_value(count) : (long long)listed;
    if (total > (long long)listed)
        fprintf(stderr, "%lld bad lines in total, the first %zu listed\n", total, listed);
    else
        fprintf(stderr, "%lld bad line%s in total\n", total, total == 1 ? "" : "s");
}

int pk_cmd_import(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *file, *supplier = NULL, *sku = NULL, *cost = NULL, *note = NULL;
    const pk_opt opts[] = {
        PK_OPT_TEXT("supplier", &supplier),
        PK_OPT_TEXT("sku", &sku),
        PK_OPT_TEXT("cost", &cost),
        PK_OPT_TEXT("note", &note),
        PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts,
                      &(pk_pos){&file, 1, "unexpected argument '%s': give one FILE"});
    if (rc >= 0)
        return rc;
    if (!file)
        return pk_usage_error(cmd, "FILE is required");
    if (!supplier || !*supplier)
        return pk_usage_error(cmd, "--supplier is required");
    if (!sku || !*sku)
        return pk_usage_error(cmd, "--sku is required");
    if (!cost)
        return pk_usage_error(cmd, "--cost is required");
    if (!pk_money_valid(cost))
        return pk_usage_error(cmd, "--cost: expected an amount in CNY such as 19.80, got '%s'",
                              cost);

    /* A regular file goes with a Content-Length, so the server can refuse an
     * oversized import before reading it; a pipe goes chunked. */
    FILE *f = stdin;
    long long size = -1;
    if (strcmp(file, "-") != 0 && !(f = fopen(file, "rb"))) {
        fprintf(stderr, "perkctl import: cannot open '%s': %s\n", file, strerror(errno));
        return PK_EXIT_USAGE;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            fprintf(stderr, "perkctl import: '%s' is a directory\n", file);
            fclose(f);
            return PK_EXIT_USAGE;
        }
        if (S_ISREG(st.st_mode))
            size = (long long)st.st_size - (long long)ftello(f);
    }

    const pkh_param query[] = {
        {"supplier", supplier},
        {"sku", sku},
        {"unit_cost", cost},
        {"note", note},
    };
    pkh_request req = {
        .method = "POST",
        .path = "/v1/batches",
        .query = query,
        .nquery = sizeof query / sizeof query[0],
        .body_file = f,
        .body_file_size = size,
        .content_type = "text/csv",
    };
    pkh_response resp;
    rc = pk_call(ctx, &req, &resp);
    int read_failed = ferror(f);
    if (f != stdin)
        fclose(f);

    if (read_failed && rc != PK_EXIT_OK) {
        /* curl reports a failed read as an aborted transfer; the cause is ours. */
        fprintf(stderr, "perkctl import: error reading '%s'; nothing was imported\n", file);
        rc = PK_EXIT_USAGE;
    } else if (ctx->json) {
        pk_print_raw(&resp);
    } else if (rc == PK_EXIT_OK) {
        print_imported(resp.json);
    } else if (rc == PK_EXIT_REFUSED) {
        print_bad_lines(resp.json);
    } else if (rc == PK_EXIT_UNREACHABLE) {
        fputs("perkctl: the batch may still have been imported; check 'perkctl events' before "
              "retrying (codes already imported are refused, never imported twice)\n",
              stderr);
    }
    pkh_response_free(&resp);
    return rc;
}

int pk_cmd_void(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *id, *reason = NULL;
    const pk_opt opts[] = {PK_OPT_TEXT("reason", &reason), PK_OPT_END};
    int rc = pk_parse(cmd, argc, argv, opts,
                      &(pk_pos){&id, 1, "unexpected argument '%s': give one BATCH_ID"});
    if (rc >= 0)
        return rc;
    long long batch;
    if (!id)
        return pk_usage_error(cmd, "BATCH_ID is required");
    if (pk_parse_int(id, 1, INT64_MAX, &batch) != 0)
        return pk_usage_error(cmd, "BATCH_ID: expected a batch number, got '%s'", id);
    if (!reason || !*reason)
        return pk_usage_error(cmd, "--reason is required");

    char path[64];
    snprintf(path, sizeof path, "/v1/batches/%lld/void", batch);
    pkh_response resp;
    rc = pk_call_json(ctx, "POST", path, json_pack("{s:s}", "reason", reason), &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    if (rc != PK_EXIT_OK || ctx->json) {
        pkh_response_free(&resp);
        return rc;
    }

    const json_t *orders = json_object_get(resp.json, "affected_orders"), *o;
    char voided[32], n[32];
    size_t i, norders = json_array_size(orders);
    snprintf(n, sizeof n, "%zu", norders);
    const json_t *nvoided = json_object_get(resp.json, "voided_codes");
    pk_line(stdout, "voided batch %lld: %s code%s voided, %s affected order%s", batch,
            pk_field(resp.json, "voided_codes", voided, sizeof voided),
            json_is_integer(nvoided) && json_integer_value(nvoided) == 1 ? "" : "s",
            norders ? n : "no", norders == 1 ? "" : "s");
    if (norders) {
        pk_table t;
        pk_table_init(&t, 3, (const char *const[]){"ORDER", "CLIENT", "CLIENT_ORDER_ID"});
        json_array_foreach(orders, i, o)
        {
            char oid[32], b1[32], b2[32];
            pk_table_add(&t, (const char *const[]){pk_field(o, "id", oid, sizeof oid),
                                                   pk_field(o, "client", b1, sizeof b1),
                                                   pk_field(o, "client_order_id", b2, sizeof b2)});
        }
        if (pk_table_print(&t, stdout) != 0)
            rc = PK_EXIT_REFUSED;
        pk_table_free(&t);
    }
    pkh_response_free(&resp);
    return rc;
}
