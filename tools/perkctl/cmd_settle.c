/*
 * cmd_settle.c — `perkctl settle`: ops settle a stuck order by hand with the
 * supplier's evidence (POST /v1/orders/ID/settle). Nothing is sent to the
 * supplier; the daemon refuses an order that is not stuck (exit 1, its
 * message naming the order's state).
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "perkctl.h"

int pk_cmd_settle(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    enum { O_OUTCOME = 256, O_NOTE, O_CHARGED, O_SUPPLIER_ORDER_ID };
    static const struct option opts[] = {
        {"outcome", required_argument, NULL, O_OUTCOME},
        {"note", required_argument, NULL, O_NOTE},
        {"charged", required_argument, NULL, O_CHARGED},
        {"supplier-order-id", required_argument, NULL, O_SUPPLIER_ORDER_ID},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *id = NULL, *outcome = NULL, *note = NULL, *charged = NULL, *sorder = NULL;
    int c;

    optind = 0;
    while ((c = getopt_long(argc, argv, PK_OPTSTRING, opts, NULL)) != -1) {
        switch (c) {
        case 1:
            if (id)
                return pk_usage_error(cmd, "unexpected argument '%s': give one ORDER_ID", optarg);
            id = optarg;
            break;
        case O_OUTCOME:
            outcome = optarg;
            break;
        case O_NOTE:
            note = optarg;
            break;
        case O_CHARGED:
            charged = optarg;
            break;
        case O_SUPPLIER_ORDER_ID:
            sorder = optarg;
            break;
        case 'h':
            return pk_help(cmd);
        default:
            return pk_getopt_error(cmd, c, argv);
        }
    }
    if (optind < argc)
        return pk_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    long long order;
    if (!id)
        return pk_usage_error(cmd, "ORDER_ID is required");
    if (pk_parse_int(id, 1, INT64_MAX, &order) != 0)
        return pk_usage_error(cmd, "ORDER_ID: expected an order number, got '%s'", id);
    if (!outcome || (strcmp(outcome, "succeeded") && strcmp(outcome, "failed")))
        return pk_usage_error(cmd, "--outcome succeeded or --outcome failed is required");
    if (!note || !*note)
        return pk_usage_error(cmd, "--note is required (the supplier's evidence)");

    json_t *body = json_pack("{s:s,s:s}", "outcome", outcome, "note", note);
    if (body && charged)
        json_object_set_new(body, "charged", json_string(charged));
    if (body && sorder)
        json_object_set_new(body, "supplier_order_id", json_string(sorder));
    char path[64];
    snprintf(path, sizeof path, "/v1/orders/%lld/settle", order);
    pkh_response resp;
    int rc = pk_call_json(ctx, "POST", path, body, &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    if (rc != PK_EXIT_OK || ctx->json) {
        pkh_response_free(&resp);
        return rc;
    }
    const json_t *o = json_object_get(resp.json, "order");
    char st[32], by[80];
    pk_line(stdout, "settled order %lld: %s by %s", order, pk_field(o, "state", st, sizeof st),
            pk_field(o, "settled_by", by, sizeof by));
    pkh_response_free(&resp);
    return rc;
}
