/*
 * cmd_events.c — `perkctl events [--follow]`: the numbered outbox of every
 * state change, printed one event per line.
 *
 * --follow stops on SIGINT/SIGTERM without a signal handler (and so without a
 * global flag): it blocks both signals, waits for them with sigtimedwait()
 * between polls, and pkh_send() aborts a request in flight when one becomes
 * pending. Blocked signals survive until consumed, so none is lost between
 * two checks.
 */
#include "perkctl.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* "SEQ  TIME  TYPE  key=value ...", the other fields in the server's order.
 * Values with spaces are quoted; nested values are printed as compact JSON. */
static void print_event(const json_t *ev)
{
    char seq[32], at[64], type[64];
    char *line = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&line, &len);
    if (!m) {
        fputs("perkctl: out of memory\n", stderr);
        return;
    }
    fprintf(m, "%s  %s  %s", pk_field(ev, "seq", seq, sizeof seq),
            pk_field(ev, "at", at, sizeof at), pk_field(ev, "type", type, sizeof type));
    const char *key, *sep = "  ";
    const json_t *v;
    json_object_foreach((json_t *)ev, key, v)
    {
        if (!strcmp(key, "seq") || !strcmp(key, "at") || !strcmp(key, "type"))
            continue;
        if (json_is_object(v) || json_is_array(v)) {
            char *s = json_dumps(v, JSON_COMPACT);
            fprintf(m, "%s%s=%s", sep, key, s ? s : "?");
            ph_json_free(s);
        } else {
            char buf[64];
            const char *s = pk_field(ev, key, buf, sizeof buf);
            int quote = json_is_string(v) && (!*s || strpbrk(s, " \t\""));
            const char *q = quote ? "\"" : "";
            fprintf(m, "%s%s=%s%s%s", sep, key, q, s, q);
        }
        sep = " ";
    }
    if (fclose(m) == 0)
        pk_line(stdout, "%s", line);
    free(line);
}

/* Prints one page; returns how many events it held and updates *after to
 * where the next poll starts. *more: the server examined only part of the
 * log (a mall's page skips other clients' events in bounded steps). */
static size_t print_page(const pk_ctx *ctx, const pkh_response *resp, long long *after, int *more)
{
    *more = json_is_true(json_object_get(resp->json, "more"));
    const json_t *events = json_object_get(resp->json, "events"), *ev;
    size_t i;
    json_array_foreach(events, i, ev)
    {
        if (ctx->json) {
            /* JSON Lines: one event per line, so a follower can pipe to jq. */
            json_dumpf(ev, stdout, JSON_COMPACT);
            fputc('\n', stdout);
        } else {
            print_event(ev);
        }
        const json_t *seq = json_object_get(ev, "seq");
        if (json_is_integer(seq) && json_integer_value(seq) > *after)
            *after = json_integer_value(seq);
    }
    const json_t *next = json_object_get(resp->json, "next_after");
    if (json_is_integer(next) && json_integer_value(next) > *after)
        *after = json_integer_value(next);
    return json_array_size(events);
}

static int follow(const pk_ctx *ctx, long long after, const char *limit)
{
    sigset_t stop, saved;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, &saved);

    int rc = PK_EXIT_OK;
    for (;;) {
        char after_s[32];
        snprintf(after_s, sizeof after_s, "%lld", after);
        const pkh_param query[] = {{"after", after_s}, {"limit", limit}};
        pkh_request req = {.method = "GET", .path = "/v1/events", .query = query, .nquery = 2};
        pkh_response resp;
        long long before = after;
        rc = pk_call(ctx, &req, &resp);
        int more = 0;
        size_t n = rc == PK_EXIT_OK ? print_page(ctx, &resp, &after, &more) : 0;
        pkh_response_free(&resp);
        if (rc == PK_EXIT_INTERRUPTED) {
            rc = PK_EXIT_OK;
            break;
        }
        if (rc != PK_EXIT_OK)
            break;
        if (fflush(stdout) != 0)
            break; /* the reader went away; main reports the write error */
        /* More may be waiting right after a full page. A page that did not
         * move the position on counts as empty, so a confused server is not
         * polled in a tight loop. */
        if ((n > 0 || more) && after > before)
            continue;
        struct timespec second = {.tv_sec = 1};
        int sig = sigtimedwait(&stop, NULL, &second);
        if (sig == SIGINT || sig == SIGTERM)
            break;
    }

    /* Consume a signal that aborted a request, so unblocking does not kill us. */
    struct timespec zero = {0};
    while (sigtimedwait(&stop, NULL, &zero) > 0)
        ;
    sigprocmask(SIG_SETMASK, &saved, NULL);
    return rc;
}

int pk_cmd_events(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *after_s = NULL, *limit = NULL;
    int follow_mode = 0;
    const pk_opt opts[] = {
        PK_OPT_INT("after", &after_s, "an event number", 0, INT64_MAX),
        PK_OPT_INT("limit", &limit, "a number >= 1", 1, INT32_MAX),
        PK_OPT_FLAG("follow", &follow_mode),
        PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts, NULL);
    if (rc >= 0)
        return rc;
    long long after = 0; /* checked by pk_parse */
    if (after_s)
        pk_parse_int(after_s, 0, INT64_MAX, &after);
    if (follow_mode)
        return follow(ctx, after, limit);

    const pkh_param query[] = {{"after", after_s}, {"limit", limit}};
    pkh_request req = {.method = "GET", .path = "/v1/events", .query = query, .nquery = 2};
    pkh_response resp;
    rc = pk_call(ctx, &req, &resp);
    int more = 0;
    if (ctx->json)
        pk_print_raw(&resp);
    else if (rc == PK_EXIT_OK && print_page(ctx, &resp, &after, &more) == 0 && !more)
        fputs("no events\n", stdout);
    if (more && !ctx->json)
        fprintf(stderr, "perkctl: more events: perkctl events --after %lld\n", after);
    pkh_response_free(&resp);
    return rc;
}
