/*
 * cmd_replenish.c — perkctl replenishments (docs/perkctl.md): the purchases
 * auto-replenishment made, newest last (GET /v1/replenishments).
 */
#include <getopt.h>
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
    enum { O_SKU = 256, O_STATE, O_AFTER, O_LIMIT };
    static const struct option opts[] = {
        {"sku", required_argument, NULL, O_SKU},
        {"state", required_argument, NULL, O_STATE},
        {"after", required_argument, NULL, O_AFTER},
        {"limit", required_argument, NULL, O_LIMIT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *sku = NULL, *state = NULL, *after = NULL, *limit = NULL;
    int c, rc;
    optind = 0;
    while ((c = getopt_long(argc, argv, PK_OPTSTRING, opts, NULL)) != -1) {
        switch (c) {
        case O_SKU:
            sku = optarg;
            break;
        case O_STATE:
            state = optarg;
            break;
        case O_AFTER:
            if ((rc = pk_opt_int(cmd, "--after", optarg, 0, INT64_MAX, "a replenishment id",
                                 &after)))
                return rc;
            break;
        case O_LIMIT:
            if ((rc = pk_opt_int(cmd, "--limit", optarg, 1, 1000, "1 to 1000", &limit)))
                return rc;
            break;
        case 1:
            return pk_usage_error(cmd, "unexpected argument '%s'", optarg);
        case 'h':
            return pk_help(cmd);
        default:
            return pk_getopt_error(cmd, c, argv);
        }
    }
    if (optind < argc)
        return pk_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
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
