/*
 * cmd_discrep.c — perkctl discrepancies / discrepancy show|accept|dispute
 * (docs/perkctl.md): supplier truth that contradicts perkhub's records, and
 * its resolution by ops (GET /v1/discrepancies, POST .../accept, .../dispute).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "perkctl.h"

/* "succeeded 49.00" from a side of a record ({state, charged_fen}). */
static const char *side_text(const json_t *d, const char *which, char *buf, size_t n)
{
    const json_t *s = json_object_get(d, which);
    const char *st = json_string_value(json_object_get(s, "state"));
    const json_t *fen = json_object_get(s, "charged_fen");
    if (json_is_integer(fen)) {
        long long v = (long long)json_integer_value(fen);
        snprintf(buf, n, "%s %lld.%02lld", st ? st : "-", v / 100, v % 100);
    } else {
        snprintf(buf, n, "%s", st ? st : "-");
    }
    return buf;
}

static const char *ours_text(const json_t *d, char *buf, size_t n)
{
    return side_text(d, "ours", buf, n);
}

static const char *theirs_text(const json_t *d, char *buf, size_t n)
{
    return side_text(d, "theirs", buf, n);
}

int pk_cmd_discrepancies(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *status = "open", *supplier = NULL, *after = NULL, *limit = NULL;
    const pk_opt opts[] = {
        PK_OPT_TEXT("status", &status),
        PK_OPT_TEXT("supplier", &supplier),
        PK_OPT_PAGE(&after, &limit, "a discrepancy id"),
        PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts, NULL);
    if (rc >= 0)
        return rc;
    if (!strcmp(status, "all"))
        status = NULL;
    const pkh_param query[] = {
        {"status", status}, {"supplier", supplier}, {"after", after}, {"limit", limit}};
    pkh_request req = {.method = "GET", .path = "/v1/discrepancies", .query = query, .nquery = 4};
    static const pk_column cols[] = {{"ID", "id", NULL},
                                     {"ORDER", "order_id", NULL},
                                     {"ATTEMPT", "attempt", NULL},
                                     {"SUPPLIER", "supplier", NULL},
                                     {"SOURCE", "source", NULL},
                                     {"OURS", NULL, ours_text},
                                     {"THEIRS", NULL, theirs_text},
                                     {"STATUS", "status", NULL}};
    return pk_list(ctx, &req, "discrepancies", cols, sizeof cols / sizeof *cols, NULL,
                   "no discrepancies");
}

static void print_one(const json_t *d)
{
    char b[48];
    pk_kv_field(stdout, "id", d, "id");
    pk_kv_field(stdout, "order", d, "order_id");
    pk_kv_field(stdout, "attempt", d, "attempt");
    pk_kv_field(stdout, "supplier", d, "supplier");
    pk_kv_field(stdout, "source", d, "source");
    pk_kv(stdout, "ours", side_text(d, "ours", b, sizeof b));
    pk_kv(stdout, "theirs", side_text(d, "theirs", b, sizeof b));
    pk_kv_field(stdout, "raised_at", d, "raised_at");
    pk_kv_field(stdout, "status", d, "status");
    if (pk_has(d, "resolver")) {
        pk_kv_field(stdout, "resolver", d, "resolver");
        pk_kv_field(stdout, "note", d, "note");
        pk_kv_field(stdout, "resolved_at", d, "resolved_at");
    }
}

int pk_cmd_discrepancy(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *args[2], *note = NULL;
    const pk_opt opts[] = {PK_OPT_TEXT("note", &note), PK_OPT_END};
    int rc = pk_parse(cmd, argc, argv, opts, &(pk_pos){args, 2, NULL});
    if (rc >= 0)
        return rc;
    const char *action = args[0], *id = args[1];
    if (!action ||
        (strcmp(action, "show") && strcmp(action, "accept") && strcmp(action, "dispute")))
        return pk_usage_error(cmd, "expected show, accept or dispute");
    long long n;
    if (!id || pk_parse_int(id, 1, INT64_MAX, &n) != 0)
        return pk_usage_error(cmd, "ID: expected a discrepancy number");
    if (!strcmp(action, "dispute") && (!note || !*note))
        return pk_usage_error(cmd, "--note is required to dispute");
    char path[96];
    pkh_response resp;
    if (!strcmp(action, "show")) {
        snprintf(path, sizeof path, "/v1/discrepancies/%lld", n);
        pkh_request req = {.method = "GET", .path = path};
        rc = pk_call(ctx, &req, &resp);
    } else {
        snprintf(path, sizeof path, "/v1/discrepancies/%lld/%s", n, action);
        rc = pk_call_json(ctx, "POST", path,
                          note ? json_pack("{s:s}", "note", note) : json_object(), &resp);
    }
    if (ctx->json)
        pk_print_raw(&resp);
    else if (rc == PK_EXIT_OK)
        print_one(json_object_get(resp.json, "discrepancy"));
    pkh_response_free(&resp);
    return rc;
}
