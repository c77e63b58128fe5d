/*
 * common.c — option-parsing, server-calling and printing helpers shared by
 * perkctl's subcommands. See perkctl.h.
 */
#include "perkctl.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- option parsing ------------------------------------------------------ */

int pk_help(const pk_cmd *cmd)
{
    fputs(cmd->usage, stdout);
    return PK_EXIT_OK;
}

int pk_usage_error(const pk_cmd *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "perkctl%s%s: ", cmd ? " " : "", cmd ? cmd->name : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'perkctl %s%s--help')\n", cmd ? cmd->name : "", cmd ? " " : "");
    return PK_EXIT_USAGE;
}

int pk_getopt_error(const pk_cmd *cmd, int c, char **argv)
{
    /* With a long option argv[optind - 1] is the offending word; with a short
     * one getopt leaves the character in optopt. Only the name is echoed,
     * never a value: "--token=SECRET" must not reach the terminal. */
    const char *word = optind > 0 ? argv[optind - 1] : "";
    char name[64];
    if (strncmp(word, "--", 2) == 0) {
        size_t n = strcspn(word, "=");
        if (n >= sizeof name)
            n = sizeof name - 1;
        memcpy(name, word, n);
        name[n] = '\0';
    } else {
        snprintf(name, sizeof name, "-%c", isprint(optopt) ? optopt : '?');
    }
    if (c == ':')
        return pk_usage_error(cmd, "%s needs a value", name);

    /* The usual slip: a global option after the command. Say where it goes. */
    static const char *const globals[][2] = {
        {"--url", "--url URL "},
        {"--token", "--token TOKEN "},
        {"--timeout", "--timeout SECONDS "},
        {"--json", "--json "},
    };
    for (size_t i = 0; cmd && i < sizeof globals / sizeof globals[0]; i++)
        if (strcmp(name, globals[i][0]) == 0)
            return pk_usage_error(cmd,
                                  "%s is a global option: put it before the command, "
                                  "as in 'perkctl %s%s ...'",
                                  name, globals[i][1], cmd->name);
    return pk_usage_error(cmd, "unknown option %s", name);
}

int pk_parse_int(const char *s, long long min, long long max, long long *out)
{
    if (!s || !isdigit((unsigned char)s[0]))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int pk_money_valid(const char *s)
{
    size_t ints = strspn(s, "0123456789");
    if (ints == 0 || ints > 13)
        return 0;
    if (s[ints] == '\0')
        return 1;
    size_t frac = strspn(s + ints + 1, "0123456789");
    return s[ints] == '.' && frac >= 1 && frac <= 2 && s[ints + 1 + frac] == '\0';
}

/* ---- calling the server -------------------------------------------------- */

void pk_print_request_id(FILE *f, const pkh_response *resp)
{
    const char *rid = json_string_value(json_object_get(resp->json, "request_id"));
    if (!rid || !*rid)
        rid = resp->request_id;
    if (*rid) {
        fputs(" (request ", f);
        pk_put_clean(f, rid, 0);
        fputc(')', f);
    }
}

/* For an error that is not perkhub's JSON (a proxy's HTML page, say): the
 * first line of the body, shortened, so the operator sees who answered. */
static void print_body_excerpt(FILE *f, const pkh_response *resp)
{
    char line[121];
    size_t n = resp->body ? strcspn(resp->body, "\r\n") : 0;
    if (n >= sizeof line)
        n = sizeof line - 1;
    if (n == 0) {
        fputs("no error body", f);
        return;
    }
    memcpy(line, resp->body, n);
    line[n] = '\0';
    pk_put_clean(f, line, 0);
}

int pk_call(const pk_ctx *ctx, const pkh_request *req, pkh_response *resp)
{
    int rc = pkh_send(&ctx->http, req, resp);
    if (rc == PKH_EINTR)
        return PK_EXIT_INTERRUPTED;
    if (rc == PKH_ENOMEM) {
        fputs("perkctl: out of memory\n", stderr);
        return PK_EXIT_REFUSED;
    }
    if (rc != PKH_OK) {
        fprintf(stderr, "perkctl: cannot reach %s: ", ctx->url_shown);
        pk_put_clean(stderr, resp->error, 0);
        fputc('\n', stderr);
        return PK_EXIT_UNREACHABLE;
    }

    if (resp->status >= 200 && resp->status < 300) {
        if (json_is_object(resp->json) || (req->out_file && resp->status == 200)) /* a download */
            return PK_EXIT_OK;
        fprintf(stderr, "perkctl: bad_response: HTTP %ld but the body is not a JSON object",
                resp->status);
        pk_print_request_id(stderr, resp);
        fputc('\n', stderr);
        return PK_EXIT_REFUSED;
    }

    const char *code = json_string_value(json_object_get(resp->json, "error"));
    const char *msg = json_string_value(json_object_get(resp->json, "message"));
    if (code) {
        fputs("perkctl: ", stderr);
        pk_put_clean(stderr, code, 0);
        fputs(": ", stderr);
        pk_put_clean(stderr, msg ? msg : "(no message)", 0);
    } else {
        fprintf(stderr, "perkctl: http_%ld: ", resp->status);
        print_body_excerpt(stderr, resp);
    }
    pk_print_request_id(stderr, resp);
    fputc('\n', stderr);
    return PK_EXIT_REFUSED;
}

int pk_call_json(const pk_ctx *ctx, const char *method, const char *path, json_t *body,
                 pkh_response *resp)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        memset(resp, 0, sizeof *resp);
        fputs("perkctl: out of memory\n", stderr);
        return PK_EXIT_REFUSED;
    }
    pkh_request req = {
        .method = method,
        .path = path,
        .body = text,
        .body_len = strlen(text),
        .content_type = "application/json",
    };
    int rc = pk_call(ctx, &req, resp);
    explicit_bzero(text, req.body_len);
    ph_json_free(text);
    return rc;
}

