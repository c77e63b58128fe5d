/*
 * cmd_ops.c — `perkctl batches`, `perkctl stats`, `perkctl supplier` and
 * `perkctl --version`: what ops read from the API beside orders — the batches
 * bought, the counters, a supplier's own catalog and our balance with it, and
 * which versions talk to each other.
 */
#include "perkctl.h"

#include <stdint.h>
#include <string.h>

#include "base/version.h"

/* A GET whose answer is printed as is with --json; *resp is the caller's. */
static int get(const pk_ctx *ctx, const char *path, const pkh_param *query, size_t nquery,
               pkh_response *resp)
{
    pkh_request req = {.method = "GET", .path = path, .query = query, .nquery = nquery};
    int rc = pk_call(ctx, &req, resp);
    if (ctx->json)
        pk_print_raw(resp);
    return rc;
}

/* ---- batches --------------------------------------------------------------- */

static int batches_list(const pk_ctx *ctx, const char *after, const char *limit)
{
    static const pk_column cols[] = {{"ID", "id", NULL},
                                     {"SUPPLIER", "supplier", NULL},
                                     {"SKU", "sku", NULL},
                                     {"COUNT", "count", NULL},
                                     {"UNIT_COST", "unit_cost", NULL},
                                     {"STATE", "state", NULL},
                                     {"CREATED", "created_at", NULL},
                                     {"NOTE", "note", NULL}};
    const pkh_param query[] = {{"after", after}, {"limit", limit}};
    pkh_request req = {.method = "GET", .path = "/v1/batches", .query = query, .nquery = 2};
    return pk_list(ctx, &req, "batches", cols, sizeof cols / sizeof *cols, NULL, "no batches");
}

static int batch_show(const pk_ctx *ctx, const pk_cmd *cmd, const char *id)
{
    long long n;
    if (pk_parse_int(id, 1, INT64_MAX, &n) != 0)
        return pk_usage_error(cmd, "ID: expected a batch number, got '%s'", id);
    char path[64];
    snprintf(path, sizeof path, "/v1/batches/%lld", n);
    pkh_response resp;
    int rc = get(ctx, path, NULL, 0, &resp);
    if (rc == PK_EXIT_OK && !ctx->json) {
        const json_t *b = json_object_get(resp.json, "batch");
        const json_t *codes = json_object_get(b, "codes");
        pk_kv_field(stdout, "batch", b, "id");
        pk_kv_field(stdout, "supplier", b, "supplier");
        pk_kv_field(stdout, "sku", b, "sku");
        pk_kv_field(stdout, "count", b, "count");
        pk_kv_field(stdout, "unit cost", b, "unit_cost");
        pk_kv_field(stdout, "state", b, "state");
        pk_kv_field(stdout, "created", b, "created_at");
        pk_kv_field(stdout, "note", b, "note");
        pk_kv_field(stdout, "voided", b, "voided_at");
        pk_kv_field(stdout, "void reason", b, "void_reason");
        static const char *const states[] = {"available", "issued", "redeemed", "voided",
                                             "expired"};
        for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
            char label[32];
            snprintf(label, sizeof label, "codes %s", states[i]);
            pk_kv_field(stdout, label, codes, states[i]);
        }
    }
    pkh_response_free(&resp);
    return rc;
}

int pk_cmd_batches(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *after = NULL, *limit = NULL, *args[2];
    const pk_opt opts[] = {
        PK_OPT_PAGE(&after, &limit, "a batch id"),
        PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts, &(pk_pos){args, 2, NULL});
    if (rc >= 0)
        return rc;
    const char *verb = args[0], *id = args[1];
    if (!verb || !strcmp(verb, "list")) {
        if (id)
            return pk_usage_error(cmd, "list takes no ID (did you mean 'batches show %s'?)", id);
        return batches_list(ctx, after, limit);
    }
    if (strcmp(verb, "show"))
        return pk_usage_error(cmd, "expected list or show, got '%s'", verb);
    if (!id)
        return pk_usage_error(cmd, "show needs a batch ID");
    if (after || limit)
        return pk_usage_error(cmd, "--after and --limit go with list");
    return batch_show(ctx, cmd, id);
}

/* ---- stats ------------------------------------------------------------------- */

