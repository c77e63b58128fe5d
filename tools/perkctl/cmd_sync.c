/*
 * cmd_sync.c — `perkctl sync ID`: run a supplier's catalog and stock sync now
 * (POST /v1/suppliers/ID/sync), and `perkctl pin SKU listed|delisted|none`
 * (POST /v1/products/SKU/pin). Both need an ops token.
 */
#include <string.h>

#include "perkctl.h"

/* An id or SKU goes into the path as it is: only the characters they are made of. */
static int ident_ok(const char *s)
{
    return s && *s && strlen(s) <= 64 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-") ==
               strlen(s);
}

enum { O_WHAT = 256 };

int pk_cmd_sync(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *id, *what = "all";
    const pk_opt opts[] = {PK_OPT_TEXT("what", &what), PK_OPT_END};
    int rc = pk_parse(cmd, argc, argv, opts,
                      &(pk_pos){&id, 1, "unexpected argument '%s': give one supplier ID"});
    if (rc >= 0)
        return rc;
    if (!ident_ok(id))
        return pk_usage_error(cmd, "a supplier ID is required (letters, digits, _ . : -)");
    if (strcmp(what, "catalog") && strcmp(what, "stock") && strcmp(what, "all"))
        return pk_usage_error(cmd, "--what: expected catalog, stock or all, got '%s'", what);
    char path[128];
    snprintf(path, sizeof path, "/v1/suppliers/%s/sync", id);
    pkh_response resp;
    rc = pk_call_json(ctx, "POST", path, json_pack("{s:s}", "what", what), &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    if (rc == PK_EXIT_OK && !ctx->json) {
        json_t *q = json_object_get(resp.json, "queued"), *j;
        size_t i;
        json_array_foreach(q, i, j)
        {
            pk_line(stdout, "queued %s", json_string_value(j));
        }
        pk_line(stdout, "see its outcome with: perkctl suppliers --json (sync), or GET /v1/jobs");
    }
    pkh_response_free(&resp);
    return rc;
}

int pk_cmd_pin(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *args[2];
    int stop = pk_args(cmd, argc, argv, args, 2);
    if (stop >= 0)
        return stop;
    const char *sku = args[0];
    const char *pin = args[1];
    if (!ident_ok(sku))
        return pk_usage_error(cmd, "a SKU is required (letters, digits, _ . : -)");
    if (!pin || (strcmp(pin, "listed") && strcmp(pin, "delisted") && strcmp(pin, "none")))
        return pk_usage_error(cmd, "expected listed, delisted or none after the SKU");
    char path[128];
    snprintf(path, sizeof path, "/v1/products/%s/pin", sku);
    pkh_response resp;
    int rc = pk_call_json(ctx, "POST", path, json_pack("{s:s}", "pin", pin), &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    if (rc == PK_EXIT_OK && !ctx->json) {
        const char *why = json_string_value(json_object_get(resp.json, "delisted_reason"));
        pk_line(stdout, "%s: pin %s, %s%s%s", sku, pin,
                json_is_true(json_object_get(resp.json, "listed")) ? "listed" : "delisted",
                why ? " by " : "", why ? why : "");
    }
    pkh_response_free(&resp);
    return rc;
}
