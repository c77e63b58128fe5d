/*
 * cmd_grants.c — perkctl grants [show ID | extend ID TIME] (docs/perkctl.md):
 * the grants (GET /v1/grants), one grant (GET /v1/grants/ID) and ops moving
 * an active grant's expiry (POST /v1/grants/ID/extend, audited). Never a
 * token: the API shows none after the answer that created it.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "perkctl.h"

static const char *field(const json_t *g, const char *k)
{
    const char *s = json_string_value(json_object_get(g, k));
    return s ? s : "-";
}

static int show(const pk_ctx *ctx, const pk_cmd *cmd, const char *id)
{
    long long n;
    if (!id || pk_parse_int(id, 1, INT64_MAX, &n) != 0)
        return pk_usage_error(cmd, "ID: expected a grant number");
    char path[64];
    snprintf(path, sizeof path, "/v1/grants/%lld", n);
    pkh_response resp;
    pkh_request req = {.method = "GET", .path = path};
    int rc = pk_call(ctx, &req, &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    else if (rc == PK_EXIT_OK) {
        json_t *g = json_object_get(resp.json, "grant");
        pk_line(stdout, "grant %lld: %s %s x%lld, %s", n, field(g, "client"), field(g, "sku"),
                (long long)json_integer_value(json_object_get(g, "quantity")), field(g, "state"));
        pk_line(stdout, "holder: %s, gifted %lld times", field(g, "holder"),
                (long long)json_integer_value(json_object_get(g, "gifted")));
        pk_line(stdout, "created: %s, expires: %s", field(g, "created_at"), field(g, "expires_at"));
        if (json_object_get(g, "claimed_at"))
            pk_line(stdout, "claimed: %s", field(g, "claimed_at"));
        if (json_object_get(g, "expired_at"))
            pk_line(stdout, "expired: %s", field(g, "expired_at"));
    }
    pkh_response_free(&resp);
    return rc;
}

static int extend(const pk_ctx *ctx, const pk_cmd *cmd, const char *id, const char *at)
{
    long long n;
    if (!id || pk_parse_int(id, 1, INT64_MAX, &n) != 0)
        return pk_usage_error(cmd, "ID: expected a grant number");
    if (!at)
        return pk_usage_error(cmd, "TIME: expected an RFC 3339 time");
    char path[80];
    snprintf(path, sizeof path, "/v1/grants/%lld/extend", n);
    pkh_response resp;
    int rc = pk_call_json(ctx, "POST", path, json_pack("{s:s}", "expires_at", at), &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    else if (rc == PK_EXIT_OK) {
        const char *e =
            json_string_value(json_object_get(json_object_get(resp.json, "grant"), "expires_at"));
        pk_line(stdout, "grant %lld now expires %s", n, e ? e : "?");
    }
    pkh_response_free(&resp);
    return rc;
}

int pk_cmd_grants(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    static const char *const states[] = {"active", "claimed", "expired", NULL};
    const char *after = NULL, *limit = NULL, *state = NULL, *client = NULL, *args[3];
    const pk_opt opts[] = {
        PK_OPT_PAGE(&after, &limit, "a grant id"),
        PK_OPT_CHOICE("state", &state, states),
        PK_OPT_TEXT("client", &client),
        PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts, &(pk_pos){args, 3, NULL});
    if (rc >= 0)
        return rc;
    if (args[0] && !strcmp(args[0], "show") && !args[2])
        return show(ctx, cmd, args[1]);
    if (args[0] && !strcmp(args[0], "extend"))
        return extend(ctx, cmd, args[1], args[2]);
    if (args[0])
        return pk_usage_error(cmd, "expected show ID or extend ID TIME, or no argument to list");
    const pkh_param query[] = {
        {"after", after}, {"limit", limit}, {"state", state}, {"client", client}};
    pkh_request req = {.method = "GET", .path = "/v1/grants", .query = query, .nquery = 4};
    static const pk_column cols[] = {
        {"ID", "id", NULL},         {"CLIENT", "client", NULL},        {"SKU", "sku", NULL},
        {"QTY", "quantity", NULL},  {"STATE", "state", NULL},          {"HOLDER", "holder", NULL},
        {"GIFTED", "gifted", NULL}, {"EXPIRES_AT", "expires_at", NULL}};
    return pk_list(ctx, &req, "grants", cols, sizeof cols / sizeof *cols, NULL, "no grants");
}
