/*
 * cmd_replenish.c — perkctl replenishments (docs/perkctl.md): the purchases
 * auto-replenishment made, newest last (GET /v1/replenishments).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "perkctl.h"

/* "28.50" from the unit_cost_fen field, "-" when it is null. */
static const char *unit_cost(const json_t *d, char *buf, size_t n)
{
    const json_t *v = json_object_get(d, "unit_cost_fen");
    if (!json_is_integer(v)) {
        snprintf(buf, n, "-");
        return buf;
    }
    long long f = (long long)json_integer_value(v);
    snprintf(buf, n, "%s%lld.%02lld", f < 0 ? "-" : "", (f < 0 ? -f : f) / 100,
             (f < 0 ? -f : f) % 100);
    return buf;
}

int pk_cmd_replenishments(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *sku = NULL, *state = NULL, *after = NULL, *limit = NULL;
    const pk_opt opts[] = {
        PK_OPT_TEXT("sku", &sku),
        PK_OPT_TEXT("state", &state),
        PK_OPT_PAGE(&after, &limit, "a replenishment id"),
        PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts, NULL);
    if (rc >= 0)
        return rc;
    const pkh_param query[] = {{"sku", sku}, {"state", state}, {"after", after}, {"limit", limit}};
    pkh_request req = {.method = "GET", .path = "/v1/replenishments", .query = query, .nquery = 4};
    static const pk_column cols[] = {{"ID", "id", NULL},
                                     {"SKU", "sku", NULL},
                                     {"SUPPLIER", "supplier", NULL},
                                     {"QUANTITY", "quantity", NULL},
                                     {"UNIT_COST", NULL, unit_cost},
                                     {"STATE", "state", NULL},
                                     {"ORDER", "order_id", NULL},
                                     {"BATCH", "batch_id", NULL},
                                     {"STARTED", "started_at", NULL}};
    return pk_list(ctx, &req, "replenishments", cols, sizeof cols / sizeof *cols, NULL,
                   "no replenishments");
}
