/*
 * cmd_recon.c — `perkctl reconcile`: a supplier's statement for a period
 * matched against our attempts (POST /v1/suppliers/ID/statements, or
 * .../statements/fetch when the supplier's plugin fetches it).
 */
#include "perkctl.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static const char *const outcomes[] = {"matched",    "amount_mismatch", "charged_not_succeeded",
                                       "not_billed", "duplicate",       "unknown_ref"};

/* "reconciliation 3 of sandbox: 7 lines, 3 discrepancies (stored before)", the
 * counts, then every line that is not matched. */
static int print_run(const pk_ctx *ctx, const json_t *answer, int replayed)
{
    const json_t *run = json_object_get(answer, "reconciliation");
    const json_t *counts = json_object_get(run, "counts");
    char id[32], sup[72], lines[32], disc[32];
    pk_line(stdout, "reconciliation %s of %s: %s lines, %s discrepancies%s",
            pk_field(run, "id", id, sizeof id), pk_field(run, "supplier", sup, sizeof sup),
            pk_field(run, "lines", lines, sizeof lines),
            pk_field(run, "discrepancies", disc, sizeof disc),
            replayed ? " (this statement was imported before: the same run)" : "");
    for (size_t i = 0; i < sizeof outcomes / sizeof *outcomes; i++) {
        char n[32];
        pk_line(stdout, "  %-22s %s", outcomes[i], pk_field(counts, outcomes[i], n, sizeof n));
    }
    char path[96];
    snprintf(path, sizeof path, "/v1/reconciliations/%s?limit=1000", id);
    pkh_request req = {.method = "GET", .path = path};
    pkh_response resp;
    int rc = pk_call(ctx, &req, &resp);
    if (rc != PK_EXIT_OK) {
        pkh_response_free(&resp);
        return rc;
    }
    const json_t *page =
                     json_object_get(json_object_get(resp.json, "reconciliation"), "lines_page"),
                 *l;
    size_t i;
    pk_table t;
    pk_table_init(&t, 7,
                  (const char *const[]){"LINE", "OUTCOME", "REF", "SUPPLIER_ORDER_ID", "THEIRS",
                                        "OURS", "ORDER"});
    size_t shown = 0;
    json_array_foreach(page, i, l)
    {
        const char *o = json_string_value(json_object_get(l, "outcome"));
        if (!o || !strcmp(o, "matched"))
            continue;
        char c[7][80];
        pk_table_add(&t, (const char *const[]){pk_field(l, "line", c[0], sizeof c[0]), o,
                                               pk_field(l, "ref", c[2], sizeof c[2]),
                                               pk_field(l, "supplier_order_id", c[3], sizeof c[3]),
                                               pk_field(l, "theirs", c[4], sizeof c[4]),
                                               pk_field(l, "ours", c[5], sizeof c[5]),
                                               pk_field(l, "order_id", c[6], sizeof c[6])});
        shown++;
    }
    if (shown)
        rc = pk_table_print(&t, stdout);
    pk_table_free(&t);
    pkh_response_free(&resp);
    return rc;
}

/* After "perkctl: invalid_csv: ...": "line N, column C (field): reason" each. */
static void print_bad_lines(const json_t *answer)
{
    const char *error = json_string_value(json_object_get(answer, "error"));
    if (!error || strcmp(error, "invalid_csv") != 0)
        return;
    const json_t *lines = json_object_get(answer, "lines"), *l;
    size_t i;
    json_array_foreach(lines, i, l)
    {
        char no[32], col[32], field[32], reason[128];
        if (json_object_get(l, "column"))
            pk_line(stderr, "line %s, column %s (%s): %s", pk_field(l, "line", no, sizeof no),
                    pk_field(l, "column", col, sizeof col),
                    pk_field(l, "field", field, sizeof field),
                    pk_field(l, "reason", reason, sizeof reason));
        else
            pk_line(stderr, "line %s: %s", pk_field(l, "line", no, sizeof no),
                    pk_field(l, "reason", reason, sizeof reason));
    }
}

int pk_cmd_reconcile(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *pos[2], *from = NULL, *to = NULL;
    int fetch = 0;
    const pk_opt opts[] = {
        PK_OPT_TEXT("from", &from),
        PK_OPT_TEXT("to", &to),
        PK_OPT_FLAG("fetch", &fetch),
        PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts, &(pk_pos){pos, 2, NULL});
    if (rc >= 0)
        return rc;
    if (!pos[0])
        return pk_usage_error(cmd, "SUPPLIER is required");
    if (fetch && pos[1])
        return pk_usage_error(cmd, "give FILE or --fetch, not both");
    if (!fetch && !pos[1])
        return pk_usage_error(cmd, "FILE is required (or --fetch)");
    if (!from || !to)
        return pk_usage_error(cmd, "--from and --to are required");
    for (const char *p = pos[0]; *p; p++)
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-", *p))
            return pk_usage_error(cmd, "SUPPLIER: not a supplier id");

    char path[160];
    snprintf(path, sizeof path, "/v1/suppliers/%s/statements%s", pos[0], fetch ? "/fetch" : "");
    const pkh_param query[] = {{"from", from}, {"to", to}};
    pkh_request req = {.method = "POST", .path = path, .query = query, .nquery = 2};
    FILE *f = NULL;
    if (!fetch) {
        f = strcmp(pos[1], "-") ? fopen(pos[1], "rb") : stdin;
        if (!f) {
            fprintf(stderr, "perkctl reconcile: cannot open '%s': %s\n", pos[1], strerror(errno));
            return PK_EXIT_USAGE;
        }
        struct stat st;
        long long size = -1;
        if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode))
            size = (long long)st.st_size;
        req.body_file = f;
        req.body_file_size = size;
        req.content_type = "text/csv";
    }
    pkh_response resp;
    rc = pk_call(ctx, &req, &resp);
    if (f && f != stdin)
        fclose(f);
    if (ctx->json)
        pk_print_raw(&resp);
    else if (rc == PK_EXIT_OK)
        rc = print_run(ctx, resp.json, resp.replayed);
    else if (rc == PK_EXIT_REFUSED)
        print_bad_lines(resp.json);
    pkh_response_free(&resp);
    return rc;
}
