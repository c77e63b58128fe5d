/*
 * cmd_products.c — `perkctl products`: the catalog with face value and stock.
 */
#include "perkctl.h"

#include <getopt.h>

int pk_cmd_products(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    enum { O_BRAND = 256, O_TAG, O_CATEGORY };
    static const struct option opts[] = {
        {"brand", required_argument, NULL, O_BRAND},
        {"tag", required_argument, NULL, O_TAG},
        {"category", required_argument, NULL, O_CATEGORY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *brand = NULL, *tag = NULL, *category = NULL;
    int c;

    optind = 0;
    while ((c = getopt_long(argc, argv, PK_OPTSTRING, opts, NULL)) != -1) {
        switch (c) {
        case 1:
            return pk_usage_error(cmd, "unexpected argument '%s'", optarg);
        case O_BRAND:
            brand = optarg;
            break;
        case O_TAG:
            tag = optarg;
            break;
        case O_CATEGORY:
            category = optarg;
            break;
        case 'h':
            return pk_help(cmd);
        default:
            return pk_getopt_error(cmd, c, argv);
        }
    }
    if (optind < argc)
        return pk_usage_error(cmd, "unexpected argument '%s'", argv[optind]);

    const pkh_param query[] = {{"brand", brand}, {"tag", tag}, {"category", category}};
    pkh_request req = {.method = "GET", .path = "/v1/products", .query = query, .nquery = 3};
    pkh_response resp;
    int rc = pk_call(ctx, &req, &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    if (rc != PK_EXIT_OK || ctx->json) {
        pkh_response_free(&resp);
        return rc;
    }

    const json_t *products = json_object_get(resp.json, "products"), *p;
    size_t i;
    if (json_array_size(products) == 0) {
        fputs("no products\n", stdout);
    } else {
        /* NAME last: it is the long, often Chinese, column. */
        pk_table t;
        pk_table_init(&t, 9,
                      (const char *const[]){"SKU", "BRAND", "CATEGORY", "DELIVERY", "FACE_VALUE",
                                            "AVAILABLE", "LISTED", "TAGS", "NAME"});
        json_array_foreach(products, i, p)
        {
            char b[9][128];
            pk_table_add(&t,
                         (const char *const[]){
                             pk_field(p, "sku", b[0], sizeof b[0]),
                             pk_field(p, "brand", b[1], sizeof b[1]),
                             pk_field(p, "category", b[2], sizeof b[2]),
                             pk_field(p, "delivery", b[3], sizeof b[3]),
                             pk_field(p, "face_value", b[4], sizeof b[4]),
                             pk_field(json_object_get(p, "stock"), "available", b[5], sizeof b[5]),
                             pk_field(p, "listed", b[6], sizeof b[6]),
                             pk_field(p, "tags", b[7], sizeof b[7]),
                             pk_field(p, "name", b[8], sizeof b[8]),
                         });
        }
        if (pk_table_print(&t, stdout) != 0)
            rc = PK_EXIT_REFUSED;
        pk_table_free(&t);
    }
    pkh_response_free(&resp);
    return rc;
}
