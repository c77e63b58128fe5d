/*
 * cmd_webhooks.c — perkctl webhooks [status] | deliveries | failures | replay
 * | enable (docs/perkctl.md): the mall's webhook endpoints as perkhub delivers
 * to them (GET /v1/webhooks, GET /v1/webhooks/ID/deliveries), and the two
 * things ops do about a failing one: replay deliveries, enable it again after
 * a 410 (POST /v1/webhooks/ID/replay, /enable).
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "perkctl.h"

static int print_endpoints(const json_t *list)
{
    if (json_array_size(list) == 0) {
        fputs("no webhook endpoints\n", stdout);
        return PK_EXIT_OK;
    }
    pk_table t;
    pk_table_init(&t, 8,
                  (const char *const[]){"ID", "CLIENT", "URL", "STATE", "PENDING", "FAILING",
                                        "DEAD", "LAST SUCCESS"});
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e)
    {
        char b[8][128];
        const json_t *why = json_object_get(e, "disabled_reason");
        const char *state = json_is_true(json_object_get(e, "enabled")) ? "enabled"
                            : json_is_string(why)                       ? json_string_value(why)
                                                                        : "disabled";
        snprintf(b[3], sizeof b[3], "%s", state);
        pk_table_add(&t, (const char *const[]){
                             pk_field(e, "id", b[0], sizeof b[0]),
                             pk_field(e, "client", b[1], sizeof b[1]),
                             pk_field(e, "url", b[2], sizeof b[2]),
                             b[3],
                             pk_field(e, "pending", b[4], sizeof b[4]),
                             pk_field(e, "failing", b[5], sizeof b[5]),
                             pk_field(e, "dead", b[6], sizeof b[6]),
                             pk_field(e, "last_success_at", b[7], sizeof b[7]),
                         });
    }
    int rc = pk_table_print(&t, stdout) != 0 ? PK_EXIT_REFUSED : PK_EXIT_OK;
    pk_table_free(&t);
    return rc;
}

/* failures_only: the dead ones and the pending ones that failed at least once. */
static int print_deliveries(const json_t *list, int failures_only)
{
    pk_table t;
    pk_table_init(&t, 8,
                  (const char *const[]){"DELIVERY", "SEQ", "TYPE", "ORDER", "STATE", "ATTEMPTS",
                                        "LAST", "NEXT"});
    size_t i, shown = 0;
    const json_t *d;
    json_array_foreach(list, i, d)
    {
        const char *st = json_string_value(json_object_get(d, "state"));
        json_int_t tries = json_integer_value(json_object_get(d, "attempts"));
        if (failures_only && !(st && !strcmp(st, "dead")) && tries == 0)
            continue;
        char b[8][96], last[96];
        const json_t *status = json_object_get(d, "last_status");
        const json_t *error = json_object_get(d, "last_error");
        if (json_is_integer(status) && json_integer_value(status) > 0)
            snprintf(last, sizeof last, "http %lld", (long long)json_integer_value(status));
        else
            snprintf(last, sizeof last, "%s",
                     json_is_string(error) ? json_string_value(error) : "-");
        pk_table_add(&t, (const char *const[]){
                             pk_field(d, "id", b[0], sizeof b[0]),
                             pk_field(d, "seq", b[1], sizeof b[1]),
                             pk_field(d, "type", b[2], sizeof b[2]),
                             pk_field(d, "order_id", b[3], sizeof b[3]),
                             pk_field(d, "state", b[4], sizeof b[4]),
                             pk_field(d, "attempts", b[5], sizeof b[5]),
                             last,
                             pk_field(d, "next_at", b[7], sizeof b[7]),
                         });
        shown++;
    }
    int rc = PK_EXIT_OK;
    if (!shown)
        fputs(failures_only ? "no failures\n" : "no deliveries\n", stdout);
    else if (pk_table_print(&t, stdout) != 0)
        rc = PK_EXIT_REFUSED;
    pk_table_free(&t);
    return rc;
}