void pk_print_raw(const pkh_response *resp)
{
    if (!resp->body || resp->body_len == 0)
        return;
    fwrite(resp->body, 1, resp->body_len, stdout);
    if (resp->body[resp->body_len - 1] != '\n')
        fputc('\n', stdout);
}

/* ---- printing -------------------------------------------------------------- */

/* Length of the control sequence starting at p (0 when p is not one): C0
 * controls, DEL, and the C1 controls U+0080..U+009F in their UTF-8 form,
 * which some terminals obey like ESC. */
static size_t control_len(const unsigned char *p, int keep_newlines)
{
    if (*p == '\n' && keep_newlines)
        return 0;
    if (*p < 0x20 || *p == 0x7f)
        return 1;
    if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
        return 2;
    return 0;
}

void pk_put_clean(FILE *f, const char *s, int keep_newlines)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = control_len(p, keep_newlines);
        fputc(n ? '?' : *p, f);
        p += n ? n : 1;
    }
}

void pk_line(FILE *f, const char *fmt, ...)
{
    char *line;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0) {
        fputs("perkctl: out of memory\n", stderr);
        return;
    }
    pk_put_clean(f, line, 0);
    fputc('\n', f);
    free(line);
}

/* A cleaned, one-line copy of s (never longer than s). NULL when out of memory. */
static char *clean_dup(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = control_len(p, 0);
        *o++ = n ? '?' : (char)*p;
        p += n ? n : 1;
    }
    *o = '\0';
    return out;
}

static const char *render(const json_t *v, char *buf, size_t len)
{
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_STRING:
        return json_string_value(v);
    case JSON_INTEGER:
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    case JSON_REAL:
        snprintf(buf, len, "%g", json_real_value(v));
        return buf;
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    case JSON_ARRAY: {
        size_t i, used = 0;
        const json_t *e;
        buf[0] = '\0';
        json_array_foreach(v, i, e)
        {
            char tmp[64];
            const char *s =
                json_is_object(e) || json_is_array(e) ? "?" : render(e, tmp, sizeof tmp);
            int n = snprintf(buf + used, len - used, "%s%s", i ? "," : "", s);
            if (n < 0 || (size_t)n >= len - used)
                break; /* truncated: good enough for a table cell */
            used += (size_t)n;
        }
        return used ? buf : "-";
    }
    default:
        return "-";
    }
}

const char *pk_field(const json_t *obj, const char *key, char *buf, size_t len)
{
    return render(json_object_get(obj, key), buf, len);
}

int pk_has(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0);
}

void pk_kv(FILE *f, const char *label, const char *value)
{
    fprintf(f, "%s:%*s", label, (int)(strlen(label) < 14 ? 14 - strlen(label) : 1), "");
    pk_put_clean(f, value, 0);
    fputc('\n', f);
}

void pk_kv_field(FILE *f, const char *label, const json_t *obj, const char *key)
{
    char buf[256];
    if (pk_has(obj, key))
        pk_kv(f, label, pk_field(obj, key, buf, sizeof buf));
}

/* ---- tables -------------------------------------------------------------- */

