/*
 * cmd_reviews.c — perkctl reviews [release|block ID] (docs/perkctl.md): the
 * review queue of held orders (GET /v1/reviews) and ops' release or block of
 * one (POST /v1/reviews/ID/release|block).
 */
#include <getopt.h>
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
    enum { O_AFTER = 256, O_LIMIT, O_NOTE };
    static const struct option opts[] = {
        {"after", required_argument, NULL, O_AFTER},
        {"limit", required_argument, NULL, O_LIMIT},
        {"note", required_argument, NULL, O_NOTE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *after = NULL, *limit = NULL, *note = NULL, *action = NULL, *id = NULL;
    int c, rc;
    optind = 0;
    while ((c = getopt_long(argc, argv, PK_OPTSTRING, opts, NULL)) != -1) {
        switch (c) {
        case O_AFTER:
            if ((rc = pk_opt_int(cmd, "--after", optarg, 0, INT64_MAX, "an order id", &after)))
                return rc;
            break;
        case O_LIMIT:
            if ((rc = pk_opt_int(cmd, "--limit", optarg, 1, 1000, "1 to 1000", &limit)))
                return rc;
            break;
        case O_NOTE:
            note = optarg;
            break;
        case 1:
            if (!action)
                action = optarg;
            else if (!id)
                id = optarg;
            else
                return pk_usage_error(cmd, "unexpected argument '%s'", optarg);
            break;
        case 'h':
            return pk_help(cmd);
        default:
            return pk_getopt_error(cmd, c, argv);
        }
    }
    if (optind < argc)
        return pk_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
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
