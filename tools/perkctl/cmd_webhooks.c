/*
 * cmd_webhooks.c — perkctl webhooks [status] | deliveries | failures | replay
 * | enable (docs/perkctl.md): the mall's webhook endpoints as perkhub delivers
 * to them (GET /v1/webhooks, GET /v1/webhooks/ID/deliveries), and the two
 * things ops do about a failing one: replay deliveries, enable it again after
 * a 410 (POST /v1/webhooks/ID/replay, /enable).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "perkctl.h"

/* "enabled", or why it is disabled ("gone: http 410", "disabled"). */
static const char *endpoint_state(const json_t *e, char *buf, size_t n)
{
    const json_t *why = json_object_get(e, "disabled_reason");
    snprintf(buf, n, "%s",
             json_is_true(json_object_get(e, "enabled")) ? "enabled"
             : json_is_string(why)                       ? json_string_value(why)
                                                         : "disabled");
    return buf;
}

/* "http 503", or the error of the last attempt ("timeout"), or "-". */
static const char *last_result(const json_t *d, char *buf, size_t n)
{
    const json_t *status = json_object_get(d, "last_status");
    const json_t *error = json_object_get(d, "last_error");
    if (json_is_integer(status) && json_integer_value(status) > 0)
        snprintf(buf, n, "http %lld", (long long)json_integer_value(status));
    else
        snprintf(buf, n, "%s", json_is_string(error) ? json_string_value(error) : "-");
    return buf;
}

/* perkctl webhooks failures: the dead ones and those that failed at least once. */
static int failed(const json_t *d)
{
    const char *st = json_string_value(json_object_get(d, "state"));
    return (st && !strcmp(st, "dead")) || json_integer_value(json_object_get(d, "attempts")) > 0;
}

/* GET one page of an endpoint's deliveries in `state` (NULL = any). */
static int deliveries(const pk_ctx *ctx, const char *id, const char *state, const char *after,
                      const char *limit, int failures_only)
{
    static const pk_column cols[] = {{"DELIVERY", "id", NULL},    {"SEQ", "seq", NULL},
                                     {"TYPE", "type", NULL},      {"ORDER", "order_id", NULL},
                                     {"STATE", "state", NULL},    {"ATTEMPTS", "attempts", NULL},
                                     {"LAST", NULL, last_result}, {"NEXT", "next_at", NULL}};
    char path[256];
    snprintf(path, sizeof path, "/v1/webhooks/%s/deliveries", id);
    const pkh_param query[] = {{"state", state}, {"after", after}, {"limit", limit}};
    pkh_request req = {.method = "GET", .path = path, .query = query, .nquery = 3};
    return pk_list(ctx, &req, "deliveries", cols, sizeof cols / sizeof *cols,
                   failures_only ? failed : NULL,
                   failures_only ? (state ? (!strcmp(state, "dead") ? "no dead deliveries"
                                                                    : "no deliveries being retried")
                                          : "no failures")
                                 : "no deliveries");
}

/* An endpoint id as the server accepts it: one path segment. */
static int id_ok(const char *id)
{
    return id && *id && strlen(id) < 128 && !strpbrk(id, "/?#% ");
}

int pk_cmd_webhooks(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    static const char *const states[] = {"pending", "dead", "delivered", NULL};
    const char *args[2], *state = NULL, *after = NULL, *limit = NULL, *delivery = NULL;
    long long from = -1, to = -1;
    const pk_opt opts[] = {
        PK_OPT_CHOICE("state", &state, states),
        PK_OPT_PAGE(&after, &limit, "a sequence number"),
        PK_OPT_TEXT("delivery", &delivery),
        PK_OPT_NUM("from", &from, "an event sequence number", 1, INT64_MAX),
        PK_OPT_NUM("to", &to, "an event sequence number", 1, INT64_MAX),
        PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts, &(pk_pos){args, 2, NULL});
    if (rc >= 0)
        return rc;
    const char *action = args[0], *id = args[1];
    if (!action || !strcmp(action, "status")) {
        if (id)
            return pk_usage_error(cmd, "status takes no endpoint id");
        static const pk_column cols[] = {
            {"ID", "id", NULL},           {"CLIENT", "client", NULL},
            {"URL", "url", NULL},         {"STATE", NULL, endpoint_state},
            {"PENDING", "pending", NULL}, {"FAILING", "failing", NULL},
            {"DEAD", "dead", NULL},       {"LAST SUCCESS", "last_success_at", NULL}};
        pkh_request req = {.method = "GET", .path = "/v1/webhooks"};
        return pk_list(ctx, &req, "endpoints", cols, sizeof cols / sizeof *cols, NULL,
                       "no webhook endpoints");
    }
    if (strcmp(action, "deliveries") && strcmp(action, "failures") && strcmp(action, "replay") &&
        strcmp(action, "enable"))
        return pk_usage_error(cmd, "expected status, deliveries, failures, replay or enable");
    if (!id_ok(id))
        return pk_usage_error(cmd, "ID: expected a webhook endpoint id");
    if (!strcmp(action, "deliveries"))
        return deliveries(ctx, id, state, after, limit, 0);
    if (!strcmp(action, "failures")) {
        /* dead-lettered first, then the ones still being retried */
        int rc = deliveries(ctx, id, "dead", after, limit, 1);
        return rc == PK_EXIT_OK ? deliveries(ctx, id, "pending", after, limit, 1) : rc;
    }
    char path[256];
    json_t *body;
    if (!strcmp(action, "enable")) {
        snprintf(path, sizeof path, "/v1/webhooks/%s/enable", id);
        body = json_object();
    } else {
        if (!delivery == (from < 0 && to < 0))
            return pk_usage_error(cmd, "replay: give --delivery ID, or --from SEQ --to SEQ");
        if (!delivery && (from < 0 || to < 0 || to < from))
            return pk_usage_error(cmd, "replay: --from and --to, with --from <= --to");
        snprintf(path, sizeof path, "/v1/webhooks/%s/replay", id);
        body = delivery
                   ? json_pack("{s:s}", "delivery", delivery)
                   : json_pack("{s:I,s:I}", "from_seq", (json_int_t)from, "to_seq", (json_int_t)to);
    }
    pkh_response resp;
    rc = pk_call_json(ctx, "POST", path, body, &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    else if (rc == PK_EXIT_OK && !strcmp(action, "replay"))
        pk_line(stdout, "replayed %lld deliveries to %s",
                (long long)json_integer_value(json_object_get(resp.json, "replayed")), id);
    else if (rc == PK_EXIT_OK)
        pk_line(stdout, "endpoint %s enabled", id);
    pkh_response_free(&resp);
    return rc;
}