size_t pk_display_width(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    size_t w = 0;
    while (p < end && *p) {
        uint32_t cp = *p;
        size_t n = 1;
        if (*p >= 0xf0 && *p < 0xf8)
            n = 4, cp = *p & 0x07;
        else if (*p >= 0xe0)
            n = 3, cp = *p & 0x0f;
        else if (*p >= 0xc0)
            n = 2, cp = *p & 0x1f;
        for (size_t i = 1; i < n; i++) {
            if (p + i >= end || (p[i] & 0xc0) != 0x80) {
                n = 1, cp = '?';
                break;
            }
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        int wide = (cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) ||
                   (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) ||
                   (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
                   (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x20000 && cp <= 0x3fffd);
        w += wide ? 2 : 1;
        p += n;
    }
    return w;
}

void pk_print_wrapped(FILE *f, const char *text, size_t indent, size_t width)
{
    char *out = NULL;
    size_t outlen = 0;
    FILE *m = open_memstream(&out, &outlen);
    if (!m) {
        fputs("perkctl: out of memory\n", stderr);
        return;
    }
    for (const char *line = text; *line;) {
        size_t n = strcspn(line, "\n"), col = 0;
        const char *p = line, *end = line + n;
        if (n > 0 && end[-1] == '\r')
            end--;
        fprintf(m, "%*s", (int)indent, "");
        while (p < end) {
            while (p < end && *p == ' ')
                p++;
            const char *word = p;
            while (p < end && *p != ' ')
                p++;
            if (p == word)
                break;
            size_t w = pk_display_width(word, (size_t)(p - word));
            if (col > 0 && indent + col + 1 + w > width) {
                fprintf(m, "\n%*s", (int)indent, "");
                col = 0;
            } else if (col > 0) {
                fputc(' ', m);
                col++;
            }
            fwrite(word, 1, (size_t)(p - word), m);
            col += w;
        }
        fputc('\n', m);
        line += n + (line[n] != '\0');
    }
    if (fclose(m) == 0)
        pk_put_clean(f, out, 1);
    free(out);
}

void pk_table_init(pk_table *t, size_t ncols, const char *const *header)
{
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
    pk_table_add(t, header);
}

void pk_table_add(pk_table *t, const char *const *cells)
{
    if (t->failed)
        return;
    size_t need = (t->nrows + 1) * t->ncols;
    if (need > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16 * t->ncols;
        while (cap < need)
            cap *= 2;
        char **nc = realloc(t->cells, cap * sizeof *nc);
        if (!nc) {
            t->failed = 1;
            return;
        }
        t->cells = nc;
        t->cap = cap;
    }
    char **row = t->cells + t->nrows * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        row[i] = clean_dup(cells[i] ? cells[i] : "-");
        if (!row[i]) {
            while (i-- > 0)
                free(row[i]);
            t->failed = 1;
            return;
        }
    }
    t->nrows++;
}

int pk_table_print(const pk_table *t, FILE *f)
{
    if (t->failed) {
        fputs("perkctl: out of memory\n", stderr);
        return -1;
    }
    size_t width[32] = {0};
    size_t ncols = t->ncols < 32 ? t->ncols : 32;
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            size_t w = pk_display_width(cell, strlen(cell));
            if (w > width[c])
                width[c] = w;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            fputs(cell, f);
            if (c + 1 < ncols)
                fprintf(f, "%*s", (int)(width[c] - pk_display_width(cell, strlen(cell)) + 2), "");
        }
        fputc('\n', f);
    }
    return 0;
}

void pk_table_free(pk_table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

/* ---- list commands ------------------------------------------------------------ */

/* obj's member at a dotted path ("stock.available"), or NULL. */
static const json_t *member_at(const json_t *obj, const char *path)
{
    char part[64];
    while (obj && path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof part)
            return NULL;
        memcpy(part, path, n);
        part[n] = '\0';
        obj = json_object_get(obj, part);
        path = dot ? dot + 1 : NULL;
    }
    return obj;
}

