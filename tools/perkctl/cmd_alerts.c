/*
 * cmd_alerts.c — perkctl alerts [ack ID] (docs/perkctl.md): low-stock and
 * balance alerts (GET /v1/alerts) and their acknowledgement by ops
 * (POST /v1/alerts/ID/ack).
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "perkctl.h"

static int ack(const pk_ctx *ctx, const pk_cmd *cmd, const char *id, const char *note)
{
    long long n;
    if (!id || pk_parse_int(id, 1, INT64_MAX, &n) != 0)
        return pk_usage_error(cmd, "ID: expected an alert number");
    char path[64];
    snprintf(path, sizeof path, "/v1/alerts/%lld/ack", n);
    pkh_response resp;
    int rc = pk_call_json(ctx, "POST", path,
                          note ? json_pack("{s:s}", "note", note) : json_object(), &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    else if (rc == PK_EXIT_OK)
        pk_line(stdout, "alert %lld acknowledged", n);
    pkh_response_free(&resp);
    return rc;
}

int pk_cmd_alerts(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    enum { O_STATE = 256, O_AFTER, O_LIMIT, O_NOTE };
    static const struct option opts[] = {
        {"state", required_argument, NULL, O_STATE},
        {"after", required_argument, NULL, O_AFTER},
        {"limit", required_argument, NULL, O_LIMIT},
        {"note", required_argument, NULL, O_NOTE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *state = "open", *after = NULL, *limit = NULL, *note = NULL, *action = NULL,
               *id = NULL;
    long long v;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, PK_OPTSTRING, opts, NULL)) != -1) {
        switch (c) {
        case O_STATE:
            if (strcmp(optarg, "open") && strcmp(optarg, "acknowledged") && strcmp(optarg, "all"))
                return pk_usage_error(cmd, "--state: expected open, acknowledged or all");
            state = optarg;
            break;
        case O_AFTER:
            if (pk_parse_int(optarg, 0, INT64_MAX, &v) != 0)
                return pk_usage_error(cmd, "--after: expected an alert id, got '%s'", optarg);
            after = optarg;
            break;
        case O_LIMIT:
            if (pk_parse_int(optarg, 1, 1000, &v) != 0)
                return pk_usage_error(cmd, "--limit: expected 1 to 1000, got '%s'", optarg);
            limit = optarg;
            break;
        case O_NOTE:
            note = optarg;
            break;
        case 1:
            if (!action)
                action = optarg;
            else if (!id)
                id = optarg;
            else
                return pk_usage_error(cmd, "unexpected argument '%s'", optarg);
            break;
        case 'h':
            return pk_help(cmd);
        default:
            return pk_getopt_error(cmd, c, argv);
        }
    }
    if (optind < argc)
        return pk_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (action && strcmp(action, "ack"))
        return pk_usage_error(cmd, "expected ack ID, or no argument to list");
    if (action)
        return ack(ctx, cmd, id, note);
    if (note)
        return pk_usage_error(cmd, "--note goes with ack");
    const pkh_param query[] = {{"state", state}, {"after", after}, {"limit", limit}};
    pkh_request req = {.method = "GET", .path = "/v1/alerts", .query = query, .nquery = 3};
    pkh_response resp;
    int rc = pk_call(ctx, &req, &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    if (rc != PK_EXIT_OK || ctx->json) {
        pkh_response_free(&resp);
        return rc;
    }
    const json_t *list = json_object_get(resp.json, "alerts"), *a;
    size_t i;
    if (json_array_size(list) == 0) {
        fputs("no alerts\n", stdout);
    } else {
        pk_table t;
        pk_table_init(&t, 7,
                      (const char *const[]){"ID", "KIND", "SUBJECT", "VALUE", "THRESHOLD", "STATE",
                                            "FIRED_AT"});
        json_array_foreach(list, i, a)
        {
            char b[7][64];
            pk_table_add(&t, (const char *const[]){
                                 pk_field(a, "id", b[0], sizeof b[0]),
                                 pk_field(a, "kind", b[1], sizeof b[1]),
                                 pk_field(a, "subject", b[2], sizeof b[2]),
                                 pk_field(a, "value", b[3], sizeof b[3]),
                                 pk_field(a, "threshold", b[4], sizeof b[4]),
                                 pk_field(a, "state", b[5], sizeof b[5]),
                                 pk_field(a, "fired_at", b[6], sizeof b[6]),
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
