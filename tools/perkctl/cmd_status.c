/*
 * cmd_status.c — `perkctl status` (one screen on a running daemon) and
 * `perkctl suppliers`.
 */
#include "perkctl.h"

#include <string.h>

static int print_suppliers(const json_t *answer)
{
    const json_t *suppliers = json_object_get(answer, "suppliers"), *s;
    size_t i;
    if (json_array_size(suppliers) == 0) {
        fputs("no suppliers\n", stdout);
        return 0;
    }
    pk_table t;
    pk_table_init(&t, 10,
                  (const char *const[]){"ID", "PLUGIN", "VERSION", "ABI", "ENABLED", "PRIORITY",
                                        "STATE", "BREAKER", "IN_FLIGHT", "ERROR"});
    json_array_foreach(suppliers, i, s)
    {
        char b[10][64];
        const json_t *h = json_object_get(s, "health"); /* the I/O engine's view */
        pk_table_add(&t, (const char *const[]){
                             pk_field(s, "id", b[0], sizeof b[0]),
                             pk_field(s, "plugin", b[1], sizeof b[1]),
                             pk_field(s, "plugin_version", b[2], sizeof b[2]),
                             pk_field(s, "abi", b[3], sizeof b[3]),
                             pk_field(s, "enabled", b[4], sizeof b[4]),
                             pk_field(s, "priority", b[5], sizeof b[5]),
                             pk_field(s, "state", b[6], sizeof b[6]),
                             pk_field(h, "breaker", b[7], sizeof b[7]),
                             pk_field(h, "in_flight", b[8], sizeof b[8]),
                             pk_field(s, "error", b[9], sizeof b[9]),
                         });
    }
    int rc = pk_table_print(&t, stdout);
    pk_table_free(&t);
    return rc;
}

static int print_stock(const json_t *stats)
{
    const json_t *skus = json_object_get(stats, "skus"), *s;
    size_t i;
    if (json_array_size(skus) == 0)
        return 0;
    pk_table t;
    /* every state a code can be in, so a row adds up to what was imported */
    pk_table_init(&t, 7,
                  (const char *const[]){"SKU", "IMPORTED", "AVAILABLE", "ISSUED", "REDEEMED",
                                        "VOIDED", "EXPIRED"});
    json_array_foreach(skus, i, s)
    {
        char b[7][64];
        pk_table_add(&t, (const char *const[]){
                             pk_field(s, "sku", b[0], sizeof b[0]),
                             pk_field(s, "imported", b[1], sizeof b[1]),
                             pk_field(s, "available", b[2], sizeof b[2]),
                             pk_field(s, "issued", b[3], sizeof b[3]),
                             pk_field(s, "redeemed", b[4], sizeof b[4]),
                             pk_field(s, "voided", b[5], sizeof b[5]),
                             pk_field(s, "expired", b[6], sizeof b[6]),
                         });
    }
    fputc('\n', stdout);
    int rc = pk_table_print(&t, stdout);
    pk_table_free(&t);
    return rc;
}

/* GET for /v1/health and /v1/ready, whose non-200 answers ({"status":
 * "stopping"} with 503) are states to show, not errors to report. */
static int probe(const pk_ctx *ctx, const char *path, pkh_response *resp)
{
    pkh_request req = {.method = "GET", .path = path};
    int rc = pkh_send(&ctx->http, &req, resp);
    if (rc == PKH_OK)
        return PK_EXIT_OK;
    if (rc == PKH_EINTR)
        return PK_EXIT_INTERRUPTED;
    fprintf(stderr, "perkctl: cannot reach %s: ", ctx->url_shown);
    pk_put_clean(stderr, resp->error, 0);
    fputc('\n', stderr);
    return rc == PKH_ENOMEM ? PK_EXIT_REFUSED : PK_EXIT_UNREACHABLE;
}

/* "ok" / "ready" / "stopping" from the body, or "http 502" when there is none. */
static const char *probe_state(const pkh_response *resp, char *buf, size_t len)
{
    const char *s = json_string_value(json_object_get(resp->json, "status"));
    if (s)
        return s;
    snprintf(buf, len, "http %ld", resp->status);
    return buf;
}

