/*
 * config.c — the YAML configuration: a declarative schema applied to libyaml's
 * document tree.
 *
 * Every key is declared once, in a field table (name, kind, range, default,
 * offset into the struct), in the manner of nginx directives and Fluent Bit
 * config maps. The same tables drive parsing, defaults, "did you mean" hints
 * and freeing, so a key cannot be parsed and then leaked, and a default cannot
 * be written in a different syntax from the one the file uses: defaults are
 * YAML scalar text, run through the same parser as the file.
 *
 * Loading builds a fresh, zeroed ph_config and fills it; on any error the half
 * built struct is freed with the same table-driven free, so every error path is
 * one `goto fail`. Nothing here keeps state between calls: thread-safe.
 */
#include "config/config.h"

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

#define NELEM(a)          (sizeof(a) / sizeof((a)[0]))
#define MEMBER_SIZE(T, m) sizeof(((T *)0)->m)
#define MIB               (1024 * 1024)
#define IDENT_MAX         64         /* sku, supplier id, client name, brand, tag... */
#define SETTING_KEY_MAX   128        /* plugin config keys */
#define MAX_FIELDS        16         /* keys in one mapping of the schema */
#define FILE_MAX          (64 * MIB) /* a larger "config" is a mistake (or /dev/zero) */
#define SHOWN_MAX         48         /* bytes of a bad value quoted back in a message */

/* ---- the schema ------------------------------------------------------------ */

enum kind {
    K_STR,     /* char *; non-empty unless F_EMPTY_OK */
    K_IDENT,   /* char *; ph_ident_valid(s, IDENT_MAX) */
    K_INT,     /* integer in [min, max] as written; the member holds value * scale */
    K_BOOL,    /* int 0/1: true/false, yes/no */
    K_ENUM,    /* int: values[i] for choices[i] */
    K_MONEY,   /* int64_t fen, from "30", "30.00", 19.8 */
    K_SHA256,  /* uint8_t[32] from 64 hex digits */
    K_SCOPES,  /* unsigned: OR of values[i] over a non-empty list of choices */
    K_TAGS,    /* char ** at off, size_t count at off2: a list of identifiers */
    K_KV,      /* ph_kv * at off, size_t count at off2: flat mapping of scalars */
    K_SECTION, /* a nested mapping whose keys fill members of the same struct */
    K_LIST,    /* a list of mappings: `size`-byte structs at off, count at off2 */
    K_RULE,    /* char *: a look-alike rule, kept canonical (crypto/code.h) */
};

enum { F_REQUIRED = 1, F_EMPTY_OK = 2 };

typedef struct field {
    const char *name;
    enum kind kind;
    unsigned flags;
    size_t off, off2;
    size_t size;                /* K_INT: bytes of the member; K_LIST: bytes of an element */
    int64_t min, max, scale;    /* K_INT */
    const char *def;            /* default, as YAML scalar text; NULL: zero/NULL/empty */
    const char *const *choices; /* K_ENUM, K_SCOPES: NULL-terminated */
    const int *values;          /* K_ENUM, K_SCOPES: one per choice */
    const struct field *sub;    /* K_SECTION, K_LIST */
    size_t nsub;
    const char *unique;      /* K_LIST: sub-field that must differ between elements */
    const char *unique_what; /* ... and how to call it in the message */
} field;

#define STR(T, m, key, fl, d)                                                                      \
    {                                                                                              \
        .name = (key), .kind = K_STR, .flags = (fl), .off = offsetof(T, m), .def = (d)             \
    }
#define IDENT(T, m, key)                                                                           \
    {                                                                                              \
        .name = (key), .kind = K_IDENT, .flags = F_REQUIRED, .off = offsetof(T, m)                 \
    }
/* 4-byte members take ranges inside int32: the value is stored via int32_t. */
#define INT(T, m, key, lo, hi, sc, d)                                                              \
    {                                                                                              \
        .name = (key), .kind = K_INT, .off = offsetof(T, m), .size = MEMBER_SIZE(T, m),            \
        .min = (lo), .max = (hi), .scale = (sc), .def = (d)                                        \
    }
#define BOOL(T, m, key, d)                                                                         \
    {                                                                                              \
        .name = (key), .kind = K_BOOL, .off = offsetof(T, m), .def = (d)                           \
    }
#define MONEY(T, m, key)                                                                           \
    {                                                                                              \
        .name = (key), .kind = K_MONEY, .flags = F_REQUIRED, .off = offsetof(T, m)                 \
    }