int pk_list(const pk_ctx *ctx, const pkh_request *req, const char *list_key, const pk_column *cols,
            size_t ncols, int (*keep)(const json_t *row), const char *empty)
{
    assert(ncols > 0 && ncols <= PK_LIST_COLS_MAX);
    pkh_response resp;
    int rc = pk_call(ctx, req, &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    if (rc != PK_EXIT_OK || ctx->json) {
        pkh_response_free(&resp);
        return rc;
    }
    const char *header[PK_LIST_COLS_MAX];
    for (size_t k = 0; k < ncols; k++)
        header[k] = cols[k].header;
    pk_table t;
    pk_table_init(&t, ncols, header);
    const json_t *list = json_object_get(resp.json, list_key), *row;
    size_t i, shown = 0;
    json_array_foreach(list, i, row)
    {
        if (keep && !keep(row))
            continue;
        char buf[PK_LIST_COLS_MAX][128];
        const char *cells[PK_LIST_COLS_MAX];
        for (size_t k = 0; k < ncols; k++)
            cells[k] = cols[k].fmt ? cols[k].fmt(row, buf[k], sizeof buf[k])
                                   : render(member_at(row, cols[k].key), buf[k], sizeof buf[k]);
        pk_table_add(&t, cells);
        shown++;
    }
    if (!shown)
        pk_line(stdout, "%s", empty);
    else if (pk_table_print(&t, stdout) != 0)
        rc = PK_EXIT_REFUSED;
    pk_table_free(&t);
    const json_t *next = json_object_get(resp.json, "next_after");
    if (json_is_integer(next) && !json_is_false(json_object_get(resp.json, "more")))
        pk_line(stdout, "more: --after %lld", (long long)json_integer_value(next));
    pkh_response_free(&resp);
    return rc;
}

/* "a, b or c" of a choice list, into buf. */
static const char *choice_text(const char *const *choices, char *buf, size_t len)
{
    size_t n = 0, at = 0;
    while (choices[n])
        n++;
    buf[0] = '\0';
    for (size_t i = 0; i < n && at < len; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        int w = snprintf(buf + at, len - at, "%s%s", sep, choices[i]);
        if (w < 0)
            break;
        at += (size_t)w;
    }
    return buf;
}

/* Checks and stores one option's value. 0, or the usage error's status. */
static int opt_take(const pk_cmd *cmd, const pk_opt *o, const char *arg)
{
    if (!o->value && !o->num) {
        *o->flag = 1;
        return 0;
    }
    long long v;
    if (o->expect && pk_parse_int(arg, o->min, o->max, &v) != 0)
        return pk_usage_error(cmd, "--%s: expected %s, got '%s'", o->name, o->expect, arg);
    if (o->num) {
        *o->num = v;
        return 0;
    }
    if (o->choices) {
        size_t i = 0;
        while (o->choices[i] && strcmp(o->choices[i], arg) != 0)
            i++;
        if (!o->choices[i]) {
            char text[256];
            return pk_usage_error(cmd, "--%s: expected %s, got '%s'", o->name,
                                  choice_text(o->choices, text, sizeof text), arg);
        }
    }
    *o->value = arg;
    return 0;
}

/* The getopt_long option string of every subcommand: '-' returns positional
 * arguments in order as option 1 (so `import FILE --sku X` and `import --sku X
 * FILE` both work, whatever POSIXLY_CORRECT says); ':' makes a missing value
 * come back as ':' so pk_getopt_error() can name the option. */
#define PK_OPTSTRING "-:h"
#define PK_OPTS_MAX  24 /* options of one command, --help included */

int pk_parse(const pk_cmd *cmd, int argc, char **argv, const pk_opt *opts, const pk_pos *pos)
{
    struct option lo[PK_OPTS_MAX + 1];
    size_t n = 0;
    for (; opts && opts[n].name; n++) {
        assert(n + 1 < PK_OPTS_MAX);
        assert(opts[n].value || opts[n].flag || (opts[n].num && opts[n].expect));
        int has_value = opts[n].value || opts[n].num;
        /* getopt_long returns 256 + the option's index in the table */
        lo[n] = (struct option){opts[n].name, has_value ? required_argument : no_argument, NULL,
                                256 + (int)n};
    }
    lo[n++] = (struct option){"help", no_argument, NULL, 'h'};
    lo[n] = (struct option){NULL, 0, NULL, 0};
    size_t npos = 0, max = pos ? pos->max : 0;
    for (size_t i = 0; i < max; i++)
        pos->args[i] = NULL;
    const char *extra = pos && pos->extra ? pos->extra : "unexpected argument '%s'";
    int c, rc;
    optind = 0;
    while ((c = getopt_long(argc, argv, PK_OPTSTRING, lo, NULL)) != -1) {
        if (c >= 256) {
            if ((rc = opt_take(cmd, &opts[c - 256], optarg)))
                return rc;
        } else if (c == 1) {
            if (npos == max)
                return pk_usage_error(cmd, extra, optarg);
            pos->args[npos++] = optarg;
        } else if (c == 'h') {
            return pk_help(cmd);
        } else {
            return pk_getopt_error(cmd, c, argv);
        }
    }
    for (; optind < argc; optind++) { /* after "--": positional, whatever they look like */
        if (npos == max)
            return pk_usage_error(cmd, extra, argv[optind]);
        pos->args[npos++] = argv[optind];
    }
    return -1;
}

int pk_args(const pk_cmd *cmd, int argc, char **argv, const char **args, size_t max)
{
    return pk_parse(cmd, argc, argv, NULL, &(pk_pos){args, max, NULL});
}