int pk_cmd_status(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    int rc = pk_args(cmd, argc, argv, NULL, 0);
    if (rc >= 0)
        return rc;

    pkh_response health = {0}, ready = {0}, stats = {0}, suppliers = {0};
    int stats_rc = -1, suppliers_rc = -1; /* -1: not asked */
    if ((rc = probe(ctx, "/v1/health", &health)) != PK_EXIT_OK)
        goto out;
    if ((rc = probe(ctx, "/v1/ready", &ready)) != PK_EXIT_OK)
        goto out;
    if (ctx->http.token) {
        pkh_request req = {.method = "GET", .path = "/v1/stats"};
        stats_rc = pk_call(ctx, &req, &stats);
        /* Both need the ops scope: one "forbidden" is enough. */
        if (stats_rc == PK_EXIT_OK ||
            (stats_rc == PK_EXIT_REFUSED && stats.status != 401 && stats.status != 403)) {
            req.path = "/v1/suppliers";
            suppliers_rc = pk_call(ctx, &req, &suppliers);
        }
    }

    char b1[32], b2[32];
    const char *h = probe_state(&health, b1, sizeof b1), *r = probe_state(&ready, b2, sizeof b2);
    int healthy = health.status == 200 && strcmp(h, "ok") == 0;
    rc = healthy && ready.status == 200 ? PK_EXIT_OK : PK_EXIT_REFUSED;
    if (stats_rc > rc)
        rc = stats_rc;
    if (suppliers_rc > rc)
        rc = suppliers_rc;

    if (ctx->json) {
        /* One object of the four answers, null for those not asked or lost. */
        json_t *all = json_pack("{s:s, s:O?, s:O?, s:O?, s:O?}", "server", ctx->url_shown, "health",
                                health.json, "ready", ready.json, "stats", stats.json, "suppliers",
                                suppliers.json);
        if (all)
            json_dumpf(all, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(all);
        goto out;
    }

    pk_kv(stdout, "server", ctx->url_shown);
    pk_kv(stdout, "health", h);
    pk_kv(stdout, "ready", r);
    const json_t *orders = json_object_get(health.json, "orders");
    if (json_is_integer(json_object_get(orders, "stuck"))) /* issue 11: settle them by hand */
        pk_kv_field(stdout, "stuck orders", orders, "stuck");
    if (stats_rc == -1) {
        pk_kv(stdout, "stats", "skipped: no token (set PERKHUB_TOKEN to an ops token)");
        goto out;
    }
    if (stats_rc == PK_EXIT_OK) {
        pk_kv_field(stdout, "orders", stats.json, "orders");
        pk_kv_field(stdout, "last event", stats.json, "last_event");
    } else {
        char b[64];
        pk_kv(stdout, "stats", pk_field(stats.json, "error", b, sizeof b));
    }
    if (suppliers_rc == PK_EXIT_OK) {
        size_t n = json_array_size(json_object_get(suppliers.json, "suppliers")), up = 0, i;
        const json_t *s;
        json_array_foreach(json_object_get(suppliers.json, "suppliers"), i, s)
        {
            const char *state = json_string_value(json_object_get(s, "state"));
            up += state && strcmp(state, "ready") == 0;
        }
        char line[64];
        snprintf(line, sizeof line, "%zu (%zu ready)", n, up);
        pk_kv(stdout, "suppliers", line);
    } else if (suppliers_rc != -1) {
        char b[64];
        pk_kv(stdout, "suppliers", pk_field(suppliers.json, "error", b, sizeof b));
    }
    if (stats_rc == PK_EXIT_OK && print_stock(stats.json) != 0)
        rc = PK_EXIT_REFUSED;
    if (suppliers_rc == PK_EXIT_OK) {
        fputc('\n', stdout);
        if (print_suppliers(suppliers.json) != 0)
            rc = PK_EXIT_REFUSED;
    }

out:
    pkh_response_free(&health);
    pkh_response_free(&ready);
    pkh_response_free(&stats);
    pkh_response_free(&suppliers);
    return rc;
}

int pk_cmd_suppliers(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    int rc = pk_args(cmd, argc, argv, NULL, 0);
    if (rc >= 0)
        return rc;
    pkh_request req = {.method = "GET", .path = "/v1/suppliers"};
    pkh_response resp;
    rc = pk_call(ctx, &req, &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    else if (rc == PK_EXIT_OK && print_suppliers(resp.json) != 0)
        rc = PK_EXIT_REFUSED;
    pkh_response_free(&resp);
    return rc;
}
