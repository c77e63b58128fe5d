/*
 * cmd_reviews.c — perkctl reviews [release|block ID] (docs/perkctl.md): the
 * review queue of held orders (GET /v1/reviews) and ops' release or block of
 * one (POST /v1/reviews/ID/release|block).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "perkctl.h"

static int act(const pk_ctx *ctx, const pk_cmd *cmd, const char *action, const char *id,
               const char *note)
{
    long long n;
    if (!id || pk_parse_int(id, 1, INT64_MAX, &n) != 0)
        return pk_usage_error(cmd, "ID: expected an order number");
    char path[80];
    snprintf(path, sizeof path, "/v1/reviews/%lld/%s", n, action);
    pkh_response resp;
    int rc = pk_call_json(ctx, "POST", path,
                          note ? json_pack("{s:s}", "note", note) : json_object(), &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    else if (rc == PK_EXIT_OK) {
        json_t *o = json_object_get(resp.json, "order");
        const char *st = json_string_value(json_object_get(o, "state"));
        pk_line(stdout, "order %lld %s: %s", n, !strcmp(action, "release") ? "released" : "blocked",
                st ? st : "?");
    }
    pkh_response_free(&resp);
    return rc;
}

int pk_cmd_reviews(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *after = NULL, *limit = NULL, *note = NULL, *args[2];
    const pk_opt opts[] = {
        PK_OPT_PAGE(&after, &limit, "an order id"),
        PK_OPT_TEXT("note", &note),
        PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts, &(pk_pos){args, 2, NULL});
    if (rc >= 0)
        return rc;
    const char *action = args[0], *id = args[1];
    if (action && strcmp(action, "release") && strcmp(action, "block"))
        return pk_usage_error(cmd, "expected release ID or block ID, or no argument to list");
    if (action)
        return act(ctx, cmd, action, id, note);
    if (note)
        return pk_usage_error(cmd, "--note goes with release or block");
    const pkh_param query[] = {{"after", after}, {"limit", limit}};
    pkh_request req = {.method = "GET", .path = "/v1/reviews", .query = query, .nquery = 2};
    static const pk_column cols[] = {{"ORDER", "order_id", NULL},
                                     {"CLIENT", "client", NULL},
                                     {"CLIENT_ORDER_ID", "client_order_id", NULL},
                                     {"SKU", "sku", NULL},
                                     {"QTY", "quantity", NULL},
                                     {"RULE", "rule", NULL},
                                     {"HOLD_UNTIL", "hold_until", NULL}};
    return pk_list(ctx, &req, "reviews", cols, sizeof cols / sizeof *cols, NULL, "no held orders");
}
