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
    /* NAME last: it is the long, often Chinese, column. */
    static const pk_column cols[] = {{"SKU", "sku", NULL},
                                     {"BRAND", "brand", NULL},
                                     {"CATEGORY", "category", NULL},
                                     {"DELIVERY", "delivery", NULL},
                                     {"FACE_VALUE", "face_value", NULL},
                                     {"AVAILABLE", "stock.available", NULL},
                                     {"LISTED", "listed", NULL},
                                     {"TAGS", "tags", NULL},
                                     {"NAME", "name", NULL}};
    return pk_list(ctx, &req, "products", cols, sizeof cols / sizeof *cols, NULL, "no products");
}
