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
    int c, rc;
    optind = 0;
    while ((c = getopt_long(argc, argv, PK_OPTSTRING, opts, NULL)) != -1) {
        switch (c) {
        case O_STATE:
            if (strcmp(optarg, "open") && strcmp(optarg, "acknowledged") && strcmp(optarg, "all"))
                return pk_usage_error(cmd, "--state: expected open, acknowledged or all");
            state = optarg;
            break;
        case O_AFTER:
            if ((rc = pk_opt_int(cmd, "--after", optarg, 0, INT64_MAX, "an alert id", &after)))
                return rc;
            break;
        case O_LIMIT:
            if ((rc = pk_opt_int(cmd, "--limit", optarg, 1, 1000, "1 to 1000", &limit)))
                return rc;
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
    static const pk_column cols[] = {{"ID", "id", NULL},
                                     {"KIND", "kind", NULL},
                                     {"SUBJECT", "subject", NULL},
                                     {"VALUE", "value", NULL},
                                     {"THRESHOLD", "threshold", NULL},
                                     {"STATE", "state", NULL},
                                     {"FIRED_AT", "fired_at", NULL}};
    return pk_list(ctx, &req, "alerts", cols, sizeof cols / sizeof *cols, NULL, "no alerts");
}
