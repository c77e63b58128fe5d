/*
 * config_parse.c — the walk of libyaml's document tree that the schema
 * tables of config.c drive: paths and messages, scalars, defaults and freeing,
 * mappings and lists. Stateless: everything lives in the ctx of one load.
 */
#include "config/config.h"
#include "config/config_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "crypto/code.h"
#include "crypto/crypto.h"
#include "base/log.h"
#include "base/util.h"

/* ---- parse context, paths and messages ------------------------------------- */

/* Each push returns the previous length, for path_pop. */
size_t cfg_path_push(ctx *c, const char *fmt, ...)
{
    size_t saved = c->plen;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->path + c->plen, sizeof c->path - c->plen, fmt, ap);
    va_end(ap);
    if (n > 0)
        c->plen += (size_t)n;
    if (c->plen >= sizeof c->path)
        c->plen = sizeof c->path - 1;
    return saved;
}

static size_t path_push_key(ctx *c, const char *key)
{
    return cfg_path_push(c, "%s%s", c->plen ? "." : "", key);
}

static size_t path_push_index(ctx *c, size_t i)
{
    return cfg_path_push(c, "[%zu]", i);
}

static void path_pop(ctx *c, size_t saved)
{
    c->plen = saved;
    c->path[saved] = 0;
}

/* "file:line:col: path: what". libyaml counts from 0; editors and humans from 1. */
int cfg_fail(ctx *c, yaml_mark_t m, const char *fmt, ...)
{
    char what[448];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return ph_err_set(c->err, PH_EINVAL, "%s:%zu:%zu: %s%s%s", c->name, m.line + 1, m.column + 1,
                      c->path, c->plen ? ": " : "", what);
}

int cfg_oom(ctx *c)
{
    return ph_err_set(c->err, PH_ENOMEM, "%s: out of memory while loading the configuration",
                      c->name);
}

/* Quotes a value for a message: escaped so the message stays one line, and cut
 * (on a UTF-8 character boundary) so a pasted blob cannot drown the message. */
static const char *quote(const char *s, size_t n, char *buf, size_t len)
{
    size_t pos = 0, char_start = 0;
    buf[pos++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        int cont = (ch & 0xC0) == 0x80;
        if (i >= SHOWN_MAX || pos + 10 > len) {
            if (cont)
                pos = char_start;
            memcpy(buf + pos, "...", 3);
            pos += 3;
            break;
        }
        if (!cont)
            char_start = pos;
        if (ch == '"' || ch == '\\')
            pos += (size_t)snprintf(buf + pos, len - pos, "\\%c", ch);
        else if (ch == '\n')
            pos += (size_t)snprintf(buf + pos, len - pos, "\\n");
        else if (ch < 0x20 || ch == 0x7F)
            pos += (size_t)snprintf(buf + pos, len - pos, "\\x%02x", ch);
        else
            buf[pos++] = (char)ch;
    }
    buf[pos++] = '"';
    buf[pos] = 0;
    return buf;
}