#define ENUM(T, m, key, fl, names, vals, d)                                                        \
    {                                                                                              \
        .name = (key), .kind = K_ENUM, .flags = (fl), .off = offsetof(T, m), .choices = (names),   \
        .values = (vals), .def = (d)                                                               \
    }
#define ARRAY(k, T, m, n, key)                                                                     \
    {                                                                                              \
        .name = (key), .kind = (k), .off = offsetof(T, m), .off2 = offsetof(T, n)                  \
    }
#define SECTION(key, tab)                                                                          \
    {                                                                                              \
        .name = (key), .kind = K_SECTION, .sub = (tab), .nsub = NELEM(tab)                         \
    }
#define LIST(T, m, n, key, E, tab, uniq, what)                                                     \
    {                                                                                              \
        .name = (key), .kind = K_LIST, .off = offsetof(T, m), .off2 = offsetof(T, n),              \
        .size = sizeof(E), .sub = (tab), .nsub = NELEM(tab), .unique = (uniq),                     \
        .unique_what = (what)                                                                      \
    }

static const char *const log_names[] = {"debug", "info", "warn", "error", NULL};
static const int log_values[] = {PH_LOG_DEBUG, PH_LOG_INFO, PH_LOG_WARN, PH_LOG_ERROR};
static const char *const delivery_names[] = {"card_code", "recharge", NULL};
static const int delivery_values[] = {PH_DELIVERY_CARD_CODE, PH_DELIVERY_RECHARGE};
static const char *const scope_names[] = {"fulfill", "support", "ops", NULL};
static const int scope_values[] = {PH_SCOPE_FULFILL, PH_SCOPE_SUPPORT, PH_SCOPE_OPS};

static const field listen_fields[] = {
    STR(ph_config, listen_address, "address", 0, "127.0.0.1"),
    INT(ph_config, port, "port", 0, 65535, 1, "8080"),
    STR(ph_config, port_file, "port_file", 0, NULL),
};
static const field log_fields[] = {
    ENUM(ph_config, log_level, "level", 0, log_names, log_values, "info"),
};
static const field http_fields[] = {
    INT(ph_config, http_threads, "threads", 1, 256, 1, "4"),
};
static const field limits_fields[] = {
    INT(ph_config, max_order_quantity, "max_order_quantity", 1, 10000000, 1, "100000"),
    INT(ph_config, max_body_bytes, "max_body_mb", 1, 4096, MIB, "64"),
    INT(ph_config, max_import_codes, "max_import_codes", 1, 100000000, 1, "1000000"),
    INT(ph_config, max_order_wait_s, "max_order_wait_s", 0, 3600, 1, "30"),
};
static const field client_fields[] = {
    IDENT(ph_client_conf, name, "name"),
    {.name = "token_sha256",
     .kind = K_SHA256,
     .flags = F_REQUIRED,
     .off = offsetof(ph_client_conf, token_hash)},
    {.name = "scopes",
     .kind = K_SCOPES,
     .flags = F_REQUIRED,
     .off = offsetof(ph_client_conf, scopes),
     .choices = scope_names,
     .values = scope_values},
    BOOL(ph_client_conf, loopback_only, "loopback_only", "false"),
};
static const field supplier_fields[] = {
    IDENT(ph_supplier_conf, id, "id"),
    IDENT(ph_supplier_conf, plugin, "plugin"),
    BOOL(ph_supplier_conf, enabled, "enabled", "true"),
    INT(ph_supplier_conf, priority, "priority", -1000000, 1000000, 1, "0"),
    ARRAY(K_KV, ph_supplier_conf, config, nconfig, "config"),
    INT(ph_supplier_conf, max_in_flight, "max_in_flight", 1, 100000, 1, "256"),
    INT(ph_supplier_conf, connect_timeout_ms, "connect_timeout_ms", 1, 600000, 1, "3000"),
    INT(ph_supplier_conf, timeout_ms, "timeout_ms", 1, 3600000, 1, "10000"),
    BOOL(ph_supplier_conf, tls_verify, "tls_verify", "true"),
    INT(ph_supplier_conf, breaker_failures, "breaker_failures", 1, 1000000, 1, "5"),
    INT(ph_supplier_conf, breaker_open_ms, "breaker_open_ms", 1, 86400000, 1, "10000"),
    INT(ph_supplier_conf, query_max_delay_ms, "query_max_delay_ms", 1, 3600000, 1, "30000"),
    INT(ph_supplier_conf, processing_window_s, "processing_window_s", 0, 604800, 1, "0"),
};
static const field offer_fields[] = {
    IDENT(ph_offer_conf, supplier, "supplier"),
    STR(ph_offer_conf, supplier_sku, "supplier_sku", F_REQUIRED, NULL),
    MONEY(ph_offer_conf, cost, "cost"),
};
static const field product_fields[] = {
    IDENT(ph_product_conf, sku, "sku"),
    STR(ph_product_conf, name, "name", F_REQUIRED, NULL),
    IDENT(ph_product_conf, brand, "brand"),
    IDENT(ph_product_conf, category, "category"),
    ARRAY(K_TAGS, ph_product_conf, tags, ntags, "tags"),
    ENUM(ph_product_conf, delivery, "delivery", F_REQUIRED, delivery_names, delivery_values, NULL),
    MONEY(ph_product_conf, face_value, "face_value"),
    STR(ph_product_conf, redemption_guide, "redemption_guide", F_EMPTY_OK, ""),
    {.name = "code_lookalikes",
     .kind = K_RULE,
     .off = offsetof(ph_product_conf, code_lookalikes),
     .def = ""},
    BOOL(ph_product_conf, listed, "listed", "true"),
    LIST(ph_product_conf, offers, noffers, "offers", ph_offer_conf, offer_fields, "supplier",
         "offer from supplier"),
};
static const field top_fields[] = {
    SECTION("listen", listen_fields),
    STR(ph_config, data_dir, "data_dir", F_REQUIRED, NULL),
    INT(ph_config, map_size, "map_size_mb", 1, 16777216, MIB, "1024"),
    STR(ph_config, master_key_file, "master_key_file", F_REQUIRED, NULL),
    BOOL(ph_config, master_key_create, "master_key_create", "false"),
    STR(ph_config, plugin_dir, "plugin_dir", 0, "build/plugins"),
    STR(ph_config, public_url, "public_url", 0, NULL),
    STR(ph_config, pid_file, "pid_file", 0, NULL),
    SECTION("log", log_fields),
    SECTION("http", http_fields),
    SECTION("limits", limits_fields),
    LIST(ph_config, clients, nclients, "clients", ph_client_conf, client_fields, "name",
         "client name"),
    LIST(ph_config, suppliers, nsuppliers, "suppliers", ph_supplier_conf, supplier_fields, "id",
         "supplier id"),
    LIST(ph_config, products, nproducts, "products", ph_product_conf, product_fields, "sku", "sku"),
};