/* GET one page of an endpoint's deliveries in `state` (NULL = any). */
static int deliveries(const pk_ctx *ctx, const char *id, const char *state, const char *after,
                      const char *limit, int failures_only)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/webhooks/%s/deliveries", id);
    const pkh_param query[] = {{"state", state}, {"after", after}, {"limit", limit}};
    pkh_request req = {.method = "GET", .path = path, .query = query, .nquery = 3};
    pkh_response resp;
    int rc = pk_call(ctx, &req, &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    if (rc == PK_EXIT_OK && !ctx->json) {
        rc = print_deliveries(json_object_get(resp.json, "deliveries"), failures_only);
        const json_t *next = json_object_get(resp.json, "next_after");
        if (json_is_true(json_object_get(resp.json, "more")) && json_is_integer(next))
            pk_line(stdout, "more: --after %lld", (long long)json_integer_value(next));
    }
    pkh_response_free(&resp);
    return rc;
}

/* An endpoint id as the server accepts it: one path segment. */
static int id_ok(const char *id)
{
    return id && *id && strlen(id) < 128 && !strpbrk(id, "/?#% ");
}

int pk_cmd_webhooks(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    enum { O_STATE = 256, O_AFTER, O_LIMIT, O_DELIVERY, O_FROM, O_TO };
    static const struct option opts[] = {
        {"state", required_argument, NULL, O_STATE},
        {"after", required_argument, NULL, O_AFTER},
        {"limit", required_argument, NULL, O_LIMIT},
        {"delivery", required_argument, NULL, O_DELIVERY},
        {"from", required_argument, NULL, O_FROM},
        {"to", required_argument, NULL, O_TO},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *action = NULL, *id = NULL, *state = NULL, *after = NULL, *limit = NULL;
    const char *delivery = NULL;
    long long from = -1, to = -1, v;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, PK_OPTSTRING, opts, NULL)) != -1) {
        switch (c) {
        case 1:
            if (!action)
                action = optarg;
            else if (!id)
                id = optarg;
            else
                return pk_usage_error(cmd, "unexpected argument '%s'", optarg);
            break;
        case O_STATE:
            if (strcmp(optarg, "pending") && strcmp(optarg, "dead") && strcmp(optarg, "delivered"))
                return pk_usage_error(cmd, "--state: expected pending, dead or delivered");
            state = optarg;
            break;
        case O_AFTER:
            if (pk_parse_int(optarg, 0, INT64_MAX, &v) != 0)
                return pk_usage_error(cmd, "--after: expected a sequence number");
            after = optarg;
            break;
        case O_LIMIT:
            if (pk_parse_int(optarg, 1, 1000, &v) != 0)
                return pk_usage_error(cmd, "--limit: expected 1 to 1000");
            limit = optarg;
            break;
        case O_DELIVERY:
            delivery = optarg;
            break;
        case O_FROM:
        case O_TO:
            if (pk_parse_int(optarg, 1, INT64_MAX, &v) != 0)
                return pk_usage_error(cmd, "--%s: expected an event sequence number",
                                      c == O_FROM ? "from" : "to");
            *(c == O_FROM ? &from : &to) = v;
            break;
        case 'h':
            return pk_help(cmd);
        default:
            return pk_getopt_error(cmd, c, argv);
        }
    }
    if (optind < argc)
        return pk_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!action || !strcmp(action, "status")) {
        if (id)
            return pk_usage_error(cmd, "status takes no endpoint id");
        pkh_request req = {.method = "GET", .path = "/v1/webhooks"};
        pkh_response resp;
        int rc = pk_call(ctx, &req, &resp);
        if (ctx->json)
            pk_print_raw(&resp);
        else if (rc == PK_EXIT_OK)
            rc = print_endpoints(json_object_get(resp.json, "endpoints"));
        pkh_response_free(&resp);
        return rc;
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
    int rc = pk_call_json(ctx, "POST", path, body, &resp);
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