int pk_cmd_stats(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *since = NULL;
    const pk_opt opts[] = {PK_OPT_TEXT("since", &since), PK_OPT_END};
    int rc = pk_parse(cmd, argc, argv, opts, NULL);
    if (rc >= 0)
        return rc;

    pkh_response stats = {0}, orders = {0};
    pkh_request req = {.method = "GET", .path = "/v1/stats"};
    rc = pk_call(ctx, &req, &stats);
    if (rc == PK_EXIT_OK) {
        const pkh_param query[] = {{"since", since}};
        req =
            (pkh_request){.method = "GET", .path = "/v1/stats/orders", .query = query, .nquery = 1};
        rc = pk_call(ctx, &req, &orders);
    }
    if (rc != PK_EXIT_OK)
        goto out;
    if (ctx->json) {
        json_t *all = json_pack("{s:O,s:O}", "stats", stats.json, "orders", orders.json);
        if (all)
            json_dumpf(all, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(all);
        goto out;
    }
    const json_t *s = stats.json, *o = orders.json, *w = json_object_get(s, "writer");
    pk_kv_field(stdout, "codes", s, "codes");
    pk_kv_field(stdout, "orders", s, "orders");
    pk_kv_field(stdout, "last event", s, "last_event");
    pk_kv_field(stdout, "map size", s, "map_size");
    pk_kv_field(stdout, "commits", w, "commits");
    pk_kv_field(stdout, "commands", w, "commands");
    char since_line[96], b[4][32];
    const json_t *by = json_object_get(o, "by_state");
    snprintf(since_line, sizeof since_line, "orders since %s",
             pk_field(o, "since", b[0], sizeof b[0]));
    pk_kv_field(stdout, since_line, o, "orders");
    pk_line(stdout, "  succeeded %s, failed %s, processing %s, unknown %s",
            pk_field(by, "succeeded", b[0], sizeof b[0]), pk_field(by, "failed", b[1], sizeof b[1]),
            pk_field(by, "processing", b[2], sizeof b[2]),
            pk_field(by, "unknown", b[3], sizeof b[3]));
    const json_t *open = json_object_get(o, "open");
    pk_line(stdout, "open now:      processing %s, unknown %s",
            pk_field(open, "processing", b[0], sizeof b[0]),
            pk_field(open, "unknown", b[1], sizeof b[1]));

    const json_t *skus = json_object_get(s, "skus"), *k;
    size_t i;
    if (json_array_size(skus)) {
        pk_table t;
        pk_table_init(
            &t, 6,
            (const char *const[]){"SKU", "IMPORTED", "AVAILABLE", "ISSUED", "VOIDED", "EXPIRED"});
        json_array_foreach(skus, i, k)
        {
            char c6[6][64];
            pk_table_add(&t, (const char *const[]){
                                 pk_field(k, "sku", c6[0], sizeof c6[0]),
                                 pk_field(k, "imported", c6[1], sizeof c6[1]),
                                 pk_field(k, "available", c6[2], sizeof c6[2]),
                                 pk_field(k, "issued", c6[3], sizeof c6[3]),
                                 pk_field(k, "voided", c6[4], sizeof c6[4]),
                                 pk_field(k, "expired", c6[5], sizeof c6[5]),
                             });
        }
        fputc('\n', stdout);
        if (pk_table_print(&t, stdout) != 0)
            rc = PK_EXIT_REFUSED;
        pk_table_free(&t);
    }
    const json_t *top = json_object_get(o, "top_skus");
    if (json_array_size(top)) {
        pk_table t;
        pk_table_init(&t, 6,
                      (const char *const[]){"TOP_SKU", "ORDERS", "QUANTITY", "SUCCEEDED", "FAILED",
                                            "UNKNOWN"});
        json_array_foreach(top, i, k)
        {
            char c6[6][64];
            pk_table_add(&t, (const char *const[]){
                                 pk_field(k, "sku", c6[0], sizeof c6[0]),
                                 pk_field(k, "orders", c6[1], sizeof c6[1]),
                                 pk_field(k, "quantity", c6[2], sizeof c6[2]),
                                 pk_field(k, "succeeded", c6[3], sizeof c6[3]),
                                 pk_field(k, "failed", c6[4], sizeof c6[4]),
                                 pk_field(k, "unknown", c6[5], sizeof c6[5]),
                             });
        }
        fputc('\n', stdout);
        if (pk_table_print(&t, stdout) != 0)
            rc = PK_EXIT_REFUSED;
        pk_table_free(&t);
    }
out:
    pkh_response_free(&stats);
    pkh_response_free(&orders);
    return rc;
}

/* ---- supplier ---------------------------------------------------------------- */

static int print_catalog(const json_t *answer)
{
    const json_t *items = json_object_get(answer, "items"), *it;
    size_t i;
    if (json_array_size(items) == 0) {
        fputs("no items\n", stdout);
        return 0;
    }
    pk_table t;
    pk_table_init(&t, 8,
                  (const char *const[]){"SUPPLIER_SKU", "DELIVERY", "FACE_VALUE", "PRICE", "STOCK",
                                        "ON_SALE", "OUR_SKUS", "NAME"});
    json_array_foreach(items, i, it)
    {
        char c[8][128], ours[256] = "";
        const json_t *offer;
        size_t j, len = 0;
        json_array_foreach(json_object_get(it, "offers"), j, offer)
        {
            const char *sku = json_string_value(json_object_get(offer, "sku"));
            int above = json_is_true(json_object_get(offer, "price_above_cost"));
            if (sku && len < sizeof ours)
                len += (size_t)snprintf(ours + len, sizeof ours - len, "%s%s%s", j ? "," : "", sku,
                                        above ? "(price above our cost)" : "");
        }
        pk_table_add(&t, (const char *const[]){
                             pk_field(it, "supplier_sku", c[0], sizeof c[0]),
                             pk_field(it, "delivery", c[1], sizeof c[1]),
                             pk_field(it, "face_value", c[2], sizeof c[2]),
                             pk_field(it, "price", c[3], sizeof c[3]),
                             pk_field(it, "stock", c[4], sizeof c[4]),
                             pk_field(it, "on_sale", c[5], sizeof c[5]),
                             len ? ours : "-",
                             pk_field(it, "name", c[7], sizeof c[7]),
                         });
    }
    int rc = pk_table_print(&t, stdout);
    pk_table_free(&t);
    return rc;
}

int pk_cmd_supplier(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *args[2];
    int stop = pk_args(cmd, argc, argv, args, 2);
    if (stop >= 0)
        return stop;
    const char *verb = args[0];
    const char *id = args[1];
    if (!verb || (strcmp(verb, "catalog") && strcmp(verb, "balance")))
        return pk_usage_error(cmd, "expected catalog or balance%s%s%s", verb ? ", got '" : "",
                              verb ? verb : "", verb ? "'" : "");
    /* an id goes into the path as it is: only the characters ids are made of */
    if (!id || !*id || strlen(id) > 64 ||
        strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
            strlen(id))
        return pk_usage_error(cmd, "%s needs a supplier ID (letters, digits, _ . -)", verb);
    char path[256];
    snprintf(path, sizeof path, "/v1/suppliers/%s/%s", id, verb);
    pkh_response resp;
    int rc = get(ctx, path, NULL, 0, &resp);
    if (rc == PK_EXIT_OK && !ctx->json) {
        if (!strcmp(verb, "balance")) {
            char b[64];
            const json_t *bal = json_object_get(resp.json, "balance");
            pk_line(stdout, "balance with %s: %s", id,
                    json_is_null(bal) ? "not reported by the supplier"
                                      : pk_field(resp.json, "balance", b, sizeof b));
        } else if (print_catalog(resp.json) != 0) {
            rc = PK_EXIT_REFUSED;
        }
    }
    pkh_response_free(&resp);
    return rc;
}

/* ---- --version --------------------------------------------------------------- */

int pk_print_version(const pk_ctx *ctx)
{
    printf("perkctl %s\n", PH_VERSION);
    /* the server's, when one answers: GET /v1/health needs no token */
    pkh_request req = {.method = "GET", .path = "/v1/health"};
    pkh_response resp = {0};
    int rc = pkh_send(&ctx->http, &req, &resp);
    const char *v = rc == PKH_OK ? json_string_value(json_object_get(resp.json, "version")) : NULL;
    if (v)
        pk_line(stdout, "perkhubd %s (%s)", v, ctx->url_shown);
    else if (rc == PKH_OK)
        pk_line(stdout, "perkhubd: %s answers without a version (older than perkctl %s)",
                ctx->url_shown, PH_VERSION);
    else
        pk_line(stdout, "perkhubd: not reachable at %s", ctx->url_shown);
    pkh_response_free(&resp);
    return PK_EXIT_OK;
}
