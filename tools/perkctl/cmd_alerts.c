/*
 * cmd_alerts.c — perkctl alerts [ack ID] (docs/perkctl.md): low-stock and
 * balance alerts (GET /v1/alerts) and their acknowledgement by ops
 * (POST /v1/alerts/ID/ack).
 */
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
    static const char *const states[] = {"open", "acknowledged", "all", NULL};
    const char *state = "open", *after = NULL, *limit = NULL, *note = NULL, *args[2];
    const pk_opt opts[] = {
        PK_OPT_CHOICE("state", &state, states),
        PK_OPT_PAGE(&after, &limit, "an alert id"),
        PK_OPT_TEXT("note", &note),
        PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts, &(pk_pos){args, 2, NULL});
    if (rc >= 0)
        return rc;
    const char *action = args[0], *id = args[1];
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
