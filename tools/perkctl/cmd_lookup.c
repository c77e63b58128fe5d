/*
 * cmd_lookup.c — `perkctl lookup`: the customer-service question "what
 * happened to this code?".
 *
 * A card code is a secret worth its face value. It goes to the server in the
 * request body (URLs end up in access logs), --code-stdin keeps it out of the
 * process list and shell history, and every copy perkctl makes is wiped.
 */
#include "perkctl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

/* Reads the code from the first line of stdin, trimmed. When stdin is a
 * terminal, asks for it with echo off, as passwords are read. Returns a
 * malloc'd string the caller wipes and frees, or NULL when there is none. */
static char *read_code(void)
{
    struct termios saved, quiet;
    int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    if (tty) {
        fputs("code: ", stderr);
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
        fputc('\n', stderr);
    }
    if (n <= 0) {
        free(line);
        return NULL;
    }
    size_t start = strspn(line, " \t");
    while (n > 0 && strchr(" \t\r\n", line[n - 1]))
        line[--n] = '\0';
    memmove(line, line + start, (size_t)n + 1 - start);
    if (!*line) {
        free(line);
        return NULL;
    }
    return line;
}

static void print_result(const json_t *r)
{
    char b1[64], b2[64], line[512];
    /* "code" is present only for the owner of the order: stdout only. */
    pk_kv_field(stdout, "code", r, "code");
    pk_kv_field(stdout, "diagnosis", r, "diagnosis");
    pk_kv_field(stdout, "state", r, "state");
    /* issue 12: what the code's supplier said when asked (absent: not asked) */
    pk_kv_field(stdout, "redemption", r, "redemption");
    if (pk_has(r, "product_name")) {
        snprintf(line, sizeof line, "%s (%s)", pk_field(r, "sku", b1, sizeof b1),
                 pk_field(r, "product_name", b2, sizeof b2));
        pk_kv(stdout, "product", line);
    } else {
        pk_kv_field(stdout, "product", r, "sku");
    }
    pk_kv_field(stdout, "supplier", r, "supplier");
    pk_kv_field(stdout, "batch", r, "batch_id");
    if (pk_has(r, "order_id") && pk_has(r, "client_order_id")) {
        snprintf(line, sizeof line, "%s (client order %s)", pk_field(r, "order_id", b1, sizeof b1),
                 pk_field(r, "client_order_id", b2, sizeof b2));
        pk_kv(stdout, "order", line);
    } else {
        pk_kv_field(stdout, "order", r, "order_id");
        pk_kv_field(stdout, "client order", r, "client_order_id");
    }
    pk_kv_field(stdout, "issued at", r, "issued_at");
    pk_kv_field(stdout, "expires at", r, "expires_at");
    pk_kv_field(stdout, "voided at", r, "voided_at");
    pk_kv_field(stdout, "advice", r, "advice");
    if (pk_has(r, "redemption_guide")) {
        fputs("redemption guide:\n", stdout);
        pk_print_wrapped(stdout, pk_field(r, "redemption_guide", b1, sizeof b1), 2, 80);
    }
}

int pk_cmd_lookup(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *code = NULL, *order = NULL, *client_order_id = NULL;
    int code_stdin = 0;
    long long after = -1, limit = 0;
    const pk_opt opts[] = {
        PK_OPT_TEXT("code", &code),
        PK_OPT_FLAG("code-stdin", &code_stdin),
        PK_OPT_TEXT("order", &order),
        PK_OPT_TEXT("client-order-id", &client_order_id),
        PK_OPT_NUM("after", &after, "a count of the order's codes", 0, INT64_MAX),
        PK_OPT_NUM("limit", &limit, "1 to 100", 1, 100),
        PK_OPT_END,
    };
    /* no positional argument, and not echoed: a stray one here may well be a code */
    int rc = pk_parse(cmd, argc, argv, opts,
                      &(pk_pos){NULL, 0, "unexpected argument (use --code-stdin for a code)"});
    if (rc >= 0)
        return rc;
    int given = !!code + code_stdin + !!order + !!client_order_id;
    if (given != 1)
        return pk_usage_error(
            cmd, "give exactly one of --code, --code-stdin, --order, --client-order-id");
    if ((after >= 0 || limit) && !order && !client_order_id)
        return pk_usage_error(cmd, "%s: only with --order or --client-order-id",
                              after >= 0 ? "--after" : "--limit");

    json_t *body;
    char *stdin_code = NULL;
    if (code_stdin) {
        if (!(stdin_code = read_code()))
            return pk_usage_error(cmd, "--code-stdin: no code on standard input");
        body = json_pack("{s:s}", "code", stdin_code);
        explicit_bzero(stdin_code, strlen(stdin_code));
        free(stdin_code);
    } else if (code) {
        if (!*code)
            return pk_usage_error(cmd, "--code: must not be empty");
        body = json_pack("{s:s}", "code", code);
    } else if (order) {
        long long id;
        if (pk_parse_int(order, 1, INT64_MAX, &id) != 0)
            return pk_usage_error(cmd, "--order: expected an order number, got '%s'", order);
        body = json_pack("{s:I}", "order_id", (json_int_t)id);
    } else {
        if (!*client_order_id)
            return pk_usage_error(cmd, "--client-order-id: must not be empty");
        body = json_pack("{s:s}", "client_order_id", client_order_id);
    }
    if (after >= 0)
        json_object_set_new(body, "after", json_integer((json_int_t)after));
    if (limit)
        json_object_set_new(body, "limit", json_integer((json_int_t)limit));

    pkh_response resp;
    rc = pk_call_json(ctx, "POST", "/v1/codes/lookup", body, &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    if (rc == PK_EXIT_OK && !ctx->json) {
        const json_t *results = json_object_get(resp.json, "results"), *r;
        size_t i, n = json_array_size(results);
        if (n == 0)
            fputs("no results\n", stdout);
        json_array_foreach(results, i, r)
        {
            if (n > 1)
                printf("%s-- %zu of %zu\n", i ? "\n" : "", i + 1, n);
            print_result(r);
        }
        /* a lookup by order answers a page: never let the rest pass unsaid */
        const json_t *next = json_object_get(resp.json, "next_after");
        if (json_is_integer(next)) {
            printf("\n-- more codes: perkctl lookup %s %s --after %" JSON_INTEGER_FORMAT,
                   order ? "--order" : "--client-order-id", order ? order : client_order_id,
                   json_integer_value(next));
            if (limit)
                printf(" --limit %lld", limit);
            putchar('\n');
        }
    }
    pkh_response_free(&resp);
    return rc;
}
