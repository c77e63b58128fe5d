/*
 * cmd_risk.c — perkctl risk ... (docs/perkctl.md, "risk"): risk rules and the
 * block and allow lists (GET/POST/PUT/DELETE /v1/risk/rules, /v1/risk/lists).
 *
 *   rules | rule ID | versions ID | set FILE|- [--version N] | remove ID [--version N]
 *   lists [--list block|allow] | block VAR VALUE|- [--ttl S] [--note T]
 *   allow VAR VALUE|- [--ttl S] [--note T] | unlist block|allow VAR KEY
 *
 * A list value may be read from stdin ("-") so a phone number need not sit in
 * the shell's history or the process list; it is sent once and wiped.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "perkctl.h"

static const char *scope_fmt(const json_t *row, char *buf, size_t len)
{
    json_t *s = json_object_get(row, "scope");
    const char *k = json_is_object(s) ? json_object_iter_key(json_object_iter(s)) : NULL;
    if (!k)
        return "any";
    snprintf(buf, len, "%s=%s", k, json_string_value(json_object_iter_value(json_object_iter(s))));
    return buf;
}

static const char *var_fmt(const json_t *row, char *buf, size_t len)
{
    if (json_object_get(row, "variables"))
        return pk_field(row, "variables", buf, len);
    return pk_field(row, "variable", buf, len);
}

static const char *limit_fmt(const json_t *row, char *buf, size_t len)
{
    if (!json_object_get(row, "limit"))
        return "related";
    char l[32];
    snprintf(buf, len, "%s %s / %llds", pk_field(row, "limit", l, sizeof l),
             json_string_value(json_object_get(row, "measure")),
             (long long)json_integer_value(json_object_get(row, "window_s")));
    return buf;
}

static const pk_column rule_cols[] = {
    {"ID", "id", NULL},         {"PRIO", "priority", NULL},   {"VARIABLE", NULL, var_fmt},
    {"SCOPE", NULL, scope_fmt}, {"LIMIT", NULL, limit_fmt},   {"ACTION", "action", NULL},
    {"MODE", "mode", NULL},     {"ENABLED", "enabled", NULL}, {"VERSION", "version", NULL},
};

/* Reads a whole file ("-": stdin) into a NUL-terminated buffer. */
static char *slurp(const char *file)
{
    FILE *f = strcmp(file, "-") ? fopen(file, "rb") : stdin;
    if (!f)
        return NULL;
    size_t n = 0, cap = 4096;
    char *b = malloc(cap);
    while (b) {
        size_t got = fread(b + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
        if (n + 1 == cap) {
            char *g = realloc(b, cap * 2);
            if (!g) {
                free(b);
                b = NULL;
                break;
            }
            b = g;
            cap *= 2;
        }
    }
    if (b)
        b[n] = 0;
    if (f != stdin)
        fclose(f);
    return b;
}

static int print_rule_answer(const pk_ctx *ctx, int rc, pkh_response *resp, const char *verb)
{
    if (ctx->json)
        pk_print_raw(resp);
    else if (rc == PK_EXIT_OK) {
        json_t *r = json_object_get(resp->json, "rule");
        char v[32];
        pk_line(stdout, "rule %s %s (version %s)", json_string_value(json_object_get(r, "id")),
                verb, pk_field(r, "version", v, sizeof v));
    }
    pkh_response_free(resp);
    return rc;
}

static int rule_set(const pk_ctx *ctx, const pk_cmd *cmd, const char *file, long long version)
{
    char *text = slurp(file);
    if (!text)
        return pk_usage_error(cmd, "cannot read %s", file);
    json_error_t je;
    json_t *rule = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!json_is_object(rule)) {
        json_decref(rule);
        return pk_usage_error(cmd, "%s: not a JSON object (line %d)", file, je.line);
    }
    const char *id = json_string_value(json_object_get(rule, "id"));
    if (!id || !*id || strlen(id) > 64 ||
        strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789_.-") != strlen(id)) {
        json_decref(rule);
        return pk_usage_error(cmd, "%s: id: expected 1..64 bytes of [a-z0-9_.-]", file);
    }
    /* what the server keeps itself, as GET shows it: not sent back */
    json_object_del(rule, "created_at");
    json_object_del(rule, "updated_at");
    json_object_del(rule, "version");
    if (version)
        json_object_set_new(rule, "version", json_integer(version));
    char path[128];
    snprintf(path, sizeof path, "/v1/risk/rules/%s", id);
    pkh_response resp;
    json_incref(rule);
    int rc = pk_call_json(ctx, "PUT", path, rule, &resp);
    if (resp.status == 404 && !version) { /* not there yet: create it */
        pkh_response_free(&resp);
        rc = pk_call_json(ctx, "POST", "/v1/risk/rules", rule, &resp);
        return print_rule_answer(ctx, rc, &resp, "created");
    }
    json_decref(rule);
    return print_rule_answer(ctx, rc, &resp, "updated");
}

