/*
 * cmd_products.c — `perkctl products`: the catalog with face value and stock.
 */
#include "perkctl.h"

int pk_cmd_products(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *brand = NULL, *tag = NULL, *category = NULL;
    const pk_opt opts[] = {
        PK_OPT_TEXT("brand", &brand),
        PK_OPT_TEXT("tag", &tag),
        PK_OPT_TEXT("category", &category),
        PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts, NULL);
    if (rc >= 0)
        return rc;

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
