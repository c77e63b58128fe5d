/*
 * cmd_ledger.c — `perkctl ledger` (GET /v1/ledger) and `perkctl report`
 * (GET /v1/reports): the money booked per order, and the daily totals.
 * --csv prints the server's CSV export as is.
 */
#include "perkctl.h"

#include <string.h>

/* A CSV answer goes to stdout as received; an error is said as pk_call says
 * it (its body is JSON). */
static int call_csv(const pk_ctx *ctx, const pkh_request *req)
{
    pkh_response resp;
    int rc = pkh_send(&ctx->http, req, &resp);
    if (rc == PKH_OK && resp.status >= 200 && resp.status < 300) {
        if (resp.body)
            fwrite(resp.body, 1, resp.body_len, stdout);
        pkh_response_free(&resp);
        return fflush(stdout) ? PK_EXIT_REFUSED : PK_EXIT_OK;
    }
    pkh_response_free(&resp);
    rc = pk_call(ctx, req, &resp); /* says why (the request only reads) */
    pkh_response_free(&resp);
    return rc == PK_EXIT_OK ? PK_EXIT_REFUSED : rc;
}

int pk_cmd_ledger(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *from = NULL, *to = NULL, *supplier = NULL, *client = NULL, *sku = NULL,
               *after = NULL, *limit = NULL;
    int csv = 0;
    /* the server checks the values and names a bad one */
    const pk_opt opts[] = {
        PK_OPT_TEXT("from", &from),
        PK_OPT_TEXT("to", &to),
        PK_OPT_TEXT("supplier", &supplier),
        PK_OPT_TEXT("client", &client),
        PK_OPT_TEXT("sku", &sku),
        PK_OPT_TEXT("after", &after),
        PK_OPT_TEXT("limit", &limit),
        PK_OPT_FLAG("csv", &csv),
        PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts, NULL);
    if (rc >= 0)
        return rc;
    const pkh_param query[] = {
        {"from", from}, {"to", to},       {"supplier", supplier}, {"client", client},
        {"sku", sku},   {"after", after}, {"limit", limit},       {"format", csv ? "csv" : NULL}};
    pkh_request req = {.method = "GET", .path = "/v1/ledger", .query = query, .nquery = 8};
    if (csv)
        return call_csv(ctx, &req);
    static const pk_column cols[] = {{"SEQ", "seq", NULL},        {"AT", "at", NULL},
                                     {"ORDER", "order_id", NULL}, {"ATTEMPT", "attempt", NULL},
                                     {"KIND", "kind", NULL},      {"SUPPLIER", "supplier", NULL},
                                     {"CLIENT", "client", NULL},  {"SKU", "sku", NULL},
                                     {"AMOUNT", "amount", NULL},  {"COMMAND", "command", NULL}};
    return pk_list(ctx, &req, "entries", cols, sizeof cols / sizeof *cols, NULL, "no entries");
}

int pk_cmd_report(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *from = NULL, *to = NULL, *by = NULL;
    int csv = 0;
    const pk_opt opts[] = {
        PK_OPT_TEXT("from", &from),
        PK_OPT_TEXT("to", &to),
        PK_OPT_TEXT("by", &by),
        PK_OPT_FLAG("csv", &csv),
        PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts, NULL);
    if (rc >= 0)
        return rc;
    if (!from || !to)
        return pk_usage_error(cmd, "--from and --to are required");
    const pkh_param query[] = {
        {"from", from}, {"to", to}, {"by", by}, {"format", csv ? "csv" : NULL}};
    pkh_request req = {.method = "GET", .path = "/v1/reports", .query = query, .nquery = 4};
    if (csv)
        return call_csv(ctx, &req);
    pkh_response resp;
    rc = pk_call(ctx, &req, &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    if (rc != PK_EXIT_OK || ctx->json) {
        pkh_response_free(&resp);
        return rc;
    }
    char kb[32];
    const char *key = pk_field(resp.json, "by", kb, sizeof kb);
    char upper[32];
    size_t n = 0;
    for (; key[n] && n < sizeof upper - 1; n++)
        upper[n] = (char)(key[n] >= 'a' && key[n] <= 'z' ? key[n] - 32 : key[n]);
    upper[n] = 0;
    pk_table t;
    pk_table_init(&t, 8,
                  (const char *const[]){upper, "REVENUE", "COST", "MARGIN", "SUCCEEDED", "FAILED",
                                        "UNKNOWN", "UNPRICED"});
    const json_t *rows = json_object_get(resp.json, "rows"), *r;
    size_t i;
    json_array_foreach(rows, i, r)
    {
        char b[8][128];
        const json_t *o = json_object_get(r, "orders");
        pk_table_add(&t, (const char *const[]){
                             pk_field(r, key, b[0], sizeof b[0]),
                             pk_field(r, "revenue", b[1], sizeof b[1]),
                             pk_field(r, "cost", b[2], sizeof b[2]),
                             pk_field(r, "margin", b[3], sizeof b[3]),
                             pk_field(o, "succeeded", b[4], sizeof b[4]),
                             pk_field(o, "failed", b[5], sizeof b[5]),
                             pk_field(o, "unknown", b[6], sizeof b[6]),
                             pk_field(o, "unpriced", b[7], sizeof b[7]),
                         });
    }
    const json_t *tot = json_object_get(resp.json, "totals"), *o = json_object_get(tot, "orders");
    char b[8][128];
    pk_table_add(&t, (const char *const[]){
                         "TOTAL",
                         pk_field(tot, "revenue", b[1], sizeof b[1]),
                         pk_field(tot, "cost", b[2], sizeof b[2]),
                         pk_field(tot, "margin", b[3], sizeof b[3]),
                         pk_field(o, "succeeded", b[4], sizeof b[4]),
                         pk_field(o, "failed", b[5], sizeof b[5]),
                         pk_field(o, "unknown", b[6], sizeof b[6]),
                         pk_field(o, "unpriced", b[7], sizeof b[7]),
                     });
    if (pk_table_print(&t, stdout) != 0)
        rc = PK_EXIT_REFUSED;
    pk_table_free(&t);
    pkh_response_free(&resp);
    return rc;
}
