/*
 * cmd_audit.c — `perkctl audit`: the audit trail of ops actions (GET
 * /v1/audit), one record per line, with the endpoint's filters.
 *
 * A narrow filter over a long trail can come back with fewer records than
 * asked and "more": true (the server examines a bounded number per request);
 * this command then asks again from next_after until it has --limit records
 * or the trail is exhausted, so a filter never looks empty by accident.
 */
#include "perkctl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "ID  TIME  ACTION  client=... peer=... request_id=... via=... what={...}
 * result={...}": null members are left out, objects printed as compact JSON. */
static void print_record(const json_t *rec)
{
    char id[32], at[64], action[80];
    char *line = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&line, &len);
    if (!m) {
        fputs("perkctl: out of memory\n", stderr);
        return;
    }
    fprintf(m, "%s  %s  %s", pk_field(rec, "id", id, sizeof id), pk_field(rec, "at", at, sizeof at),
            pk_field(rec, "action", action, sizeof action));
    const char *key, *sep = "  ";
    const json_t *v;
    json_object_foreach((json_t *)rec, key, v)
    {
        if (!strcmp(key, "id") || !strcmp(key, "at") || !strcmp(key, "action") || json_is_null(v))
            continue;
        if (json_is_object(v) || json_is_array(v)) {
            char *s = json_dumps(v, JSON_COMPACT);
            fprintf(m, "%s%s=%s", sep, key, s ? s : "?");
            ph_json_free(s);
        } else {
            char buf[80];
            fprintf(m, "%s%s=%s", sep, key, pk_field(rec, key, buf, sizeof buf));
        }
        sep = " ";
    }
    if (fclose(m) == 0)
        pk_line(stdout, "%s", line);
    free(line);
}

int pk_cmd_audit(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *from = NULL, *to = NULL, *client = NULL, *action = NULL;
    long long after = 0, limit = 100;
    const pk_opt opts[] = {
        PK_OPT_NUM("after", &after, "a record id", 0, INT64_MAX),
        PK_OPT_NUM("limit", &limit, "1 to 1000", 1, 1000),
        PK_OPT_TEXT("from", &from),
        PK_OPT_TEXT("to", &to),
        PK_OPT_TEXT("client", &client),
        PK_OPT_TEXT("action", &action),
        PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts, NULL);
    if (rc >= 0)
        return rc;

    /* the server checks the filters and names a bad one (exit 1 with its message) */
    long long printed = 0;
    for (;;) {
        char after_s[32], limit_s[32];
        snprintf(after_s, sizeof after_s, "%lld", after);
        snprintf(limit_s, sizeof limit_s, "%lld", limit - printed);
        const pkh_param query[] = {{"after", after_s}, {"limit", limit_s}, {"from", from},
                                   {"to", to},         {"client", client}, {"action", action}};
        pkh_request req = {.method = "GET", .path = "/v1/audit", .query = query, .nquery = 6};
        pkh_response resp;
        rc = pk_call(ctx, &req, &resp);
        if (ctx->json) {
            pk_print_raw(&resp);
            pkh_response_free(&resp);
            return rc;
        }
        if (rc != PK_EXIT_OK) {
            pkh_response_free(&resp);
            return rc;
        }
        const json_t *list = json_object_get(resp.json, "audit"), *rec;
        size_t i;
        json_array_foreach(list, i, rec)
        {
            print_record(rec);
            printed++;
        }
        const json_t *next = json_object_get(resp.json, "next_after");
        int more = json_is_true(json_object_get(resp.json, "more"));
        long long was = after;
        after = json_is_integer(next) ? json_integer_value(next) : after;
        pkh_response_free(&resp);
        /* a page that did not move the position on ends it: no tight loop on
         * a confused server */
        if (!more || printed >= limit || after <= was)
            break;
    }
    if (printed == 0)
        fputs("no audit records\n", stdout);
    return rc;
}
