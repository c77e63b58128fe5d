/*
 * cmd_settle.c — `perkctl settle`: ops settle a stuck order by hand with the
 * supplier's evidence (POST /v1/orders/ID/settle). Nothing is sent to the
 * supplier; the daemon refuses an order that is not stuck (exit 1, its
 * message naming the order's state).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "perkctl.h"

int pk_cmd_settle(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *id, *outcome = NULL, *note = NULL, *charged = NULL, *sorder = NULL;
    const pk_opt opts[] = {
        PK_OPT_TEXT("outcome", &outcome),
        PK_OPT_TEXT("note", &note),
        PK_OPT_TEXT("charged", &charged),
        PK_OPT_TEXT("supplier-order-id", &sorder),
        PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts,
                      &(pk_pos){&id, 1, "unexpected argument '%s': give one ORDER_ID"});
    if (rc >= 0)
        return rc;
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
    rc = pk_call_json(ctx, "POST", path, body, &resp);
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
