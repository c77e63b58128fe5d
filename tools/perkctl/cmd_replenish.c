/*
 * cmd_replenish.c — perkctl replenishments (docs/perkctl.md): the purchases
 * auto-replenishment made, newest last (GET /v1/replenishments).
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "perkctl.h"

/* "28.50" from a fen field, "-" when it is null. */
static const char *money(const json_t *d, const char *key, char *buf, size_t n)
{
    const json_t *v = json_object_get(d, key);
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
    long long v;
    int c;
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
            if (pk_parse_int(optarg, 0, INT64_MAX, &v) != 0)
                return pk_usage_error(cmd, "--after: expected a replenishment id, got '%s'",
                                      optarg);
            after = optarg;
            break;
        case O_LIMIT:
            if (pk_parse_int(optarg, 1, 1000, &v) != 0)
                return pk_usage_error(cmd, "--limit: expected 1 to 1000, got '%s'", optarg);
            limit = optarg;
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
    pkh_response resp;
    int rc = pk_call(ctx, &req, &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    if (rc != PK_EXIT_OK || ctx->json) {
        pkh_response_free(&resp);
        return rc;
    }
    const json_t *list = json_object_get(resp.json, "replenishments"), *d;
    size_t i;
    if (json_array_size(list) == 0) {
        fputs("no replenishments\n", stdout);
    } else {
        pk_table t;
        pk_table_init(&t, 9,
                      (const char *const[]){"ID", "SKU", "SUPPLIER", "QUANTITY", "UNIT_COST",
                                            "STATE", "ORDER", "BATCH", "STARTED"});
        json_array_foreach(list, i, d)
        {
            char b[9][48];
            pk_table_add(&t, (const char *const[]){
                                 pk_field(d, "id", b[0], sizeof b[0]),
                                 pk_field(d, "sku", b[1], sizeof b[1]),
                                 pk_field(d, "supplier", b[2], sizeof b[2]),
                                 pk_field(d, "quantity", b[3], sizeof b[3]),
                                 money(d, "unit_cost_fen", b[4], sizeof b[4]),
                                 pk_field(d, "state", b[5], sizeof b[5]),
                                 pk_field(d, "order_id", b[6], sizeof b[6]),
                                 pk_field(d, "batch_id", b[7], sizeof b[7]),
                                 pk_field(d, "started_at", b[8], sizeof b[8]),
                             });
        }
        if (pk_table_print(&t, stdout) != 0)
            rc = PK_EXIT_REFUSED;
        pk_table_free(&t);
    }
    const json_t *next = json_object_get(resp.json, "next_after");
    if (json_is_integer(next))
        pk_line(stdout, "more: --after %lld", (long long)json_integer_value(next));
    pkh_response_free(&resp);
    return rc;
}