_Static_assert(NELEM(top_fields) <= MAX_FIELDS, "raise MAX_FIELDS");
_Static_assert(NELEM(product_fields) <= MAX_FIELDS, "raise MAX_FIELDS");
_Static_assert(NELEM(supplier_fields) <= MAX_FIELDS, "raise MAX_FIELDS");

/* ---- parse context, paths and messages ------------------------------------- */

typedef struct ctx {
    yaml_document_t *doc;
    const char *name; /* file name for messages */
    ph_err *err;
    char path[256]; /* "products[3].offers[0].cost": where the walk is */
    size_t plen;
} ctx;

/* Each push returns the previous length, for path_pop. */
static size_t path_push(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t path_push(ctx *c, const char *fmt, ...)
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
    return path_push(c, "%s%s", c->plen ? "." : "", key);
}

static size_t path_push_index(ctx *c, size_t i)
{
    return path_push(c, "[%zu]", i);
}

static void path_pop(ctx *c, size_t saved)
{
    c->plen = saved;
    c->path[saved] = 0;
}

/* "file:line:col: path: what". libyaml counts from 0; editors and humans from 1. */
static int fail(ctx *c, yaml_mark_t m, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(ctx *c, yaml_mark_t m, const char *fmt, ...)
{
    char what[448];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return ph_err_set(c->err, PH_EINVAL, "%s:%zu:%zu: %s%s%s", c->name, m.line + 1, m.column + 1,
                      c->path, c->plen ? ": " : "", what);
}

static int oom(ctx *c)
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
    case K_SHA256:
        snprintf(buf, len, "64 hex digits (the SHA-256 of the token, never the token itself)");
        break;
    case K_SCOPES:
        join_choices(f->choices, names, sizeof names);
        snprintf(buf, len, "a non-empty list of %s", names);
        break;
    case K_TAGS:
        snprintf(buf, len, "a list of identifiers");
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
    return fail(c, n->start_mark, "expected %s, got %s", expectation(f, exp, sizeof exp),
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
static void hint_consider(const char *key, const char *cand, const char **best, size_t *bestd)
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

static yaml_node_t *seq_item(ctx *c, const yaml_node_t *n, size_t i)
{
    return node_at(c, n->data.sequence.items.start[i]);
}

static int key_is(const yaml_node_t *k, const char *name)
{
    return k->type == YAML_SCALAR_NODE && k->data.scalar.length == strlen(name) &&
           !memcmp(k->data.scalar.value, name, k->data.scalar.length);
}

/* The value under key in a mapping, or NULL. Keys are unique once parsed. */
static yaml_node_t *map_find(ctx *c, const yaml_node_t *map, const char *key)
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
    return rc == PH_OK ? PH_OK : oom(c);
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
    return rc == PH_OK ? PH_OK : oom(c);
}

static void free_fields(const field *tab, size_t n, void *obj)
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
                free_fields(f->sub, f->nsub, arr + k * f->size);
            free(arr);
            break;
        }
        case K_SECTION:
            free_fields(f->sub, f->nsub, obj);
            break;
        default:
            break;
        }
    }
}