static int list_change(const pk_ctx *ctx, const pk_cmd *cmd, const char *list, const char *var,
                       const char *value, long long ttl, const char *note)
{
    if (!var || !value)
        return pk_usage_error(cmd, "%s: expected VARIABLE VALUE (VALUE - reads it from stdin)",
                              list);
    char line[256];
    if (!strcmp(value, "-")) {
        if (!fgets(line, sizeof line, stdin))
            return pk_usage_error(cmd, "no value on stdin");
        line[strcspn(line, "\r\n")] = 0;
        value = line;
    }
    json_t *b = json_pack("{s:s,s:s,s:s}", "list", list, "variable", var, "value", value);
    memset(line, 0, sizeof line);
    if (b && ttl)
        json_object_set_new(b, "ttl_s", json_integer(ttl));
    if (b && note)
        json_object_set_new(b, "note", json_string(note));
    pkh_response resp;
    int rc = pk_call_json(ctx, "POST", "/v1/risk/lists", b, &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    else if (rc == PK_EXIT_OK) {
        json_t *e = json_object_get(resp.json, "entry");
        char x[64];
        pk_line(stdout, "%s list: %s %s (key %s, expires %s)", list, var,
                json_string_value(json_object_get(e, "masked")),
                json_string_value(json_object_get(e, "key")),
                pk_field(e, "expires_at", x, sizeof x));
    }
    pkh_response_free(&resp);
    return rc;
}

static int simple(const pk_ctx *ctx, const pkh_request *req, const char *done)
{
    pkh_response resp;
    int rc = pk_call(ctx, req, &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    else if (rc == PK_EXIT_OK)
        pk_line(stdout, "%s", done);
    pkh_response_free(&resp);
    return rc;
}

static int id_ok(const char *id)
{
    return id && *id && strlen(id) <= 64 &&
           strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789_.-") == strlen(id);
}

int pk_cmd_risk(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    static const char *const lists[] = {"block", "allow", NULL};
    const char *args[4], *list = NULL, *note = NULL;
    long long version = 0, ttl = 0;
    const pk_opt opts[] = {
        PK_OPT_NUM("version", &version, "a rule version", 1, UINT32_MAX),
        PK_OPT_CHOICE("list", &list, lists),
        PK_OPT_NUM("ttl", &ttl, "seconds (1..315360000)", 1, 315360000),
        PK_OPT_TEXT("note", &note),
        PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts, &(pk_pos){args, 4, NULL});
    if (rc >= 0)
        return rc;
    const char *what = args[0];
    if (!what)
        return pk_usage_error(cmd, "expected rules, rule, versions, set, remove, lists, block, "
                                   "allow or unlist");
    char path[256];
    if (!strcmp(what, "rules") || !strcmp(what, "versions") || !strcmp(what, "rule")) {
        if (strcmp(what, "rules") && !id_ok(args[1]))
            return pk_usage_error(cmd, "%s: expected a rule id", what);
        if (!strcmp(what, "rules"))
            snprintf(path, sizeof path, "/v1/risk/rules");
        else
            snprintf(path, sizeof path, "/v1/risk/rules/%s/versions", args[1]);
        pkh_request req = {.method = "GET", .path = path};
        if (!strcmp(what, "rule") && !ctx->json) {
            /* one rule: its newest version, every member */
            pkh_response resp;
            rc = pk_call(ctx, &req, &resp);
            json_t *vs = json_object_get(resp.json, "versions");
            json_t *last = json_array_get(vs, json_array_size(vs) - 1);
            if (rc == PK_EXIT_OK && last) {
                char *t = json_dumps(last, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                if (t)
                    pk_put_clean(stdout, t, 1);
                fputc('\n', stdout);
                if (json_is_true(json_object_get(resp.json, "removed")))
                    pk_line(stdout, "(removed)");
                ph_json_free(t);
            }
            pkh_response_free(&resp);
            return rc;
        }
        return pk_list(ctx, &req, !strcmp(what, "rules") ? "rules" : "versions", rule_cols,
                       sizeof rule_cols / sizeof *rule_cols, NULL, "no rules");
    }
    if (!strcmp(what, "set")) {
        if (!args[1] || args[2])
            return pk_usage_error(cmd, "set: expected FILE (a rule as JSON; - reads stdin)");
        return rule_set(ctx, cmd, args[1], version);
    }
    if (!strcmp(what, "remove")) {
        if (!id_ok(args[1]) || args[2])
            return pk_usage_error(cmd, "remove: expected a rule id");
        snprintf(path, sizeof path, "/v1/risk/rules/%s", args[1]);
        char done[128], v[24];
        snprintf(done, sizeof done, "rule %s removed", args[1]);
        snprintf(v, sizeof v, "%lld", version);
        const pkh_param q[] = {{"version", version ? v : NULL}};
        pkh_request req = {.method = "DELETE", .path = path, .query = q, .nquery = 1};
        return simple(ctx, &req, done);
    }
    if (!strcmp(what, "lists")) {
        if (args[1])
            return pk_usage_error(cmd, "lists: unexpected argument '%s'", args[1]);
        const pkh_param q[] = {{"list", list}};
        pkh_request req = {.method = "GET", .path = "/v1/risk/lists", .query = q, .nquery = 1};
        static const pk_column cols[] = {
            {"LIST", "list", NULL},     {"VARIABLE", "variable", NULL},
            {"KEY", "key", NULL},       {"MASKED", "masked", NULL},
            {"ACTIVE", "active", NULL}, {"EXPIRES_AT", "expires_at", NULL},
            {"NOTE", "note", NULL},
        };
        return pk_list(ctx, &req, "entries", cols, sizeof cols / sizeof *cols, NULL,
                       "no list entries");
    }
    if (!strcmp(what, "block") || !strcmp(what, "allow")) {
        if (args[3])
            return pk_usage_error(cmd, "unexpected argument '%s'", args[3]);
        return list_change(ctx, cmd, what, args[1], args[2], ttl, note);
    }
    if (!strcmp(what, "unlist")) {
        if (!args[1] || (strcmp(args[1], "block") && strcmp(args[1], "allow")) || !args[2] ||
            !args[3] || strlen(args[2]) > 16 || strlen(args[3]) != 16 ||
            strspn(args[3], "0123456789abcdef") != 16 ||
            strspn(args[2], "abcdefghijklmnopqrstuvwxyz0123456789") != strlen(args[2]))
            return pk_usage_error(cmd, "unlist: expected block|allow VARIABLE KEY (the entry's "
                                       "16 hex digits, as `perkctl risk lists` shows it)");
        snprintf(path, sizeof path, "/v1/risk/lists/%s/%s/%s", args[1], args[2], args[3]);
        char done[128];
        snprintf(done, sizeof done, "%s list: %s %s removed", args[1], args[2], args[3]);
        pkh_request req = {.method = "DELETE", .path = path};
        return simple(ctx, &req, done);
    }
    return pk_usage_error(cmd, "unknown action '%s'", what);
}