static size_t seq_len(const yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static const char *scalar_text(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* YAML's null: an empty plain value, "~" or "null". */
static int is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = scalar_text(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

int cfg_node_null(const yaml_node_t *n)
{
    return is_null(n);
}

/* The "got ..." half of a message. Token hashes are described by length only:
 * an operator who pastes the token itself there must not see it in a log. */
static const char *describe(const yaml_node_t *n, const field *f, char *buf, size_t len)
{
    if (n->type == YAML_MAPPING_NODE)
        snprintf(buf, len, "a mapping");
    else if (n->type == YAML_SEQUENCE_NODE)
        snprintf(buf, len, "%s", seq_len(n) ? "a list" : "an empty list");
    else if (is_null(n))
        snprintf(buf, len, "%s", *scalar_text(n) ? "null" : "nothing");
    else if (f && f->kind == K_SHA256)
        snprintf(buf, len, "%zu characters", n->data.scalar.length);
    else if (f && (f->kind == K_INT || f->kind == K_BOOL) &&
             n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        char q[SHOWN_MAX * 4 + 8];
        quote(scalar_text(n), n->data.scalar.length, q, sizeof q);
        snprintf(buf, len, "the string %s (write numbers and booleans without quotes)", q);
    } else
        quote(scalar_text(n), n->data.scalar.length, buf, len);
    return buf;
}

/* "a, b or c" */
static void join_choices(const char *const *names, char *buf, size_t len)
{
    size_t pos = 0;
    buf[0] = 0;
    for (size_t i = 0; names[i] && pos < len; i++) {
        const char *sep = i == 0 ? "" : names[i + 1] ? ", " : " or ";
        int n = snprintf(buf + pos, len - pos, "%s%s", sep, names[i]);
        pos += n > 0 ? (size_t)n : 0;
    }
}

/* The "expected ..." half of a message, from the field's declaration. */
static const char *expectation(const field *f, char *buf, size_t len)
{
    char names[96];
    switch (f->kind) {
    case K_STR:
        snprintf(buf, len, "%s", f->flags & F_EMPTY_OK ? "a string" : "a non-empty string");
        break;
    case K_IDENT:
        snprintf(buf, len, "an identifier (1-%d characters of A-Z a-z 0-9 . _ : -)", IDENT_MAX);
        break;
    case K_INT:
        snprintf(buf, len, "an integer %lld..%lld", (long long)f->min, (long long)f->max);
        break;
    case K_BOOL:
        snprintf(buf, len, "true or false");
        break;
    case K_ENUM:
        join_choices(f->choices, buf, len);
        break;
    case K_MONEY:
        snprintf(buf, len,
                 "an amount in CNY like 30 or 19.80 (at most two decimals, not negative)");
        break;
    case K_UTCOFF:
        snprintf(buf, len, "an offset from UTC like \"+08:00\" or \"-05:30\" (-12:00..+14:00)");
        break;
    case K_SHA256:
        snprintf(buf, len, "64 hex digits (%s)",
                 strcmp(f->name, "token_sha256") == 0
                     ? "the SHA-256 of the token, never the token itself"
                     : "the SHA-256 of the certificate in DER form");
        break;
    case K_SCOPES:
        join_choices(f->choices, names, sizeof names);
        snprintf(buf, len, "a non-empty list of %s", names);
        break;
    case K_TAGS:
        snprintf(buf, len, f->flags & F_TEXT_ITEMS ? "a list of strings" : "a list of identifiers");
        break;
    case K_KV:
        snprintf(buf, len, "a mapping of plugin settings");
        break;
    case K_SECTION:
        snprintf(buf, len, "a mapping");
        break;
    case K_LIST:
        snprintf(buf, len, "a list of mappings");
        break;
    case K_RULE:
        snprintf(buf, len,
                 "look-alike pairs FROM=TO of letters or digits like \"O=0 I=1 L=1\" (each FROM "
                 "once, no TO that is also a FROM)");
        break;
    }
    return buf;
}

static int fail_expected(ctx *c, const field *f, const yaml_node_t *n)
{
    char exp[160], got[SHOWN_MAX * 4 + 80];
    return cfg_fail(c, n->start_mark, "expected %s, got %s", expectation(f, exp, sizeof exp),
                    describe(n, f, got, sizeof got));
}

/* Optimal string alignment distance (a transposition counts 1), for typo hints;
 * SIZE_MAX for names too long to be worth it. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return SIZE_MAX;
    size_t rows[3][64], *pp = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t d = prev[j - 1] + cost;
            if (prev[j] + 1 < d)
                d = prev[j] + 1;
            if (cur[j - 1] + 1 < d)
                d = cur[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && pp[j - 2] + 1 < d)
                d = pp[j - 2] + 1;
            cur[j] = d;
        }
        size_t *t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

/* Keeps in *best the candidate closest to key, if close enough to be a typo. */
void cfg_hint_consider(const char *key, const char *cand, const char **best, size_t *bestd)
{
    size_t d = edit_distance(key, cand);
    size_t longer = strlen(key) > strlen(cand) ? strlen(key) : strlen(cand);
    if (d <= 2 && d * 3 <= longer && d < *bestd) {
        *best = cand;
        *bestd = d;
    }
}

/* ---- document navigation --------------------------------------------------- */

static yaml_node_t *node_at(ctx *c, int index)
{
    return yaml_document_get_node(c->doc, index);
}

yaml_node_t *cfg_seq_item(ctx *c, const yaml_node_t *n, size_t i)
{
    return node_at(c, n->data.sequence.items.start[i]);
}

static int key_is(const yaml_node_t *k, const char *name)
{
    return k->type == YAML_SCALAR_NODE && k->data.scalar.length == strlen(name) &&
           !memcmp(k->data.scalar.value, name, k->data.scalar.length);
}

/* The value under key in a mapping, or NULL. Keys are unique once parsed. */
yaml_node_t *cfg_map_find(ctx *c, const yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++)
        if (key_is(node_at(c, p->key), key))
            return node_at(c, p->value);
    return NULL;
}

/* Members are reached by offset; pointers go through memcpy so no member is
 * accessed through an lvalue of another pointer type. */
static void *ptr_get(const void *obj, size_t off)
{
    void *p;
    memcpy(&p, (const char *)obj + off, sizeof p);
    return p;
}

static void ptr_set(void *obj, size_t off, void *p)
{
    memcpy((char *)obj + off, &p, sizeof p);
}

static size_t *count_at(void *obj, size_t off)
{
    return (size_t *)((char *)obj + off);
}

/* ---- duplicates ------------------------------------------------------------ */

typedef struct named {
    const char *s;
    size_t i;
} named;

static int named_cmp(const void *pa, const void *pb)
{
    const named *a = pa, *b = pb;
    int r = strcmp(a->s, b->s);
    return r ? r : (a->i > b->i) - (a->i < b->i);
}

/* Finds the duplicate whose second occurrence comes first in the file, so the
 * error points where a reader scanning down would first notice it. Sorting
 * keeps this O(n log n) for catalogs of thousands of products. Reorders v. */
static int find_dup(named *v, size_t n, size_t *first, size_t *second)
{
    int found = 0;
    qsort(v, n, sizeof *v, named_cmp);
    for (size_t k = 1; k < n; k++) {
        int starts_group = k == 1 || strcmp(v[k - 2].s, v[k - 1].s);
        if (!starts_group || strcmp(v[k - 1].s, v[k].s) || (found && v[k].i > *second))
            continue;
        *first = v[k - 1].i;
        *second = v[k].i;
        found = 1;
    }
    return found;
}

/* ---- scalars --------------------------------------------------------------- */

typedef struct scalar {
    const char *s;
    size_t len;
    int plain;
} scalar;

/* Digits with an optional sign, nothing else: YAML 1.1's 0x1F, 0o17, 1_000 and
 * 1e3 are refused on purpose, a setting should read as what it is. */
static int parse_int(const scalar *v, int64_t *out)
{
    size_t i = 0;
    int neg = v->len && v->s[0] == '-';
    if (v->len && (v->s[0] == '-' || v->s[0] == '+'))
        i = 1;
    if (i == v->len)
        return -1;
    int64_t x = 0;
    for (; i < v->len; i++) {
        if (v->s[i] < '0' || v->s[i] > '9' || x > (INT64_MAX - 9) / 10)
            return -1;
        x = x * 10 + (v->s[i] - '0');
    }
    *out = neg ? -x : x;
    return 0;
}

static int parse_bool(const scalar *v, int *out)
{
    static const char *const yes[] = {"true", "yes"}, *const no[] = {"false", "no"};
    for (size_t i = 0; i < 2; i++) {
        if (!strcasecmp(v->s, yes[i]))
            return *out = 1, 0;
        if (!strcasecmp(v->s, no[i]))
            return *out = 0, 0;
    }
    return -1;
}

static int parse_choice(const field *f, const scalar *v, int *out)
{
    for (size_t i = 0; f->choices[i]; i++)
        if (!strcmp(v->s, f->choices[i]))
            return *out = f->values[i], 0;
    return -1;
}

static void store_int(void *p, size_t size, int64_t v)
{
    if (size == 2) {
        uint16_t x = (uint16_t)v;
        memcpy(p, &x, sizeof x);
    } else if (size == 4) {
        int32_t x = (int32_t)v;
        memcpy(p, &x, sizeof x);
    } else {
        memcpy(p, &v, sizeof v);
    }
}

/* Converts one scalar into the member f describes. PH_EINVAL when the value
 * does not fit the declaration (the caller words the message), PH_ENOMEM. */
static int parse_scalar(const field *f, const scalar *v, void *obj)
{
    char *p = (char *)obj + f->off;
    int64_t n;
    int b;
    int has_nul = memchr(v->s, 0, v->len) != NULL;
    switch (f->kind) {
    case K_STR:
    case K_IDENT:
        if (has_nul || (!v->len && !(f->flags & F_EMPTY_OK)) ||
            (f->kind == K_IDENT && !ph_ident_valid(v->s, IDENT_MAX)))
            return PH_EINVAL;
        if (!(*(char **)p = strndup(v->s, v->len)))
            return PH_ENOMEM;
        return PH_OK;
    case K_INT:
        if (!v->plain || parse_int(v, &n) || n < f->min || n > f->max)
            return PH_EINVAL;
        store_int(p, f->size, n * f->scale);
        return PH_OK;
    case K_BOOL:
        if (!v->plain || parse_bool(v, &b))
            return PH_EINVAL;
        memcpy(p, &b, sizeof b);
        return PH_OK;
    case K_ENUM:
        if (has_nul || parse_choice(f, v, &b))
            return PH_EINVAL;
        memcpy(p, &b, sizeof b);
        return PH_OK;
    case K_MONEY:
        if (has_nul || ph_money_parse(v->s, &n))
            return PH_EINVAL;
        memcpy(p, &n, sizeof n);
        return PH_OK;
    case K_SHA256:
        return has_nul || ph_hex_decode(v->s, (uint8_t *)p, 32) ? PH_EINVAL : PH_OK;
    case K_UTCOFF: {
        const char *t = v->s;
        int ok = !has_nul && v->len == 6 && (t[0] == '+' || t[0] == '-') && t[3] == ':';
        for (int i = 1; ok && i < 6; i++)
            ok = i == 3 || (t[i] >= '0' && t[i] <= '9');
        int m = ok ? ((t[1] - '0') * 10 + (t[2] - '0')) * 60 + (t[4] - '0') * 10 + (t[5] - '0') : 0;
        if (!ok || t[4] > '5' || (t[0] == '-' ? m > 720 : m > 840))
            return PH_EINVAL;
        m = t[0] == '-' ? -m : m;
        memcpy(p, &m, sizeof m);
        return PH_OK;
    }
    case K_RULE: {
        char rule[PH_LOOKALIKES_MAX + 1];
        const char *why;
        if (has_nul || ph_code_lookalikes_parse(v->s, v->len, rule, &why) != PH_OK)
            return PH_EINVAL;
        return (*(char **)p = strdup(rule)) ? PH_OK : PH_ENOMEM;
    }
    default:
        return PH_EINVAL;
    }
}

/* One scalar node into the member f describes, with the message on failure. */
static int set_scalar(ctx *c, const field *f, const yaml_node_t *n, void *obj)
{
    if (n->type != YAML_SCALAR_NODE || is_null(n))
        return fail_expected(c, f, n);
    scalar v = {scalar_text(n), n->data.scalar.length,
                n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE};
    int rc = parse_scalar(f, &v, obj);
    if (rc == PH_EINVAL)
        return fail_expected(c, f, n);
    return rc == PH_OK ? PH_OK : cfg_oom(c);
}

/* ---- defaults and freeing -------------------------------------------------- */

static int apply_default(ctx *c, const field *f, void *obj)
{
    if (f->kind == K_SECTION) {
        for (size_t i = 0; i < f->nsub; i++) {
            int rc = apply_default(c, &f->sub[i], obj);
            if (rc)
                return rc;
        }
        return PH_OK;
    }
    if (!f->def) /* lists stay empty, optional strings NULL */
        return PH_OK;
    scalar v = {f->def, strlen(f->def), 1};
    int rc = parse_scalar(f, &v, obj);
    if (rc == PH_EINVAL) /* a bad entry in the tables above; the tests load defaults */
        return ph_err_set(c->err, PH_EINVAL, "%s: internal error: bad default for %s", c->name,
                          f->name);
    return rc == PH_OK ? PH_OK : cfg_oom(c);
}

void cfg_free_fields(const field *tab, size_t n, void *obj)
{
    for (size_t i = 0; i < n; i++) {
        const field *f = &tab[i];
        char *p = (char *)obj + f->off;
        int counted = f->kind == K_TAGS || f->kind == K_KV || f->kind == K_LIST;
        size_t cnt = counted ? *count_at(obj, f->off2) : 0;
        switch (f->kind) {
        case K_STR:
        case K_IDENT:
        case K_RULE:
            free(*(char **)p);
            break;
        case K_TAGS: {
            char **tags = ptr_get(obj, f->off);
            for (size_t k = 0; tags && k < cnt; k++)
                free(tags[k]);
            free(tags);
            break;
        }
        case K_KV: {
            ph_kv *kv = ptr_get(obj, f->off);
            for (size_t k = 0; kv && k < cnt; k++) {
                free(kv[k].key);
                free(kv[k].value);
            }
            free(kv);
            break;
        }
        case K_LIST: {
            char *arr = ptr_get(obj, f->off);
            for (size_t k = 0; arr && k < cnt; k++)
                cfg_free_fields(f->sub, f->nsub, arr + k * f->size);
            free(arr);
            break;
        }
        case K_SECTION:
            cfg_free_fields(f->sub, f->nsub, obj);
            break;
        default:
            break;
        }
    }
}

/* ---- mappings and lists ---------------------------------------------------- */

int cfg_parse_object(ctx *c, const field *tab, size_t n, const yaml_node_t *node, void *obj);

static const field *find_field(const field *tab, size_t n, const yaml_node_t *key)
{
    for (size_t i = 0; i < n; i++)
        if (key_is(key, tab[i].name))
            return &tab[i];
    return NULL;
}

static int unknown_key(ctx *c, const field *tab, size_t n, const yaml_node_t *k)
{
    char shown[SHOWN_MAX * 4 + 8], list[256];
    const char *best = NULL;
    size_t bestd = SIZE_MAX, pos = 0;
    quote(scalar_text(k), k->data.scalar.length, shown, sizeof shown);
    for (size_t i = 0; i < n; i++)
        cfg_hint_consider(scalar_text(k), tab[i].name, &best, &bestd);
    if (best)
        return cfg_fail(c, k->start_mark, "unknown key %s, did you mean \"%s\"?", shown, best);
    /* a key one level too high: "port:" at the top instead of under listen: */
    for (size_t i = 0; i < n; i++)
        if (tab[i].kind == K_SECTION && find_field(tab[i].sub, tab[i].nsub, k))
            return cfg_fail(c, k->start_mark, "unknown key %s, did you mean \"%s.%s\"?", shown,
                            tab[i].name, scalar_text(k));
    list[0] = 0;
    for (size_t i = 0; i < n && pos < sizeof list; i++) {
        int w = snprintf(list + pos, sizeof list - pos, "%s%s", i ? ", " : "", tab[i].name);
        pos += w > 0 ? (size_t)w : 0;
    }
    return cfg_fail(c, k->start_mark, "unknown key %s, expected one of %s", shown, list);
}

static int set_field(ctx *c, const field *f, const yaml_node_t *v, void *obj);

/* Fills obj from a mapping node: every key must be declared in tab and appear
 * once; absent keys take their default or, if required, fail at the mapping. */
int cfg_parse_object(ctx *c, const field *tab, size_t n, const yaml_node_t *node, void *obj)
{
    yaml_mark_t first[MAX_FIELDS];
    int seen[MAX_FIELDS] = {0};
    if (node->type != YAML_MAPPING_NODE) {
        char got[SHOWN_MAX * 4 + 8];
        return cfg_fail(c, node->start_mark, "expected a mapping, got %s",
                        describe(node, NULL, got, sizeof got));
    }
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = node_at(c, p->key), *v = node_at(c, p->value);
        char got[SHOWN_MAX * 4 + 8];
        if (k->type != YAML_SCALAR_NODE)
            return cfg_fail(c, k->start_mark, "expected a key name, got %s",
                            describe(k, NULL, got, sizeof got));
        const field *f = find_field(tab, n, k);
        if (!f)
            return unknown_key(c, tab, n, k);
        size_t i = (size_t)(f - tab);
        if (seen[i])
            return cfg_fail(c, k->start_mark, "duplicate key \"%s\", first at %zu:%zu", f->name,
                            first[i].line + 1, first[i].column + 1);
        seen[i] = 1;
        first[i] = k->start_mark;
        size_t saved = path_push_key(c, f->name);
        int rc = set_field(c, f, v, obj);
        path_pop(c, saved);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (seen[i])
            continue;
        if (tab[i].flags & F_REQUIRED)
            return cfg_fail(c, node->start_mark, "missing required key \"%s\"", tab[i].name);
        int rc = apply_default(c, &tab[i], obj);
        if (rc)
            return rc;
    }
    return PH_OK;
}

/* After a list of mappings parsed: the field f->unique must differ between
 * elements. The message names both places. */
static int check_unique(ctx *c, const field *f, const yaml_node_t *seq, const char *arr, size_t n)
{
    const field *uf = NULL;
    for (size_t i = 0; i < f->nsub; i++)
        if (!strcmp(f->sub[i].name, f->unique))
            uf = &f->sub[i];
    named *v = malloc((n ? n : 1) * sizeof *v);
    if (!v)
        return cfg_oom(c);
    for (size_t i = 0; i < n; i++) {
        v[i].s = *(char *const *)(arr + i * f->size + uf->off);
        v[i].i = i;
    }
    size_t a, b;
    int dup = find_dup(v, n, &a, &b);
    free(v);
    if (!dup)
        return PH_OK;
    const yaml_node_t *na = cfg_map_find(c, cfg_seq_item(c, seq, a), f->unique);
    const yaml_node_t *nb = cfg_map_find(c, cfg_seq_item(c, seq, b), f->unique);
    char list_path[sizeof c->path], shown[SHOWN_MAX * 4 + 8];
    memcpy(list_path, c->path, sizeof list_path);
    path_push_index(c, b);
    path_push_key(c, f->unique);
    return cfg_fail(c, nb->start_mark, "duplicate %s %s, first at %zu:%zu (%s[%zu])",
                    f->unique_what,
                    quote(scalar_text(nb), nb->data.scalar.length, shown, sizeof shown),
                    na->start_mark.line + 1, na->start_mark.column + 1, list_path, a);
}

static int parse_list(ctx *c, const field *f, const yaml_node_t *node, void *obj)
{
    if (node->type != YAML_SEQUENCE_NODE)
        return fail_expected(c, f, node);
    size_t n = seq_len(node);
    char *arr = n ? calloc(n, f->size) : NULL;
    if (n && !arr)
        return cfg_oom(c);
    /* owned by obj from here, so the caller's free covers a half-filled array */
    ptr_set(obj, f->off, arr);
    *count_at(obj, f->off2) = n;
    for (size_t i = 0; i < n; i++) {
        size_t saved = path_push_index(c, i);
        int rc = cfg_parse_object(c, f->sub, f->nsub, cfg_seq_item(c, node, i), arr + i * f->size);
        path_pop(c, saved);
        if (rc)
            return rc;
    }
    return f->unique ? check_unique(c, f, node, arr, n) : PH_OK;
}

static int parse_tags(ctx *c, const field *f, const yaml_node_t *node, void *obj)
{
    static const field ident = {.name = "tag", .kind = K_IDENT};
    static const field text = {.name = "item", .kind = K_STR};
    const field item = f->flags & F_TEXT_ITEMS ? text : ident;
    if (node->type != YAML_SEQUENCE_NODE)
        return fail_expected(c, f, node);
    size_t n = seq_len(node);
    char **tags = n ? calloc(n, sizeof *tags) : NULL;
    if (n && !tags)
        return cfg_oom(c);
    ptr_set(obj, f->off, tags);
    *count_at(obj, f->off2) = n;
    for (size_t i = 0; i < n; i++) {
        size_t saved = path_push_index(c, i);
        int rc = set_scalar(c, &item, cfg_seq_item(c, node, i), &tags[i]);
        path_pop(c, saved);
        if (rc)
            return rc;
    }
    return PH_OK;
}

static int parse_scopes(ctx *c, const field *f, const yaml_node_t *node, void *obj)
{
    const field item = {
        .name = "scope", .kind = K_ENUM, .choices = f->choices, .values = f->values};
    if (node->type != YAML_SEQUENCE_NODE || seq_len(node) == 0)
        return fail_expected(c, f, node);
    unsigned bits = 0;
    for (size_t i = 0; i < seq_len(node); i++) {
        int bit = 0;
        size_t saved = path_push_index(c, i);
        int rc = set_scalar(c, &item, cfg_seq_item(c, node, i), &bit);
        path_pop(c, saved);
        if (rc)
            return rc;
        bits |= (unsigned)bit;
    }
    memcpy((char *)obj + f->off, &bits, sizeof bits);
    return PH_OK;
}

static int setting_key_valid(const yaml_node_t *k)
{
    if (k->type != YAML_SCALAR_NODE || !k->data.scalar.length ||
        k->data.scalar.length > SETTING_KEY_MAX)
        return 0;
    for (size_t i = 0; i < k->data.scalar.length; i++) {
        char ch = (char)k->data.scalar.value[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

/* One plugin setting. Values are kept as written and never quoted back in a
 * message: an inline secret must not reach a log. */
static int parse_setting(ctx *c, const yaml_node_t *k, const yaml_node_t *v, ph_kv *kv)
{
    char got[SHOWN_MAX * 4 + 8];
    if (!setting_key_valid(k))
        return cfg_fail(c, k->start_mark,
                        "expected a setting name (1-%d characters of A-Z a-z 0-9 _ . -), got %s",
                        SETTING_KEY_MAX, describe(k, NULL, got, sizeof got));
    size_t saved = path_push_key(c, scalar_text(k));
    int rc = PH_OK;
    if (v->type != YAML_SCALAR_NODE)
        rc =
            cfg_fail(c, v->start_mark, "expected a scalar value (plugin settings are flat), got %s",
                     describe(v, NULL, got, sizeof got));
    else if (memchr(v->data.scalar.value, 0, v->data.scalar.length))
        rc = cfg_fail(c, v->start_mark, "expected text, got a value containing a NUL byte");
    path_pop(c, saved);
    if (rc)
        return rc;
    kv->key = strndup(scalar_text(k), k->data.scalar.length);
    kv->value = strndup(scalar_text(v), v->data.scalar.length);
    return kv->key && kv->value ? PH_OK : cfg_oom(c);
}

static int check_setting_dups(ctx *c, const yaml_node_t *node, const ph_kv *kv, size_t n)
{
    named *v = malloc((n ? n : 1) * sizeof *v);
    if (!v)
        return cfg_oom(c);
    for (size_t i = 0; i < n; i++)
        v[i] = (named){kv[i].key, i};
    size_t a, b;
    int dup = find_dup(v, n, &a, &b);
    free(v);
    if (!dup)
        return PH_OK;
    yaml_node_pair_t *pairs = node->data.mapping.pairs.start;
    const yaml_node_t *ka = node_at(c, pairs[a].key), *kb = node_at(c, pairs[b].key);
    return cfg_fail(c, kb->start_mark, "duplicate key \"%s\", first at %zu:%zu", kv[b].key,
                    ka->start_mark.line + 1, ka->start_mark.column + 1);
}

static int parse_kv(ctx *c, const field *f, const yaml_node_t *node, void *obj)
{
    if (node->type != YAML_MAPPING_NODE)
        return fail_expected(c, f, node);
    yaml_node_pair_t *pairs = node->data.mapping.pairs.start;
    size_t n = (size_t)(node->data.mapping.pairs.top - pairs);
    ph_kv *kv = n ? calloc(n, sizeof *kv) : NULL;
    if (n && !kv)
        return cfg_oom(c);
    ptr_set(obj, f->off, kv);
    *count_at(obj, f->off2) = n;
    for (size_t i = 0; i < n; i++) {
        int rc = parse_setting(c, node_at(c, pairs[i].key), node_at(c, pairs[i].value), &kv[i]);
        if (rc)
            return rc;
    }
    return check_setting_dups(c, node, kv, n);
}

static int set_field(ctx *c, const field *f, const yaml_node_t *v, void *obj)
{
    if (is_null(v))
        return f->flags & F_REQUIRED ? fail_expected(c, f, v) : apply_default(c, f, obj);
    switch (f->kind) {
    case K_SECTION:
        return cfg_parse_object(c, f->sub, f->nsub, v, obj);
    case K_LIST:
        return parse_list(c, f, v, obj);
    case K_TAGS:
        return parse_tags(c, f, v, obj);
    case K_SCOPES:
        return parse_scopes(c, f, v, obj);
    case K_KV:
        return parse_kv(c, f, v, obj);
    default:
        return set_scalar(c, f, v, obj);
    }
}