/* ---- mappings and lists ---------------------------------------------------- */

static int parse_object(ctx *c, const field *tab, size_t n, const yaml_node_t *node, void *obj);

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
        hint_consider(scalar_text(k), tab[i].name, &best, &bestd);
    if (best)
        return fail(c, k->start_mark, "unknown key %s, did you mean \"%s\"?", shown, best);
    /* a key one level too high: "port:" at the top instead of under listen: */
    for (size_t i = 0; i < n; i++)
        if (tab[i].kind == K_SECTION && find_field(tab[i].sub, tab[i].nsub, k))
            return fail(c, k->start_mark, "unknown key %s, did you mean \"%s.%s\"?", shown,
                        tab[i].name, scalar_text(k));
    list[0] = 0;
    for (size_t i = 0; i < n && pos < sizeof list; i++) {
        int w = snprintf(list + pos, sizeof list - pos, "%s%s", i ? ", " : "", tab[i].name);
        pos += w > 0 ? (size_t)w : 0;
    }
    return fail(c, k->start_mark, "unknown key %s, expected one of %s", shown, list);
}

static int set_field(ctx *c, const field *f, const yaml_node_t *v, void *obj);

/* Fills obj from a mapping node: every key must be declared in tab and appear
 * once; absent keys take their default or, if required, fail at the mapping. */
static int parse_object(ctx *c, const field *tab, size_t n, const yaml_node_t *node, void *obj)
{
    yaml_mark_t first[MAX_FIELDS];
    int seen[MAX_FIELDS] = {0};
    if (node->type != YAML_MAPPING_NODE) {
        char got[SHOWN_MAX * 4 + 8];
        return fail(c, node->start_mark, "expected a mapping, got %s",
                    describe(node, NULL, got, sizeof got));
    }
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = node_at(c, p->key), *v = node_at(c, p->value);
        char got[SHOWN_MAX * 4 + 8];
        if (k->type != YAML_SCALAR_NODE)
            return fail(c, k->start_mark, "expected a key name, got %s",
                        describe(k, NULL, got, sizeof got));
        const field *f = find_field(tab, n, k);
        if (!f)
            return unknown_key(c, tab, n, k);
        size_t i = (size_t)(f - tab);
        if (seen[i])
            return fail(c, k->start_mark, "duplicate key \"%s\", first at %zu:%zu", f->name,
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
            return fail(c, node->start_mark, "missing required key \"%s\"", tab[i].name);
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
        return oom(c);
    for (size_t i = 0; i < n; i++) {
        v[i].s = *(char *const *)(arr + i * f->size + uf->off);
        v[i].i = i;
    }
    size_t a, b;
    int dup = find_dup(v, n, &a, &b);
    free(v);
    if (!dup)
        return PH_OK;
    const yaml_node_t *na = map_find(c, seq_item(c, seq, a), f->unique);
    const yaml_node_t *nb = map_find(c, seq_item(c, seq, b), f->unique);
    char list_path[sizeof c->path], shown[SHOWN_MAX * 4 + 8];
    memcpy(list_path, c->path, sizeof list_path);
    path_push_index(c, b);
    path_push_key(c, f->unique);
    return fail(c, nb->start_mark, "duplicate %s %s, first at %zu:%zu (%s[%zu])", f->unique_what,
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
        return oom(c);
    /* owned by obj from here, so the caller's free covers a half-filled array */
    ptr_set(obj, f->off, arr);
    *count_at(obj, f->off2) = n;
    for (size_t i = 0; i < n; i++) {
        size_t saved = path_push_index(c, i);
        int rc = parse_object(c, f->sub, f->nsub, seq_item(c, node, i), arr + i * f->size);
        path_pop(c, saved);
        if (rc)
            return rc;
    }
    return f->unique ? check_unique(c, f, node, arr, n) : PH_OK;
}

static int parse_tags(ctx *c, const field *f, const yaml_node_t *node, void *obj)
{
    static const field item = {.name = "tag", .kind = K_IDENT};
    if (node->type != YAML_SEQUENCE_NODE)
        return fail_expected(c, f, node);
    size_t n = seq_len(node);
    char **tags = n ? calloc(n, sizeof *tags) : NULL;
    if (n && !tags)
        return oom(c);
    ptr_set(obj, f->off, tags);
    *count_at(obj, f->off2) = n;
    for (size_t i = 0; i < n; i++) {
        size_t saved = path_push_index(c, i);
        int rc = set_scalar(c, &item, seq_item(c, node, i), &tags[i]);
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
        int rc = set_scalar(c, &item, seq_item(c, node, i), &bit);
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
        return fail(c, k->start_mark,
                    "expected a setting name (1-%d characters of A-Z a-z 0-9 _ . -), got %s",
                    SETTING_KEY_MAX, describe(k, NULL, got, sizeof got));
    size_t saved = path_push_key(c, scalar_text(k));
    int rc = PH_OK;
    if (v->type != YAML_SCALAR_NODE)
        rc = fail(c, v->start_mark, "expected a scalar value (plugin settings are flat), got %s",
                  describe(v, NULL, got, sizeof got));
    else if (memchr(v->data.scalar.value, 0, v->data.scalar.length))
        rc = fail(c, v->start_mark, "expected text, got a value containing a NUL byte");
    path_pop(c, saved);
    if (rc)
        return rc;
    kv->key = strndup(scalar_text(k), k->data.scalar.length);
    kv->value = strndup(scalar_text(v), v->data.scalar.length);
    return kv->key && kv->value ? PH_OK : oom(c);
}

static int check_setting_dups(ctx *c, const yaml_node_t *node, const ph_kv *kv, size_t n)
{
    named *v = malloc((n ? n : 1) * sizeof *v);
    if (!v)
        return oom(c);
    for (size_t i = 0; i < n; i++)
        v[i] = (named){kv[i].key, i};
    size_t a, b;
    int dup = find_dup(v, n, &a, &b);
    free(v);
    if (!dup)
        return PH_OK;
    yaml_node_pair_t *pairs = node->data.mapping.pairs.start;
    const yaml_node_t *ka = node_at(c, pairs[a].key), *kb = node_at(c, pairs[b].key);
    return fail(c, kb->start_mark, "duplicate key \"%s\", first at %zu:%zu", kv[b].key,
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
        return oom(c);
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
        return parse_object(c, f->sub, f->nsub, v, obj);
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

/* ---- checks across the document -------------------------------------------- */

/* An offer naming a supplier that is not configured, at its position, with a
 * hint when the name is a likely typo of a configured one. */
static int unknown_supplier(ctx *c, const ph_config *cfg, const yaml_node_t *root, size_t i,
                            size_t j)
{
    const char *id = cfg->products[i].offers[j].supplier, *best = NULL;
    const yaml_node_t *pn = seq_item(c, map_find(c, root, "products"), i);
    const yaml_node_t *sn = map_find(c, seq_item(c, map_find(c, pn, "offers"), j), "supplier");
    size_t bestd = SIZE_MAX;
    char hint[96] = "";
    for (size_t k = 0; k < cfg->nsuppliers; k++)
        hint_consider(id, cfg->suppliers[k].id, &best, &bestd);
    if (!cfg->nsuppliers)
        snprintf(hint, sizeof hint, " (no suppliers are configured)");
    else if (best)
        snprintf(hint, sizeof hint, ", did you mean \"%s\"?", best);
    path_push(c, "products[%zu].offers[%zu].supplier", i, j);
    return fail(c, sn->start_mark, "expected the id of a configured supplier, got \"%s\"%s", id,
                hint);
}

static int check_offer_suppliers(ctx *c, const ph_config *cfg, const yaml_node_t *root)
{
    for (size_t i = 0; i < cfg->nproducts; i++)
        for (size_t j = 0; j < cfg->products[i].noffers; j++)
            if (!ph_config_supplier(cfg, cfg->products[i].offers[j].supplier))
                return unknown_supplier(c, cfg, root, i, j);
    return PH_OK;
}

/* Two clients with one token would make authentication ambiguous. */
static int check_tokens(ctx *c, const ph_config *cfg, const yaml_node_t *root)
{
    for (size_t i = 1; i < cfg->nclients; i++) {
        for (size_t j = 0; j < i; j++) {
            if (memcmp(cfg->clients[i].token_hash, cfg->clients[j].token_hash, 32))
                continue;
            const yaml_node_t *cn = seq_item(c, map_find(c, root, "clients"), i);
            const yaml_node_t *tn = map_find(c, cn, "token_sha256");
            path_push(c, "clients[%zu].token_sha256", i);
            return fail(c, tn->start_mark,
                        "expected a token of its own, got the same token as clients[%zu] (%s)", j,
                        cfg->clients[j].name);
        }
    }
    return PH_OK;
}

/* ---- loading --------------------------------------------------------------- */

/* libyaml reports reader errors (bad UTF-8, control characters) as a byte
 * offset, the others as a mark; both become file:line:column. */
static int syntax_error(ctx *c, const yaml_parser_t *ps, const char *buf, size_t len)
{
    if (ps->error == YAML_MEMORY_ERROR)
        return oom(c);
    if (ps->error == YAML_READER_ERROR) {
        yaml_mark_t m = {0, 0, 0};
        for (size_t i = 0; i < ps->problem_offset && i < len; i++, m.column++)
            if (buf[i] == '\n')
                m.line++, m.column = (size_t)-1;
        if (ps->problem_value != -1)
            return fail(c, m, "invalid YAML: %s (byte 0x%02x)", ps->problem, ps->problem_value);
        return fail(c, m, "invalid YAML: %s", ps->problem);
    }
    if (ps->context)
        return fail(c, ps->problem_mark, "invalid YAML: %s (%s at %zu:%zu)",
                    ps->problem ? ps->problem : "error", ps->context, ps->context_mark.line + 1,
                    ps->context_mark.column + 1);
    return fail(c, ps->problem_mark, "invalid YAML: %s", ps->problem ? ps->problem : "error");
}

/* A second "---" document would be silently ignored by a plain load: refuse it. */
static int check_single_document(ctx *c, yaml_parser_t *ps, const char *buf, size_t len)
{
    yaml_document_t next;
    if (!yaml_parser_load(ps, &next))
        return syntax_error(c, ps, buf, len);
    yaml_node_t *root = yaml_document_get_root_node(&next);
    int rc = PH_OK;
    if (root)
        rc = fail(c, root->start_mark, "expected a single YAML document, got a second one");
    yaml_document_delete(&next);
    return rc;
}

static int build(ctx *c, const yaml_node_t *root, ph_config **out)
{
    ph_config *cfg = calloc(1, sizeof *cfg);
    int rc = PH_ENOMEM;
    if (!cfg || !(cfg->source = strdup(c->name))) {
        rc = oom(c);
        goto fail;
    }
    if ((rc = parse_object(c, top_fields, NELEM(top_fields), root, cfg)) ||
        (rc = check_offer_suppliers(c, cfg, root)) || (rc = check_tokens(c, cfg, root)))
        goto fail;
    *out = cfg;
    return PH_OK;
fail:
    ph_config_free(cfg);
    return rc;
}

int ph_config_load_string(const char *yaml, size_t len, const char *name, ph_config **out,
                          ph_err *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    const yaml_node_t *root;
    int have_doc = 0, rc;
    ctx c = {.doc = &doc, .name = name ? name : "<string>", .err = err};

    if (!yaml_parser_initialize(&parser))
        return oom(&c);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = syntax_error(&c, &parser, yaml, len);
        goto done;
    }
    have_doc = 1;
    if (!(root = yaml_document_get_root_node(&doc))) {
        rc = fail(&c, (yaml_mark_t){0, 0, 0},
                  "expected a mapping of settings, got an empty document");
        goto done;
    }
    if ((rc = check_single_document(&c, &parser, yaml, len)))
        goto done;
    rc = build(&c, root, out);
done:
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

static int read_file(const char *path, char **out, size_t *outlen, ph_err *err)
{
    char ebuf[128];
    size_t len = 0, cap = 8192;
    char *buf = NULL;
    int rc, fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        goto io;
    for (;;) {
        if (!buf || len == cap) {
            if (buf && cap >= FILE_MAX) {
                rc = ph_err_set(err, PH_EINVAL, "%s: larger than %d MiB, not a configuration file",
                                path, FILE_MAX / MIB);
                goto fail;
            }
            cap = buf ? cap * 2 : cap;
            char *nb = realloc(buf, cap);
            if (!nb) {
                rc = ph_err_set(err, PH_ENOMEM, "%s: out of memory while reading", path);
                goto fail;
            }
            buf = nb;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto io;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    *out = buf;
    *outlen = len;
    return PH_OK;
io:
    rc = ph_err_set(err, PH_EIO, "%s: cannot read: %s", path, strerror_r(errno, ebuf, sizeof ebuf));
fail:
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

int ph_config_load_file(const char *path, ph_config **out, ph_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = read_file(path, &buf, &len, err);
    if (rc)
        return rc;
    rc = ph_config_load_string(buf, len, path, out, err);
    free(buf);
    return rc;
}

void ph_config_free(ph_config *cfg)
{
    if (!cfg)
        return;
    free_fields(top_fields, NELEM(top_fields), cfg);
    free(cfg->source);
    free(cfg);
}

/* ---- lookups --------------------------------------------------------------- */

const ph_client_conf *ph_config_client_by_hash(const ph_config *cfg, const uint8_t hash[32])
{
    const ph_client_conf *hit = NULL;
    if (!cfg || !hash)
        return NULL;
    /* every client is compared, so the time taken says nothing about which
     * configured hash shares a prefix with the presented one */
    for (size_t i = 0; i < cfg->nclients; i++) {
        int eq = ph_ct_equal(hash, cfg->clients[i].token_hash, PH_HASH_LEN);
        if (eq && !hit)
            hit = &cfg->clients[i];
    }
    return hit;
}

const ph_client_conf *ph_config_client_by_token(const ph_config *cfg, const char *token, size_t len)
{
    uint8_t h[PH_HASH_LEN];
    if (!cfg || !token || !len)
        return NULL;
    ph_sha256(token, len, h);
    const ph_client_conf *hit = ph_config_client_by_hash(cfg, h);
    ph_wipe(h, sizeof h);
    return hit;
}

const char *ph_delivery_name(int delivery)
{
    for (size_t i = 0; delivery_names[i]; i++)
        if (delivery_values[i] == delivery)
            return delivery_names[i];
    return NULL;
}

int ph_delivery_parse(const char *name)
{
    for (size_t i = 0; name && delivery_names[i]; i++)
        if (strcmp(delivery_names[i], name) == 0)
            return delivery_values[i];
    return 0;
}

const ph_product_conf *ph_config_product(const ph_config *cfg, const char *sku)
{
    for (size_t i = 0; cfg && sku && i < cfg->nproducts; i++)
        if (!strcmp(cfg->products[i].sku, sku))
            return &cfg->products[i];
    return NULL;
}

const ph_supplier_conf *ph_config_supplier(const ph_config *cfg, const char *id)
{
    for (size_t i = 0; cfg && id && i < cfg->nsuppliers; i++)
        if (!strcmp(cfg->suppliers[i].id, id))
            return &cfg->suppliers[i];
    return NULL;
}

/* ---- the embedded default -------------------------------------------------- */

/* Kept as YAML text rather than built as a struct so that it goes through the
 * same validation as any file (a test loads it) and can be shown verbatim as a
 * starting point. The tokens are demo tokens for loopback: see inside. */
static const char default_yaml[] =
    "# perkhub embedded default configuration: what `perkhubd` runs without "
    "-c, and\n"
    "# what `make demo` starts. Everything lives under var/ in the working "
    "directory.\n"
    "listen:\n"
    "  address: 127.0.0.1\n"
    "  port: 8080\n"
    "data_dir: var/data\n"
    "map_size_mb: 1024\n"
    "master_key_file: var/master.key\n"
    "master_key_create: true   # demo only: a production key file is "
    "provisioned, never generated\n"
    "plugin_dir: build/plugins\n"
    "pid_file: var/perkhubd.pid   # kill -HUP $(cat var/perkhubd.pid) reloads\n"
    "log:\n"
    "  level: info\n"
    "http:\n"
    "  threads: 4\n"
    "limits:\n"
    "  max_order_quantity: 100000\n"
    "  max_body_mb: 64\n"
    "  max_import_codes: 1000000\n"
    "\n"
    "# These are DEMO tokens: their plaintexts are published in the README's "
    "curl\n"
    "# walkthrough, so they are loopback_only: refused (403) from any other "
    "address.\n"
    "#   mall       demo-mall-token\n"
    "#   othermall  demo-othermall-token\n"
    "#   ops        demo-ops-token\n"
    "# Only the SHA-256 of a token is configured: printf %s \"$TOKEN\" | "
    "sha256sum\n"
    "clients:\n"
    "  - name: mall\n"
    "    token_sha256: "
    "c8e0aa386ce8862223ef2a674bf01fac0afeb83fcf4738400864098d6b80a0fd\n"
    "    scopes: [fulfill, support]\n"
    "    loopback_only: true\n"
    "  - name: othermall\n"
    "    token_sha256: "
    "51ea3e5c2e2f4e65850d64341129057991a3e664e2eecf7911e9bd038c595d1f\n"
    "    scopes: [fulfill, support]\n"
    "    loopback_only: true\n"
    "  - name: ops\n"
    "    token_sha256: "
    "4db91eab0281403a94ae3ed61e1e1baf7528d2dc264eb786f64c43d7697d3177\n"
    "    scopes: [ops]\n"
    "    loopback_only: true\n"
    "\n"
    "suppliers:\n"
    "  # The built-in sandbox supplier: no network, magic values in "
    "docs/sandbox.md.\n"
    "  - id: sandbox\n"
    "    plugin: sandbox\n"
    "    enabled: true\n"
    "    priority: 10\n"
    "\n"
    "products:\n"
    "  - sku: iqiyi.gold.1m\n"
    "    name: iQiyi Gold monthly membership\n"
    "    brand: iqiyi\n"
    "    category: video\n"
    "    tags: [video, monthly]\n"
    "    delivery: card_code\n"
    "    face_value: \"30.00\"\n"
    "    redemption_guide: >-\n"
    "      Open the iQiyi (爱奇艺) app and sign in to the account to upgrade, "
    "then go to\n"
    "      我的 → 兑换VIP, enter the code and tap 立即兑换. Gold membership "
    "starts at once\n"
    "      and lasts 30 days from activation. Redeem before the code's expiry "
    "date; a\n"
    "      redeemed code cannot be refunded or moved to another account.\n"
    "    offers:\n"
    "      - supplier: sandbox\n"
    "        supplier_sku: sandbox.card\n"
    "        cost: \"28.00\"   # the sandbox's price for sandbox.card\n"
    "  - sku: tencent.video.1m\n"
    "    name: Tencent Video VIP monthly membership\n"
    "    brand: tencent\n"
    "    category: video\n"
    "    tags: [video, monthly]\n"
    "    delivery: card_code\n"
    "    face_value: \"30.00\"\n"
    "    redemption_guide: >-\n"
    "      Open the Tencent Video (腾讯视频) app and sign in with the QQ or "
    "WeChat account\n"
    "      to upgrade, then go to 我的 → 兑换中心, enter the code and confirm. "
    "VIP lasts\n"
    "      31 days from activation. Codes expire if not redeemed by the date "
    "shown.\n"
    "    offers:\n"
    "      - supplier: sandbox\n"
    "        supplier_sku: sandbox.card\n"
    "        cost: \"28.00\"\n"
    "  - sku: netease.music.1m\n"
    "    name: NetEase Cloud Music Black Vinyl VIP monthly\n"
    "    brand: netease\n"
    "    category: music\n"
    "    tags: [music, monthly]\n"
    "    delivery: card_code\n"
    "    face_value: \"15.00\"\n"
    "    redemption_guide: >-\n"
    "      Open NetEase Cloud Music (网易云音乐) and sign in, then go to 我的 "
    "→ 设置 →\n"
    "      兑换码 (or 会员中心 → 兑换), enter the code and confirm. Black "
    "Vinyl VIP\n"
    "      (黑胶VIP) lasts 31 days from activation and stacks on an existing "
    "membership.\n"
    "    # no offer: sold from imported stock only\n"
    "  - sku: meituan.voucher.20\n"
    "    name: Meituan 20 CNY voucher\n"
    "    brand: meituan\n"
    "    category: food\n"
    "    tags: [food, voucher]\n"
    "    delivery: card_code\n"
    "    face_value: \"20.00\"\n"
    "    redemption_guide: >-\n"
    "      Open the Meituan (美团) app, go to 我的 → 红包卡券 → 兑换, and "
    "enter the code.\n"
    "      The 20 CNY voucher is added to the account and applies to one "
    "food-delivery\n"
    "      order; it must be used within 30 days of redemption.\n"
    "    # no offer: sold from imported stock only\n"
    "  - sku: mobile.topup.50\n"
    "    name: Mobile top-up 50 CNY\n"
    "    brand: mobile\n"
    "    category: telecom\n"
    "    tags: [telecom, topup]\n"
    "    delivery: recharge\n"
    "    face_value: \"50.00\"\n"
    "    redemption_guide: >-\n"
    "      Nothing to redeem: 50 CNY is credited directly to the phone number "
    "given\n"
    "      with the order, usually within 10 minutes. China Mobile, China "
    "Unicom and\n"
    "      China Telecom numbers are supported.\n"
    "    offers:\n"
    "      - supplier: sandbox\n"
    "        supplier_sku: sandbox.recharge\n"
    "        cost: \"49.40\"\n";

const char *ph_config_default_yaml(void)
{
    return default_yaml;
}
